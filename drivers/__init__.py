"""Devices: the Device contract and its drivers (simulated, and hardware in later modules)."""

from .base import ChannelInfo, Device, DeviceChannels, DeviceError, rest_level, rest_ramp, voltage_channels
from .sim import SimDevice
from .spec import DEVICE_KINDS, DeviceRequest, make_device

__all__ = ["ChannelInfo", "Device", "DeviceChannels", "DeviceError", "rest_level", "rest_ramp",
           "voltage_channels", "SimDevice",
           "DEVICE_KINDS", "DeviceRequest", "make_device"]

"""Devices: the Device contract, capabilities, and the drivers (simulated, NI DAQ, potentiostat, brainflow).

Drivers take a connection and never start emulators; :mod:`prclab.protocols.rig` builds devices and rigs
from spec strings and owns the emulators of a rehearsal.
"""

from .base import ChannelInfo, Device, DeviceChannels, DeviceError, rest_level, rest_ramp, voltage_channels
from .capabilities import MarksEvents, Records, SnapshotsState, Stimulates, capabilities, require
from .sim import SimDevice
from .spec import DeviceRequest, network_use

__all__ = ["ChannelInfo", "Device", "DeviceChannels", "DeviceError", "rest_level", "rest_ramp",
           "voltage_channels", "MarksEvents", "Records", "SnapshotsState", "Stimulates", "capabilities",
           "require", "SimDevice", "DeviceRequest", "network_use"]

"""The NI-DAQmx emulator's attribute table: task, channel, timing, trigger, read, write and buffer
attributes by DAQmx id (ids and enum values as in ``nidaqmx.task``), with their getters and setters.

Setters refuse what the card refuses with DAQmx's codes; channel attributes are got and set per
selected channel (:meth:`.nidaq_model.Task.select`).
"""

from __future__ import annotations

from dataclasses import dataclass

from nidaqmx.constants import ChannelType, Edge, RegenerationMode, TriggerType, UsageTypeAI, UsageTypeAO, \
    VoltageUnits
from nidaqmx.error_codes import DAQmxErrors as Err

from .nidaq_card import coerce_range
from .nidaq_errors import DaqFault
from .nidaq_model import (CONTINUOUS, FINITE, MAX_BUFFER_SAMPLES, ON_DEMAND, RSE, SAMPLE_CLOCK, Channel,
                          DaqDevice, Task, refuse_while_running)

@dataclass(frozen=True)
class Attribute:
    """One entry of the attribute table: value type, getter ``(device, task, channel) -> value``, and
    setter ``(device, task, channel, value)`` (channel attributes are set per selected channel)."""

    type: str
    get: object
    set: object = None


def _no_attr():
    raise DaqFault(Err.ATTR_NOT_SUPPORTED)


def _only(kind: str, value):
    """An attribute getter valid on ``kind`` channels only."""
    return lambda d, t, c: value(d, t, c) if c.kind == kind else _no_attr()


def _set_limits(which: str):
    def setter(d: DaqDevice, t: Task, c: Channel, value: float) -> None:
        refuse_while_running(t)
        low, high = (value, c.high) if which == "low" else (c.low, value)
        c.range_V = coerce_range(d.card.ai_ranges if c.kind == "ai" else d.card.ao_ranges, low, high,
                                 c.kind.upper())
        c.low, c.high = float(low), float(high)
    return setter


def _set_enum(prop: str, allowed, attr: str):
    def setter(d: DaqDevice, t: Task, c, value: int) -> None:
        refuse_while_running(t)
        if value not in allowed:
            raise DaqFault(Err.INVALID_ATTRIBUTE_VALUE, f"Property: {prop}\nRequested Value: {value}")
        setattr(t, attr, value)
    return setter


def _set_rate(d: DaqDevice, t: Task, c, value: float) -> None:
    refuse_while_running(t)
    d._check_rate(t, value)
    t.rate_hz, t.timing_type = float(value), SAMPLE_CLOCK


def _set_samps(d: DaqDevice, t: Task, c, value: int) -> None:
    refuse_while_running(t)
    if not 1 <= value < 2**63:
        raise DaqFault(Err.INVALID_ATTRIBUTE_VALUE,
                       f"Property: SampQuant.SampPerChan\nRequested Value: {value}")
    t.samps_per_chan = int(value)


def _set_source(d: DaqDevice, t: Task, c, value: str) -> None:
    refuse_while_running(t)
    d._check_clock_source(t, value)
    t.clock_source = value


def set_buffer(d: DaqDevice, t: Task, c, value: int) -> None:
    refuse_while_running(t)
    if value * max(len(t.channels), 1) > MAX_BUFFER_SAMPLES:
        raise DaqFault(Err.PAL_MEMORY_FULL, f"Buffer: {value} samples\nTask Name: {t.name}")
    t.buffer_request = int(value)


def _set_description(d, t, c, value: str) -> None:
    c.description = value[:1024]


def _timing_rate_max(d: DaqDevice, t: Task, c) -> float:
    n = len(t.channels)
    return d.card.ao_max_rate(n) if t.kind == "ao" else d.card.ai_max_rate(n)


def _default_read_count(d: DaqDevice, t: Task, c) -> int:
    """DAQmx_Read_DefaultNumberOfSamplesToRead, what ``task.read(READ_ALL_AVAILABLE)`` asks for."""
    if t.kind != "ai":
        _no_attr()
    if t.timed and t.sample_mode == FINITE and not t.read_all_avail:
        return t.samps_per_chan - t.read_pos
    return t.available() if t.timed else 1


ATTRIBUTES: dict[tuple[str, int], Attribute] = {
    # task
    ("task", 0x1276): Attribute("string", lambda d, t, c: t.name),
    ("task", 0x1273): Attribute("string", lambda d, t, c: ", ".join(ch.name for ch in t.channels)),
    ("task", 0x2181): Attribute("uint32", lambda d, t, c: len(t.channels)),
    ("task", 0x230E): Attribute("string", lambda d, t, c: d.name if t.channels else ""),
    # channel
    ("chan", 0x187F): Attribute("int32", lambda d, t, c: (ChannelType.ANALOG_INPUT if c.kind == "ai"
                                                          else ChannelType.ANALOG_OUTPUT).value),
    ("chan", 0x18F5): Attribute("string", lambda d, t, c: c.physical),
    ("chan", 0x1926): Attribute("string", lambda d, t, c: c.description, _set_description),
    ("chan", 0x17DE): Attribute("double", _only("ai", lambda d, t, c: c.low), _set_limits("low")),
    ("chan", 0x17DD): Attribute("double", _only("ai", lambda d, t, c: c.high), _set_limits("high")),
    ("chan", 0x1816): Attribute("double", _only("ai", lambda d, t, c: -c.range_V)),
    ("chan", 0x1815): Attribute("double", _only("ai", lambda d, t, c: c.range_V)),
    ("chan", 0x1765): Attribute("double", lambda d, t, c: float(d.card.resolution_bits)),
    ("chan", 0x0695): Attribute("int32", _only("ai", lambda d, t, c: UsageTypeAI.VOLTAGE.value)),
    ("chan", 0x1097): Attribute("int32", _only("ai", lambda d, t, c: c.terminal_config),
                                lambda d, t, c, v: (refuse_while_running(t), d.set_terminal_config(c, v))),
    ("chan", 0x1094): Attribute("int32", _only("ai", lambda d, t, c: VoltageUnits.VOLTS.value)),
    ("chan", 0x1187): Attribute("double", _only("ao", lambda d, t, c: c.low), _set_limits("low")),
    ("chan", 0x1186): Attribute("double", _only("ao", lambda d, t, c: c.high), _set_limits("high")),
    ("chan", 0x182D): Attribute("double", _only("ao", lambda d, t, c: -c.range_V)),
    ("chan", 0x182E): Attribute("double", _only("ao", lambda d, t, c: c.range_V)),
    ("chan", 0x1108): Attribute("int32", _only("ao", lambda d, t, c: UsageTypeAO.VOLTAGE.value)),
    ("chan", 0x1184): Attribute("int32", _only("ao", lambda d, t, c: VoltageUnits.VOLTS.value)),
    ("chan", 0x188E): Attribute("int32", _only("ao", lambda d, t, c: RSE)),
    # timing
    ("timing", 0x1347): Attribute("int32", lambda d, t, c: t.timing_type,
                                  _set_enum("SampTimingType", (ON_DEMAND, SAMPLE_CLOCK), "timing_type")),
    ("timing", 0x1344): Attribute("double", lambda d, t, c: t.rate_hz, _set_rate),
    ("timing", 0x22C8): Attribute("double", _timing_rate_max),
    ("timing", 0x1852): Attribute("string", lambda d, t, c: t.clock_source or "OnboardClock", _set_source),
    ("timing", 0x1301): Attribute("int32", lambda d, t, c: t.active_edge,
                                  _set_enum("SampClk.ActiveEdge", {e.value for e in Edge}, "active_edge")),
    ("timing", 0x1300): Attribute("int32", lambda d, t, c: t.sample_mode,
                                  _set_enum("SampQuant.SampMode", (FINITE, CONTINUOUS), "sample_mode")),
    ("timing", 0x1310): Attribute("uint64", lambda d, t, c: t.samps_per_chan, _set_samps),
    # start trigger
    ("trig", 0x1393): Attribute("int32", lambda d, t, c: t.trigger_type),
    ("trig", 0x1407): Attribute("string", lambda d, t, c: t.trigger_source),
    ("trig", 0x1404): Attribute("int32", lambda d, t, c: t.trigger_edge),
    ("trig", 0x1419): Attribute("int32", lambda d, t, c: (TriggerType.DIGITAL_EDGE if t.ref_trigger_source
                                                          else TriggerType.NONE).value),
    ("trig", 0x1434): Attribute("string", lambda d, t, c: t.ref_trigger_source),
    ("trig", 0x1445): Attribute("uint32", lambda d, t, c: t.pretrigger),
    # read stream
    ("read", 0x217B): Attribute("uint32", lambda d, t, c: len(t.channels) if t.kind == "ai" else _no_attr()),
    ("read", 0x1823): Attribute("string", lambda d, t, c: ", ".join(ch.name for ch in t.channels)),
    ("read", 0x1223): Attribute("uint32", lambda d, t, c: t.available()),
    ("read", 0x192A): Attribute("uint64", lambda d, t, c: t.acquired),
    ("read", 0x1221): Attribute("uint64", lambda d, t, c: t.read_pos),
    ("read", 0x31E8): Attribute("uint32", _default_read_count),
    ("read", 0x1215): Attribute("bool", lambda d, t, c: t.read_all_avail,
                                lambda d, t, c, v: setattr(t, "read_all_avail", bool(v))),
    # write stream
    ("write", 0x217E): Attribute("uint32", lambda d, t, c: len(t.channels) if t.kind == "ao" else _no_attr()),
    ("write", 0x1453): Attribute("int32", lambda d, t, c: t.regen_mode,
                                 _set_enum("RegenMode", {m.value for m in RegenerationMode}, "regen_mode")),
    ("write", 0x192B): Attribute("uint64", lambda d, t, c: t.generated),
    ("write", 0x1458): Attribute("uint64", lambda d, t, c: t.written),
    ("write", 0x1460): Attribute("uint32", lambda d, t, c: min(t.space(), 2**32 - 1)),
    # buffer
    ("buffer", 0x186C): Attribute("uint32", lambda d, t, c: t.buffer_size() if t.kind == "ai" else _no_attr(),
                                  set_buffer),
    ("buffer", 0x186D): Attribute("uint32", lambda d, t, c: (t.size or t.written) if t.kind == "ao"
                                  else _no_attr(), set_buffer),
}
"""Attribute table: ``(category, DAQmx attribute id) -> Attribute`` (ids as in ``nidaqmx.task``)."""

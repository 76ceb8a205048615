"""The card the NI-DAQmx emulator presents: an NI PCIe-6363 (X Series multifunction DAQ).

Figures from NI's published "NI 6363 Specifications" (X Series, NI part 374650 / 376099) and its
device page: 32 single-ended (16 differential) 16-bit analog inputs, 2.00 MS/s on one channel and
1.00 MS/s aggregate over several; input ranges ±0.1, ±0.2, ±0.5, ±1, ±2, ±5, ±10 V; 4 16-bit analog
outputs at up to 2.86 / 2.00 / 1.54 / 1.25 MS/s with 1 / 2 / 3 / 4 channels running, ranges ±10 V and
±5 V (the external-reference ranges are not emulated); PFI0-15 as trigger inputs; terminal
configurations RSE, NRSE and differential (no pseudo-differential).  The slowest sample clock of the
100 MHz timebase and its 32-bit divider is 100e6 / 2**32 ≈ 0.0233 S/s.  The serial number is the
emulator's own, and the device reports ``is_simulated`` true: a program can tell it is not talking to a
real card.

A substrate with more inputs or outputs than the card has widens the emulated card to fit (the product
type stays PCIe-6363); lines beyond the substrate's outputs read 0 V.

:func:`device_attribute` and :func:`physical_channel_attribute` answer the ``GetDeviceAttribute*`` and
``GetPhysicalChanAttribute*`` RPCs (ids as in ``nidaqmx.system.device`` / ``physical_channel``);
:func:`expand_physical` expands ``Dev1/ai0:3, Dev1/ai5`` as NI-DAQmx does, refusing other devices and
lines with DAQmx's codes; :func:`coerce_range` picks the smallest hardware range that holds a
requested ``[min, max]``, as NI-DAQmx does.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from nidaqmx.constants import ProductCategory, TerminalConfiguration, UsageTypeAI, UsageTypeAO
from nidaqmx.error_codes import DAQmxErrors as Err

from .nidaq_errors import DaqFault


@dataclass(frozen=True)
class CardSpec:
    """What NI-DAQmx reports of a multifunction card (rates in S/s, ranges in volts)."""

    product_type: str
    product_num: int
    serial_num: int
    n_ai: int
    n_ao: int
    n_pfi: int                            # PFI (programmable function) terminals usable as triggers
    ai_ranges: tuple[float, ...]          # symmetric bipolar ranges ±r, ascending
    ao_ranges: tuple[float, ...]
    ai_max_single_rate: float
    ai_max_multi_rate: float              # aggregate over all channels of a task
    ao_max_rates: tuple[float, ...]       # by number of channels running: 1, 2, ...
    min_rate: float
    resolution_bits: int
    ai_term_cfgs: tuple[int, ...]

    def widened(self, n_ai: int, n_ao: int) -> "CardSpec":
        """This card with at least ``n_ai`` inputs and ``n_ao`` outputs."""
        rates = self.ao_max_rates + (self.ao_max_rates[-1],) * max(0, n_ao - len(self.ao_max_rates))
        return CardSpec(**{**self.__dict__, "n_ai": max(self.n_ai, n_ai), "n_ao": max(self.n_ao, n_ao),
                           "ao_max_rates": rates})

    def ai_max_rate(self, n_channels: int) -> float:
        """Fastest per-channel sample clock of an AI task with ``n_channels`` channels, S/s."""
        return self.ai_max_single_rate if n_channels <= 1 else self.ai_max_multi_rate / n_channels

    def ao_max_rate(self, n_channels: int) -> float:
        """Fastest update rate of an AO task with ``n_channels`` channels, S/s."""
        return self.ao_max_rates[min(max(n_channels, 1), len(self.ao_max_rates)) - 1]


PCIE_6363 = CardSpec(
    product_type="PCIe-6363", product_num=0x7435, serial_num=0x01E5A6C3, n_ai=32, n_ao=4, n_pfi=16,
    ai_ranges=(0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0), ao_ranges=(5.0, 10.0),
    ai_max_single_rate=2.0e6, ai_max_multi_rate=1.0e6, ao_max_rates=(2.86e6, 2.0e6, 1.54e6, 1.25e6),
    min_rate=100e6 / 2**32, resolution_bits=16,
    ai_term_cfgs=(TerminalConfiguration.RSE.value, TerminalConfiguration.NRSE.value,
                  TerminalConfiguration.DIFF.value))
"""The emulated card (see the module docstring for the sources)."""


def coerce_range(ranges: tuple[float, ...], low: float, high: float, what: str) -> float:
    """The smallest ``±r`` of ``ranges`` that holds ``[low, high]`` volts; returns ``r``.

    Refuses a non-finite or inverted request with -200082 and one no range holds with -200077, naming
    the property (``what``: ``AI`` or ``AO``) and the largest supported value, as NI-DAQmx does.
    """
    if not (low == low and high == high) or low >= high:  # NaN compares false
        raise DaqFault(Err.MIN_NOT_LESS_THAN_MAX, f"Property: {what}.Min, {what}.Max\n"
                       f"Requested Minimum: {low}\nRequested Maximum: {high}")
    for r in ranges:
        if -r <= low and high <= r:
            return r
    prop, value, limit = (f"{what}.Max", high, ranges[-1]) if high > ranges[-1] else \
        (f"{what}.Min", low, -ranges[-1])
    raise DaqFault(Err.INVALID_ATTRIBUTE_VALUE, f"Property: {prop}\nRequested Value: {value}\n"
                   f"{'Maximum' if limit > 0 else 'Minimum'} Supported Value: {limit}")


_PHYSICAL = re.compile(r"/?([A-Za-z][\w-]*)/(ai|ao)(\d{1,9})(?::(\d{1,9}))?\Z")


def expand_physical(spec: str, device: str, kind: str, count: int) -> list[tuple[str, int]]:
    """``Dev1/ai0:3, Dev1/ai5`` -> ``[("Dev1/ai0", 0), ...]`` for lines of ``kind`` (``ai``/``ao``).

    Refuses another device (-200220), a line the card lacks or a malformed name (-200170) on the first
    bad element, so a huge range costs no more than the card's lines.
    """
    out = []
    for part in (p.strip() for p in spec.split(",")):
        m = _PHYSICAL.match(part)
        if m is None or m.group(2) != kind:
            raise DaqFault(Err.PHYSICAL_CHAN_DOES_NOT_EXIST, f"Physical Channel Name: {part[:80]}\n"
                           f"Device: {device}")
        dev, first = m.group(1), int(m.group(3))
        last = int(m.group(4)) if m.group(4) is not None else first
        if dev.lower() != device.lower():
            raise DaqFault(Err.INVALID_DEVICE_ID, f"Device Specified: {dev[:80]}")
        step = 1 if last >= first else -1
        for i in range(first, last + step, step):
            if i >= count:
                raise DaqFault(Err.PHYSICAL_CHAN_DOES_NOT_EXIST,
                               f"Physical Channel Name: {kind}{i}\nDevice: {device}")
            out.append((f"{device}/{kind}{i}", i))
    return out


def _ranges(values: tuple[float, ...]) -> list[float]:
    """Bipolar ranges as NI-DAQmx lists them: ``[low0, high0, low1, high1, ...]``, ascending."""
    return [v for r in values for v in (-r, r)]


def _lines(device: str, kind: str, count: int) -> str:
    return ", ".join(f"{device}/{kind}{i}" for i in range(count))


DEVICE_ATTRIBUTES = {
    0x0631: ("string", lambda c, d: c.product_type),
    0x231D: ("uint32", lambda c, d: c.product_num),
    0x0632: ("uint32", lambda c, d: c.serial_num),
    0x29A9: ("int32", lambda c, d: ProductCategory.X_SERIES_DAQ.value),
    0x22CA: ("bool", lambda c, d: True),
    0x231E: ("string", lambda c, d: _lines(d, "ai", c.n_ai)),
    0x231F: ("string", lambda c, d: _lines(d, "ao", c.n_ao)),
    0x2990: ("double_array", lambda c, d: _ranges(c.ai_ranges)),
    0x299B: ("double_array", lambda c, d: _ranges(c.ao_ranges)),
    0x298C: ("double", lambda c, d: c.ai_max_single_rate),
    0x298D: ("double", lambda c, d: c.ai_max_multi_rate),
    0x298E: ("double", lambda c, d: c.min_rate),
    0x2997: ("double", lambda c, d: c.ao_max_rates[0]),
    0x2998: ("double", lambda c, d: c.min_rate),
    0x298F: ("bool", lambda c, d: False),  # multiplexed, not simultaneous sampling
}
"""Device attributes: DAQmx id -> (value type, ``(card, device name) -> value``)."""

PHYSICAL_CHANNEL_ATTRIBUTES = {
    ("ai", 0x2342): ("int32", lambda c: sum({TerminalConfiguration.RSE.value: 1,
                                             TerminalConfiguration.NRSE.value: 2,
                                             TerminalConfiguration.DIFF.value: 4}[t]
                                            for t in c.ai_term_cfgs)),  # a bit field
    ("ai", 0x2FD7): ("int32_array", lambda c: [UsageTypeAI.VOLTAGE.value]),
    ("ao", 0x2FD9): ("int32_array", lambda c: [UsageTypeAO.VOLTAGE.value]),
    ("ao", 0x29A3): ("int32", lambda c: 1),  # RSE only (bit field)
}
"""Physical-channel attributes: (line kind, DAQmx id) -> (value type, ``card -> value``)."""


def device_attribute(card: CardSpec, device: str, name: str, attribute: int, kind: str):
    """The value of device attribute ``attribute`` of ``kind`` for device ``name``."""
    if name.lower() != device.lower():
        raise DaqFault(Err.INVALID_DEVICE_ID, f"Device Specified: {name[:80]}")
    entry = DEVICE_ATTRIBUTES.get(attribute)
    if entry is None or entry[0] != kind:
        raise DaqFault(Err.ATTR_NOT_SUPPORTED, f"Property ID: {attribute:#x}\nDevice: {device}")
    return entry[1](card, device)


def physical_channel_attribute(card: CardSpec, device: str, physical: str, attribute: int, kind: str):
    """The value of attribute ``attribute`` of ``kind`` for one physical channel ``physical``."""
    m = _PHYSICAL.match(physical.strip())
    line = m.group(2) if m is not None and m.group(4) is None else "?"
    if line == "?":
        raise DaqFault(Err.PHYSICAL_CHAN_DOES_NOT_EXIST, f"Physical Channel Name: {physical[:80]}")
    expand_physical(physical, device, line, card.n_ai if line == "ai" else card.n_ao)
    entry = PHYSICAL_CHANNEL_ATTRIBUTES.get((line, attribute))
    if entry is None or entry[0] != kind:
        raise DaqFault(Err.ATTR_NOT_SUPPORTED, f"Property ID: {attribute:#x}\nChannel: {physical}")
    return entry[1](card)

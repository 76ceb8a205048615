"""The IO Rodeo Rodeostat's JSON-lines protocol as a dialect of :class:`~drivers.potentiostat.PotentiostatDevice`.

Selected with ``protocol="rodeostat"`` (spec ``potentiostat:/dev/ttyACM0?protocol=rodeostat``).  Facts
from the Rodeostat firmware (github.com/iorodeo/potentiostat, ``firmware/libraries/potentiostat``) and
IO Rodeo's Python client (``iorodeo-potentiostat``); none of their code is used:

- one JSON object per line at 115200 baud, each answered by one line
  ``{"success":...,"message":...,"response":{"command":NAME,...}}``; a line whose length is a multiple
  of 64 bytes gets a leading space (the client's workaround for the Itsy Bitsy M4's USB-serial bug);
- handshake: ``getVariant`` (e.g. ``10V_microAmpV0.2``: its current ranges), ``getVersion``, then
  ``setCurrRange`` to the narrowest range holding ``current_range_A``;
- the instrument runs only its built-in tests, so a stimulus chunk of at most 50 samples becomes one
  ``multiStep`` test (``MultiStepMaxSize`` = 50) with one step per sample: ``setSamplePeriod P`` (whole
  ms, 1-1000), ``setParam multiStep {"quietTime":0,"step":[[P, E_k], ...]}``, ``runTest multiStep``.
  The firmware samples at ``t = P, 2P, ...`` and step ``k`` holds until ``t <= (k+1) P``, so sample
  ``k`` is the current at the end of step ``k``: one ``{"t":ms,"v":V,"i":µA}`` line per sample, then
  ``{}``.  With auto-connect (the firmware's default) the electrodes are connected for each test and
  disconnected after it, so the cell is off between chunks, as between MethodSCRIPT scripts;
- ``stopTest`` aborts a running test (the device answers, then sends ``{}``).

Every reply is validated (JSON object, ``success`` true, the command echoed, sample fields numeric);
anything else is a one-line ``DeviceError`` naming the port.
"""

from __future__ import annotations

import json
import math

import numpy as np

CURRENT_RANGES_A = {"nanoAmp": {"60nA": 60e-9, "100nA": 100e-9, "1uA": 1e-6, "10uA": 10e-6},
                    "microAmp": {"1uA": 1e-6, "10uA": 10e-6, "100uA": 100e-6, "1000uA": 1e-3},
                    "10MilliAmp": {"10uA": 10e-6, "100uA": 100e-6, "1000uA": 1e-3, "10000uA": 10e-3},
                    "milliAmp": {"100uA": 100e-6, "1000uA": 1e-3, "12000uA": 12e-3, "24000uA": 24e-3},
                    "24MilliAmp": {"100uA": 100e-6, "1000uA": 1e-3, "12000uA": 12e-3, "24000uA": 24e-3}}
"""Current ranges by the current family named in the hardware variant (``VOLT_CURRENTVn.n``)."""

MAX_STEPS = 50
"""Most steps of one ``multiStep`` test (the firmware's ``MultiStepMaxSize``)."""


class RodeostatJson:
    """The Rodeostat dialect: ``handshake``, ``script`` (the chunk's request lines), ``collect``, ``abort``.

    Args:
        current_range_A: full-scale current wanted; the handshake picks the narrowest range holding it.
    """

    name = "rodeostat"
    baudrate = 115200
    max_line_bytes = 4096               # a setParam reply echoes all 50 steps (~900 bytes)
    samples_per_script = MAX_STEPS

    def __init__(self, current_range_A: float):
        self.current_range_A = current_range_A
        self.range_name = ""

    @staticmethod
    def refuses(rate_hz: float, samples_per_script: int) -> str | None:
        """Why the instrument cannot run at ``rate_hz`` in chunks of ``samples_per_script``, or None."""
        period_ms = 1000.0 / rate_hz
        if not (1 <= round(period_ms) <= 1000 and math.isclose(period_ms, round(period_ms), rel_tol=1e-9)):
            return f"rate {rate_hz:g} Hz: the Rodeostat's sample period is a whole 1-1000 ms"
        if samples_per_script > MAX_STEPS:
            return f"samples_per_script {samples_per_script} > {MAX_STEPS} (multiStep's most steps)"
        return None

    @staticmethod
    def _line(request: dict) -> str:
        text = json.dumps(request, separators=(",", ":")) + "\n"
        return " " + text if len(text) % 64 == 0 else text

    def _reply(self, link, command: str) -> dict:
        line = link.readline()
        try:
            reply = json.loads(line)
        except ValueError:
            raise link.fail(f"malformed reply {line[:60]!r} to {command}") from None
        if not isinstance(reply, dict) or not isinstance(reply.get("response"), dict):
            raise link.fail(f"reply {line[:60]!r} to {command} is not a Rodeostat response")
        if reply.get("success") is not True:
            raise link.fail(f"{command} refused: {str(reply.get('message', '(no message)'))[:80]}")
        if reply["response"].get("command") != command:
            raise link.fail(f"reply to {reply['response'].get('command')!r} where {command} was sent")
        return reply["response"]

    def _ask(self, link, request: dict) -> dict:
        link.send(self._line(request))
        return self._reply(link, request["command"])

    def handshake(self, link) -> str:
        """Identify the instrument and select its current range; returns ``"VARIANT VERSION"``."""
        variant = str(self._ask(link, {"command": "getVariant"}).get("variant", ""))
        family = variant.rsplit("_", 1)[-1].rsplit("V", 1)[0]   # 10V_microAmpV0.2, nanoAmpV0.1
        ranges = CURRENT_RANGES_A.get(family)
        if ranges is None:
            raise link.fail(f"unknown hardware variant {variant[:40]!r} (not a Rodeostat?)")
        version = str(self._ask(link, {"command": "getVersion"}).get("version", ""))
        fits = [name for name, full in ranges.items() if full >= self.current_range_A * (1 - 1e-9)]
        if not fits:
            raise link.fail(f"no current range of {variant} holds {self.current_range_A:g} A")
        self.range_name = min(fits, key=ranges.get)
        got = self._ask(link, {"command": "setCurrRange", "currRange": self.range_name}).get("currRange")
        if got != self.range_name:
            raise link.fail(f"current range {got!r} set where {self.range_name} was asked")
        return f"{variant} {version}"

    def script(self, potentials_V: np.ndarray, rate_hz: float) -> str:
        """The request lines that run ``potentials_V`` ``(k <= 50,)`` one per sample period."""
        period_ms = int(round(1000.0 / rate_hz))
        steps = [[period_ms, float(e)] for e in potentials_V]
        return "".join(self._line(request) for request in (
            {"command": "setSamplePeriod", "samplePeriod": period_ms},
            {"command": "setParam", "test": "multiStep", "param": {"quietValue": 0.0, "quietTime": 0,
                                                                   "step": steps}},
            {"command": "runTest", "test": "multiStep"}))

    def collect(self, link, n: int, first: int = 0) -> np.ndarray:
        """Read one chunk's replies and its ``n`` samples; returns currents ``(n,)`` in amperes."""
        for command in ("setSamplePeriod", "setParam", "runTest"):
            self._reply(link, command)
        currents = np.empty(n)
        for k in range(n):
            sample = self._sample(link, first + k)
            if sample == {}:
                raise link.fail(f"test ended after {k} of {n} samples")
            values = [sample.get(key) for key in ("t", "v", "i")]
            if not all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
                       for v in values):
                raise link.fail(f"sample {first + k} lacks a finite t, v or i: {str(sample)[:60]}")
            currents[k] = values[2] * 1e-6
        if self._sample(link, first + n) != {}:
            raise link.fail(f"more than {n} samples for a {n}-sample test")
        return currents

    @staticmethod
    def _sample(link, index: int):
        line = link.readline()
        try:
            return json.loads(line)
        except ValueError:
            raise link.fail(f"malformed sample line {line[:60]!r} at sample {index}") from None

    def abort(self, link) -> None:
        link.send(self._line({"command": "stopTest"}))

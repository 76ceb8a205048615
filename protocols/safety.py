"""The safety layer between encoder and device: stimulation limits, checked on every sample.

A protocol's ``[safety]`` table sets the limits (all optional; per-channel overrides in
``[safety.channels.N]`` for stimulus channel ``N``)::

    [safety]
    material = "platinum"               # electrode material: sets the water window and charge-injection
                                        #   limit (MATERIALS below); "" for none
    low_V = -inf                        # voltage limits, volts; the effective window is the intersection of
    high_V = inf                        #   these, the material's water window and [stimulus] low_V/high_V
    impedance_ohm = 0.0                 # electrode impedance; 0: the substrate's (potato r_access_ohm,
                                        #   hydrogel 1 / g0_S), else unknown
    max_current_A = inf                 # |V| / impedance_ohm must stay below (needs an impedance)
    max_slew_V_per_s = inf              # |V[t] - V[t-1]| * rate
    electrode_area_cm2 = 0.0            # stimulating electrode area (0: unknown; charge density unchecked)
    max_charge_per_phase_C = inf        # charge of one phase (a run of samples of one polarity)
    max_charge_density_C_per_cm2 = 0.0  # per phase; 0: the material's charge-injection limit
    shannon_k = 0.0                     # > 0: Shannon criterion log10(D) + log10(Q) <= k (uC/cm2, uC)
    living = false                      # living tissue: net charge over any dc_window_s must stay below
    dc_window_s = 1.0                   #   max_dc_charge_C (charge-balanced biphasic stimulation)
    max_dc_charge_C = 0.0               # 0: the per-phase charge limit
    ramp_s = 0.0                        # global amplitude ramp over the first ramp_s seconds of the run
    [safety.channels.3]                 # stimulus channel 3: any per-channel key above
    high_V = 0.2

Currents and charges use a resistive electrode model, ``I = V / impedance_ohm`` against a return
electrode at 0 V, which bounds the charge a series double layer would pass from above (conservative).
A phase is a maximal run of samples of one polarity; every limit on a phase's charge (the per-phase
limit, charge density x area, the Shannon criterion ``Q <= sqrt(10^k * A)`` uC) reduces to one per-channel
charge limit, and the message names the rule that set it.

Where defaults come from (``../shared/notes/stimulation-safety.md``):

- water windows vs Ag|AgCl and charge-injection limits after Cogan 2008 and Rose & Robblee 1990:
  platinum -0.6..+0.8 V, 0.05-0.15 mC/cm2 (the low end, 50 uC/cm2, is used: Pt dissolution begins at
  20-50 uC/cm2); activated iridium oxide -0.6..+0.8 V, 1-3.5 mC/cm2; TiN -0.9..+0.9 V, ~1 mC/cm2;
  PEDOT -0.9..+0.6 V, 2.3-3.6 mC/cm2; stainless steel 20-40 uC/cm2 (no window given: the stimulus range);
- Shannon criterion: tissue damage at k >= 1.85 (cat cortex, electrodes >= 1 mm2), so ``shannon_k`` must
  stay below 1.85;
- charge-balanced biphasic pulses always for living tissue (Wagenaar et al. 2004): ``living = true``.

Nothing is clipped: :func:`validate_trials` refuses a protocol whose compiled waveforms break a limit,
with a :class:`SafetyError` naming the trial, channel and sample, and the runner checks every block
again with a :class:`SafetyMonitor` just before ``device.write``.  The ramp is not a clip either: it is a
configured envelope applied to the compiled waveforms (:func:`apply_ramp`), so the recording holds what
the device was sent, and the monitor checks the envelope too.
"""

from __future__ import annotations

import inspect
import math
from dataclasses import dataclass

import numpy as np

from prclab import PrclabError


class SafetyError(PrclabError):
    """A stimulus sample breaks a safety limit; the message names trial, channel, sample and limit."""


@dataclass(frozen=True)
class Material:
    """Electrode material: water window ``low_V..high_V`` (vs Ag|AgCl) and charge-injection limit."""

    low_V: float
    high_V: float
    charge_density_C_per_cm2: float


MATERIALS = {
    "platinum": Material(-0.6, 0.8, 50e-6),
    "iridium-oxide": Material(-0.6, 0.8, 1e-3),
    "titanium-nitride": Material(-0.9, 0.9, 1e-3),
    "pedot": Material(-0.9, 0.6, 2.3e-3),
    "stainless-steel": Material(-math.inf, math.inf, 20e-6),
}

SHANNON_DAMAGE_K = 1.85

#: keys of ``[safety]`` that a ``[safety.channels.N]`` table may override, with their types and defaults
CHANNEL_KEYS: dict[str, tuple[type, object]] = {
    "material": (str, ""), "low_V": (float, -math.inf), "high_V": (float, math.inf),
    "impedance_ohm": (float, 0.0), "max_current_A": (float, math.inf),
    "max_slew_V_per_s": (float, math.inf), "electrode_area_cm2": (float, 0.0),
    "max_charge_per_phase_C": (float, math.inf), "max_charge_density_C_per_cm2": (float, 0.0),
    "max_dc_charge_C": (float, 0.0)}
#: run-wide keys of ``[safety]``
GLOBAL_KEYS: dict[str, tuple[type, object]] = {
    "shannon_k": (float, 0.0), "living": (bool, False), "dc_window_s": (float, 1.0),
    "ramp_s": (float, 0.0), "channels": (dict, {})}
SCHEMA = {**CHANNEL_KEYS, **GLOBAL_KEYS}


def substrate_impedance_ohm(name: str, params: dict) -> float:
    """The simulated substrate's electrode impedance in ohms, or 0.0 when the model has none.

    potato: its access resistance ``r_access_ohm``; hydrogel: ``1 / g0_S`` (electrode conductance at
    bulk concentration).  Defaults are read from the model's constructor.
    """
    from reservoir.registry import SUBSTRATES

    entry = SUBSTRATES.get(name)
    if entry is None:
        return 0.0
    defaults = {k: p.default for k, p in inspect.signature(entry.cls.__init__).parameters.items()}
    merged = {**defaults, **params}
    if "r_access_ohm" in merged:
        return float(merged["r_access_ohm"])
    if "g0_S" in merged and merged["g0_S"] > 0:
        return 1.0 / float(merged["g0_S"])
    return 0.0


@dataclass
class SafetyLimits:
    """Effective per-channel limits, arrays of shape ``(n_channels,)`` unless said otherwise.

    Attributes:
        low_V, high_V: voltage window (volts).
        abs_V: largest ``|V|`` the current limit allows (``max_current_A * impedance_ohm``), volts.
        impedance_ohm: electrode impedance (ohms; ``nan`` unknown).
        max_slew_V_per_s: slew-rate limit (volts per second).
        max_phase_C: charge limit of one phase (coulombs), and ``phase_rule`` the rule that set it.
        max_dc_C: living tissue: net charge limit over any ``dc_window`` samples (coulombs; inf: off).
        rate_hz: sample rate (hertz); ``rest_V``: the rest level (volts, scalar).
        ramp: samples of the start-of-run amplitude ramp (0: none).
    """

    low_V: np.ndarray
    high_V: np.ndarray
    abs_V: np.ndarray
    impedance_ohm: np.ndarray
    max_slew_V_per_s: np.ndarray
    max_phase_C: np.ndarray
    phase_rule: list[str]
    max_dc_C: np.ndarray
    dc_window: int
    rate_hz: float
    rest_V: float
    ramp: int

    @property
    def n_channels(self) -> int:
        return len(self.low_V)

    @property
    def full_scale_V(self) -> np.ndarray:
        """Largest excursion from rest inside the voltage window, per channel (volts)."""
        return np.maximum(self.high_V - self.rest_V, self.rest_V - self.low_V)


def check_table(table: dict, n_channels: int, where: str) -> None:
    """Validate a ``[safety]`` table (types already checked); raises ``PrclabError`` naming the key."""
    for name, over in table["channels"].items():
        if not (name.isdigit() and int(name) < n_channels):
            raise PrclabError(f"{where}: [safety.channels.{name}]: channel must be 0..{n_channels - 1}")
        if not isinstance(over, dict):
            raise PrclabError(f"{where}: [safety.channels.{name}] must be a table")
        for key, value in over.items():
            if key not in CHANNEL_KEYS:
                raise PrclabError(f"{where}: unknown key {key!r} in [safety.channels.{name}]; known: "
                                  f"{', '.join(CHANNEL_KEYS)}")
            typ = CHANNEL_KEYS[key][0]
            ok = isinstance(value, str) if typ is str else \
                isinstance(value, (int, float)) and not isinstance(value, bool)
            if not ok:
                raise PrclabError(f"{where}: [safety.channels.{name}] {key} must be {typ.__name__}, "
                                  f"got {value!r}")
    for label, values in [("[safety]", table)] + [(f"[safety.channels.{n}]", o)
                                                  for n, o in table["channels"].items()]:
        for key, value in values.items():
            if key == "material" and value and value not in MATERIALS:
                raise PrclabError(f"{where}: {label} material {value!r} unknown; known: "
                                  f"{', '.join(MATERIALS)}")
            if key in CHANNEL_KEYS and key not in ("material", "low_V", "high_V") and \
                    (math.isnan(value) or value < 0):
                raise PrclabError(f"{where}: {label} {key} must be >= 0, got {value}")
    k = table["shannon_k"]
    if not 0 <= k < SHANNON_DAMAGE_K:
        raise PrclabError(f"{where}: [safety] shannon_k must lie in [0, {SHANNON_DAMAGE_K}) (damage seen "
                          f"at k >= {SHANNON_DAMAGE_K}), got {k}")
    if table["dc_window_s"] <= 0 or table["ramp_s"] < 0:
        raise PrclabError(f"{where}: [safety] dc_window_s must be > 0 and ramp_s >= 0")


def resolve_limits(table: dict, n_channels: int, rate_hz: float, stimulus_V: tuple[float, float],
                   rest_V: float, substrate_ohm: float = 0.0, where: str = "protocol") -> SafetyLimits:
    """Turn a validated ``[safety]`` table into per-channel :class:`SafetyLimits`.

    Args:
        stimulus_V: the protocol's ``(low_V, high_V)`` stimulus range, volts.
        rest_V: the rest level between stimuli, volts.
        substrate_ohm: the substrate's electrode impedance (ohms; 0 if unknown).
    """
    check_table(table, n_channels, where)
    dt = 1.0 / rate_hz
    rows = [{**{k: table[k] for k in CHANNEL_KEYS}, **table["channels"].get(str(c), {})}
            for c in range(n_channels)]
    low, high, abs_v, imp, slew, qmax, dc = (np.empty(n_channels) for _ in range(7))
    rules = []
    for c, r in enumerate(rows):
        mat = MATERIALS.get(r["material"]) if r["material"] else None
        low[c] = max(stimulus_V[0], r["low_V"], mat.low_V if mat else -math.inf)
        high[c] = min(stimulus_V[1], r["high_V"], mat.high_V if mat else math.inf)
        if low[c] > high[c]:
            raise PrclabError(f"{where}: [safety] channel {c}: the voltage window is empty "
                              f"({low[c]} V > {high[c]} V)")
        z = float(r["impedance_ohm"]) or substrate_ohm or math.nan
        imp[c] = z
        slew[c] = r["max_slew_V_per_s"]
        abs_v[c] = math.inf if math.isinf(r["max_current_A"]) else r["max_current_A"] * z
        if math.isnan(abs_v[c]):
            raise PrclabError(f"{where}: [safety] channel {c}: max_current_A needs impedance_ohm "
                              f"(no electrode impedance known for the substrate)")
        candidates = [(r["max_charge_per_phase_C"], "max_charge_per_phase_C")]
        area = r["electrode_area_cm2"]
        density = r["max_charge_density_C_per_cm2"] or (mat.charge_density_C_per_cm2 if mat else 0.0)
        if area > 0 and density > 0:
            candidates.append((density * area, f"charge density {density:g} C/cm2 x {area:g} cm2"))
        if area > 0 and table["shannon_k"] > 0:
            candidates.append((math.sqrt(10 ** table["shannon_k"] * area) * 1e-6,
                               f"Shannon k = {table['shannon_k']:g} at {area:g} cm2"))
        qmax[c], rule = min(candidates, key=lambda q: q[0])
        rules.append(rule)
        if math.isfinite(qmax[c]) and math.isnan(z):
            raise PrclabError(f"{where}: [safety] channel {c}: charge limits need impedance_ohm")
        dc[c] = math.inf
        if table["living"]:
            dc[c] = r["max_dc_charge_C"] or qmax[c]
            if math.isnan(z) or not math.isfinite(dc[c]):
                raise PrclabError(f"{where}: [safety] living = true: channel {c} needs impedance_ohm and "
                                  f"max_dc_charge_C (or a charge-per-phase limit) for the DC balance check")
    return SafetyLimits(low, high, abs_v, imp, slew, qmax, rules, dc,
                        max(1, int(round(table["dc_window_s"] * rate_hz))), float(rate_hz),
                        float(rest_V), int(round(table["ramp_s"] * rate_hz)))


def apply_ramp(waveforms: list[np.ndarray], limits: SafetyLimits) -> None:
    """Scale the first ``limits.ramp`` samples of the run (``waveforms`` in playing order, in place)
    about the rest level by ``min(1, (t + 1) / ramp)``, ``t`` the sample's index in the run."""
    start = 0
    for wave in waveforms:
        if start >= limits.ramp:
            return
        n = min(len(wave), limits.ramp - start)
        gain = (start + 1 + np.arange(n)) / limits.ramp
        wave[:n] = limits.rest_V + (wave[:n] - limits.rest_V) * gain[:, None]
        start += len(wave)


class SafetyMonitor:
    """Checks a run's stimulus stream block by block, carrying state across blocks and trials.

    The stream starts at the rest level: the slew of the first sample is measured from ``rest_V``.
    """

    _EPS = 1e-9  # relative tolerance of the ramp envelope (floating point of apply_ramp)

    def __init__(self, limits: SafetyLimits):
        self.limits = lim = limits
        c = lim.n_channels
        self.position = 0                              # samples of the run checked so far
        self.prev = np.full(c, lim.rest_V)             # last sample
        self._dt = 1.0 / lim.rate_hz
        self._charge_checks = bool(np.isfinite(lim.max_phase_C).any())
        self._dc_checks = bool(np.isfinite(lim.max_dc_C).any())
        self._slew_checks = bool(np.isfinite(lim.max_slew_V_per_s).any())
        self._current_checks = bool(np.isfinite(lim.abs_V).any())
        self._inv_z = np.where(np.isnan(lim.impedance_ohm), 0.0, 1.0 / lim.impedance_ohm) * self._dt
        self.phase_sign = np.zeros(c)                  # polarity of the phase in progress
        self.phase_q = np.zeros(c)                     # its charge so far (coulombs)
        self.net_q = np.zeros(c)                       # net charge since the run began (coulombs)
        self._ring = np.zeros((lim.dc_window, c))      # net charge after each of the last dc_window samples

    def check(self, block: np.ndarray, what) -> None:
        """Check ``block`` ``(n, n_channels)`` volts, the next samples of the run; on a violation raise
        :class:`SafetyError` (state unchanged).  ``what(row)`` -> ``(trial, sample)`` names a row."""
        lim = self.limits
        x = np.asarray(block, dtype=np.float64)
        n = len(x)
        if x.ndim != 2 or x.shape[1] != lim.n_channels:
            raise SafetyError(f"safety: block must be (n, {lim.n_channels}), got {x.shape}")
        if n == 0:
            return
        problems = []  # (row, channel, message) of the first violation of each rule
        self._first(~((x >= lim.low_V) & (x <= lim.high_V)), x, problems,
                    lambda v, c: f"{v:.6g} V outside the voltage window [{lim.low_V[c]:g}, {lim.high_V[c]:g}] V")
        if self._current_checks:
            self._first(np.abs(x) > lim.abs_V, x, problems,
                        lambda v, c: f"{v:.6g} V drives {abs(v) / lim.impedance_ohm[c]:.4g} A through "
                                     f"{lim.impedance_ohm[c]:g} ohm, above the current limit "
                                     f"{lim.abs_V[c] / lim.impedance_ohm[c]:.4g} A")
        if self.position < lim.ramp:
            k = min(n, lim.ramp - self.position)
            env = (self.position + 1 + np.arange(k))[:, None] / lim.ramp * lim.full_scale_V
            over = np.abs(x[:k] - lim.rest_V) > env * (1 + self._EPS) + 1e-12
            self._first(over, x, problems, lambda v, c: f"{v:.6g} V exceeds the start-of-run amplitude ramp")
        if self._slew_checks:
            step = np.abs(np.diff(x, axis=0, prepend=self.prev[None])) * lim.rate_hz
            self._first(step > lim.max_slew_V_per_s, step, problems,
                        lambda v, c: f"slew {v:.6g} V/s above the limit {lim.max_slew_V_per_s[c]:g} V/s")
        if self._charge_checks:
            phase_q, sign = self._phase_charge(x)
            self._first(phase_q > lim.max_phase_C, phase_q, problems,
                        lambda v, c: f"phase charge {v:.4g} C above {lim.max_phase_C[c]:.4g} C "
                                     f"({lim.phase_rule[c]})")
        if self._dc_checks:
            net, lagged = self._net_charge(x)
            dc = np.abs(net - lagged)
            self._first(dc > lim.max_dc_C, dc, problems,
                        lambda v, c: f"net charge {v:.4g} C over {lim.dc_window / lim.rate_hz:g} s above "
                                     f"the DC balance limit {lim.max_dc_C[c]:.4g} C (living tissue needs "
                                     f"charge-balanced stimulation)")
        if problems:
            row, c, message = min(problems, key=lambda p: (p[0], p[1]))
            trial, sample = what(row)
            raise SafetyError(f"safety: trial {trial}, channel {c}, sample {sample}: {message}")
        # commit the state
        self.prev = x[-1].copy()
        if self._charge_checks:
            self.phase_q, self.phase_sign = phase_q[-1].copy(), sign
        if self._dc_checks:
            self._commit_net(net)
        self.position += n

    @staticmethod
    def _first(bad: np.ndarray, values: np.ndarray, problems: list, message) -> None:
        if bad.any():
            row, c = np.argwhere(bad)[0]
            problems.append((int(row), int(c), message(float(values[row, c]), int(c))))

    def _phase_charge(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Charge of the phase each sample belongs to, up to and including it, ``(n, c)`` coulombs.

        With ``q`` the running charge of the block (non-decreasing), a phase's charge at row ``r`` is
        ``q[r]`` minus ``q`` just before the phase began; as ``q`` never decreases, that base is the
        running maximum of ``q``-before over the rows where a phase begins (no index gathering).
        """
        sign = np.sign(x)
        qa = np.abs(x) * self._inv_z
        q = np.cumsum(qa, axis=0)
        base = np.full_like(q, -np.inf)
        new = np.empty(x.shape, bool)
        new[0] = sign[0] != self.phase_sign
        np.not_equal(sign[1:], sign[:-1], out=new[1:])
        np.subtract(q, qa, out=base, where=new)                      # q before the row, at phase starts
        base[0] = np.where(new[0], 0.0, -self.phase_q)               # a phase running on from the last block
        np.maximum.accumulate(base, axis=0, out=base)
        q -= base
        return q, sign[-1].copy()

    def _net_charge(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Net charge after each sample ``(n, c)`` and the same ``dc_window`` samples earlier."""
        w, n = self.limits.dc_window, len(x)
        net = self.net_q + np.cumsum(x * self._inv_z, axis=0)
        lag_pos = self.position + np.arange(n) - w          # run index of the lagged sample
        lagged = np.empty_like(net)
        old = lag_pos < self.position                       # lagged sample lies before this block
        hist = lag_pos[old]
        lagged[old] = np.where((hist >= 0)[:, None], self._ring[hist % w], 0.0)
        lagged[~old] = net[lag_pos[~old] - self.position]
        return net, lagged

    def _commit_net(self, net: np.ndarray) -> None:
        w, n = self.limits.dc_window, len(net)
        keep = min(n, w)
        rows = (self.position + n - keep + np.arange(keep)) % w
        self._ring[rows] = net[n - keep:]
        self.net_q = net[-1].copy()


def validate_trials(trials, limits: SafetyLimits, where: str = "protocol") -> None:
    """Check every sample of the compiled ``trials`` (in playing order) before anything runs.

    Raises:
        SafetyError: naming ``where`` (the protocol file) and the first offending trial, channel and
            sample (index within the trial); nothing has been sent to any device.
    """
    monitor = SafetyMonitor(limits)
    try:
        for trial in trials:
            monitor.check(trial.waveform, lambda row, t=trial: (t.index, row))
    except SafetyError as exc:
        raise SafetyError(f"{where}: refused, nothing was run: {exc}") from None

"""The safety layer between encoder and device: stimulation limits, checked on every sample.

A protocol's ``[safety]`` table sets the limits (all optional; per-channel overrides in
``[safety.channels.N]`` for stimulus channel ``N``); every key, with its type, default, unit and range,
is declared once below (:data:`SAFETY_TABLE`, :data:`CHANNEL_TABLE`) and listed in
``docs/protocol-keys.md``, generated from them.  For example::

    [safety]
    material = "platinum"               # water window and charge-injection limit (MATERIALS below)
    max_current_A = 1e-4                # |V| / impedance must stay below (needs an impedance)
    living = true                       # net charge over any dc_window_s below max_dc_charge_C
    [safety.channels.3]                 # stimulus channel 3: any per-channel key
    high_V = 0.2

Electrodes: what ``[safety]`` leaves unset (material, area, impedance) is filled from the electrodes the
rig declares (``Device.electrodes``, one per stimulus channel: a simulated substrate declares its own,
hardware what its driver knows - usually nothing), never from a simulation's parameters; a current,
charge or DC limit that needs an impedance nobody declared is refused, naming the key to set.

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

The monitor starts from the device's idle output (0 V at power-up), not the rest level, so the first
step of a run is checked too.  Channel tables are keyed by integer index once parsed
(:func:`check_table`); NaN is refused everywhere and +inf only where it means "no limit".

Nothing is clipped: :func:`validate_trials` refuses a protocol whose compiled waveforms break a limit,
with a :class:`SafetyError` naming the trial, channel and sample, and the runner checks every block
again with a :class:`SafetyMonitor` just before ``device.write``.  The ramp is not a clip either: it is a
configured envelope applied to the compiled waveforms (:func:`apply_ramp`), so the recording holds what
the device was sent, and the monitor checks the envelope too.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

import numpy as np

from prclab.errors import PrclabError
from prclab.reservoir.base import Electrode

from .schema import Key, Table


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

#: largest dc_window_s and ramp_s (seconds): an hour; the DC window is held in memory as samples
MAX_WINDOW_S = 3600.0

#: keys of ``[safety]`` that a ``[safety.channels.N]`` table may override
_CHANNEL = (
    Key("material", str, "", choices=("", *MATERIALS),
        doc="electrode material: sets the water window and charge-injection limit (none if empty)"),
    Key("low_V", float, -math.inf, unit="V", infinite=-math.inf,
        doc="voltage limit; the window is this, the material's and [stimulus] low_V/high_V together"),
    Key("high_V", float, math.inf, unit="V", infinite=math.inf, doc="voltage limit (see low_V)"),
    Key("impedance_ohm", float, 0.0, unit="ohm", low=0,
        doc="electrode impedance; 0: the one the rig declares, else unknown (current/charge limits refused)"),
    Key("max_current_A", float, math.inf, unit="A", low=0, infinite=math.inf,
        doc="limit of |V| / impedance_ohm (needs an impedance)"),
    Key("max_slew_V_per_s", float, math.inf, unit="V/s", low=0, infinite=math.inf,
        doc="limit of |V[t] - V[t-1]| x sample rate"),
    Key("electrode_area_cm2", float, 0.0, unit="cm2", low=0,
        doc="stimulating electrode area; 0: the rig's, else unknown (charge density unchecked)"),
    Key("max_charge_per_phase_C", float, math.inf, unit="C", low=0, infinite=math.inf,
        doc="charge of one phase (a run of samples of one polarity)"),
    Key("max_charge_density_C_per_cm2", float, 0.0, unit="C/cm2", low=0,
        doc="charge density per phase; 0: the material's charge-injection limit"),
    Key("max_dc_charge_C", float, 0.0, unit="C", low=0,
        doc="living: limit of the net charge over any dc_window_s; 0: the per-phase charge limit"))
#: ``[safety.channels.N]``: stimulus channel N's overrides of ``[safety]``
CHANNEL_TABLE = Table("safety.channels.N", _CHANNEL,
                      "Overrides of [safety] for stimulus channel N (0-based, plain decimal).")
#: ``[safety]``: the run's stimulation limits (defaults and sources: this module's docstring)
SAFETY_TABLE = Table("safety", _CHANNEL + (
    Key("shannon_k", float, 0.0, low=0, high=SHANNON_DAMAGE_K, high_open=True,
        doc="> 0: Shannon criterion log10(D) + log10(Q) <= k (uC/cm2, uC); damage seen at k >= 1.85"),
    Key("living", bool, False, doc="living tissue: the net charge over any dc_window_s must stay below "
                                   "max_dc_charge_C (charge-balanced stimulation)"),
    Key("dc_window_s", float, 1.0, unit="s", low=0, low_open=True, high=MAX_WINDOW_S,
        doc="window of the living-tissue DC balance check"),
    Key("ramp_s", float, 0.0, unit="s", low=0, high=MAX_WINDOW_S,
        doc="amplitude ramp over the first ramp_s seconds of the run"),
    Key("channels", dict, {}, doc="per-channel tables [safety.channels.N]")),
    "Stimulation limits, checked on every sample before the device sees it.")
#: ``{key: (type, default)}`` views of the two tables: the per-channel keys, the run-wide ones, and all
CHANNEL_KEYS: dict[str, tuple[type, object]] = {k.name: (k.type, k.default) for k in _CHANNEL}
GLOBAL_KEYS: dict[str, tuple[type, object]] = {k.name: (k.type, k.default) for k in SAFETY_TABLE.keys
                                               if k.name not in CHANNEL_KEYS}
SCHEMA = {**CHANNEL_KEYS, **GLOBAL_KEYS}


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


#: largest DC window in samples (dc_window_s x sample rate): its ring of net charges stays small
MAX_WINDOW_SAMPLES = 10_000_000
_CHANNEL_NAME = re.compile(r"0|[1-9][0-9]{0,5}")  # canonical ASCII decimal, no sign, no leading zero


def check_table(table: dict, n_channels: int, where: str) -> dict:
    """Validate a ``[safety]`` table against :data:`SAFETY_TABLE` (as parsed, or as this function
    returned it) and return it complete, with defaults for the keys not given and ``channels`` keyed by
    integer channel index, each channel holding only the :data:`CHANNEL_TABLE` keys it gives.

    A channel table must be named by the canonical decimal index (``0`` .. ``n_channels - 1``): ``01``,
    ``+1``, ``1.0`` or non-ASCII digits are refused, so every override is applied to the channel it names.
    Numbers: never NaN; ``+inf`` only where it means "no limit" (``high_V``, ``max_current_A``,
    ``max_slew_V_per_s``, ``max_charge_per_phase_C``; ``low_V`` may be ``-inf``).

    Raises:
        PrclabError: one line naming ``where`` (the file), the table and the key.
    """
    table = SAFETY_TABLE.validate(table, where)
    channels = {}
    for name, over in table["channels"].items():
        label = f"[safety.channels.{name}]"
        if isinstance(name, int) and not isinstance(name, bool):  # already parsed
            index = name
        elif isinstance(name, str) and name.isascii() and _CHANNEL_NAME.fullmatch(name):
            index = int(name)
        else:
            raise PrclabError(f"{where}: {label!s:.60}: a channel is named by its index written "
                              f"0..{n_channels - 1} (plain decimal digits, no leading zero), got {name!r:.40}")
        if not 0 <= index < n_channels:
            raise PrclabError(f"{where}: {label}: channel must be 0..{n_channels - 1}")
        channels[index] = CHANNEL_TABLE.check(over, where, label)
    return {**table, "channels": channels}


def resolve_limits(table: dict, n_channels: int, rate_hz: float, stimulus_V: tuple[float, float],
                   rest_V: float, electrodes: tuple[Electrode, ...] = (),
                   where: str = "protocol") -> SafetyLimits:
    """Turn a validated ``[safety]`` table and the rig's declared electrodes into :class:`SafetyLimits`.

    Nothing else is read: where ``[safety]`` leaves a channel's material, area or impedance unset, the
    electrode the rig declares for it is used (where it knows it), else the quantity is unknown.

    Args:
        stimulus_V: the protocol's ``(low_V, high_V)`` stimulus range, volts.
        rest_V: the rest level between stimuli, volts.
        electrodes: one :class:`~prclab.reservoir.Electrode` per stimulus channel, as the rig declares
            them (missing channels: unknown).
    """
    table = check_table(table, n_channels, where)
    rows = [_with_declared({**{k: table[k] for k in CHANNEL_KEYS}, **table["channels"].get(c, {})},
                           electrodes[c] if c < len(electrodes) else Electrode())
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
        z = float(r["impedance_ohm"]) or math.nan
        imp[c] = z
        slew[c] = r["max_slew_V_per_s"]
        abs_v[c] = math.inf if math.isinf(r["max_current_A"]) else r["max_current_A"] * z
        if math.isnan(abs_v[c]):
            raise PrclabError(f"{where}: [safety] channel {c}: max_current_A needs an electrode impedance: "
                              f"set [safety] impedance_ohm (none is declared for this device)")
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
            raise PrclabError(f"{where}: [safety] channel {c}: charge limits need an electrode impedance: "
                              f"set [safety] impedance_ohm (none is declared for this device)")
        dc[c] = math.inf
        if table["living"]:
            dc[c] = r["max_dc_charge_C"] or qmax[c]
            if math.isnan(z) or not math.isfinite(dc[c]):
                raise PrclabError(f"{where}: [safety] living = true: channel {c} needs an electrode "
                                  f"impedance (set [safety] impedance_ohm if none is declared for this "
                                  f"device) and max_dc_charge_C (or a charge-per-phase limit) for the DC "
                                  f"balance check")
    window = max(1, int(round(table["dc_window_s"] * rate_hz)))
    if table["living"] and window > MAX_WINDOW_SAMPLES:
        raise PrclabError(f"{where}: [safety] dc_window_s = {table['dc_window_s']:g} s is {window} samples at "
                          f"{rate_hz:g} Hz; at most {MAX_WINDOW_SAMPLES} are held")
    return SafetyLimits(low, high, abs_v, imp, slew, qmax, rules, dc, window, float(rate_hz),
                        float(rest_V), int(round(table["ramp_s"] * rate_hz)))


def _with_declared(row: dict, electrode: Electrode) -> dict:
    """A channel's ``[safety]`` row with the unset material, area and impedance taken from the rig's
    declared ``electrode`` (a material the table does not know sets no limit)."""
    row = dict(row)
    if not row["material"] and electrode.material in MATERIALS:
        row["material"] = electrode.material
    if not row["electrode_area_cm2"] and electrode.area_cm2 > 0:
        row["electrode_area_cm2"] = float(electrode.area_cm2)
    if not row["impedance_ohm"] and electrode.impedance_ohm > 0:  # NaN (unknown) compares False
        row["impedance_ohm"] = float(electrode.impedance_ohm)
    return row


def apply_ramp(waveforms: list[np.ndarray], limits: SafetyLimits, start: int = 0) -> None:
    """Scale the first ``limits.ramp`` samples of the run (``waveforms`` in playing order, in place)
    about the rest level by ``min(1, (t + 1) / ramp)``, ``t`` the sample's index in the run; the first
    waveform begins at run sample ``start`` (a closed loop ramps each tick's block as it is made)."""
    for wave in waveforms:
        if start >= limits.ramp:
            return
        n = min(len(wave), limits.ramp - start)
        gain = (start + 1 + np.arange(n)) / limits.ramp
        wave[:n] = limits.rest_V + (wave[:n] - limits.rest_V) * gain[:, None]
        start += len(wave)


class SafetyMonitor:
    """Checks a run's stimulus stream block by block, carrying state across blocks, trials and resumes.

    The stream starts at the device's idle output ``idle_V`` (volts; 0 V, the output of a DAC at
    power-up, unless the device declares otherwise): the slew of the first sample is measured from it.

    Every quantity is computed from run-wide running values (sequential cumulative sums carried across
    blocks, exact stored samples), so the result does not depend on where the stream is cut into blocks:
    :func:`validate_trials` (whole trials) and the runner (``block_samples``) accept and refuse exactly
    the same samples, and every limit is compared with a plain ``>``.  The one tolerance is the ramp
    envelope's, ``RAMP_RTOL``: :func:`apply_ramp` scales about the rest level in floating point.

    The state (:meth:`state` / :meth:`load_state`) is plain arrays, so it can be stored and restored.
    """

    RAMP_RTOL = 1e-9  # relative tolerance of the ramp envelope (floating point of apply_ramp)
    _STATE = ("position", "ramp_from", "prev", "phase_sign", "q_run", "q_base", "net_q", "ring")

    def __init__(self, limits: SafetyLimits, idle_V: float = 0.0):
        self.limits = lim = limits
        c = lim.n_channels
        self.position = 0                              # samples of the run checked so far
        self.ramp_from = 0                             # run position where the amplitude ramp began
        self.prev = np.full(c, float(idle_V))          # last sample (volts)
        self._charge_checks = bool(np.isfinite(lim.max_phase_C).any())
        self._dc_checks = bool(np.isfinite(lim.max_dc_C).any())
        self._slew_checks = bool(np.isfinite(lim.max_slew_V_per_s).any())
        self._current_checks = bool(np.isfinite(lim.abs_V).any())
        self._inv_z = np.where(np.isnan(lim.impedance_ohm), 0.0, 1.0 / lim.impedance_ohm) / lim.rate_hz
        self.phase_sign = np.zeros(c)                  # polarity of the phase in progress
        self.q_run = np.zeros(c)                       # |charge| summed since the run began (coulombs)
        self.q_base = np.zeros(c)                      # q_run just before the phase in progress began
        self.net_q = np.zeros(c)                       # net charge since the run began (coulombs)
        self.ring = np.zeros((lim.dc_window if self._dc_checks else 0, c))  # net charge after each of
        #                                                the last dc_window samples (slot: position % w)

    def state(self) -> dict[str, np.ndarray]:
        """The monitor's state as plain arrays (copies), for :meth:`load_state`: ``position`` and
        ``ramp_from`` (samples), ``prev`` (volts), ``phase_sign``, ``q_run`` / ``q_base`` / ``net_q``
        (coulombs, ``(n_channels,)``) and ``ring`` (coulombs, ``(dc_window, n_channels)``)."""
        return {k: np.array(getattr(self, k), dtype=np.int64 if k in ("position", "ramp_from")
                            else np.float64) for k in self._STATE}

    def load_state(self, state: dict[str, np.ndarray]) -> None:
        """Continue from ``state`` (from :meth:`state` of a monitor with the same limits).

        Raises:
            PrclabError: a key is missing or an array has the wrong shape or a non-finite value.
        """
        fresh = self.state()
        for key, want in fresh.items():
            got = np.asarray(state.get(key) if key in state else None)
            if got.shape != want.shape or got.dtype.kind not in "iuf" or not np.isfinite(got).all():
                raise PrclabError(f"safety state: {key!r} must be finite numbers of shape {want.shape}, "
                                  f"got {got.dtype} {got.shape}")
        for key, want in fresh.items():
            setattr(self, key, int(state[key]) if want.ndim == 0 else np.array(state[key], np.float64))

    def copy(self) -> "SafetyMonitor":
        """An independent monitor in the same state (for a dry run of what is about to be played)."""
        twin = SafetyMonitor(self.limits)
        twin.load_state(self.state())
        return twin

    def restart_ramp(self) -> None:
        """Start the amplitude ramp envelope again at the current position (a resumed session)."""
        self.ramp_from = self.position

    def check(self, block: np.ndarray, what, refuse: bool = True) -> str | None:
        """Check ``block`` ``(n, n_channels)`` volts, the next samples of the run; on a violation raise
        :class:`SafetyError` (state unchanged).  ``what(row)`` -> ``(trial, sample)`` names a row.

        ``refuse=False``: take in samples already delivered (a resumed run's history, a stop's ramp to
        rest) whatever they are, carrying the state on; returns the first violation's message, if any."""
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
        into = self.position - self.ramp_from  # samples into the ramp
        if into < lim.ramp:
            k = min(n, lim.ramp - into)
            env = (into + 1 + np.arange(k))[:, None] / lim.ramp * lim.full_scale_V
            over = np.abs(x[:k] - lim.rest_V) > env * (1 + self.RAMP_RTOL) + 1e-12
            self._first(over, x, problems, lambda v, c: f"{v:.6g} V exceeds the amplitude ramp")
        if self._slew_checks:
            step = np.abs(np.diff(x, axis=0, prepend=self.prev[None])) * lim.rate_hz
            self._first(step > lim.max_slew_V_per_s, step, problems,
                        lambda v, c: f"slew {v:.6g} V/s above the limit {lim.max_slew_V_per_s[c]:g} V/s")
        if self._charge_checks:
            phase_q, q, base, sign = self._phase_charge(x)
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
        found = None
        if problems:
            row, c, message = min(problems, key=lambda p: (p[0], p[1]))
            trial, sample = what(row)
            found = f"safety: trial {trial}, channel {c}, sample {sample}: {message}"
            if refuse:
                raise SafetyError(found)
        # commit the state
        self.prev = x[-1].copy()
        if self._charge_checks:
            self.q_run, self.q_base, self.phase_sign = q[-1].copy(), base[-1].copy(), sign
        if self._dc_checks:
            self._commit_net(net)
        self.position += n
        return found

    @staticmethod
    def _first(bad: np.ndarray, values: np.ndarray, problems: list, message) -> None:
        if bad.any():
            row, c = np.argwhere(bad)[0]
            problems.append((int(row), int(c), message(float(values[row, c]), int(c))))

    def _phase_charge(self, x: np.ndarray):
        """Charge of the phase each sample belongs to, up to and including it, ``(n, c)`` coulombs; also
        the run-wide running charge ``q``, each row's phase base and the last row's polarity.

        ``q`` is the sequential cumulative sum of ``|x| / z * dt`` over the whole run (continued from
        ``q_run``, so it is the same numbers however the run is cut into blocks); a phase's charge at
        row ``r`` is ``q[r]`` minus ``q`` just before the phase began.  As ``q`` never decreases, that
        base is the running maximum of ``q``-before over the rows where a phase begins.
        """
        sign = np.sign(x)
        qa = np.abs(x) * self._inv_z
        q = np.cumsum(np.concatenate([self.q_run[None], qa]), axis=0)  # q[0] = q_run: before this block
        new = np.empty(x.shape, bool)
        new[0] = sign[0] != self.phase_sign
        np.not_equal(sign[1:], sign[:-1], out=new[1:])
        base = np.where(new, q[:-1], -np.inf)
        base[0] = np.where(new[0], self.q_run, self.q_base)           # a phase running on from before
        np.maximum.accumulate(base, axis=0, out=base)
        q = q[1:]
        return q - base, q, base, sign[-1].copy()

    def _net_charge(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Net charge after each sample ``(n, c)`` and the same ``dc_window`` samples earlier."""
        w, n = self.limits.dc_window, len(x)
        net = np.cumsum(np.concatenate([self.net_q[None], x * self._inv_z]), axis=0)[1:]
        lag_pos = self.position + np.arange(n) - w          # run index of the lagged sample
        lagged = np.empty_like(net)
        old = lag_pos < self.position                       # lagged sample lies before this block
        hist = lag_pos[old]
        lagged[old] = np.where((hist >= 0)[:, None], self.ring[hist % w], 0.0)
        lagged[~old] = net[lag_pos[~old] - self.position]
        return net, lagged

    def _commit_net(self, net: np.ndarray) -> None:
        w, n = self.limits.dc_window, len(net)
        keep = min(n, w)
        rows = (self.position + n - keep + np.arange(keep)) % w
        self.ring[rows] = net[n - keep:]
        self.net_q = net[-1].copy()


def validate_trials(trials, limits: SafetyLimits, where: str = "protocol",
                    monitor: SafetyMonitor | None = None) -> None:
    """Check every sample of the compiled ``trials`` (in playing order) before anything runs.

    Args:
        monitor: the state to check from, left unchanged (a resumed run's); default a fresh run from the
            idle output, 0 V.

    Raises:
        SafetyError: naming ``where`` (the protocol file) and the first offending trial, channel and
            sample (index within the trial); nothing has been sent to any device.
    """
    monitor = SafetyMonitor(limits) if monitor is None else monitor.copy()
    try:
        for trial in trials:
            monitor.check(trial.waveform, lambda row, t=trial: (t.index, row))
    except SafetyError as exc:
        raise SafetyError(f"{where}: refused, nothing was run: {exc}") from None

"""Spike-timing-dependent plasticity with synaptic scaling, for the spiking substrates (the organoid).

Pair-based STDP with exponential windows, every pre/post pair counted through traces (Song, Miller &
Abbott 2000, Nat. Neurosci. 3:919; the window measured by Bi & Poo 1998, J. Neurosci. 18:10464)::

    pre spike of j at t:   w_ij -= a_minus * w_max * sum_{post spikes t_i <= t} exp(-(t - t_i) / tau_minus)
    post spike of i at t:  w_ij += a_plus  * w_max * sum_{pre spikes t_j <= t} exp(-(t - t_j) / tau_plus)

so a presynaptic spike ``dt`` before a postsynaptic one potentiates by ``a_plus w_max exp(-dt/tau_plus)``
and one ``dt`` after it depresses by ``a_minus w_max exp(-dt/tau_minus)``; weights stay in
``[0, w_max]``.  Only excitatory synapses are plastic.

Homeostasis by multiplicative synaptic scaling (Turrigiano et al. 1998, Nature 391:892): every
plastic input of neuron ``i`` is scaled by ``1 + (dt / tau_scaling) (target - r_i) / target``, ``r_i`` its
rate averaged with ``tau_rate``.  In cultures scaling takes hours to days; ``tau_scaling_s`` is
accelerated so a simulation of minutes shows it (the direction and the fixed point are the physics, not
the speed).

==========================  ===================  =============================  =========================
quantity                    model value          literature value               source
==========================  ===================  =============================  =========================
LTP window tau_plus         20 ms                ~20 ms                         Bi & Poo 1998; Song et al.
                                                                                2000 (approx.)
LTD window tau_minus        20 ms                ~20-35 ms                      as above (approx.)
a_plus, a_minus             0.005, 0.00525       0.005, a_minus/a_plus 1.05     Song et al. 2000 (approx.)
weight bound                unitary PSP 10 mV    largest unitary EPSPs ~several Song et al. 2005 (approx.)
                            (organoid default)   mV (lognormal tail)
scaling time constant       20 s (accelerated)   hours to days                  Turrigiano et al. 1998
                                                                                (approx.)
target rate                 1 Hz                 ~0.1-5 Hz per unit in culture  Wagenaar et al. 2006
                                                                                (approx.)
==========================  ===================  =============================  =========================

"(approx.)": recalled from the sources, not re-read (a search this session found none of these numbers
in the searchable text).  Scaling is applied every :data:`SCALING_STEPS` samples of the network's own
clock (spike counts and the clock are state), so a run cut into blocks learns as one run does.

The traces and weights are plain arrays, ``(batch, N)`` and ``(batch, N_pre, N_post)``: every batch row
is its own culture, which learns from its own spikes.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

#: synaptic scaling is applied every this many samples of the network's own clock (so a run cut into
#: blocks scales at the same samples as one run)
SCALING_STEPS = 256


@dataclass(frozen=True)
class STDPRule:
    """Parameters of pair-based STDP with synaptic scaling (module docstring).

    Attributes:
        a_plus, a_minus: potentiation and depression per pair, as fractions of ``w_max``.
        tau_plus_ms, tau_minus_ms: widths of the potentiation and depression windows (ms).
        w_max: upper bound of a plastic weight (the weight's units: mV of PSP jump).
        target_hz: rate that synaptic scaling holds a neuron at (Hz).
        tau_rate_s: averaging time of the rate estimate (seconds).
        tau_scaling_s: time constant of synaptic scaling (seconds; accelerated, see the module).
    """

    a_plus: float = 0.005
    a_minus: float = 0.00525
    tau_plus_ms: float = 20.0
    tau_minus_ms: float = 20.0
    w_max: float = 8.0
    target_hz: float = 1.0
    tau_rate_s: float = 2.0
    tau_scaling_s: float = 20.0

    def __post_init__(self):
        if min(self.a_plus, self.a_minus) < 0:
            raise ValueError("STDP amplitudes must be non-negative")
        if min(self.tau_plus_ms, self.tau_minus_ms, self.w_max, self.target_hz, self.tau_rate_s,
               self.tau_scaling_s) <= 0:
            raise ValueError("STDP windows, bound, target rate and time constants must be positive")


class STDPState:
    """Plastic weights and traces of a batch of networks under an :class:`STDPRule`.

    Args:
        rule: the rule.
        plastic: ``(N_pre, N_post)`` bool, which synapses are plastic: the existing ones from the first
            ``n_exc`` neurons (rows from ``n_exc`` on must be False).
        n_exc: the excitatory neurons are ``0 .. n_exc - 1``.
        dt_ms: sample period (ms).

    A spike updates only the plastic synapses of its neuron (index lists, a gather and a scatter of a
    few hundred weights); scaling multiplies the excitatory rows, where a missing synapse is 0.
    """

    def __init__(self, rule: STDPRule, plastic: np.ndarray, n_exc: int, dt_ms: float):
        if plastic[n_exc:].any():
            raise ValueError("only synapses from the excitatory neurons 0 .. n_exc - 1 can be plastic")
        self.rule, self.plastic, self.n_exc = rule, plastic, int(n_exc)
        # the plastic synapses as index lists: by presynaptic neuron (CSR) and by postsynaptic one (CSC)
        pre, post = np.nonzero(plastic)
        n = plastic.shape[0]
        self._out_ptr, self._out_post = np.searchsorted(pre, np.arange(n + 1)), post
        by_post = np.lexsort((pre, post))
        self._in_ptr, self._in_pre = np.searchsorted(post[by_post], np.arange(n + 1)), pre[by_post]
        self.dt_ms = dt_ms
        self._pre_keep = np.float32(np.exp(-dt_ms / rule.tau_plus_ms))
        self._post_keep = np.float32(np.exp(-dt_ms / rule.tau_minus_ms))
        self._ltp = np.float32(rule.a_plus * rule.w_max)
        self._ltd = np.float32(rule.a_minus * rule.w_max)
        self.w = self.pre = self.post = self.rate_hz = self.count = self.clock = None

    #: the state's arrays: weights ``(batch, N_pre, N_post)``, traces, rate estimates and spike counts
    #: since the last scaling ``(batch, N)``, samples since the last scaling ``(batch,)``
    KEYS = ("w", "pre", "post", "rate_hz", "count", "clock")

    def start(self, w0: np.ndarray, batch: int) -> None:
        """Every row from the weights ``w0`` ``(N_pre, N_post)`` (mV; the excitatory ones bounded to
        ``[0, w_max]``), traces empty, rates at target."""
        self.w = np.repeat(w0[None].astype(np.float32), batch, axis=0)
        np.clip(self.w[:, :self.n_exc], 0.0, self.rule.w_max, out=self.w[:, :self.n_exc])
        n = w0.shape[0]
        self.pre = np.zeros((batch, n), np.float32)
        self.post = np.zeros((batch, n), np.float32)
        self.rate_hz = np.full((batch, n), self.rule.target_hz, np.float32)
        self.count = np.zeros((batch, n), np.float32)
        self.clock = np.zeros(batch, np.float32)

    def state(self) -> dict[str, np.ndarray]:
        """Copies of :data:`KEYS`."""
        return {k: getattr(self, k).copy() for k in self.KEYS}

    def load(self, arrays: dict[str, np.ndarray]) -> None:
        """Restore :meth:`state`'s arrays (float32 copies; shapes checked by the caller)."""
        for k in self.KEYS:
            setattr(self, k, np.array(arrays[k], dtype=np.float32))

    def step(self) -> None:
        """One sample: trace decay, and synaptic scaling every :data:`SCALING_STEPS` samples."""
        self.pre *= self._pre_keep
        self.post *= self._post_keep
        self.clock += 1.0
        if self.clock[0] >= SCALING_STEPS:
            self.scale(self.count, SCALING_STEPS * self.dt_ms * 1e-3)
            self.count[:] = 0.0
            self.clock[:] = 0.0

    def on_spikes(self, rows: np.ndarray, cols: np.ndarray) -> None:
        """Spikes of neurons ``cols`` in batch rows ``rows`` (``(k,)`` each, after this sample's decay):
        depress their outgoing plastic synapses by the post traces, potentiate their incoming ones by the
        pre traces, then add the spikes to the traces."""
        n = self.plastic.shape[0]
        flat_w = self.w.reshape(-1)
        # depression: the outgoing synapses (j -> i) of the spiking neurons j, by the post traces of i
        spike, post = _segments(self._out_ptr, self._out_post, cols)
        at = (rows[spike] * n + cols[spike]) * n + post
        flat_w[at] = np.clip(flat_w[at] - self._ltd * self.post[rows[spike], post], 0.0, self.rule.w_max)
        # potentiation: the incoming synapses (j -> i) of the spiking neurons i, by the pre traces of j
        spike, pre = _segments(self._in_ptr, self._in_pre, cols)
        at = (rows[spike] * n + pre) * n + cols[spike]
        flat_w[at] = np.clip(flat_w[at] + self._ltp * self.pre[rows[spike], pre], 0.0, self.rule.w_max)
        self.pre[rows, cols] += 1.0
        self.post[rows, cols] += 1.0
        self.count[rows, cols] += 1.0

    def scale(self, counts: np.ndarray, seconds: float) -> None:
        """Synaptic scaling after ``seconds`` holding ``counts`` ``(batch, N)`` spikes per neuron: the
        rate estimate moves toward ``counts / seconds``, the plastic inputs of each neuron scale by its
        deviation from the target."""
        rule = self.rule
        k = np.float32(1.0 - np.exp(-seconds / rule.tau_rate_s))
        self.rate_hz += k * (counts / np.float32(seconds) - self.rate_hz)
        factor = 1.0 + np.float32(seconds / rule.tau_scaling_s) * (rule.target_hz - self.rate_hz) / rule.target_hz
        factor = np.maximum(factor, np.float32(0.0))
        exc = self.w[:, :self.n_exc]
        exc *= factor[:, None, :]
        np.clip(exc, 0.0, rule.w_max, out=exc)


def _segments(ptr: np.ndarray, members: np.ndarray, of: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The concatenated index lists ``members[ptr[c]:ptr[c + 1]]`` of every ``c`` in ``of``, and for each
    element the position in ``of`` it belongs to: ``(owner, member)``, both ``(total,)``."""
    starts, lengths = ptr[of], ptr[of + 1] - ptr[of]
    owner = np.repeat(np.arange(len(of)), lengths)
    offset = np.arange(len(owner)) - np.repeat(np.cumsum(lengths) - lengths, lengths)
    return owner, members[starts[owner] + offset]

"""The ``interface`` twin family: a bank of electrode interfaces (Butler-Volmer kinetics behind a double
layer) driven by each stimulating electrode's voltage and, through the medium, by the other electrodes'
currents, and a linear ARX map (:mod:`.linear`) from the
stimulus and the interfaces' currents to every recorded channel.

Why this structure.  In a substrate driven through metal electrodes - a tuber, a gel, tissue in saline -
the medium between the electrodes is a linear ionic conductor at these fields, and what is nonlinear and
has memory sits at each metal/electrolyte interface: the double layer charges through the spreading
resistance and discharges through the Faradaic reaction (Bard & Faulkner, *Electrochemical Methods*
2nd ed. 2001, sec. 1.2 and eq. 3.4.30; Merrill, Bikson & Jefferys 2005, J. Neurosci. Methods 141:171).
The recorded potentials are then linear functionals of the interfaces' currents (the conductor's
transfer resistances and its dispersion, which the ARX filters learn).  The interfaces' parameters are
not known for a given specimen, so each electrode gets a bank of ``K`` interfaces spanning the physical
ranges (time constants, exchange currents, transfer coefficients), and the linear map picks the
combination that reproduces the recording: only the map is fitted (ridge), so a refit takes seconds,
and the bank never needs the substrate's insides.

One interface unit ``(tau, k, a)`` of electrode ``e`` (overpotential ``eta`` in volts, stimulus ``V_e``)::

    tau d eta / dt = (V_e - eta) - k g(eta),
    g(eta) = (exp(a f eta) - exp(-(1 - a) f eta)) / (1 + r exp(-(1 - a) f eta))

the double layer ``C`` charged through the spreading resistance ``R`` (``tau = R C``, seconds) against
the Faradaic current ``i0 g(eta)`` (``k = i0 R``, volts; ``r = i0 / i_lim`` the cathodic mass-transport
limit), ``f = F / (R_gas T)`` (1/V).  Its feature is the current proxy ``V_e - eta`` (``R i``, volts).
Stepped by backward Euler with two Newton iterations per sample (the analytic derivative of ``g``),
compiled with numba; the state is ``eta`` per unit, so blocks stream as one run.  Defaults: ``tau``
20-80 ms (20 uF through 1-4 kOhm), ``k`` 2-8 mV (i0 of 1-4 uA through 2 kOhm), ``a`` 0.3-0.7, ``r``
0.05 (the ranges the potato's docstring table cites for copper nails in tuber tissue).

Coupling.  The electrodes are not independent: the medium's transfer resistances ``M_ek`` make electrode
``e``'s tissue voltage ``V_e - eta_e = sum_k M_ek i_k``, so in proxy units (``p_k = M_kk i_k``) electrode
``e``'s interface is driven by ``V_e - sum_(k != e) C_ek p_k`` with ``C_ek = M_ek / M_kk``.  ``C`` is not
known for a specimen; it is identified from the recording alone (:mod:`.coupling`: the instantaneous gain
at the stimulus steps gives the overpotentials the recording implies, and a ridge of each electrode's
interface equation on the others' tissue voltages gives ``C``), each electrode's proxy is a combination of
its own units fitted to the proxies the recording implies, and in the twin each unit is driven by its
electrode's voltage less ``C`` times the other electrodes' proxies one sample back.

Measured on the demo recording (``protocols/examples/spoken_digits_demo.toml``: 13 electrodes, 64
sites, 300 training and 120 held-out trials; 2026-12-04): held-out free-run NRMSE 0.00246 against the
floor's 0.00309 (0.80x; a perfect model's is the floor / sqrt(2), 0.0022), where the same bank with every
electrode driven by its own voltage alone gave 0.00484 (1.57x).  The coupling found correlates 0.990
with the potato's own ``M_ek / M_kk`` (values -0.009 to 0.041).  In a script of the same fit, the potato's
true coupling in place of the found one (the proxies' combinations taken from a first, uncoupled fit)
gave 0.00250, and each electrode's true ``(tau, k, a, r)`` as its only unit 0.00224 with the true coupling
and 0.00517 without: what was missing was the coupling, not the interfaces' parameters.
"""

from __future__ import annotations

import threading

import numpy as np
from numba import njit, prange

from prclab.errors import PrclabError

from .base import TwinFamily, check_trials, padded
from .coupling import electrode_coupling, proxies
from .linear import LinearTwin

FARADAY_C_PER_MOL, GAS_J_PER_MOL_K = 96485.33212, 8.314462618
#: trials whose bank features are computed together (one parallel batch) in a fit
CHUNK = 16


def _interface_bank_py(u, eta, p, tau, k, a, r, f, dt, weights, coupling):   # pragma: no cover - compiled
    """``u`` ``(B, T, E)`` volts, ``eta`` ``(B, E, K)``, ``p`` ``(B, E)`` the electrodes' current proxies
    at the sample before -> ``[u, the units' current proxies]`` ``(B, T, E * (1 + K))`` (the ARX map's
    features, written in one array); ``eta`` and ``p`` updated in place (the state after the block).
    Electrode ``e``'s units are driven by ``u_e - sum_m coupling[e, m] p_m`` (the proxies one sample
    back: explicit in the coupling, a few per cent of the drive), and its proxy is ``sum_j weights[e,
    j]`` times its units'.  Batch rows are independent: compiled twice, serial and parallel (``prange``
    runs as ``range`` in the serial one)."""
    batch, steps, n_el = u.shape
    n_k = tau.shape[0]
    out = np.empty((batch, steps, n_el * (1 + n_k)))
    h, aa, cc = np.empty(n_k), np.empty(n_k), np.empty(n_k)
    for j in range(n_k):
        h[j], aa[j], cc[j] = dt / tau[j], a[j] * f, (1.0 - a[j]) * f
    for b in prange(batch):
        drive = np.empty(n_el)
        for t in range(steps):
            for e in range(n_el):
                v = u[b, t, e]
                out[b, t, e] = v
                for m in range(n_el):
                    v -= coupling[e, m] * p[b, m]
                drive[e] = v
            for e in range(n_el):
                v, proxy = drive[e], 0.0
                base = n_el + e * n_k
                for j in range(n_k):
                    x = eta[b, e, j]
                    prev = x
                    for _ in range(2):
                        ea = np.exp(min(max(aa[j] * x, -50.0), 50.0))
                        ec = np.exp(min(max(-cc[j] * x, -50.0), 50.0))
                        den = 1.0 + r * ec
                        g = (ea - ec) / den
                        dg = ((aa[j] * ea + cc[j] * ec) * den + (ea - ec) * r * cc[j] * ec) / (den * den)
                        res = x - prev + h[j] * (k[j] * g - (v - x))
                        x -= res / (1.0 + h[j] * (k[j] * dg + 1.0))
                    eta[b, e, j] = x
                    out[b, t, base + j] = v - x
                    proxy += weights[e, j] * (v - x)
                p[b, e] = proxy
    return out


_interface_bank_serial = njit(cache=True)(_interface_bank_py)
_interface_bank_parallel = njit(cache=True, parallel=True)(_interface_bank_py)


def _interface_bank(*args):
    """The bank on the main thread in parallel, on any other serially: a parallel kernel launched from
    two threads at once aborts the process under numba's workqueue threading layer (where neither
    OpenMP nor TBB is installed), and a twin may run behind an emulator's thread."""
    if threading.current_thread() is threading.main_thread():
        return _interface_bank_parallel(*args)
    return _interface_bank_serial(*args)


class InterfaceTwin(TwinFamily):
    """Electrode-interface twin (module docstring).

    Args:
        taus_s: candidate interface time constants ``R C`` (seconds, > 0).
        exchange_V: candidate ``i0 R`` (volts, > 0).
        transfer_coefficients: candidate Butler-Volmer ``a`` in (0, 1).
        limit_ratio: ``i0 / i_lim`` (>= 0; 0: no mass-transport limit).
        temperature_C: sets ``f = F / (R T)``.
        coupling: identify the electrodes' coupling through the medium (:mod:`.coupling`) and drive each
            electrode's units with it (False: every electrode driven by its own voltage alone).
        lags_in, lags_out, alphas, validation: the ARX map's candidates (:class:`.linear.LinearTwin`).
    The bank holds every combination of ``taus_s`` x ``exchange_V`` x ``transfer_coefficients`` per electrode.
    Fitted: ``coupling_`` ``(n_in, n_in)`` (``M_ek / M_kk``; zeros where none was found or asked for) and
    ``proxy_weights_`` ``(n_in, K)`` (each electrode's current proxy as a combination of its units').
    """

    name = "interface"

    def __init__(self, taus_s=(0.02, 0.04, 0.08), exchange_V=(0.002, 0.004, 0.008),
                 transfer_coefficients=(0.3, 0.5, 0.7), limit_ratio: float = 0.05, temperature_C: float = 20.0,
                 coupling: bool = True, lags_in=(2, 5, 10), lags_out=(1, 2, 4), alphas=(1e-6, 1e-3),
                 validation: float = 0.25):
        self.taus_s, self.exchange_V, self.transfer_coefficients = taus_s, exchange_V, transfer_coefficients
        self.limit_ratio, self.temperature_C, self.coupling = limit_ratio, temperature_C, coupling
        self.lags_in, self.lags_out, self.alphas, self.validation = lags_in, lags_out, alphas, validation

    def _settings(self) -> dict:
        return {"taus_s": [float(v) for v in self.taus_s], "exchange_V": [float(v) for v in self.exchange_V],
                "transfer_coefficients": [float(v) for v in self.transfer_coefficients],
                "limit_ratio": float(self.limit_ratio), "temperature_C": float(self.temperature_C),
                "coupling": bool(self.coupling), "lags_in": [int(v) for v in self.lags_in],
                "lags_out": [int(v) for v in self.lags_out],
                "alphas": [float(v) for v in self.alphas], "validation": float(self.validation)}

    def _make_bank(self) -> None:
        s = self._settings()
        grid = np.array([(t, k, a) for t in s["taus_s"] for k in s["exchange_V"] for a in s["transfer_coefficients"]])
        if len(grid) == 0 or np.any(grid[:, :2] <= 0) or np.any((grid[:, 2] <= 0) | (grid[:, 2] >= 1)) \
                or not (s["limit_ratio"] >= 0) or not (s["temperature_C"] > -273.15):
            raise PrclabError(f"twin {self.name!r}: taus_s and exchange_V must be > 0, transfer_coefficients in "
                              f"(0, 1), limit_ratio >= 0 and temperature_C above absolute zero, got {s}")
        self.tau_, self.k_, self.a_ = (np.ascontiguousarray(grid[:, i]) for i in range(3))
        self.f_ = FARADAY_C_PER_MOL / (GAS_J_PER_MOL_K * (s["temperature_C"] + 273.15))

    def _bank(self, u: np.ndarray, eta: np.ndarray, p: np.ndarray, coupling: np.ndarray | None = None) -> np.ndarray:
        """``[u, interface currents]`` ``(B, T, n_in * (1 + K))`` from ``u`` ``(B, T, n_in)``; ``eta`` and ``p``
        (:meth:`_rest`) updated.  ``coupling``: default the fitted one."""
        c = self.coupling_ if coupling is None else coupling
        return _interface_bank(np.ascontiguousarray(u, dtype=np.float64), eta, p, self.tau_, self.k_, self.a_,
                               float(self.limit_ratio), self.f_, self.dt_, self.proxy_weights_, np.ascontiguousarray(c))

    def _trial_features(self, stimuli: list[np.ndarray], coupling: np.ndarray | None = None) -> list[np.ndarray]:
        """:meth:`_bank` of each trial from rest, ``CHUNK`` trials at a time as one batch (padded with each
        one's last row; the bank is causal, so the padding never reaches the kept samples)."""
        out = []
        for start in range(0, len(stimuli), CHUNK):
            chunk = stimuli[start:start + CHUNK]
            eta, p = self._rest(len(chunk))
            y = self._bank(padded(chunk), eta, p, coupling)
            out.extend(y[i, :len(s)] for i, s in enumerate(chunk))
        return out

    def _fit_coupling(self, u: list[np.ndarray], y: list[np.ndarray]) -> None:
        """``coupling_`` (:func:`.coupling.electrode_coupling`) and ``proxy_weights_``: per electrode, the
        ridge of the current proxies the recording implies (:func:`.coupling.proxies`) on its units', the
        units driven as the recording says they were (their own voltage less the coupling through the
        recorded proxies)."""
        n_in, n_k = self.n_inputs_, len(self.tau_)
        self.coupling_, self.proxy_weights_ = np.zeros((n_in, n_in)), np.full((n_in, n_k), 1.0 / n_k)
        found = electrode_coupling(u, y, self.transfer_coefficients, self.f_, float(self.limit_ratio)) \
            if self.coupling else None
        if found is None:
            return
        c, h_pinv, y_rest = found
        recorded = proxies(y, h_pinv, y_rest, c)
        units = self._trial_features([ui - pi @ c.T for ui, pi in zip(u, recorded)], np.zeros_like(c))
        gram, rhs = np.zeros((n_in, n_k + 1, n_k + 1)), np.zeros((n_in, n_k + 1))
        for f, pi in zip(units, recorded):
            x = np.concatenate([f[:, n_in:].reshape(len(f), n_in, n_k), np.ones((len(f), n_in, 1))], axis=2)
            gram += np.einsum("tej,tek->ejk", x, x)
            rhs += np.einsum("tej,te->ej", x, pi)
        ridge = 1e-8 * np.trace(gram, axis1=1, axis2=2)[:, None, None] / (n_k + 1) * np.eye(n_k + 1)
        self.proxy_weights_ = np.linalg.solve(gram + ridge, rhs[..., None])[:, :n_k, 0]
        self.coupling_ = c

    def fit(self, stimuli, responses, dt) -> InterfaceTwin:
        u, y, dt = check_trials(stimuli, responses, dt, f"twin {self.name!r}")
        self.n_inputs_, self.n_outputs_, self.dt_ = u[0].shape[1], y[0].shape[1], dt
        self._make_bank()
        self._fit_coupling(u, y)
        self.arx_ = LinearTwin(self.lags_in, self.lags_out, self.alphas, self.validation).fit(
            self._trial_features(u), y, dt)
        self.validation_nrmse_, self.noise_ = self.arx_.validation_nrmse_, self.arx_.noise_
        return self

    def _rest(self, batch: int) -> tuple[np.ndarray, np.ndarray]:
        """``eta`` ``(batch, n_in, K)`` and the proxies ``p`` ``(batch, n_in)`` at rest (zeros)."""
        return np.zeros((batch, self.n_inputs_, len(self.tau_))), np.zeros((batch, self.n_inputs_))

    def _initial_mean_state(self, batch: int) -> dict[str, np.ndarray]:
        arx = {f"arx_{k}": v for k, v in self.arx_._initial_mean_state(batch).items()}
        eta, p = self._rest(batch)
        return {"eta": eta, "p": p, **arx}

    def _step_mean(self, state: dict, u: np.ndarray) -> tuple[np.ndarray, dict]:
        eta, p = state["eta"].copy(), state["p"].copy()
        features = self._bank(u, eta, p)
        arx = {k[4:]: v for k, v in state.items() if k.startswith("arx_")}
        y, arx = self.arx_._step_mean(arx, features)
        return y, {"eta": eta, "p": p, **{f"arx_{k}": v for k, v in arx.items()}}

    def to_arrays(self) -> tuple[dict[str, np.ndarray], dict]:
        self._check_fitted()
        arrays, attrs = self.arx_.to_arrays()
        return ({f"arx_{k}": v for k, v in arrays.items()} | {"coupling": self.coupling_,
                                                             "proxy_weights": self.proxy_weights_},
                {"n_inputs": self.n_inputs_, "n_outputs": self.n_outputs_, "dt": self.dt_,
                 "validation_nrmse": self.validation_nrmse_, "arx": attrs, "settings": self._settings()})

    @classmethod
    def from_arrays(cls, arrays: dict, attrs: dict) -> InterfaceTwin:
        s = attrs["settings"]
        self = cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in s.items()})
        self.n_inputs_, self.n_outputs_, self.dt_ = int(attrs["n_inputs"]), int(attrs["n_outputs"]), float(attrs["dt"])
        self._make_bank()
        n_in, n_k = self.n_inputs_, len(self.tau_)     # a file from before the coupling: none
        self.coupling_ = np.asarray(arrays.get("coupling", np.zeros((n_in, n_in))), float)
        self.proxy_weights_ = np.asarray(arrays.get("proxy_weights", np.full((n_in, n_k), 1.0 / n_k)), float)
        if self.coupling_.shape != (n_in, n_in) or self.proxy_weights_.shape != (n_in, n_k) \
                or not (np.all(np.isfinite(self.coupling_)) and np.all(np.isfinite(self.proxy_weights_))):
            raise PrclabError(f"twin {cls.name!r}: coupling {self.coupling_.shape} and proxy weights "
                              f"{self.proxy_weights_.shape} must be finite, ({n_in}, {n_in}) and ({n_in}, {n_k})")
        self.arx_ = LinearTwin.from_arrays({k[4:]: v for k, v in arrays.items() if k.startswith("arx_")}, attrs["arx"])
        self.validation_nrmse_, self.noise_ = float(attrs["validation_nrmse"]), self.arx_.noise_
        return self

    # ---------------------------------------------------------------- identity
    def units(self) -> dict[str, np.ndarray]:
        """Interface units ``0 .. n_in K - 1`` (electrode-major: unit ``e K + j`` is interface ``j`` of
        stimulus channel ``e``; kind ``"bv_interface"`` with ``tau_s``, ``exchange_V``,
        ``transfer_coefficient``), then one ``"electrode_current"`` unit per stimulus channel (its current
        proxy, which couples it to the others: :meth:`edges`), then one ``"arx"`` unit per response
        channel (``bias``, noise)."""
        self._check_fitted()
        n_k, n_in, n = len(self.tau_), self.n_inputs_, self.n_outputs_
        m = n_in * n_k
        pad = np.full(n_in + n, np.nan)
        return {"id": np.arange(m + n_in + n, dtype=np.int64),
                "kind": np.array(["bv_interface"] * m + ["electrode_current"] * n_in + ["arx"] * n),
                "electrode": np.concatenate([np.repeat(np.arange(n_in), n_k), np.arange(n_in),
                                             np.full(n, -1)]).astype(np.int64),
                "tau_s": np.concatenate([np.tile(self.tau_, n_in), pad]),
                "exchange_V": np.concatenate([np.tile(self.k_, n_in), pad]),
                "transfer_coefficient": np.concatenate([np.tile(self.a_, n_in), pad]),
                "bias": np.concatenate([np.full(m + n_in, np.nan), self.arx_.c_]),
                "noise_std": np.concatenate([np.full(m + n_in, np.nan), self.noise_.std]),
                "noise_rho": np.concatenate([np.full(m + n_in, np.nan), self.noise_.rho])}

    def _fir(self) -> np.ndarray:
        """The ARX map's FIR weights ``(lags, n_in (1 + K), n_out)``."""
        return self.arx_.W_.reshape(self.arx_.lags_in_, -1, self.n_outputs_)

    def edges(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Interface unit ``(e, j)`` -> electrode unit ``e`` (weight ``proxy_weights_[e, j]``); electrode unit
        ``m`` -> every interface unit of electrode ``e != m`` (weight ``-coupling_[e, m]``, where non-zero;
        one sample's delay); interface unit -> response unit (the sum of its FIR weights over lags: DC gain)."""
        self._check_fitted()
        n_k, n_in, n = len(self.tau_), self.n_inputs_, self.n_outputs_
        m = n_in * n_k
        iface = np.arange(m).reshape(n_in, n_k)
        pre, post, weight = [iface.ravel()], [np.repeat(m + np.arange(n_in), n_k)], [self.proxy_weights_.ravel()]
        e, src = np.nonzero(self.coupling_)
        pre.append(np.repeat(m + src, n_k))
        post.append(iface[e].ravel())
        weight.append(np.repeat(-self.coupling_[e, src], n_k))
        gain = self._fir()[:, n_in:].sum(axis=0)          # (m, n_out)
        a, b = np.meshgrid(np.arange(m), np.arange(m + n_in, m + n_in + n), indexing="ij")
        pre.append(a.ravel())
        post.append(b.ravel())
        weight.append(gain.ravel())
        return (np.concatenate(pre).astype(np.int64), np.concatenate(post).astype(np.int64),
                np.concatenate(weight).astype(float))

    def electrode_map(self) -> dict:
        """``input_units`` ``(n_in, K)``: each stimulus channel drives its own K interfaces (weight 1);
        ``output_units`` ``(n_out, 1)``: response channel j is ARX unit ``n_in (K + 1) + j``."""
        self._check_fitted()
        n_k, n_in, n = len(self.tau_), self.n_inputs_, self.n_outputs_
        m = n_in * n_k + n_in
        return {"input_units": np.arange(n_in * n_k, dtype=np.int64).reshape(n_in, n_k),
                "input_weights": np.ones((n_in, n_k)),
                "output_units": np.arange(m, m + n, dtype=np.int64)[:, None], "output_weights": np.ones((n, 1))}

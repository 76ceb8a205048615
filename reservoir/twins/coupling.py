"""Identify how a recording's stimulating electrodes are coupled through the medium between them, from the
recording alone (used by the ``interface`` twin family, :mod:`.interface`).

Physics.  Electrode ``e`` held at ``V_e`` passes current ``i_e`` through its interface (overpotential
``eta_e``) into a linear conductor; the voltage across the conductor is ``V_e - eta_e = sum_k M_ek i_k``
(``M`` the transfer resistances; the diagonal the electrode's own spreading resistance), and a recording
site reads ``y = T i`` (Bard & Faulkner, *Electrochemical Methods* 2nd ed. 2001, sec. 1.3; the potato
model's docstring).  So ``y = T M^-1 (V - eta) = H (V - eta)``, where ``H`` ``(n_out, n_in)`` is also the
*instantaneous* gain from the electrodes' volts to the recorded volts: at a voltage step the double layers
have no time to charge and ``eta`` does not move.  Three linear steps follow:

1. ``H`` by least squares of the recorded jumps ``y[t] - y[t-1]`` on the stimulus jumps at every sample
   where the stimulus steps (:func:`step_gain`);
2. the overpotentials the recording implies, ``eta = V - H^+ (y - y_rest)`` (:func:`tissue_voltages`;
   ``y_rest`` the response at rest: before a trial's stimulus leaves 0 V);
3. per electrode, its interface equation in the proxies ``p = M_diag i`` (volts), with ``p = N (V - eta)``,
   ``N = (I + C)^-1`` and ``C_ek = M_ek / M_kk`` the coupling (dimensionless)::

       tau_e d eta_e / dt = (V_e - eta_e) + sum_(k != e) N'_ek (V_k - eta_k) - sum_a k_ea g_a(eta_e)

   integrated over windows of ``WINDOW`` samples, which is linear in ``1 / tau_e``, the Faradaic weights
   (one Butler-Volmer shape ``g_a`` per transfer coefficient of the bank) and ``N'_ek / tau_e``: one small
   ridge per electrode, the other electrodes' tissue voltages ``V_k - eta_k`` its coupling regressors
   (:func:`electrode_coupling`).

Measured on the demo recording (``protocols/examples/spoken_digits_demo.toml``, 13 electrodes, 64 sites,
2026-12-04): the coupling so found correlates 0.990 with the simulated potato's own ``M_ek / M_kk`` over
the 156 pairs (largest error 0.007, values -0.009 to 0.041), in about 1 s.
"""

from __future__ import annotations

import numpy as np

#: samples per integration window of the interface equation (a few ms: the derivative of a noisy
#: overpotential is never taken)
WINDOW = 5


def step_gain(stimuli: list[np.ndarray], responses: list[np.ndarray]) -> np.ndarray | None:
    """``H`` ``(n_out, n_in)``: recorded volts per stimulus volt at the sample of a step (module docstring,
    step 1), or None where the steps do not span every stimulus channel (a channel that never steps, or
    channels that always step together)."""
    du = np.concatenate([np.diff(u, axis=0) for u in stimuli])
    dy = np.concatenate([np.diff(y, axis=0) for y in responses])
    steps = np.any(du != 0, axis=1)
    if steps.sum() < 2 * du.shape[1] or np.linalg.matrix_rank(du[steps]) < du.shape[1]:
        return None
    return np.linalg.lstsq(du[steps], dy[steps], rcond=None)[0].T


def rest_response(stimuli: list[np.ndarray], responses: list[np.ndarray]) -> np.ndarray:
    """``(n_out,)``: the mean response over every trial's leading samples at 0 V on every electrode
    (zeros where no trial starts at rest)."""
    rest = []
    for u, y in zip(stimuli, responses):
        moved = np.flatnonzero(np.any(u != 0, axis=1))
        rest.append(y[:moved[0] if len(moved) else len(u)])
    rest = np.concatenate(rest)
    return rest.mean(axis=0) if len(rest) else np.zeros(responses[0].shape[1])


def tissue_voltages(y: np.ndarray, h_pinv: np.ndarray, y_rest: np.ndarray) -> np.ndarray:
    """``V - eta`` ``(T, n_in)`` volts the recording ``y`` ``(T, n_out)`` implies (step 2; ``h_pinv`` the
    pseudo-inverse of :func:`step_gain`'s ``H``): the overpotentials are the stimulus less these."""
    return (y - y_rest) @ h_pinv.T


def butler_volmer(eta: np.ndarray, a: float, f: float, r: float) -> np.ndarray:
    """The bank's dimensionless Faradaic shape ``g`` (:mod:`.interface`) at ``eta`` volts."""
    ea = np.exp(np.clip(a * f * eta, -50.0, 50.0))
    ec = np.exp(np.clip(-(1.0 - a) * f * eta, -50.0, 50.0))
    return (ea - ec) / (1.0 + r * ec)


def electrode_coupling(stimuli: list[np.ndarray], responses: list[np.ndarray], transfer_coefficients,
                       f: float, limit_ratio: float) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    """The coupling ``C`` ``(n_in, n_in)`` (zero diagonal; module docstring, step 3), with ``H^+``
    ``(n_in, n_out)`` and ``y_rest`` ``(n_out,)`` for :func:`proxies`; None where ``H`` cannot be found or
    an electrode's equation has no positive ``1 / tau`` or a row of ``|C|`` sums to 1 or more (nothing like
    electrodes in a conductor in the recording)."""
    h = step_gain(stimuli, responses)
    n_in = stimuli[0].shape[1]
    if h is None or n_in < 2 or responses[0].shape[1] < n_in:
        return None
    h_pinv, y_rest = np.linalg.pinv(h), rest_response(stimuli, responses)
    alphas = [float(a) for a in transfer_coefficients]
    n_reg = 1 + len(alphas) + (n_in - 1) + 1
    gram, rhs = np.zeros((n_in, n_reg, n_reg)), np.zeros((n_in, n_reg))
    for u, y in zip(stimuli, responses):
        if len(u) <= WINDOW:
            continue
        tissue = tissue_voltages(y, h_pinv, y_rest)
        eta = u - tissue
        for e in range(n_in):
            z = np.column_stack([tissue[:, e]] + [butler_volmer(eta[:, e], a, f, limit_ratio) for a in alphas]
                                + [tissue[:, k] for k in range(n_in) if k != e] + [np.ones(len(u))])
            s = np.concatenate([np.zeros((1, n_reg)), np.cumsum(z, axis=0)])
            x = s[WINDOW + 1:] - s[1:len(s) - WINDOW]          # sums over samples t - WINDOW + 1 .. t
            target = eta[WINDOW:, e] - eta[:-WINDOW, e]
            gram[e] += x.T @ x
            rhs[e] += x.T @ target
    n = np.eye(n_in)
    for e in range(n_in):
        g = gram[e] + 1e-12 * np.trace(gram[e]) * np.eye(n_reg)
        coef = np.linalg.solve(g, rhs[e]) if np.all(np.isfinite(g)) and np.trace(g) > 0 else np.full(n_reg, np.nan)
        if not coef[0] > 0:
            return None
        n[e, np.arange(n_in) != e] = coef[1 + len(alphas):1 + len(alphas) + n_in - 1] / coef[0]
    c = np.linalg.inv(n) - np.eye(n_in)
    np.fill_diagonal(c, 0.0)
    # a medium's transfer resistances are below an electrode's own (every row of |C| sums below 1, which
    # also keeps the twin's explicit coupling a contraction); anything else is not this physics
    ok = np.all(np.isfinite(c)) and np.abs(c).sum(axis=1).max() < 1.0
    return (c, h_pinv, y_rest) if ok else None


def proxies(responses: list[np.ndarray], h_pinv: np.ndarray, y_rest: np.ndarray, c: np.ndarray) -> list[np.ndarray]:
    """The electrodes' current proxies ``p = (I + C)^-1 (V - eta)`` ``(T_i, n_in)`` volts each trial's
    recording implies (:func:`tissue_voltages`)."""
    to_proxy = np.linalg.inv(np.eye(len(c)) + c).T
    return [tissue_voltages(y, h_pinv, y_rest) @ to_proxy for y in responses]

"""Small-signal impedance of a simulated substrate's stimulating electrode, as an impedance analyser sees it.

``impedance_spectrum`` drives one stimulating electrode with a sinusoid of ``amplitude_V`` (the others
held at 0 V) and reads its current from ``substrate.interface_current_A`` ``(batch, steps, n_inputs)``
(amperes, kept by every run of the substrates that model their electrodes' currents); after
``settle_cycles`` it demodulates voltage and current over ``cycles`` whole periods (lock-in:
projection on ``exp(-j 2 pi f t)``, which removes any DC such as a galvanic or Faradaic current) and
returns ``Z = V / I``.  Frequencies above the Nyquist frequency of the substrate's ``dt`` are refused.
``nyquist_figure`` and ``bode_figure`` draw the result with matplotlib's Figure API (no pyplot state).

Cost: one run of ``settle_cycles + cycles`` periods (at least ``min_samples``) per frequency, so the
lowest frequencies dominate: 16 log-spaced points from 0.1 to 400 Hz at 1 kHz simulate 119 s, 95 s of it
at the three lowest (0.1-0.3 Hz).  For the default potato (13 + 16 electrodes) that took 1.1 s of wall
time, 0.95 s of it for the three lowest points (measured 2026-12-02, load average 3.7 on 2 CPUs); halving
the lowest frequency doubles the time.
"""

from __future__ import annotations

import numpy as np
from matplotlib.figure import Figure

from prclab.errors import PrclabError


def impedance_spectrum(substrate, freqs_hz, amplitude_V: float = 5e-3, electrode: int = 0,
                       cycles: int = 3, settle_cycles: int = 2, min_samples: int = 200,
                       seed: int = 0) -> dict[str, np.ndarray]:
    """Impedance of stimulating electrode ``electrode`` of ``substrate`` at ``freqs_hz``.

    Args:
        substrate: a substrate whose runs keep ``interface_current_A`` (e.g. the potato).
        freqs_hz: frequencies in Hz, each below ``0.5 / substrate.dt``.
        amplitude_V: sinusoid amplitude (volts; small, for the linear response).
        electrode: index of the driven stimulating electrode.
        cycles, settle_cycles: periods demodulated, and periods discarded first (the transient).
        min_samples: at least this many samples per measured block (high frequencies).
        seed: ``reset`` seed of each run.
    Returns:
        ``{"freq_hz": (n,), "z": (n,) complex ohms, "magnitude_ohm": (n,), "phase_deg": (n,)}``.
    Raises:
        PrclabError: a frequency outside ``(0, Nyquist)``, a bad electrode, or a substrate without
            ``interface_current_A``.
    """
    freqs = np.atleast_1d(np.asarray(freqs_hz, dtype=float))
    dt = float(substrate.dt)
    if np.any(freqs <= 0) or np.any(freqs >= 0.5 / dt):
        raise PrclabError(f"impedance frequencies must lie in (0, {0.5 / dt:g}) Hz for dt = {dt:g} s")
    if not 0 <= electrode < substrate.n_inputs:
        raise PrclabError(f"electrode {electrode} out of range: the substrate has {substrate.n_inputs}")
    z = np.empty(len(freqs), complex)
    for i, f in enumerate(freqs):
        period = 1.0 / (f * dt)                                    # samples per period
        n_measure = int(round(max(cycles, np.ceil(min_samples / period)) * period))
        n_settle = int(round(settle_cycles * period))
        t = np.arange(n_settle + n_measure) * dt
        u = np.zeros((1, len(t), substrate.n_inputs))
        u[0, :, electrode] = amplitude_V * np.sin(2 * np.pi * f * t)
        substrate.reset(seed)
        substrate.run(u)
        current = getattr(substrate, "interface_current_A", None)
        if current is None:
            raise PrclabError(f"{type(substrate).__name__} keeps no interface_current_A: its electrode "
                              "currents are not modelled")
        phasor = np.exp(-2j * np.pi * f * t[n_settle:])
        v_hat = phasor @ u[0, n_settle:, electrode]
        i_hat = phasor @ np.asarray(current)[0, n_settle:, electrode]
        z[i] = v_hat / i_hat
    return {"freq_hz": freqs, "z": z, "magnitude_ohm": np.abs(z), "phase_deg": np.degrees(np.angle(z))}


def nyquist_figure(spectrum: dict[str, np.ndarray], title: str = "") -> Figure:
    """Nyquist plot (``-Im Z`` against ``Re Z``, ohms, equal axes) of an :func:`impedance_spectrum`."""
    fig = Figure(figsize=(5, 4.5))
    ax = fig.add_subplot()
    z = spectrum["z"]
    ax.plot(z.real, -z.imag, "o-", ms=3)
    ax.set_xlabel("Re Z (ohm)")
    ax.set_ylabel("-Im Z (ohm)")
    ax.set_aspect("equal", adjustable="datalim")
    ax.set_title(title or "Nyquist")
    fig.tight_layout()
    return fig


def bode_figure(spectrum: dict[str, np.ndarray], title: str = "") -> Figure:
    """Bode plot (``|Z|`` in ohms and phase in degrees against frequency, log axes)."""
    fig = Figure(figsize=(6, 5))
    mag, phase = fig.subplots(2, 1, sharex=True)
    mag.loglog(spectrum["freq_hz"], spectrum["magnitude_ohm"], "o-", ms=3)
    mag.set_ylabel("|Z| (ohm)")
    mag.set_title(title or "Bode")
    phase.semilogx(spectrum["freq_hz"], spectrum["phase_deg"], "o-", ms=3)
    phase.set_ylabel("phase (deg)")
    phase.set_xlabel("frequency (Hz)")
    fig.tight_layout()
    return fig

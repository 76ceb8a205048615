"""Current-voltage hysteresis of a stimulating electrode: loop area over sweep period.

A memristive element traces a loop pinched at the origin whose area vanishes for sweeps much faster and
much slower than its own memory and peaks in between (Chua 1971, IEEE Trans. Circuit Theory 18:507).
The sweep is a triangle ``0 -> +A -> -A -> 0`` on one stimulating electrode (the others held at 0 V);
the loop of the last cycle is measured from the substrate's ``interface_current_A`` (amperes), which
the potato and the hydrogel keep after every ``run``.
"""

from __future__ import annotations

import numpy as np

from prclab.errors import PrclabError


def triangle_sweep(period_s: float, cycles: int, dt: float, amplitude_V: float = 1.0) -> np.ndarray:
    """Triangle ``0 -> +A -> -A -> 0`` repeated ``cycles`` times: ``(round(period_s * cycles / dt),)`` volts."""
    if period_s <= 0 or cycles < 1 or dt <= 0:
        raise PrclabError("sweep period and dt must be positive and cycles at least 1")
    phase = (np.arange(int(round(period_s * cycles / dt))) * dt / period_s) % 1.0
    return amplitude_V * np.where(phase < 0.25, 4 * phase, np.where(phase < 0.75, 2 - 4 * phase, 4 * phase - 4))


def loop_area(v: np.ndarray, i: np.ndarray) -> float:
    """Area (volt-amperes) of a pinched I-V loop ``v``, ``i`` ``(steps,)``: each lobe taken positive (they
    circulate oppositely, so a signed area would cancel them)."""
    dv, i_mid, v_mid = np.diff(v), (i[1:] + i[:-1]) / 2, (v[1:] + v[:-1]) / 2
    return float(abs(np.sum((i_mid * dv)[v_mid > 0])) + abs(np.sum((i_mid * dv)[v_mid < 0])))


def iv_loops(substrate, periods_s, amplitude_V: float = 1.0, cycles: int = 3, electrode: int = 0,
             seed: int = 0) -> dict:
    """Sweep ``electrode`` of ``substrate`` with a triangle of each period; measure the last cycle's loop.

    Every period starts from ``substrate.reset(seed)``.  Returns ``{"periods_s", "areas_VA"}`` (lists,
    one per period) and ``"loops"``: per period ``(v, i)`` arrays ``(steps_per_period,)`` of the last
    cycle (volts, amperes).  Raises ``PrclabError`` for a substrate without ``interface_current_A``, an
    electrode it does not have or a period shorter than two samples.
    """
    if not 0 <= electrode < substrate.n_inputs:
        raise PrclabError(f"electrode {electrode} out of range: the substrate has {substrate.n_inputs} inputs")
    periods = [float(p) for p in periods_s]
    if not periods or min(periods) < 2 * substrate.dt:
        raise PrclabError(f"sweep periods must be at least two samples ({2 * substrate.dt:g} s)")
    areas, loops = [], []
    for period in periods:
        v = triangle_sweep(period, cycles, substrate.dt, amplitude_V)
        u = np.zeros((1, len(v), substrate.n_inputs))
        u[0, :, electrode] = v
        substrate.reset(seed)
        substrate.run(u)
        current = getattr(substrate, "interface_current_A", None)
        if current is None:
            raise PrclabError(f"{type(substrate).__name__} keeps no interface_current_A: no I-V loop to measure")
        last = int(round(period / substrate.dt))
        loop = (v[-last:], np.asarray(current)[0, -last:, electrode])
        loops.append(loop)
        areas.append(loop_area(*loop))
    return {"periods_s": periods, "areas_VA": areas, "loops": loops}


def plot_iv_loops(result: dict, path, title: str = "") -> None:
    """Save the loops of an :func:`iv_loops` result and their area over period as a PNG."""
    from matplotlib.figure import Figure  # no pyplot: a notebook's backend is left as it is

    fig = Figure(figsize=(9, 3.6), dpi=120)
    loops_ax, area_ax = fig.subplots(1, 2)
    for period, (v, i) in zip(result["periods_s"], result["loops"]):
        loops_ax.plot(v, i * 1e6, lw=1, label=f"{period:g} s")
    loops_ax.set_xlabel("electrode voltage (V)")
    loops_ax.set_ylabel("current (uA)")
    loops_ax.legend(loc="upper left", fontsize="small", title="period")
    area_ax.semilogx(result["periods_s"], np.asarray(result["areas_VA"]) * 1e6, marker="o")
    area_ax.set_xlabel("sweep period (s)")
    area_ax.set_ylabel("loop area (uA V)")
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path)

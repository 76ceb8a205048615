"""Export a spiking twin (:mod:`.spiking`) to SONATA (Dai et al. 2020, PLoS Comput. Biol. 16:e1007696;
AllenInstitute/sonata), written with h5py: ``nodes.h5``, ``node_types.csv``, ``edges.h5``,
``edge_types.csv`` and, for a simulated output, ``spikes.h5``.

What maps and what does not: the twin is not a network of neurons but a Poisson GLM per electrode with
a latent burst process.  Its units map onto SONATA nodes one to one: population ``stimulus`` (one
``virtual`` node per stimulating electrode, SONATA's input nodes) and population ``twin`` (one
``point_process`` node per recording electrode, node id = twin unit id, then the burst unit, id
``n_out``), each with its per-unit parameters (``baseline_hz``, ``burst_events``, the electrode index).
Edges: burst unit -> electrode (``syn_weight`` the mean events a burst adds, ``delay`` the profile's
peak in ms) and stimulus -> electrode / burst unit (``syn_weight`` the GLM log-rate weight of the
window with the largest magnitude for that input's positive voltage steps, ``delay`` that window's
centre in ms).  What does not map: SONATA's ``syn_weight`` / ``delay`` hold one number per edge, the
twin's stimulus kernels a weight per lag window and sign, and the GLM/burst dynamics have no standard
``model_template``; the full kernels stay in the twin file, and a simulator reading this file gets the
graph, the identities and the parameters, not the dynamics.

Layout per the SONATA spec: root attributes ``magic`` (0x0A7A) and ``version`` (0, 1);
``/nodes/<pop>/{node_id, node_type_id, node_group_id, node_group_index}`` and the group ``0`` with the
per-node columns; ``/edges/<pop>/{source_node_id, target_node_id}`` (attribute ``node_population``),
``edge_type_id``, ``edge_group_id``, ``edge_group_index`` and group ``0`` with ``syn_weight`` and
``delay`` (ms); CSV type tables space-separated; ``/spikes/<pop>/{timestamps (ms), node_ids}`` sorted
by time (attribute ``sorting = "by_time"``).
"""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np

from prclab.errors import PrclabError

MAGIC = np.uint32(0x0A7A)
VERSION = np.array([0, 1], np.uint32)


def _root(f: h5py.File) -> None:
    f.attrs["magic"] = MAGIC
    f.attrs["version"] = VERSION


def _nodes(f: h5py.File, pop: str, ids: np.ndarray, type_id: np.ndarray, columns: dict) -> None:
    g = f.create_group(f"nodes/{pop}")
    g["node_id"] = ids.astype(np.uint64)
    g["node_type_id"] = type_id.astype(np.uint64)
    g["node_group_id"] = np.zeros(len(ids), np.uint32)
    g["node_group_index"] = np.arange(len(ids), dtype=np.uint64)
    group = g.create_group("0")
    for name, values in columns.items():
        group[name] = values


def _edges(f: h5py.File, name: str, source: tuple, target: tuple, type_id: int, weight, delay_ms) -> None:
    g = f.create_group(f"edges/{name}")
    for key, (pop, ids) in (("source_node_id", source), ("target_node_id", target)):
        g[key] = np.asarray(ids, np.uint64)
        g[key].attrs["node_population"] = pop
    n = len(source[1])
    g["edge_type_id"] = np.full(n, type_id, np.uint64)
    g["edge_group_id"] = np.zeros(n, np.uint32)
    g["edge_group_index"] = np.arange(n, dtype=np.uint64)
    group = g.create_group("0")
    group["syn_weight"] = np.asarray(weight, float)
    group["delay"] = np.asarray(delay_ms, float)


def export_sonata(twin, out_dir: str | Path, spikes: np.ndarray | None = None) -> dict[str, str]:
    """Write ``twin`` (a fitted :class:`~.spiking.SpikingTwin`) as SONATA files into ``out_dir``;
    ``spikes`` ``(T, n_out)`` event counts per sample (one simulated run) also as ``spikes.h5``.
    Returns the written paths by role."""
    if getattr(twin, "name", None) != "spiking" or not hasattr(twin, "W_"):
        raise PrclabError(f"SONATA export: needs a fitted spiking twin, got {getattr(twin, 'name', twin)!r} "
                          "(the other families are not networks of spiking units)")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    n_in, n_out = twin.n_inputs_, twin.n_outputs_
    units = twin.units()
    paths = {k: str(out / f) for k, f in (("nodes", "nodes.h5"), ("node_types", "node_types.csv"),
                                          ("edges", "edges.h5"), ("edge_types", "edge_types.csv"))}
    with h5py.File(paths["nodes"], "w") as f:
        _root(f)
        _nodes(f, "stimulus", np.arange(n_in), np.zeros(n_in), {"electrode": np.arange(n_in)})
        kinds = np.where(units["kind"] == "burst_process", 2, 1)
        _nodes(f, "twin", units["id"], kinds, {"baseline_hz": units["baseline_hz"],
                                               "burst_events": units["burst_events"],
                                               "electrode": np.append(np.arange(n_out), -1)})
    Path(paths["node_types"]).write_text(
        "node_type_id model_type pop_name model_template\n"
        "0 virtual stimulus NONE\n"
        "1 point_process electrode_glm prclab:spiking_glm_poisson\n"
        "2 point_process network_burst prclab:spiking_burst_process\n")
    pre, post, weight = twin.edges()
    dt_ms = 1e3 * twin.dt_
    edges = twin.edges_
    centres_ms = 0.5 * (edges[:-1] + edges[1:]) * dt_ms
    n_win = len(edges) - 1
    positive = np.arange(n_win)[:, None] * 2 * n_in + np.arange(n_in)[None]   # (n_win, n_in) feature columns
    with h5py.File(paths["edges"], "w") as f:
        _root(f)
        _edges(f, "burst_to_electrodes", ("twin", pre), ("twin", post), 0, weight, twin.burst_delays_s() * 1e3)
        w_e = twin.W_[positive]                                                # (n_win, n_in, n_out)
        best = np.argmax(np.abs(w_e), axis=0)                                  # (n_in, n_out)
        src, dst = np.divmod(np.arange(n_in * n_out), n_out)
        _edges(f, "stimulus_to_electrodes", ("stimulus", src), ("twin", dst), 1,
               np.take_along_axis(w_e, best[None], 0)[0].ravel(), centres_ms[best].ravel())
        w_h = twin.W_h_[positive]                                              # (n_win, n_in)
        best_h = np.argmax(np.abs(w_h), axis=0)
        _edges(f, "stimulus_to_burst", ("stimulus", np.arange(n_in)), ("twin", np.full(n_in, n_out)), 2,
               w_h[best_h, np.arange(n_in)], centres_ms[best_h])
    Path(paths["edge_types"]).write_text(
        "edge_type_id model_template\n0 prclab:burst_profile\n1 prclab:glm_log_rate\n2 prclab:burst_hazard\n")
    if spikes is not None:
        s = np.asarray(spikes)
        if s.ndim != 2 or s.shape[1] != n_out:
            raise PrclabError(f"SONATA export: spikes must be (T, {n_out}) event counts, got {s.shape}")
        step, node = np.nonzero(s)
        reps = s[step, node].astype(np.int64)
        times = np.repeat(step * dt_ms, reps)
        nodes = np.repeat(node, reps)
        order = np.argsort(times, kind="stable")
        paths["spikes"] = str(out / "spikes.h5")
        with h5py.File(paths["spikes"], "w") as f:
            _root(f)
            g = f.create_group("spikes/twin")
            g.attrs["sorting"] = "by_time"
            g["timestamps"] = times[order]
            g["timestamps"].attrs["units"] = "ms"
            g["node_ids"] = nodes[order].astype(np.uint64)
    return paths

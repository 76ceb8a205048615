"""Twin files (HDF5): :func:`write_twin` and :func:`read_twin`.

Layout: ``/units/<column>`` (one row per unit, ``id`` int64 stable), ``/edges/{pre_id, post_id, weight}``,
``/electrodes/<name>`` (the unit -> stimulus-channel map), ``/readout/<name>`` (unit -> response-channel
weights), ``/family/<name>`` (the family's own arrays, ``to_arrays``) with the family's attrs as JSON in
``/family``'s ``attrs_json``; root attrs ``format`` (``"prclab-twin"``), ``format_version``, ``family``,
``n_inputs``, ``n_outputs``, ``dt`` (seconds), ``provenance`` (JSON) and ``sha256`` (of every array's
name, dtype, shape and bytes in path order).  Reading runs no code: a family rebuilds from its arrays
and attrs (``from_arrays``); a damaged or foreign file raises one ``PrclabError`` line.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np

from prclab.errors import PrclabError

FORMAT = "prclab-twin"
FORMAT_VERSION = 1
_GROUPS = ("units", "edges", "electrodes", "readout", "family")


@dataclass
class TwinFile:
    """A twin read back: the fitted ``family`` instance, ``provenance`` (dict), ``sha256``, ``path``."""

    family: object
    provenance: dict
    sha256: str
    path: str

    @property
    def n_inputs(self) -> int:
        return self.family.n_inputs_

    @property
    def n_outputs(self) -> int:
        return self.family.n_outputs_

    @property
    def dt(self) -> float:
        return self.family.dt_


def _arrays_of(family) -> dict[str, np.ndarray]:
    """Every array of the file by its path (``group/name``)."""
    arrays, _ = family.to_arrays()
    pre, post, w = family.edges()
    emap = family.electrode_map()
    out = {f"units/{k}": np.asarray(v) for k, v in family.units().items()}
    out |= {"edges/pre_id": np.asarray(pre, np.int64), "edges/post_id": np.asarray(post, np.int64),
            "edges/weight": np.asarray(w, float)}
    out |= {f"electrodes/{k}": np.asarray(v) for k, v in emap.items() if k.startswith("input")}
    out |= {f"readout/{k}": np.asarray(v) for k, v in emap.items() if not k.startswith("input")}
    out |= {f"family/{k}": np.asarray(v) for k, v in arrays.items()}
    return out


def _digest(arrays: dict[str, np.ndarray]) -> str:
    h = hashlib.sha256()
    for name in sorted(arrays):
        a = np.ascontiguousarray(arrays[name])
        if a.dtype.kind in "UO":
            a = a.astype("S")
        h.update(f"{name}|{a.dtype.str}|{a.shape}|".encode())
        h.update(a.tobytes())
    return h.hexdigest()


def write_twin(path: str | Path, family, provenance: dict) -> str:
    """Write fitted ``family`` with ``provenance`` to ``path`` (replaced if there); returns the sha256."""
    arrays = _arrays_of(family)
    _, attrs = family.to_arrays()
    digest = _digest(arrays)
    with h5py.File(path, "w") as f:
        for name, a in arrays.items():
            f.create_dataset(name, data=a.astype("S") if a.dtype.kind in "UO" else a)
        f["family"].attrs["attrs_json"] = json.dumps(attrs)
        f.attrs.update({"format": FORMAT, "format_version": FORMAT_VERSION, "family": family.name,
                        "n_inputs": family.n_inputs_, "n_outputs": family.n_outputs_, "dt": family.dt_,
                        "provenance": json.dumps(provenance), "sha256": digest})
    return digest


def read_twin(path: str | Path) -> TwinFile:
    """Read a twin file (module docstring).  Raises ``PrclabError`` ``twin file PATH: why`` for a missing,
    damaged or foreign file, a checksum mismatch or an unknown family."""
    from . import FAMILIES

    where = f"twin file {path}"
    p = Path(path)
    if not p.is_file():
        raise PrclabError(f"{where}: no such file")
    try:
        with h5py.File(p, "r") as f:
            if f.attrs.get("format") != FORMAT:
                raise PrclabError(f"{where}: not a prclab twin file")
            if int(f.attrs.get("format_version", -1)) != FORMAT_VERSION:
                raise PrclabError(f"{where}: format version {f.attrs.get('format_version')} is not "
                                  f"{FORMAT_VERSION}")
            name = str(f.attrs["family"])
            if name not in FAMILIES:
                raise PrclabError(f"{where}: unknown twin family {name!r}; known: {', '.join(FAMILIES)}")
            arrays = {}
            for g in _GROUPS:
                if g not in f or not isinstance(f[g], h5py.Group):
                    raise PrclabError(f"{where}: lacks group /{g}")
                for k, ds in f[g].items():
                    a = ds[()]
                    arrays[f"{g}/{k}"] = a.astype(str) if a.dtype.kind == "S" else a
            attrs = json.loads(f["family"].attrs["attrs_json"])
            provenance = json.loads(f.attrs["provenance"])
            stored = str(f.attrs["sha256"])
    except PrclabError:
        raise
    except (OSError, KeyError, ValueError, TypeError) as exc:
        text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise PrclabError(f"{where}: damaged or not HDF5 ({text})") from None
    if _digest(arrays) != stored:
        raise PrclabError(f"{where}: damaged (sha256 of its arrays does not match)")
    family_arrays = {k.split("/", 1)[1]: v for k, v in arrays.items() if k.startswith("family/")}
    try:
        family = FAMILIES[name].from_arrays(family_arrays, attrs)
    except (KeyError, ValueError, TypeError) as exc:
        raise PrclabError(f"{where}: family {name!r} arrays incomplete ({exc})") from None
    return TwinFile(family, provenance, stored, str(p))

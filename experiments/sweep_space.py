"""Search spaces of ``prclab sweep``: a TOML file, validated before any trial runs.

A space file names the dataset and the substrate, then the parameters of three groups, each either
fixed (a plain value) or searched (an inline table)::

    [sweep]
    data = "../shared/data/gestures/basicmotions.npz"   # WAV folder or .npz, relative to this file,
                                                        #   or builtin:fsdd-subset
    substrate = "esn"          # a registered simulated substrate (prclab.reservoir.SUBSTRATES)
    split = "official"         # or "speaker" (leave one speaker out; folds grouped by speaker)
    seed = 0                   # substrate weights and noise, the split, the folds, the sampler
    folds = 5                  # cross-validation folds on the training split
    study = "basicmotions"     # Optuna study name (default: the file's stem)
    storage = "sqlite:///basicmotions.db"   # any Optuna storage URL, or journal:PATH (an Optuna journal
                                            #   file); default sqlite:///STEM.db next to the file
                                            #   (a relative sqlite or journal path is anchored there)

    [substrate]                # the substrate's constructor keywords
    units = 200                                           # fixed
    spectral_radius = {low = 0.1, high = 1.5, log = true} # a float range, log-uniform
    leak_rate = {low = 0.05, high = 1.0, log = true}
    connectivity = {choices = [0.05, 0.1, 0.2]}           # a choice

    [encoder]                  # the encoder's keywords (docs/protocol-keys.md [encoder])
    amplitude = {low = 0.3, high = 1.0}
    samples_per_frame = {low = 1, high = 4}               # both ends integers: an integer range

    [readout]
    features = {choices = ["mean+last", "bins:4", "bins:8"]}   # fixed or chosen; if absent, each
                                                               #   fold chooses from the candidates

A range may give ``points = N`` (default 5): how many values the grid sampler takes from it
(linearly, or geometrically with ``log``).  Refused in one line naming the file, before any work: an
unknown top-level key, table or parameter (the substrate's keywords come from its constructor, the
encoder's from ``ENCODER_TABLE``), a value of the wrong type or outside a key's declared range, a range
with ``low > high`` or a log range with ``low <= 0``, an empty ``choices``, and a space with nothing
to search.
"""

from __future__ import annotations

import hashlib
import json
import math
import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from prclab.errors import PrclabError
from prclab.protocols.encoders import ENCODER_TABLE
from prclab.protocols.protocol import BUILTIN_DATASETS, substrate_params_table
from prclab.protocols.schema import unknown
from prclab.readouts.features import parse_feature_spec
from prclab.reservoir.registry import SUBSTRATES, substrate_entry

from .tasks import SPLITS

GROUPS = ("substrate", "encoder", "readout")
READOUT_KEYS = ("features",)
SWEEP_KEYS = ("data", "substrate", "split", "seed", "folds", "study", "storage")
#: grid points a range gives the grid sampler unless it says ``points``
GRID_POINTS = 5
#: most folds (each fold runs the pipeline once per trial)
MAX_FOLDS = 20


@dataclass(frozen=True)
class Param:
    """One searched parameter: ``group.name`` (e.g. ``substrate.leak_rate``), a range or choices.

    ``kind``: ``"float"``, ``"int"`` (both ends integers) or ``"choice"``; ``low``/``high`` inclusive;
    ``log``: sampled uniformly in log space; ``points``: the grid sampler's values of a range.
    """

    group: str
    name: str
    kind: str
    low: float | None = None
    high: float | None = None
    log: bool = False
    choices: tuple = ()
    points: int = GRID_POINTS

    @property
    def key(self) -> str:
        return f"{self.group}.{self.name}"

    def suggest(self, trial):
        """This parameter's value in an Optuna ``trial`` (``suggest_float`` / ``_int`` / ``_categorical``)."""
        if self.kind == "float":
            return trial.suggest_float(self.key, self.low, self.high, log=self.log)
        if self.kind == "int":
            return trial.suggest_int(self.key, int(self.low), int(self.high), log=self.log)
        return trial.suggest_categorical(self.key, list(self.choices))

    def grid(self) -> list:
        """The grid sampler's values: the choices, or ``points`` values spanning the range."""
        if self.kind == "choice":
            return list(self.choices)
        spaced = (np.geomspace if self.log else np.linspace)(self.low, self.high, self.points)
        if self.kind == "int":
            return sorted({int(round(v)) for v in spaced})
        return [float(v) for v in spaced]

    def describe(self) -> dict:
        if self.kind == "choice":
            return {"choices": list(self.choices)}
        return {"low": self.low, "high": self.high, "log": self.log, "type": self.kind}


@dataclass(frozen=True)
class SweepSpace:
    """A validated search space (see the module docstring).

    ``fixed``: group -> {keyword: value}; ``params``: the searched parameters; ``data``: the dataset
    path (resolved); ``storage``: an Optuna storage URL, or None for an in-memory study (``task --tune``).
    """

    data: str
    substrate: str = "esn"
    split: str = "official"
    seed: int = 0
    folds: int = 5
    study: str = "sweep"
    storage: str | None = None
    fixed: dict = field(default_factory=lambda: {g: {} for g in GROUPS})
    params: tuple[Param, ...] = ()
    where: str = "sweep"

    def config(self, values: dict) -> dict:
        """A trial's configuration from its ``{param.key: value}``: ``{"substrate": {...}, "encoder":
        {...}, "features": spec or None}`` (fixed values, then the trial's)."""
        groups = {g: dict(self.fixed[g]) for g in GROUPS}
        for key, value in values.items():
            group, _, name = key.partition(".")
            groups[group][name] = value
        return {"substrate": groups["substrate"], "encoder": groups["encoder"],
                "features": groups["readout"].get("features")}

    def digest(self) -> str:
        """sha256 of what decides a trial's score (dataset path, substrate, split, seed, folds, fixed
        values and the searched ranges): a study resumes only under the same space."""
        text = json.dumps({"data": self.data, "substrate": self.substrate, "split": self.split,
                           "seed": self.seed, "folds": self.folds, "fixed": self.fixed,
                           "params": {p.key: p.describe() for p in self.params}}, sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()

    def describe(self) -> dict:
        return {"data": self.data, "substrate": self.substrate, "split": self.split, "seed": self.seed,
                "folds": self.folds, "fixed": self.fixed, "params": {p.key: p.describe() for p in self.params}}


def load_space(path) -> SweepSpace:
    """Read and validate a space file; raises ``PrclabError`` in one line naming the file."""
    if sys.version_info >= (3, 11):
        import tomllib
    else:  # pragma: no cover
        import tomli as tomllib

    path = Path(path)
    where = f"space {path}"
    if not path.is_file():
        raise PrclabError(f"{where}: not found (or not a regular file)")
    try:
        doc = tomllib.loads(path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise PrclabError(f"{where}: not valid TOML ({exc})") from None
    unknown = set(doc) - {"sweep", *GROUPS}
    if unknown:
        raise PrclabError(f"{where}: unknown table {sorted(unknown)[0]!r}; known: sweep, {', '.join(GROUPS)}")
    head = _table(doc.get("sweep"), where, "[sweep]")
    for key in head:
        if key not in SWEEP_KEYS:
            raise PrclabError(f"{where}: [sweep] unknown key {key!r}; known: {', '.join(SWEEP_KEYS)}")
    if not isinstance(head.get("data"), str) or not head["data"]:
        raise PrclabError(f"{where}: [sweep] needs data = a WAV folder or .npz (relative to the file)")
    stem = path.stem
    storage = head.get("storage", f"sqlite:///{path.parent / (stem + '.db')}")
    if not isinstance(storage, str) or not storage:
        raise PrclabError(f"{where}: [sweep] storage must be a database URL, e.g. sqlite:///{stem}.db")
    storage = _anchored(storage, path.parent)
    return build_space(_dataset_path(head["data"], path.parent, where), substrate=head.get("substrate", "esn"),
                       split=head.get("split", "official"), seed=head.get("seed", 0),
                       folds=head.get("folds", 5), study=head.get("study", stem), storage=storage,
                       groups={g: _table(doc.get(g, {}), where, f"[{g}]") for g in GROUPS}, where=where)


def build_space(data: str, substrate: str = "esn", split: str = "official", seed=0, folds=5,
                study: str = "sweep", storage: str | None = None, groups: dict | None = None,
                where: str = "sweep") -> SweepSpace:
    """A validated ``SweepSpace`` from parsed values (``groups``: ``{"substrate": {...}, "encoder":
    {...}, "readout": {...}}``, each key a plain value or a ``{low, high[, log, points]}`` /
    ``{choices}`` table); what ``load_space`` and ``task --tune`` build.  Raises ``PrclabError``."""
    if not isinstance(substrate, str) or substrate.startswith("twin:"):
        raise PrclabError(f"{where}: substrate must be a registered simulated substrate name; known: "
                          f"{', '.join(sorted(SUBSTRATES))}")
    try:
        substrate_entry(substrate)
    except PrclabError as exc:
        raise PrclabError(f"{where}: {exc}") from None
    if split not in SPLITS:
        raise PrclabError(f"{where}: split {split!r} unknown; known: {', '.join(SPLITS)}")
    for name, value, low, high in (("seed", seed, 0, 2**32 - 1), ("folds", folds, 2, MAX_FOLDS)):
        if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
            raise PrclabError(f"{where}: {name} must be an integer in {low}..{high}, got {value!r:.40}")
    if not isinstance(study, str) or not study:
        raise PrclabError(f"{where}: study must be a non-empty name")
    groups = {g: dict((groups or {}).get(g, {})) for g in GROUPS}
    tables = {"substrate": substrate_params_table(substrate), "encoder": ENCODER_TABLE}
    fixed, params = {g: {} for g in GROUPS}, []
    for group in GROUPS:
        for name, value in groups[group].items():
            label = f"[{group}] {name}"
            if group == "substrate" and name in ("n_inputs", "seed"):
                raise PrclabError(f"{where}: {label} is set by the sweep (the dataset, [sweep] seed)")
            if group == "readout":
                if name not in READOUT_KEYS:
                    raise PrclabError(f"{where}: [readout] unknown parameter {name!r}; known: "
                                      f"{', '.join(READOUT_KEYS)}")
                check = _feature_check(where)
            else:
                table = tables[group]
                if name not in [k.name for k in table.keys]:
                    raise unknown(where, f"[{group}]", "parameter", name, [k.name for k in table.keys])
                check = (lambda v, key=table.key(name), group=group: key.check(v, where, f"[{group}]"))
            if isinstance(value, dict):
                params.append(_param(group, name, value, check, where))
            else:
                fixed[group][name] = check(value)
    if not params:
        raise PrclabError(f"{where}: the space is empty: give at least one searched parameter "
                          f"(e.g. leak_rate = {{low = 0.05, high = 1.0, log = true}} under [substrate])")
    return SweepSpace(data=str(data), substrate=substrate, split=split, seed=seed, folds=folds, study=study,
                      storage=storage, fixed=fixed, params=tuple(params), where=where)


def _param(group: str, name: str, spec: dict, check, where: str) -> Param:
    label = f"[{group}] {name}"
    if "choices" in spec:
        if set(spec) - {"choices"}:
            raise PrclabError(f"{where}: {label}: give either choices or low/high, not both")
        choices = spec["choices"]
        if not isinstance(choices, list) or not choices:
            raise PrclabError(f"{where}: {label} choices must be a non-empty list")
        if not all(isinstance(c, (bool, int, float, str)) for c in choices):
            raise PrclabError(f"{where}: {label} choices must be numbers, booleans or text")
        return Param(group, name, "choice", choices=tuple(check(c) for c in dict.fromkeys(choices)))
    extra = set(spec) - {"low", "high", "log", "points"}
    if extra or "low" not in spec or "high" not in spec:
        raise PrclabError(f"{where}: {label}: a searched parameter is {{low = ..., high = ...[, log = true, "
                          f"points = N]}} or {{choices = [...]}}" + (f"; unknown {sorted(extra)[0]!r}" if extra else ""))
    low, high, log, points = spec["low"], spec["high"], spec.get("log", False), spec.get("points", GRID_POINTS)
    for end, value in (("low", low), ("high", high)):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise PrclabError(f"{where}: {label} {end} must be a finite number, got {value!r:.40}")
    if not isinstance(log, bool):
        raise PrclabError(f"{where}: {label} log must be true or false")
    if isinstance(points, bool) or not isinstance(points, int) or not 1 <= points <= 1000:
        raise PrclabError(f"{where}: {label} points must be an integer in 1..1000")
    if low > high:
        raise PrclabError(f"{where}: {label} low ({low}) > high ({high})")
    if log and low <= 0:
        raise PrclabError(f"{where}: {label} a log range needs low > 0, got {low}")
    kind = "int" if isinstance(low, int) and isinstance(high, int) else "float"
    low, high = check(low), check(high)  # the key's own type and range
    if kind == "int" and isinstance(low, float):
        kind = "float"  # integer ends of a float keyword (amplitude = {low = 0, high = 1})
    if kind == "float" and not isinstance(low, float):
        raise PrclabError(f"{where}: {label} takes integers; give integer ends")
    return Param(group, name, kind, low=low, high=high, log=log, points=points)


def _feature_check(where: str):
    def check(value):
        if not isinstance(value, str):
            raise PrclabError(f"{where}: [readout] features must be a feature spec such as \"bins:4\"")
        try:
            parse_feature_spec(value)
        except PrclabError as exc:
            raise PrclabError(f"{where}: [readout] {exc}") from None
        return value
    return check


def _table(value, where: str, label: str) -> dict:
    if value is None:
        raise PrclabError(f"{where}: missing table {label}")
    if not isinstance(value, dict):
        raise PrclabError(f"{where}: {label} must be a table")
    return value


def _dataset_path(ref: str, folder: Path, where: str) -> str:
    if ref.startswith("builtin:"):
        name = ref[len("builtin:"):]
        if name not in BUILTIN_DATASETS:
            raise PrclabError(f"{where}: unknown builtin dataset {name!r}; known: {', '.join(BUILTIN_DATASETS)}")
        return str(BUILTIN_DATASETS[name])
    path = Path(ref).expanduser()
    return str(path if path.is_absolute() else folder / path)


def _anchored(url: str, folder: Path) -> str:
    """A relative ``sqlite:///NAME`` or ``journal:NAME`` path anchored at the space file's folder (other
    URLs as given)."""
    for prefix in ("sqlite:///", "journal:"):
        rel = url[len(prefix):]
        if url.startswith(prefix) and rel and rel != ":memory:" and not Path(rel).is_absolute():
            return prefix + str(folder / rel)
    return url


def default_space(data: str, substrate: str, seed: int, split: str, size: int | None = None,
                  substrate_params: dict | None = None, encoder_params: dict | None = None,
                  features: str | None = None, folds: int = 5) -> SweepSpace:
    """The space ``prclab task --tune`` searches (in memory, no storage): for the ESN its spectral
    radius (0.1-1.5), input scaling (0.1-10) and leak rate (0.02-1), log-uniform, and its bias scaling
    (0-1); for every substrate the encoder's amplitude (0.2-1); for a physical model also the encoder's
    samples per frame (2-40, log).  The ESN runs one thread per trial (``threads = 1``: each Dask
    worker is one thread; the results do not depend on it).  The task's own ``--units``, ``--param``, ``--encoder`` and
    ``--features`` are fixed (a given parameter is not searched)."""
    entry = substrate_entry(substrate)
    sub = {"spectral_radius": {"low": 0.1, "high": 1.5, "log": True},
           "input_scaling": {"low": 0.1, "high": 10.0, "log": True},
           "leak_rate": {"low": 0.02, "high": 1.0, "log": True},
           "bias_scaling": {"low": 0.0, "high": 1.0},
           "threads": 1} if substrate == "esn" else {}
    enc = {"amplitude": {"low": 0.2, "high": 1.0}}
    if entry.samples_per_frame > 1:
        enc["samples_per_frame"] = {"low": 2, "high": 40, "log": True}
    sub.update(substrate_params or {})
    enc.update(encoder_params or {})
    if size is not None:
        sub[entry.size_param] = int(size)
    groups = {"substrate": sub, "encoder": enc, "readout": {} if features is None else {"features": features}}
    return build_space(data, substrate=substrate, split=split, seed=seed, folds=folds, study="task-tune",
                       groups=groups, where="task --tune")

"""Protocol files (TOML): what to play into which substrate, how, and how to read it out.

A protocol file has these tables; every key, its type, default, unit and range is in the reference
generated from the schema, ``docs/protocol-keys.md`` (``python -m prclab.protocols.schema``)::

    [protocol]                        # name, sample_rate_hz (required), seed, repetitions, order,
    sample_rate_hz = 1000.0           #   block_samples
    [device]                          # spec: the device spec string (--device overrides it)
    spec = "sim:potato"
    [substrate]                       # the simulated substrate behind sim devices and emulators, and its
    name = "potato"                   #   constructor keywords in params (checked against the model's)
    params = { nodes = 200 }
    [stimulus]                        # electrodes, low_V, high_V (all required)
    electrodes = 13
    low_V = -0.5
    high_V = 0.5
    [task]                            # dataset (required: a WAV folder or .npz relative to this file, or
    dataset = "builtin:fsdd-subset"   #   builtin:fsdd-subset), max_items, labels
    [encoder]                         # kind and the encoders' constructor keywords (protocols.encoders)
    [timing]                          # washout_s, rest_s
    [readout]                         # features (readouts.features)
    [drift]                           # reference, reference_every, reference_id: a fixed reference block
    [safety]                          # stimulation limits; per channel in [safety.channels.N]
    [loop], [environment], [feedback] # a closed loop (protocols.loop_keys): no [task] then

Each table is declared once, below (:data:`TABLES`), with those of :mod:`.encoders` and :mod:`.safety`;
:mod:`.schema` refuses unknown tables and keys (naming the nearest valid one), wrong types, NaN,
infinities except where a key means "no limit", and numbers outside their range (``MAX_*`` below), in
one line naming the file, the table and the key.  With ``spec = "sim:NAME"`` the simulated substrate is
NAME: a ``[substrate] name`` naming another model is refused.  ``[safety.channels.N]`` tables are keyed
by the integer ``N`` once parsed.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

from prclab.errors import PrclabError
from prclab.reservoir.registry import SUBSTRATES, TWIN_PREFIX, substrate_defaults

from . import safety
from .encoders import ENCODER_TABLE
from .recording_storage import RECORDING_TABLE
from .loop_keys import LOOP_TABLES
from .schema import REQUIRED, Key, Table, from_defaults, unknown

BUILTIN_DATASETS = {"fsdd-subset": Path(__file__).parent / "data" / "fsdd_subset"}

#: upper bounds of the protocol's numbers (a typo such as 1e12 is refused, not run for ever)
MAX_RATE_HZ = 10e6
MAX_REPETITIONS = 100_000
MAX_BLOCK_SAMPLES = 1_000_000
MAX_ELECTRODES = 4096
MAX_ITEMS = 10_000_000
MAX_SECONDS = 3600.0
MAX_ABS_V = 1000.0
MAX_SEED = 2 ** 32 - 1

#: every table of a protocol file, in the order of the reference
TABLES: tuple[Table, ...] = (
    Table("protocol", (
        Key("name", str, "protocol", doc="free text"),
        Key("sample_rate_hz", float, REQUIRED, unit="Hz", low=0, low_open=True, high=MAX_RATE_HZ,
            doc="device sample rate"),
        Key("seed", int, 0, low=0, high=MAX_SEED, doc="seeds trial order, simulated substrates and noise"),
        Key("repetitions", int, 1, low=1, high=MAX_REPETITIONS, doc="times each dataset item is played"),
        Key("order", str, "random", choices=("random", "sequential"),
            doc="random: shuffled per repetition with seed"),
        Key("block_samples", int, 250, unit="samples", low=1, high=MAX_BLOCK_SAMPLES,
            doc="samples per device write/read block")),
        "The run: sample rate, seed, repetitions and trial order."),
    Table("device", (Key("spec", str, "sim:potato", doc="device spec string (drivers); --device overrides"),),
          "The device the protocol runs on."),
    Table("substrate", (
        Key("name", str, "potato", choices=lambda: tuple(SUBSTRATES),  # substrates registered later too
            doc="model behind sim devices and emulators; with spec sim:NAME, NAME; or twin:PATH, a twin file "
                "(prclab twin fit; a relative PATH from the protocol file's folder)"),
        Key("params", dict, {}, doc="the model's constructor keywords: [substrate.params] below")),
        "The simulated substrate."),
    Table("stimulus", (
        Key("electrodes", int, REQUIRED, low=1, high=MAX_ELECTRODES,
            doc="stimulating electrodes; must equal the encoder's channels"),
        Key("low_V", float, REQUIRED, unit="V", low=-MAX_ABS_V, high=MAX_ABS_V,
            doc="stimulus range, low end"),
        Key("high_V", float, REQUIRED, unit="V", low=-MAX_ABS_V, high=MAX_ABS_V,
            doc="stimulus range, high end (above low_V)")),
        "The stimulating electrodes and the voltage range the encoder fills."),
    Table("task", (
        Key("dataset", str, REQUIRED,
            doc="a WAV folder or labelled-sequence .npz, relative to this file, or builtin:fsdd-subset"),
        Key("max_items", int, 0, low=0, high=MAX_ITEMS,
            doc="play only N items of each split, spread over the labels (0: all)"),
        Key("labels", list, [], items=str, doc="play only items with these labels (all if empty)")),
        "The dataset played."),
    ENCODER_TABLE,
    Table("timing", (
        Key("washout_s", float, 0.1, unit="s", low=0, high=MAX_SECONDS, doc="rest before each stimulus"),
        Key("rest_s", float, 0.2, unit="s", low=0, high=MAX_SECONDS, doc="rest after each stimulus")),
        "Rests around each stimulus, at the rest level."),
    Table("readout", (Key("features", str, "mean+last", doc="feature spec (readouts.features)"),),
          "The features a readout is trained on."),
    Table("drift", (
        Key("reference", bool, False, doc="play a fixed reference trial first and last in the run"),
        Key("reference_every", int, 0, unit="trials", low=0, high=MAX_ITEMS,
            doc="with reference: also after every N dataset trials (0: first and last only)"),
        Key("reference_id", str, "", doc="item id of the reference (empty: the first training item)")),
        "A fixed reference block played through the run to measure drift; its trials are recorded "
        "with split \"reference\" (experiments.twins.drift)."),
    RECORDING_TABLE,
    safety.SAFETY_TABLE,
    safety.CHANNEL_TABLE,
    *LOOP_TABLES,
)
_TOP = {t.name: t for t in TABLES if "." not in t.name}  # the tables a file names at its top level


def substrate_params_table(name: str) -> Table:
    """``[substrate.params]`` of substrate ``name``: its constructor keywords (``n_inputs`` aside),
    each typed by its default (``prclab.reservoir.registry.substrate_defaults``); a twin
    (``twin:PATH``) takes ``noise`` only."""
    if name.startswith(TWIN_PREFIX):
        return from_defaults("substrate.params", {"noise": True}, "A twin file run as a substrate "
                             "(prclab.reservoir.twins.substrate.TwinSubstrate): noise adds its fitted residual noise.")
    return from_defaults("substrate.params", substrate_defaults(name),
                         f"The constructor keywords of {_qualname(SUBSTRATES[name].cls)} (see its "
                         f"docstring), each of its default's type.")


def _qualname(cls: type) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"


@dataclass
class Protocol:
    """A validated protocol; ``values[table][key]`` holds every setting (defaults filled in), ``text``
    the file's text, ``encoder_extra`` the ``[encoder]`` keywords the file gives (``kind`` aside)."""

    values: dict
    text: str
    path: Path | None = None
    encoder_extra: dict = field(default_factory=dict)
    substrate_named: bool = False  # the file's [substrate] table names its model
    closed_loop: bool = False      # the file has a [loop] table: prclab loop runs it, not prclab run

    def substrate_for(self, spec: str) -> str:
        """The simulated substrate behind device ``spec`` (the one actually run, which may be a
        command line's ``--device``): ``sim:NAME`` runs NAME, any other kind (an emulator) runs
        ``[substrate] name``.

        Raises:
            PrclabError: ``[substrate] name`` names another model than ``sim:NAME`` would run (the
                table would be silently ignored while the safety layer and the recording describe it).
        """
        kind, _, model = spec.partition(":")
        given = self.values["substrate"]["name"]
        if kind != "sim" or not model:
            return given
        if self.substrate_named and given != model:
            raise PrclabError(f"{self.where}: [substrate] name = {given!r} but the device {spec!r} runs "
                              f"{model!r}; name the same substrate in both (or drop [substrate] name)")
        return model

    def __getitem__(self, table: str) -> dict:
        return self.values[table]

    @property
    def rate_hz(self) -> float:
        return self.values["protocol"]["sample_rate_hz"]

    def dataset_path(self) -> Path:
        """Resolve ``task.dataset``: builtin name, absolute path, or relative to the protocol file."""
        ref = self.values["task"]["dataset"]
        if ref.startswith("builtin:"):
            name = ref.removeprefix("builtin:")
            if name not in BUILTIN_DATASETS:
                raise PrclabError(f"{self.where}: unknown builtin dataset {name!r}; known: "
                                  f"{', '.join(BUILTIN_DATASETS)}")
            return BUILTIN_DATASETS[name]
        path = Path(ref).expanduser()
        if not path.is_absolute() and self.path is not None:
            path = self.path.parent / path
        return path

    @property
    def where(self) -> str:
        return str(self.path) if self.path else "protocol"

    def encoder_params(self) -> dict:
        """The encoder's keywords: the stimulus range, the sample rate pulse trains are timed at (the
        protocol's) and the ``[encoder]`` keywords the file gives (the others keep the constructor's
        defaults, which are the table's)."""
        return {"low_V": self.values["stimulus"]["low_V"], "high_V": self.values["stimulus"]["high_V"],
                "sample_rate_hz": self.values["protocol"]["sample_rate_hz"], **self.encoder_extra}


def _anchored_twin(name: str, path: Path | None) -> str:
    """``twin:PATH`` with a relative ``PATH`` taken from the protocol file's folder (as a dataset's is)."""
    file = Path(name[len(TWIN_PREFIX):]).expanduser()
    if not file.is_absolute() and path is not None:
        file = Path(path).parent / file
    return TWIN_PREFIX + str(file)


def load_protocol(path: str | Path) -> Protocol:
    """Read and validate a protocol file; raises ``PrclabError`` naming the file and the problem."""
    path = Path(path)
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise PrclabError(f"protocol file not found: {path}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise PrclabError(f"protocol file {path}: cannot read ({exc})") from None
    return parse_protocol(text, path)


def parse_protocol(text: str, path: Path | None = None) -> Protocol:
    """Validate protocol ``text`` against :data:`TABLES` (see the module docstring); ``path`` names the
    file in errors and anchors a relative dataset path."""
    where = str(path) if path else "protocol"
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise PrclabError(f"{where}: malformed TOML ({exc})") from None
    for name in raw:
        if name not in _TOP:
            raise unknown(where, "", "table", f"[{name}]", [f"[{t}]" for t in _TOP])
    given = {name: raw.get(name, {}) for name in _TOP}
    if "loop" in raw and "task" not in raw:  # a closed loop plays no dataset
        given["task"] = {"dataset": ""}
    named = isinstance(given["substrate"], dict) and "name" in given["substrate"]
    twin = given["substrate"].get("name") if named else None
    if isinstance(twin, str) and twin.startswith(TWIN_PREFIX):  # a twin file: a path, not a registered name
        given["substrate"] = {k: v for k, v in given["substrate"].items() if k != "name"}
    else:
        twin = None
    values = {name: table.validate(given[name], where) for name, table in _TOP.items()
              if name != "safety"}  # [safety] with its channel tables: safety.check_table below
    if not values["stimulus"]["low_V"] < values["stimulus"]["high_V"]:
        raise PrclabError(f"{where}: [stimulus] low_V must be below high_V")
    substrate, spec = values["substrate"], values["device"]["spec"]
    if spec.startswith("sim:" + TWIN_PREFIX):
        spec = values["device"]["spec"] = "sim:" + _anchored_twin(spec[4:], path)
    if twin is not None:
        substrate["name"] = _anchored_twin(twin, path)
    elif not named and spec.startswith("sim:") and spec[4:]:  # the model the file's own spec names
        if spec[4:] not in SUBSTRATES and not spec[4:].startswith(TWIN_PREFIX):
            raise PrclabError(f"{where}: [device] spec {spec!r} names an unknown substrate; known: "
                              f"{', '.join(SUBSTRATES)}")
        substrate["name"] = spec[4:]
    substrate["params"] = substrate_params_table(substrate["name"]).check(
        substrate["params"], where, f"[substrate.params] (name = {substrate['name']!r})")
    drift = values["drift"]
    if not drift["reference"] and (drift["reference_every"] or drift["reference_id"]):
        raise PrclabError(f"{where}: [drift] reference_every / reference_id need reference = true")
    extra = {k: values["encoder"][k] for k in given["encoder"] if k != "kind"}
    values["safety"] = safety.check_table(given["safety"], values["stimulus"]["electrodes"], where)
    if "loop" in raw and "task" in raw:
        raise PrclabError(f"{where}: a closed-loop protocol ([loop]) plays no dataset: drop [task]")
    return Protocol(values, text, path, extra, named, "loop" in raw)

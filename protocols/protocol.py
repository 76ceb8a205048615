"""Protocol files (TOML): what to play into which substrate, how, and how to read it out.

A protocol file has these tables (``*`` marks required keys; everything else has the default shown)::

    [protocol]
    name = "spoken-digits"            # free text
    sample_rate_hz = 1000.0           # * device sample rate, hertz
    seed = 0                          # seeds trial order, simulated substrates and noise
    repetitions = 1                   # times each dataset item is played
    order = "random"                  # "random" (shuffled per repetition with seed) or "sequential"
    block_samples = 250               # samples per device write/read block

    [device]
    spec = "sim:potato"               # device spec string (see drivers.spec); --device overrides

    [substrate]                       # the simulated substrate behind sim devices and emulators
    name = "potato"
    params = { nodes = 200 }          # model parameters (reservoir docs)

    [stimulus]
    electrodes = 13                   # * stimulating electrodes; must equal the encoder's channels
    low_V = -0.5                      # * stimulus range, volts
    high_V = 0.5                      # *

    [task]
    dataset = "builtin:fsdd-subset"   # * a WAV folder or labelled-sequence .npz, relative to this file,
                                      #   or builtin:fsdd-subset (the FSDD subset shipped with prclab)
    max_items = 0                     # play only N items of each split, spread over the labels (0: all)
    labels = []                       # play only items with these labels, e.g. ["0", "1", "2"] (all if empty)

    [encoder]
    kind = "mfcc"                     # mfcc (audio) or sequence; default from the dataset
    amplitude = 0.9                   # fraction of the half range used
    samples_per_frame = 10            # samples each feature frame is held for
    multiplex = false                 # play a frame's features in turn on one electrode (potentiostat)
    n_mfcc = 13                       # mfcc only: coefficients per frame, analysis window and frame
    window_s = 0.025                  #   step (seconds), mel filters
    hop_s = 0.01
    n_filters = 26

    [timing]
    washout_s = 0.1                   # rest before each stimulus, seconds
    rest_s = 0.2                      # rest after each stimulus, seconds

    [readout]
    features = "mean+last"            # feature spec (readouts.features)

    [safety]                          # stimulation limits, per channel in [safety.channels.N]
    material = "platinum"             #   (keys, defaults and sources: protocols.safety)

Unknown tables or keys are refused, naming the key and the file.  Numbers are bounded (``MAX_*`` below;
NaN and inf refused, except the ``[safety]`` limits where +inf means "no limit").  With ``spec =
"sim:NAME"`` the simulated substrate is NAME: a ``[substrate] name`` naming another model is refused.
``[safety.channels.N]`` tables are keyed by the integer ``N`` once parsed.
"""

from __future__ import annotations

import difflib
import sys
from dataclasses import dataclass, field
from pathlib import Path

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

from prclab.errors import PrclabError

from . import safety

BUILTIN_DATASETS = {"fsdd-subset": Path(__file__).parent / "data" / "fsdd_subset"}

_SCHEMA: dict[str, dict[str, tuple[type, object]]] = {
    "protocol": {"name": (str, "protocol"), "sample_rate_hz": (float, None), "seed": (int, 0),
                 "repetitions": (int, 1), "order": (str, "random"), "block_samples": (int, 250)},
    "device": {"spec": (str, "sim:potato")},
    "substrate": {"name": (str, "potato"), "params": (dict, {})},
    "stimulus": {"electrodes": (int, None), "low_V": (float, None), "high_V": (float, None)},
    "task": {"dataset": (str, None), "max_items": (int, 0), "labels": (list, [])},
    "encoder": {"kind": (str, ""), "amplitude": (float, 0.9), "samples_per_frame": (int, 10)},
    "timing": {"washout_s": (float, 0.1), "rest_s": (float, 0.2)},
    "readout": {"features": (str, "mean+last")},
    "safety": safety.SCHEMA,
}
#: keys a table may give with no default of the protocol's own: passed on only when given (the
#: encoder's own parameters and defaults, protocols.encoders)
_OPTIONAL: dict[str, dict[str, type]] = {
    "encoder": {"multiplex": bool, "n_mfcc": int, "window_s": float, "hop_s": float, "n_filters": int}}


def _typed(where: str, table: str, key: str, value, typ: type):
    """``value`` as ``typ`` (an integer is a float where a float is asked for); else a one-line error."""
    if typ is float and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if not isinstance(value, typ) or isinstance(value, bool) and typ is not bool:
        raise PrclabError(f"{where}: [{table}] {key} must be {typ.__name__}, got {value!r}")
    return value


def _unknown_key(where: str, table: str, key: str, known) -> PrclabError:
    near = difflib.get_close_matches(key, list(known), n=1)
    hint = f"did you mean {near[0]!r}? " if near else ""
    return PrclabError(f"{where}: unknown key {key!r} in [{table}]; {hint}known: {', '.join(known)}")


@dataclass
class Protocol:
    """A validated protocol; ``values[table][key]`` holds every setting, ``text`` the file's text."""

    values: dict
    text: str
    path: Path | None = None
    encoder_extra: dict = field(default_factory=dict)
    substrate_named: bool = False  # the file's [substrate] table names its model

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
        enc = self.values["encoder"]
        params = {"amplitude": enc["amplitude"], "samples_per_frame": enc["samples_per_frame"],
                  "low_V": self.values["stimulus"]["low_V"], "high_V": self.values["stimulus"]["high_V"],
                  **self.encoder_extra}
        return params


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
    """Validate protocol ``text``; see the module docstring for the format."""
    where = str(path) if path else "protocol"
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise PrclabError(f"{where}: malformed TOML ({exc})") from None
    unknown = set(raw) - set(_SCHEMA)
    if unknown:
        raise PrclabError(f"{where}: unknown table [{sorted(unknown)[0]}]; known: {', '.join(_SCHEMA)}")
    values, extra = {}, {}
    for table, keys in _SCHEMA.items():
        given = raw.get(table, {})
        if not isinstance(given, dict):
            raise PrclabError(f"{where}: [{table}] must be a table")
        optional = _OPTIONAL.get(table, {})
        for key in given:
            if key not in keys and key not in optional:
                raise _unknown_key(where, table, key, [*keys, *optional])
        values[table] = {}
        for key, (typ, default) in keys.items():
            if key not in given:
                if default is None:
                    raise PrclabError(f"{where}: missing required key {key!r} in [{table}]")
                values[table][key] = default
                continue
            values[table][key] = _typed(where, table, key, given[key], typ)
        if optional:
            extra = {k: _typed(where, table, k, v, optional[k]) for k, v in given.items() if k in optional}
    _check_values(values, where)
    named = "name" in raw.get("substrate", {})
    spec = values["device"]["spec"]
    if not named and spec.startswith("sim:") and spec[4:]:  # the model the file's own spec names
        values["substrate"]["name"] = spec[4:]
    values["safety"] = safety.check_table(values["safety"], values["stimulus"]["electrodes"], where)
    return Protocol(values, text, path, extra, named)


#: upper bounds of the protocol's numbers (a typo such as 1e12 is refused, not run for ever)
MAX_RATE_HZ = 10e6
MAX_REPETITIONS = 100_000
MAX_BLOCK_SAMPLES = 1_000_000
MAX_ELECTRODES = 4096
MAX_ITEMS = 10_000_000
MAX_SECONDS = 3600.0
MAX_SAMPLES_PER_FRAME = 1_000_000
MAX_ABS_V = 1000.0
MAX_SEED = 2 ** 32 - 1


def _check_values(v: dict, where: str) -> None:
    """Refuse out-of-range numbers in one line naming the table and key; NaN and inf nowhere."""
    def need(ok: bool, message: str) -> None:
        if not ok:
            raise PrclabError(f"{where}: {message}")

    def within(table: str, key: str, low, high, low_open: bool = False) -> None:
        x = v[table][key]
        ok = (low < x if low_open else low <= x) and x <= high  # False for NaN
        need(ok, f"[{table}] {key} must lie in {'(' if low_open else '['}{low:g}, {high:g}], got {x}")

    p = v["protocol"]
    within("protocol", "sample_rate_hz", 0, MAX_RATE_HZ, low_open=True)
    within("protocol", "seed", 0, MAX_SEED)
    within("protocol", "repetitions", 1, MAX_REPETITIONS)
    need(p["order"] in ("random", "sequential"), "[protocol] order must be 'random' or 'sequential'")
    within("protocol", "block_samples", 1, MAX_BLOCK_SAMPLES)
    s = v["stimulus"]
    within("stimulus", "electrodes", 1, MAX_ELECTRODES)
    within("stimulus", "low_V", -MAX_ABS_V, MAX_ABS_V)
    within("stimulus", "high_V", -MAX_ABS_V, MAX_ABS_V)
    need(s["low_V"] < s["high_V"], "[stimulus] low_V must be below high_V")
    within("timing", "washout_s", 0, MAX_SECONDS)
    within("timing", "rest_s", 0, MAX_SECONDS)
    within("task", "max_items", 0, MAX_ITEMS)
    need(all(isinstance(x, str) for x in v["task"]["labels"]), "[task] labels must be strings")
    within("encoder", "amplitude", 0, 1, low_open=True)
    within("encoder", "samples_per_frame", 1, MAX_SAMPLES_PER_FRAME)

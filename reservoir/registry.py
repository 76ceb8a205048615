"""Substrates by name, so protocols and the CLI can ask for ``esn``, ``potato``...

Each entry names the model class, the constructor parameter that sets its size (``--units`` on the
command line) and how many samples a task holds each feature frame for by default (1 for the abstract
echo-state core, which steps once per frame; 10 for physical models sampled at 1 kHz, i.e. a 10 ms
frame; what ``experiments.characterize`` and the time-series tasks hold each input value for), the
keywords a classification task's encoder takes for it (``encoder``, ``protocols.encoders``: a held level
of ``samples_per_frame`` samples unless the substrate is driven by pulses) and any feature specs a task adds to the candidates
for that substrate (offered to the reservoir and to every baseline alike).

The organoid is driven as an MEA culture is: by pulses (its electrodes are capacitive, a held level
passes nothing after its onset), Brainoware's binarised pulses (Cai et al. 2023, Nat. Electron.
6:1032), one step per 50 ms frame (``encoder``; characterisation keeps the 10 ms hold): at most 20 pulses a second per electrode, inside DishBrain's 4-40 Hz
(Kagan et al. 2022, Neuron 110:3952), where 10 ms steps (up to 100 Hz) hold the network's depressing
synapses (0.8 s recovery) depressed; a step outlasts the direct evoked response (< 5 ms) and the 3 ms
blanking, and the polysynaptic response to one step's pulses (20-50 ms) falls into the next steps, the
network's fading memory.  Among 10, 25, 50 and 100 ms steps, 50 ms had the lowest training
leave-one-out error on BasicMotions (``reservoir.organoid``'s docstring; Brainoware's own step is
100 ms).  A spoken digit's 10 ms MFCC frames play five times slower than spoken.  Its extra candidate is
Brainoware's readout, spike counts in 10 ms bins (``win:10``; with the default 32 recording
electrodes, fewer than Brainoware's 64 most active, all of them).
"""

from __future__ import annotations

import inspect
import math
from dataclasses import dataclass, field
from functools import cache

import numpy as np

from prclab.errors import PrclabError

from .esn import EchoStateNetwork
from .hydrogel import HydrogelModel
from .organoid import OrganoidModel
from .potato import PotatoModel


@dataclass(frozen=True)
class SubstrateEntry:
    cls: type
    size_param: str
    samples_per_frame: int
    encoder: dict = field(default_factory=dict)
    features: tuple[str, ...] = ()


SUBSTRATES: dict[str, SubstrateEntry] = {
    "esn": SubstrateEntry(EchoStateNetwork, "units", 1),
    "potato": SubstrateEntry(PotatoModel, "nodes", 10),
    "hydrogel": SubstrateEntry(HydrogelModel, "grid", 10),
    "organoid": SubstrateEntry(OrganoidModel, "neurons", 10, encoder={"waveform": "binary", "samples_per_frame": 50},
                               features=("win:10",)),
}


TWIN_PREFIX = "twin:"


def substrate_entry(name: str) -> SubstrateEntry:
    """The registry entry of ``name`` (``twin:PATH``: a twin file, ``reservoir.twins.substrate``, held
    10 samples per feature frame as the physical models it imitates); raises ``PrclabError`` for an
    unknown name."""
    if name.startswith(TWIN_PREFIX):
        from .twins.substrate import TwinSubstrate

        return SubstrateEntry(TwinSubstrate, "copies", 10)
    try:
        return SUBSTRATES[name]
    except KeyError:
        raise PrclabError(f"unknown substrate {name!r}; known: {', '.join(sorted(SUBSTRATES))}") from None


def make_substrate(name: str, n_inputs: int, size: int | None = None, **params):
    """Build substrate ``name`` with ``n_inputs`` input channels and model parameters ``params``.

    ``size`` (if given) sets the model's size parameter (units, nodes, neurons).  Raises ``PrclabError``
    for an unknown name or a parameter the model does not take or accept.
    """
    entry = substrate_entry(name)
    if name.startswith(TWIN_PREFIX):
        return _make_twin(name[len(TWIN_PREFIX):], n_inputs, size, params)
    if size is not None:
        params[entry.size_param] = int(size)
    for key, value in params.items():
        if isinstance(value, float) and not math.isfinite(value):
            raise PrclabError(f"substrate {name!r}: {key} must be finite, got {value}")
    try:
        return entry.cls(n_inputs=n_inputs, **params)
    except (TypeError, ValueError) as exc:
        raise PrclabError(f"substrate {name!r}: {exc}") from None


def _make_twin(path: str, n_inputs: int, size: int | None, params: dict):
    """``twin:PATH`` for ``n_inputs`` inputs; ``n_outputs`` / ``dt`` in ``params`` must match the file,
    ``noise`` (bool) is the one parameter it takes; ``size`` clones it as a batch of that many copies."""
    from .twins.substrate import TwinSubstrate

    twin = TwinSubstrate(path, noise=bool(params.pop("noise", True)))
    asked = {"n_inputs": n_inputs, **{k: params.pop(k) for k in ("n_outputs", "dt") if k in params}}
    if params:
        raise PrclabError(f"substrate twin:{path}: takes no parameter(s) {', '.join(sorted(params))}")
    for key, value in asked.items():
        have = getattr(twin, key)
        if value is not None and not np.isclose(float(value), float(have), rtol=1e-9, atol=0):
            raise PrclabError(f"substrate twin:{path}: the twin has {key} = {have:g}, {value:g} asked")
    return twin.clone(size) if size is not None else twin


@cache
def _keywords(cls: type) -> dict[str, inspect.Parameter]:
    """The constructor's keywords of model class ``cls`` (``self`` aside), read once."""
    return {name: p for name, p in inspect.signature(cls.__init__).parameters.items() if name != "self"}


def substrate_defaults(name: str) -> dict[str, object]:
    """Substrate ``name``'s constructor keywords and their defaults (``n_inputs`` excluded), a new dict.

    Raises ``PrclabError`` for an unknown name.
    """
    return {key: p.default for key, p in _keywords(substrate_entry(name).cls).items()
            if key != "n_inputs" and p.default is not inspect.Parameter.empty}


def registered_name(cls: type) -> str:
    """The registry name of model class ``cls`` (its class name if it is not registered)."""
    return next((name for name, entry in SUBSTRATES.items() if entry.cls is cls), cls.__name__)


def described_params(description: dict, where: str = "substrate description") -> tuple[str, dict]:
    """The model name and constructor keywords (``n_inputs`` included) that ``describe()`` recorded.

    Reads ``{"model": name, "params": {...}, "derived": {...}}`` and the flat shape that descriptions
    (and the recordings that hold them) had before, ``{"model": name, <parameters and derived values>}``,
    whose derived values are told from parameters by the constructor's signature.  ``where`` names the
    description's origin in the ``PrclabError`` raised for a missing or unknown model.
    """
    name = description.get("model") if isinstance(description, dict) else None
    if not isinstance(name, str):
        raise PrclabError(f"{where}: has no 'model' name")
    if name.startswith(TWIN_PREFIX):
        return name, {k: v for k, v in description.get("params", {}).items() if k in ("n_inputs", "noise")}
    if name not in SUBSTRATES:
        raise PrclabError(f"{where}: unknown substrate {name!r}; known: {', '.join(sorted(SUBSTRATES))}")
    if "params" in description:
        return name, dict(description["params"])
    taken = _keywords(SUBSTRATES[name].cls)
    return name, {k: v for k, v in description.items() if k in taken}


def substrate_from_description(description: dict, where: str = "substrate description"):
    """Rebuild the substrate that ``describe()`` described (either shape, see ``described_params``); it
    responds identically for the same ``reset`` seed.  Raises ``PrclabError`` naming ``where``."""
    name, params = described_params(description, where)
    if "n_inputs" not in params:
        raise PrclabError(f"{where}: parameters of {name!r} lack n_inputs")
    try:
        return make_substrate(name, **params)
    except PrclabError as exc:
        raise PrclabError(f"{where}: {exc}") from None

"""Substrates: the Substrate contract, the batched echo-state core and physical models."""

from .base import Electrode, Substrate, electrodes_of, run_sequences
from .esn import EchoStateCore, EchoStateNetwork
from .hydrogel import HydrogelModel
from .organoid import OrganoidModel
from .potato import PotatoModel
from .registry import SUBSTRATES, make_substrate, substrate_defaults, substrate_entry

__all__ = ["Electrode", "Substrate", "electrodes_of", "run_sequences", "EchoStateCore", "EchoStateNetwork",
           "HydrogelModel", "OrganoidModel", "PotatoModel", "SUBSTRATES", "make_substrate", "substrate_defaults",
           "substrate_entry"]

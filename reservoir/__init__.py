"""Substrates: the Substrate contract, the batched echo-state core and physical models."""

from .base import Substrate, run_sequences
from .esn import EchoStateCore, EchoStateNetwork
from .hydrogel import HydrogelModel
from .organoid import OrganoidModel
from .potato import PotatoModel
from .registry import SUBSTRATES, make_substrate, substrate_entry

__all__ = ["Substrate", "run_sequences", "EchoStateCore", "EchoStateNetwork", "HydrogelModel",
           "OrganoidModel", "PotatoModel", "SUBSTRATES", "make_substrate", "substrate_entry"]

"""Substrates: the Substrate contract, the batched echo-state core and physical models."""

from .base import Electrode, Substrate, electrodes_of, length_buckets, run_sequences
from .esn import EchoStateCore, EchoStateNetwork
from .hydrogel import HydrogelModel
from .organoid import OrganoidModel
from .potato import PotatoModel
from .registry import (SUBSTRATES, SubstrateEntry, described_params, make_substrate, substrate_defaults,
                       substrate_entry, substrate_from_description)
from .checks import check_substrate

__all__ = ["Electrode", "Substrate", "electrodes_of", "length_buckets", "run_sequences", "EchoStateCore",
           "EchoStateNetwork", "HydrogelModel", "OrganoidModel", "PotatoModel", "SUBSTRATES", "SubstrateEntry",
           "described_params", "make_substrate", "substrate_defaults", "substrate_entry", "substrate_from_description",
           "check_substrate"]

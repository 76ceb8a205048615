"""The bench the vendor-style NI-DAQmx tests run on: the emulator, a gRPC channel, and tasks on it.

A lab's program changes one thing to run on the emulator: each ``nidaqmx.Task(name)`` becomes
``nidaqmx.Task(name, grpc_options=nidaqmx.GrpcSessionOptions(channel, name))`` (:meth:`Bench.task`),
and ``nidaqmx.system.System.local()`` becomes ``System.remote(options)`` (:meth:`Bench.system`).
"""

from __future__ import annotations

from dataclasses import dataclass

import grpc
import nidaqmx
import nidaqmx.system
import pytest

from prclab.hardware_sims.nidaq_grpc import NidaqEmulator
from prclab.reservoir import make_substrate

RATE_HZ = 1000.0
SEED = 3


def substrate(n_inputs: int = 2, n_outputs: int = 4):
    """The potato behind the terminals: AO lines ao0.. drive it, AI lines ai0.. record it."""
    return make_substrate("potato", n_inputs, n_outputs=n_outputs, dt=1.0 / RATE_HZ)


@dataclass
class Bench:
    emulator: NidaqEmulator
    channel: grpc.Channel

    def task(self, name: str) -> nidaqmx.Task:
        return nidaqmx.Task(name, grpc_options=nidaqmx.GrpcSessionOptions(self.channel, name))

    def system(self) -> nidaqmx.system.System:
        return nidaqmx.system.System.remote(nidaqmx.GrpcSessionOptions(self.channel, ""))


@pytest.fixture
def bench():
    with NidaqEmulator(substrate(), seed=SEED) as emulator:
        channel = grpc.insecure_channel(emulator.address)
        try:
            yield Bench(emulator, channel)
        finally:
            channel.close()

"""Emulators that speak real instrument wire protocols, backed by a simulated Substrate."""

#: faults every emulator can inject on demand (each emulator's module docstring says what they do there)
FAULTS = ("unplug", "stall", "garbage", "drop")

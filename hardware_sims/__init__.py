"""Emulators that speak real instrument wire protocols, backed by a simulated Substrate."""

"""Protocols: datasets, encoders, protocol files, the runner and the recording format."""

"""Digital twins from recordings: fitting on the recorded split, validation, transfer, probes, drift, modules."""

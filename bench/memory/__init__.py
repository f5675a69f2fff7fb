"""Peak memory of a prefill: trackers (how to measure one trial) and the max-length search."""

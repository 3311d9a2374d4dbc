"""Parallel plans (data, tensor, pipeline) and the search for the fastest one that fits."""

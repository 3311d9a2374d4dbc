"""One training step: the workload, its memory, its schedule, its simulation, timeline and report."""

"""Timing for the host benchmarks: medians of repeated calls on the thread's CPU clock.

With one intra-op thread every timing uses the thread's CPU time (``time.thread_time``), which
other processes on a shared machine do not inflate; otherwise wall-clock, synchronising a CUDA
device around each timing.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable

import torch


def timed(run: Callable[[], object], device: torch.device, *, repeats: int, inner: int) -> float:
    """Median seconds of one call of ``run`` over ``repeats`` timings of ``inner`` calls each."""
    run()
    sync(device)
    clock = clock_for(device)
    samples = []
    for _ in range(repeats):
        start = clock()
        for _ in range(inner):
            run()
        sync(device)
        samples.append((clock() - start) / inner)
    return statistics.median(samples)


def clock_for(device: torch.device) -> Callable[[], float]:
    """Thread CPU time on a one-thread CPU (immune to other processes on a shared machine), else
    wall-clock."""
    if device.type == "cpu" and torch.get_num_threads() == 1:
        return time.thread_time
    return time.perf_counter


def sync(device: torch.device) -> None:
    """Wait for a CUDA device's queued work; nothing to wait for on a CPU."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)

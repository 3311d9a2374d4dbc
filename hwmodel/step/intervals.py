"""Timeline intervals of a simulated step, for :class:`~hwmodel.step.timeline.Timeline` and traces.

Built only when a timeline is asked for: one interval per op and per collective on the tracks of
one chip of each equivalence class (``chip/...`` without pipelining, ``stage S/...`` with it).
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import numpy.typing as npt

from hwmodel.step.memory import MemoryFootprint
from hwmodel.step.op_times import OpTimes
from hwmodel.step.tensor_parallel import sharding
from hwmodel.step.timeline import Interval
from hwmodel.step.workload import Workload

FloatArray = npt.NDArray[np.float64]


def op_intervals(
    workload: Workload,
    times: OpTimes,
    ends: FloatArray,
    optimizer: npt.NDArray[np.bool_],
    exposed_s: float,
    prefix: str,
) -> list[Interval]:
    """Every op on ``prefix/compute``, with the collectives that block it on their own tracks."""
    intervals: list[Interval] = []
    starts = ends - times.busy_s
    for index, op in enumerate(workload.ops):
        shift = exposed_s if optimizer[index] else 0.0
        start = float(starts[index]) + shift
        op_s = float(times.costs.time_s[index])
        intervals.append(
            Interval(
                track=f"{prefix}/compute",
                name=op.name.removeprefix("aten."),
                category=op.phase,
                start_s=start,
                duration_s=op_s,
                args={"module": op.module, "flops": float(times.costs.flops[index])},
            )
        )
        if times.tensor_parallel_s[index] > 0:
            kind = "all_gather" if op.phase == "forward" else "reduce_scatter"
            if not sharding(workload).gathered[index]:
                kind = "all_reduce"
            intervals.append(
                Interval(
                    track=f"{prefix}/tensor-parallel",
                    name=kind,
                    category="collective",
                    start_s=start + op_s,
                    duration_s=float(times.tensor_parallel_s[index]),
                )
            )
        if times.batchnorm_s[index] > 0:
            intervals.append(
                Interval(
                    track=f"{prefix}/batchnorm-sync",
                    name="all_reduce statistics",
                    category="collective",
                    start_s=start + op_s + float(times.tensor_parallel_s[index]),
                    duration_s=float(times.batchnorm_s[index]),
                )
            )
    return intervals


def pipeline_intervals(
    events: tuple[tuple[int, str, int, float, float], ...], transfer_s: float, stages: int
) -> list[Interval]:
    """The 1F1B schedule's forward and backward passes, and the activations sent between stages."""
    intervals: list[Interval] = []
    for stage, kind, batch, start, end in events:
        name = f"{'forward' if kind == 'F' else 'backward'} mb{batch}"
        category = "forward" if kind == "F" else "backward"
        intervals.append(
            Interval(
                track=f"stage {stage}/compute", name=name, category=category, start_s=start, duration_s=end - start
            )
        )
        sends = (kind == "F" and stage < stages - 1) or (kind == "B" and stage > 0)
        if sends and transfer_s > 0:
            intervals.append(
                Interval(
                    track=f"stage {stage}/point-to-point",
                    name=f"send {name}",
                    category="collective",
                    start_s=end,
                    duration_s=transfer_s,
                )
            )
    return intervals


def gradient_intervals(
    track: str, starts: Iterable[float], durations: Iterable[float], sizes: Iterable[float]
) -> list[Interval]:
    """One all-reduce of gradients per (start, duration, bytes), on ``track``."""
    return [
        Interval(
            track=track,
            name="all_reduce gradients",
            category="collective",
            start_s=float(start),
            duration_s=float(duration),
            args={"bytes": size},
        )
        for start, duration, size in zip(starts, durations, sizes, strict=True)
    ]


def memory_intervals(track: str, start_s: float, memory: MemoryFootprint) -> list[Interval]:
    """The remedy after the step: recomputed activations, then the spill to backing memory."""
    intervals: list[Interval] = []
    if memory.recompute_s > 0:
        intervals.append(
            Interval(
                track=track,
                name="recompute activations",
                category="memory",
                start_s=start_s,
                duration_s=memory.recompute_s,
            )
        )
    if memory.spill_s > 0:
        intervals.append(
            Interval(
                track=track,
                name="spill to DIP HBM",
                category="memory",
                start_s=start_s + memory.recompute_s,
                duration_s=memory.spill_s,
                args={"bytes": memory.spilled_bytes},
            )
        )
    return intervals

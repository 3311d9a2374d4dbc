"""The scheduler: streams of one chip class proceeding by dependencies, and the step's timeline.

Times in seconds. A chip runs one **compute stream** (its ops in capture order, each waiting for
the collectives it needs: tensor-parallel collectives and synchronised batch-norm statistics block
the op after them) and **communication streams** (gradient buckets all-reduced while the backward
pass goes on, pipeline transfers). Every chip of a class does the same, so a class is scheduled
once (see :mod:`hwmodel.step.simulate`).

The pieces, each exact for its dependencies and deterministic:

* :func:`bucket_schedule`: buckets on one stream, each starting when its gradients are ready and
  the previous bucket is done (PyTorch DDP's order).
* :func:`balance_stages`: cut a sequence of weighted layers into ``p`` contiguous stages whose
  largest weight is as small as possible (binary search over the bottleneck, greedy cuts).
* :func:`one_f_one_b`: the 1F1B pipeline schedule (Narayanan et al., PipeDream-Flush, 2021) of
  ``m`` micro-batches over ``p`` stages, simulated event by event: stage ``s`` runs
  ``min(p-s-1, m)`` warm-up forwards, then alternates one forward and one backward, then drains
  its backwards; a forward waits for the previous stage's forward of the same micro-batch plus
  the transfer, a backward for the next stage's backward. With equal stages of forward ``F`` and
  backward ``B`` its makespan is ``(m + p - 1)(F + B)``: a bubble of ``(p-1)/(m+p-1)`` of it.
* :class:`Timeline`: the intervals of a step, per track, built only on request (the Chrome trace).
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]


def bucket_schedule(ready_s: FloatArray, duration_s: FloatArray) -> tuple[FloatArray, FloatArray]:
    """(start, end) of each bucket on one stream: ``start_i = max(ready_i, end_{i-1})``.

    >>> bucket_schedule(np.array([1.0, 2.0, 2.5]), np.array([2.0, 1.0, 1.0]))
    (array([1., 3., 4.]), array([3., 4., 5.]))
    """
    starts: list[float] = []
    ends: list[float] = []
    previous = 0.0
    for ready, duration in zip(ready_s.tolist(), duration_s.tolist(), strict=True):
        start = max(ready, previous)
        previous = start + duration
        starts.append(start)
        ends.append(previous)
    return np.array(starts, dtype=np.float64), np.array(ends, dtype=np.float64)


def balance_stages(weights: FloatArray, stages: int) -> list[int]:
    """Start index of each of ``stages`` contiguous groups of ``weights``, minimising the largest.

    Every stage gets at least one item when there are enough items (an empty stage is allowed
    only when there are fewer items than stages).

    >>> balance_stages(np.array([1.0, 1.0, 1.0, 1.0, 4.0]), 2)
    [0, 4]
    """
    count = len(weights)
    if stages <= 1 or count == 0:
        return [0] * max(stages, 1)
    # a list of Python floats: bisect on it finds what np.searchsorted(side="right") would, faster
    prefix: list[float] = np.concatenate(([0.0], np.cumsum(weights))).tolist()

    def cuts_for(limit: float) -> list[int] | None:
        starts = [0]
        begin = 0
        for _ in range(stages - 1):
            # the furthest end that keeps this stage within limit, leaving an item for each later stage
            end = bisect.bisect_right(prefix, prefix[begin] + limit) - 1
            end = max(end, begin + 1)
            end = min(end, count - (stages - len(starts)))
            if end <= begin:
                end = begin
            starts.append(end)
            begin = end
        if prefix[count] - prefix[begin] > limit * (1 + 1e-12):
            return None
        return starts

    low = float(np.max(weights))
    high = float(prefix[-1])
    best = cuts_for(high) or [min(i, count) for i in range(stages)]
    for _ in range(60):
        if high - low <= 1e-12 * max(high, 1e-300):
            break
        middle = (low + high) / 2
        candidate = cuts_for(middle)
        if candidate is None:
            low = middle
        else:
            high, best = middle, candidate
    return best


def _after(end_s: float | None, transfer_s: float) -> float | None:
    """When a pass that ended at ``end_s`` has reached the next stage (None: it has not run)."""
    return None if end_s is None else end_s + transfer_s


@dataclass(frozen=True, kw_only=True)
class PipelineSchedule:
    """The 1F1B schedule of one step: makespan, when each stage finishes, and (on request) every
    (stage, kind ``"F"``/``"B"``, micro-batch, start, end)."""

    makespan_s: float
    stage_end_s: tuple[float, ...]
    events: tuple[tuple[int, str, int, float, float], ...]


def one_f_one_b(
    forward_s: FloatArray, backward_s: FloatArray, transfer_s: float, micro_batches: int, *, keep_events: bool = False
) -> PipelineSchedule:
    """Simulate 1F1B over ``len(forward_s)`` stages (per-micro-batch times per stage).

    >>> one_f_one_b(np.array([1.0, 1.0, 1.0]), np.array([2.0, 2.0, 2.0]), 0.0, 4).makespan_s
    18.0
    """
    stages = len(forward_s)
    order: list[list[tuple[str, int]]] = []
    for stage in range(stages):
        warmup = min(stages - stage - 1, micro_batches)
        sequence = [("F", i) for i in range(warmup)]
        next_forward, next_backward = warmup, 0
        while next_backward < micro_batches:
            if next_forward < micro_batches:
                sequence.append(("F", next_forward))
                next_forward += 1
            sequence.append(("B", next_backward))
            next_backward += 1
        order.append(sequence)
    forward_times: list[float] = np.asarray(forward_s, dtype=np.float64).tolist()
    backward_times: list[float] = np.asarray(backward_s, dtype=np.float64).tolist()
    # end of each (stage, micro-batch) pass; None until it has run
    forward_end: list[list[float | None]] = [[None] * micro_batches for _ in range(stages)]
    backward_end: list[list[float | None]] = [[None] * micro_batches for _ in range(stages)]
    position = [0] * stages
    free_at = [0.0] * stages
    events: list[tuple[int, str, int, float, float]] = []
    remaining = sum(len(sequence) for sequence in order)
    while remaining:
        progressed = False
        for stage in range(stages):
            while position[stage] < len(order[stage]):
                kind, batch = order[stage][position[stage]]
                ready: float | None
                if kind == "F":
                    ready = 0.0 if stage == 0 else _after(forward_end[stage - 1][batch], transfer_s)
                    duration = forward_times[stage]
                elif stage == stages - 1:
                    ready = forward_end[stage][batch]
                    duration = backward_times[stage]
                else:
                    ready = _after(backward_end[stage + 1][batch], transfer_s)
                    duration = backward_times[stage]
                if ready is None:
                    break
                start = max(free_at[stage], ready)
                end = start + duration
                free_at[stage] = end
                (forward_end if kind == "F" else backward_end)[stage][batch] = end
                if keep_events:
                    events.append((stage, kind, batch, start, end))
                position[stage] += 1
                remaining -= 1
                progressed = True
        if not progressed:  # pragma: no cover - 1F1B has no cyclic waits
            raise RuntimeError("1F1B schedule deadlocked")
    ordered = tuple(sorted(events, key=lambda event: (event[3], event[0])))
    return PipelineSchedule(makespan_s=max(free_at), stage_end_s=tuple(free_at), events=ordered)


@dataclass(frozen=True, kw_only=True)
class Interval:
    """One busy interval on a track: ``name`` from ``start_s`` for ``duration_s``."""

    track: str
    name: str
    category: str
    start_s: float
    duration_s: float
    args: dict[str, float | str] = field(default_factory=dict)


@dataclass(frozen=True, kw_only=True)
class Timeline:
    """Every interval of one step, per track (``"<class>/compute"``, ``"<class>/collectives"``...).

    ``classes`` names the chip classes simulated (a data-parallel replica, a pipeline stage) and how
    many chips each stands for.
    """

    step_time_s: float
    intervals: tuple[Interval, ...]
    classes: dict[str, int]

    def tracks(self) -> list[str]:
        """Track names in first-use order."""
        seen: dict[str, None] = {}
        for interval in self.intervals:
            seen.setdefault(interval.track, None)
        return list(seen)

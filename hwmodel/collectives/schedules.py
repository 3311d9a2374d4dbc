"""Who sends what to whom, step by step, in a collective along one line of ``k`` ranks.

A line is one row or one column of a group of chips; ranks ``0..k-1`` sit in order along it. A
schedule is a tuple of steps; a step is a tuple of flows ``(source, destination, fraction)``: in that
step ``source`` sends ``fraction x N`` bytes to ``destination`` (``N``: the full buffer per rank).
Schedules are pure combinatorics, independent of any hardware, and cached per ``k``; a
:class:`ScheduleSummary` condenses one for the cost model, and :func:`directed_link_loads` spreads
it over the links of a line for link-utilization maps.

The schedules:

* ``ring``: the folded ring 0, 2, 4, ..., 5, 3, 1 (a line has no wrap link). ``k - 1`` steps; in
  each every rank sends ``N/k`` to its ring successor. Every directed link of the line carries
  exactly one flow per step, and a logical hop spans at most 2 links.
* ``halving`` (recursive halving reduce-scatter, Thakur, Rabenseifner and Gropp 2005): with
  ``k' = 2^floor(log2 k)`` and ``e = k - k'``, ranks ``2i+1`` (``i < e``) first fold their whole
  vector into ``2i``; the ``k'`` survivors exchange halves with partners ``1, 2, 4, ...`` survivors
  away (nearest first: on a mesh the big early messages travel the short distances), sending
  ``N/2, N/4, ...``; at the end ``2i`` hands ``2i+1`` its ``N/k`` shard.
* ``doubling`` (recursive doubling all-reduce): the same pairs, every step exchanging the whole
  vector ``N``; folded ranks get the full result back at the end.
* ``binomial`` (binomial-tree broadcast from rank 0): ``ceil(log2 k)`` steps; senders at multiples
  of ``2D`` send ``N`` to ``+D``, ``D`` halving from ``2^(ceil(log2 k) - 1)`` to 1.
* ``scatter`` (binomial scatter from rank 0): the binomial pairs, each flow carrying only the
  receiver's subtree's share.

An all-gather runs a reduce-scatter schedule backwards (:func:`reverse`), at the same cost.

>>> ring_steps(5)[0]
((0, 2, 0.2), (2, 4, 0.2), (4, 3, 0.2), (3, 1, 0.2), (1, 0, 0.2))
>>> [len(step) for step in halving_steps(5)]
[1, 4, 4, 1]
>>> summarize("ring", 5).max_link_load_fraction_total
0.8
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache

import numpy as np
import numpy.typing as npt

from hwmodel.errors import TopologyError

Flow = tuple[int, int, float]
Step = tuple[Flow, ...]
Schedule = tuple[Step, ...]


def ring_order(k: int) -> tuple[int, ...]:
    """Ranks of a folded ring on a line: evens up, odds down.

    >>> ring_order(6)
    (0, 2, 4, 5, 3, 1)
    """
    return tuple(range(0, k, 2)) + tuple(range(k - 1 - (k % 2 == 1), 0, -2))


@cache
def ring_steps(k: int) -> Schedule:
    """Ring reduce-scatter: ``k - 1`` steps of ``N/k`` to the successor on the folded ring."""
    order = ring_order(k)
    step = tuple((order[i], order[(i + 1) % k], 1.0 / k) for i in range(k)) if k > 1 else ()
    return tuple(step for _ in range(k - 1))


def _survivors(k: int) -> tuple[int, tuple[int, ...]]:
    power = 1 << (k.bit_length() - 1)
    extra = k - power
    return extra, tuple(2 * i for i in range(extra)) + tuple(range(2 * extra, k))


def _butterfly(k: int, whole_vector: bool) -> Schedule:
    if k <= 1:
        return ()
    extra, survivors = _survivors(k)
    steps: list[Step] = []
    if extra:
        steps.append(tuple((2 * i + 1, 2 * i, 1.0) for i in range(extra)))
    power = len(survivors)
    for level in range(power.bit_length() - 1):
        distance = 1 << level
        fraction = 1.0 if whole_vector else 1.0 / (2 << level)
        steps.append(tuple((survivors[a], survivors[a ^ distance], fraction) for a in range(power)))
    if extra:
        steps.append(tuple((2 * i, 2 * i + 1, 1.0 if whole_vector else 1.0 / k) for i in range(extra)))
    return tuple(steps)


@cache
def halving_steps(k: int) -> Schedule:
    """Recursive-halving reduce-scatter (nearest partner first), folding ranks beyond ``2^m``."""
    return _butterfly(k, whole_vector=False)


@cache
def doubling_steps(k: int) -> Schedule:
    """Recursive-doubling all-reduce: the halving pairs, each exchanging the whole vector."""
    return _butterfly(k, whole_vector=True)


def _binomial(k: int, scatter: bool) -> Schedule:
    if k <= 1:
        return ()
    levels = (k - 1).bit_length()
    steps: list[Step] = []
    for level in range(levels):
        distance = 1 << (levels - 1 - level)
        flows = []
        for sender in range(0, k, 2 * distance):
            receiver = sender + distance
            if receiver < k:
                share = (min(receiver + distance, k) - receiver) / k if scatter else 1.0
                flows.append((sender, receiver, share))
        steps.append(tuple(flows))
    return tuple(steps)


@cache
def binomial_steps(k: int) -> Schedule:
    """Binomial-tree broadcast of the whole vector from rank 0."""
    return _binomial(k, scatter=False)


@cache
def scatter_steps(k: int) -> Schedule:
    """Binomial scatter from rank 0: each flow carries the receiving subtree's ``N/k`` shards."""
    return _binomial(k, scatter=True)


def reverse(schedule: Schedule) -> Schedule:
    """The schedule run backwards with every flow reversed (reduce-scatter -> all-gather)."""
    return tuple(tuple((dst, src, fraction) for src, dst, fraction in step) for step in reversed(schedule))


SCHEDULES: dict[str, Callable[[int], Schedule]] = {
    "ring": ring_steps,
    "halving": halving_steps,
    "doubling": doubling_steps,
    "binomial": binomial_steps,
    "scatter": scatter_steps,
}


def schedule(name: str, k: int) -> Schedule:
    """The named schedule for ``k`` ranks; an unknown name is a one-line error."""
    try:
        builder = SCHEDULES[name]
    except KeyError:
        raise TopologyError(f"unknown line schedule {name!r}; known: {', '.join(SCHEDULES)}") from None
    if k < 1:
        raise TopologyError(f"a line needs at least 1 rank, got {k}")
    return builder(k)


@dataclass(frozen=True, kw_only=True)
class ScheduleSummary:
    """What the cost model needs from a schedule, in units of ranks and of ``N``.

    Attributes:
        steps: number of steps (each pays the per-step latency once).
        distance_counts: ``(distance in ranks, steps)`` pairs: the longest flow of each step,
            counted; a step's latency is that of its longest route.
        max_link_load_fraction_total: sum over steps of the bytes (in ``N``) on the busiest
            directed link of the line, counting every flow whose route crosses it (mesh links).
        max_port_load_fraction_total: sum over steps of the most bytes (in ``N``) any one rank
            sends or receives (switch ports: a non-blocking switch is limited by the ports only).
    """

    steps: int
    distance_counts: tuple[tuple[int, int], ...]
    max_link_load_fraction_total: float
    max_port_load_fraction_total: float


def _step_link_loads(step: Step, k: int) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    """Per directed link of the line: (increasing-rank loads on link i->i+1, decreasing on i+1->i)."""
    flows = np.array(step, dtype=np.float64).reshape(-1, 3)
    src, dst, fraction = flows[:, 0].astype(np.int64), flows[:, 1].astype(np.int64), flows[:, 2]
    up = np.zeros(k + 1)
    down = np.zeros(k + 1)
    rising = dst > src
    falling = src > dst
    np.add.at(up, src[rising], fraction[rising])
    np.add.at(up, dst[rising], -fraction[rising])
    np.add.at(down, dst[falling], fraction[falling])
    np.add.at(down, src[falling], -fraction[falling])
    return np.cumsum(up)[: k - 1], np.cumsum(down)[: k - 1]


@cache
def summarize(name: str, k: int) -> ScheduleSummary:
    """Condense the named schedule for ``k`` ranks.

    The summary of a schedule run backwards (:func:`reverse`) is the same: the same distances,
    each link's load moves to the opposite direction, and sends become receives.
    """
    steps = schedule(name, k)
    repeated: dict[int, tuple[Step, int]] = {}
    for step in steps:  # a ring repeats one step object k - 1 times: count it by identity, not by value
        repeated[id(step)] = (step, repeated[id(step)][1] + 1 if id(step) in repeated else 1)
    distinct = [step for step, _ in repeated.values()]
    repeats = np.array([count for _, count in repeated.values()], dtype=np.float64)
    if not distinct:
        return ScheduleSummary(
            steps=0, distance_counts=(), max_link_load_fraction_total=0.0, max_port_load_fraction_total=0.0
        )
    flows = np.array([(index, *flow) for index, step in enumerate(distinct) for flow in step], dtype=np.float64)
    index = flows[:, 0].astype(np.int64)
    src, dst, fraction = flows[:, 1].astype(np.int64), flows[:, 2].astype(np.int64), flows[:, 3]
    count = len(distinct)
    longest = np.zeros(count, dtype=np.int64)
    np.maximum.at(longest, index, np.abs(dst - src))
    distances: Counter[int] = Counter()
    for distance, times in zip(longest.tolist(), repeats.tolist(), strict=True):
        distances[int(distance)] += int(times)
    # Busiest directed link per step: difference arrays along the line, one row per step.
    up = np.zeros((count, k + 1))
    down = np.zeros((count, k + 1))
    rising, falling = dst > src, src > dst
    np.add.at(up, (index[rising], src[rising]), fraction[rising])
    np.add.at(up, (index[rising], dst[rising]), -fraction[rising])
    np.add.at(down, (index[falling], dst[falling]), fraction[falling])
    np.add.at(down, (index[falling], src[falling]), -fraction[falling])
    busiest = np.maximum(
        np.cumsum(up, axis=1)[:, : k - 1].max(axis=1, initial=0.0),
        np.cumsum(down, axis=1)[:, : k - 1].max(axis=1, initial=0.0),
    )
    sent = np.bincount(index * k + src, weights=fraction, minlength=count * k).reshape(count, k)
    received = np.bincount(index * k + dst, weights=fraction, minlength=count * k).reshape(count, k)
    ports = np.maximum(sent.max(axis=1), received.max(axis=1))
    link_total = float(np.dot(repeats, busiest))
    port_total = float(np.dot(repeats, ports))
    return ScheduleSummary(
        steps=len(steps),
        distance_counts=tuple(sorted(distances.items())),
        max_link_load_fraction_total=link_total,
        max_port_load_fraction_total=port_total,
    )


@cache
def directed_link_loads(name: str, k: int, backwards: bool = False) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Total bytes (in ``N``) over the whole schedule on each directed link of a line of ``k`` ranks.

    Returns ``(up, down)``: ``up[i]`` on link ``i -> i+1``, ``down[i]`` on ``i+1 -> i``, each of
    length ``k - 1``. Ranks are adjacent chips (stride 1).

    >>> directed_link_loads("ring", 4)
    ((0.75, 0.75, 0.75), (0.75, 0.75, 0.75))
    """
    steps = schedule(name, k)
    if backwards:
        steps = reverse(steps)
    up_total = np.zeros(max(k - 1, 0))
    down_total = np.zeros(max(k - 1, 0))
    for step in steps:
        up, down = _step_link_loads(step, k)
        up_total += up
        down_total += down
    return tuple(float(x) for x in up_total), tuple(float(x) for x in down_total)

"""How a global batch splits over data-parallel replicas and micro-batches, evenly or not.

A batch of ``b`` samples over ``r`` replicas gives the first ``b mod r`` replicas
``ceil(b / r)`` samples and the rest ``floor(b / r)`` (``numpy.array_split``'s split, and a
distributed sampler's without ``drop_last`` on its last, short batch); a shard of ``s`` samples
over ``m`` micro-batches splits the same way. Since ``ceil(ceil(b / r) / m) = ceil(b / (r m))``
(and likewise for floor), every micro-batch of the step holds one of two sizes, ``q`` or
``q + 1`` with ``q = floor(b / (r m))``, and ``b mod (r m)`` of them hold the larger.

>>> split = split_batch(64, replicas=25)
>>> split.largest_shard, split.largest_shard_replicas, split.smallest_shard, split.smallest_shard_replicas
(3, 14, 2, 11)
>>> round(split.idle_fraction, 6)
0.146667
>>> split_batch(16, replicas=25).idle_replicas
9
>>> split_batch(100, replicas=25) is None
True
"""

from __future__ import annotations

from hwmodel.errors import PlanError
from hwmodel.step.sections import BatchSplit


def shard_sizes(samples: int, parts: int) -> tuple[tuple[int, int], tuple[int, int]]:
    """((larger size, how many), (smaller size, how many)) of ``samples`` split into ``parts``.

    >>> shard_sizes(64, 25)
    ((3, 14), (2, 11))
    >>> shard_sizes(50, 25)
    ((2, 0), (2, 25))
    """
    smaller, larger_count = divmod(samples, parts)
    return (smaller + (1 if larger_count else 0), larger_count), (smaller, parts - larger_count)


def split_batch(global_batch: int, replicas: int, micro_batches: int = 1) -> BatchSplit | None:
    """The split of ``global_batch`` over ``replicas x micro_batches``; None when it is even.

    A replica's shard must fill its micro-batches: more micro-batches than samples in the largest
    shard would leave a pipeline slot with nothing to run, and is a one-line error.
    """
    if global_batch < 1:
        raise PlanError(f"global batch must be >= 1 sample, got {global_batch}")
    slots = replicas * micro_batches
    if global_batch % slots == 0:
        return None
    (largest_shard, largest_count), (smallest_shard, smallest_count) = shard_sizes(global_batch, replicas)
    if micro_batches > largest_shard:
        raise PlanError(
            f"global batch {global_batch} over {replicas} replicas leaves at most {largest_shard} samples "
            f"per replica, too few for {micro_batches} micro-batches; use at most {largest_shard} micro-batches"
        )
    (largest_micro, largest_micro_count), (smallest_micro, smallest_micro_count) = shard_sizes(global_batch, slots)
    if largest_count == 0:  # even over replicas, ragged over micro-batches
        largest_count, smallest_count = smallest_count, 0
    return BatchSplit(
        replicas=replicas,
        micro_batches=micro_batches,
        largest_shard=largest_shard,
        largest_shard_replicas=largest_count,
        smallest_shard=smallest_shard,
        smallest_shard_replicas=smallest_count,
        idle_replicas=smallest_count if smallest_shard == 0 else 0,
        largest_micro_batch=largest_micro,
        largest_micro_batch_count=largest_micro_count,
        smallest_micro_batch=smallest_micro,
        smallest_micro_batch_count=smallest_micro_count,
        idle_fraction=1.0 - global_batch / (slots * largest_micro),
    )

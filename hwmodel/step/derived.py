"""An explicit cache of what is derived from an immutable input (a workload): arrays, masks, orders.

A :class:`~hwmodel.step.workload.Workload` never changes, so what is computed from it (its op
arrays, its stage boundaries, its gradient buckets) can be kept for as long as the workload lives.
Hashing a workload of thousands of ops on every call would cost more than the simulation, so
entries are keyed by the object's identity and dropped when it is garbage-collected.

>>> from hwmodel.step.workload import Workload
>>> cache = DerivedCache()
>>> workload = Workload(name="w", batch_size=1, ops=())
>>> cache.get(workload, "answer", lambda: 42), cache.get(workload, "answer", lambda: 0)
(42, 42)
>>> len(cache)
1
>>> del workload
>>> len(cache)
0
"""

from __future__ import annotations

import weakref
from collections.abc import Callable, Hashable
from typing import Any, TypeVar

T = TypeVar("T")


class DerivedCache:
    """Values derived from an object, keyed by (the object's identity, a key); see the module docstring."""

    def __init__(self) -> None:
        self._entries: dict[int, dict[Hashable, Any]] = {}

    def get(self, owner: object, key: Hashable, build: Callable[[], T]) -> T:
        """The value of ``key`` for ``owner``, built by ``build()`` the first time it is asked for."""
        try:
            value: T = self._entries[id(owner)][key]
        except KeyError:
            entries = self._entries.get(id(owner))
            if entries is None:
                entries = self._entries[id(owner)] = {}
                weakref.finalize(owner, self._entries.pop, id(owner), None)
            value = entries[key] = build()
        return value

    def __len__(self) -> int:
        return len(self._entries)


WORKLOAD_CACHE = DerivedCache()
"""The cache of what the simulator derives from workloads; pass another to keep one apart."""

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

Entries are dropped oldest first beyond ``max_keys_per_owner`` values per owner:

>>> small = DerivedCache(max_keys_per_owner=2)
>>> workload = Workload(name="w", batch_size=1, ops=())
>>> [small.get(workload, key, lambda: key) for key in "abc"], small.get(workload, "a", lambda: "again")
(['a', 'b', 'c'], 'again')
"""

from __future__ import annotations

import weakref
from collections.abc import Callable, Hashable
from typing import Any, TypeVar

T = TypeVar("T")


class DerivedCache:
    """Values derived from an object, keyed by (the object's identity, a key); see the module docstring.

    Each owner keeps at most ``max_keys_per_owner`` values (the oldest built is dropped first), so
    a long sweep over systems and plans cannot grow one workload's entries without bound.
    """

    def __init__(self, max_keys_per_owner: int = 4096) -> None:
        self._entries: dict[int, dict[Hashable, Any]] = {}
        self.max_keys_per_owner = max_keys_per_owner

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
            if len(entries) > self.max_keys_per_owner:
                del entries[next(iter(entries))]
        return value

    def __len__(self) -> int:
        return len(self._entries)


WORKLOAD_CACHE = DerivedCache()
"""The cache of what the simulator derives from workloads; pass another to keep one apart."""

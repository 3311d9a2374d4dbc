"""What a workload is apart from its sizes, so the workloads of one step at every batch share it.

A step captured (or derived) at several batch sizes runs the same ops in the same order, reading
and writing the same tensors; only FLOPs, bytes, element counts and GEMM shapes change with the
batch. What the simulator derives from the structure alone (name tables, op classes, phases,
tensor lifetimes, which op reads which tensor) is built once per structure and shared by every
workload of that structure. Structures are compared by value: the ops' names, phases, modules,
dtypes and tensor ids, and the tensors' ids, kinds, dtypes and lifetimes.

The cache keeps the :data:`MAX_STRUCTURES` structures used last, each with every value built from
it.

>>> from hwmodel.step.workload import OpRecord, Workload
>>> def step(batch: int) -> Workload:
...     op = OpRecord(name="aten.relu.default", phase="forward", module="m", flops=batch, flop_source="formula",
...                   bytes_read=4 * batch, bytes_written=4 * batch, output_elements=batch, dtype="float32")
...     return Workload(name="w", batch_size=batch, ops=(op,))
>>> cache = StructureCache()
>>> cache.get(step(1), "names", lambda: ["built"]) is cache.get(step(8), "names", lambda: ["again"])
True
"""

from __future__ import annotations

import itertools
from collections import OrderedDict
from collections.abc import Callable, Hashable
from operator import attrgetter
from typing import Any, TypeVar

from hwmodel.step.derived import WORKLOAD_CACHE
from hwmodel.step.workload import Workload

T = TypeVar("T")
MAX_STRUCTURES = 16
"""Structures kept (a plan search meets one per network; a suite a few)."""


OP_FIELDS = ("name", "phase", "module", "dtype", "input_ids", "output_ids")
TENSOR_FIELDS = ("tensor_id", "kind", "dtype", "first_op", "last_op")


class StructureKey:
    """The value that identifies a workload's structure: a column per op and tensor field, hashed
    once (a tuple hashes its items on every lookup)."""

    __slots__ = ("_hash", "columns")

    def __init__(self, workload: Workload) -> None:
        ops, tensors = workload.ops, workload.tensors
        self.columns = tuple(tuple(map(attrgetter(name), ops)) for name in OP_FIELDS) + tuple(
            tuple(map(attrgetter(name), tensors)) for name in TENSOR_FIELDS
        )
        self._hash = hash(self.columns)

    def __hash__(self) -> int:
        return self._hash

    def __eq__(self, other: object) -> bool:
        return isinstance(other, StructureKey) and self._hash == other._hash and self.columns == other.columns


class StructureCache:
    """Values built from a workload's structure, shared by the workloads of equal structure.

    Each structure is numbered when first met (its key is hashed and compared once per workload,
    the number kept in the workload cache); values are kept per number.
    """

    def __init__(self, max_structures: int = MAX_STRUCTURES) -> None:
        self._numbers: dict[StructureKey, int] = {}
        self._keys: dict[int, StructureKey] = {}
        self._entries: OrderedDict[int, dict[Hashable, Any]] = OrderedDict()
        self._counter = itertools.count()
        self.max_structures = max_structures

    def number(self, workload: Workload) -> int:
        """The number of ``workload``'s structure (kept per workload)."""
        return WORKLOAD_CACHE.get(workload, ("structure", id(self)), lambda: self._register(StructureKey(workload)))

    def share(self, workload: Workload, like: Workload) -> None:
        """Give ``workload`` the structure of ``like`` without comparing them: for a caller that
        made ``workload`` from ``like``'s structure (a derivation at another batch, which checked
        it), so that the key of every workload it derives is not built and hashed again."""
        number = self.number(like)
        WORKLOAD_CACHE.get(workload, ("structure", id(self)), lambda: number)

    def _register(self, key: StructureKey) -> int:
        number = self._numbers.get(key)
        if number is None:
            number = self._numbers[key] = next(self._counter)
            self._keys[number] = key
        return number

    def get(self, workload: Workload, key: Hashable, build: Callable[[], T]) -> T:
        """The value of ``key`` for ``workload``'s structure, built by ``build()`` the first time."""
        number = self.number(workload)
        entries = self._entries.get(number)
        if entries is None:
            entries = self._entries[number] = {}
            if len(self._entries) > self.max_structures:
                dropped, _ = self._entries.popitem(last=False)
                dropped_key = self._keys.pop(dropped, None)
                if dropped_key is not None:
                    del self._numbers[dropped_key]
        else:
            self._entries.move_to_end(number)
        try:
            value: T = entries[key]
        except KeyError:
            value = entries[key] = build()
        return value

    def __len__(self) -> int:
        return len(self._entries)


STRUCTURE_CACHE = StructureCache()
"""The cache of what the simulator derives from workload structures."""

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
from typing import Any, TypeVar

from hwmodel.step.derived import WORKLOAD_CACHE
from hwmodel.step.workload import Workload

T = TypeVar("T")
MAX_STRUCTURES = 16
"""Structures kept (a plan search meets one per network; a suite a few)."""


def structure_key(workload: Workload) -> tuple[Any, ...]:
    """The value that identifies ``workload``'s structure."""
    ops = tuple([(op.name, op.phase, op.module, op.dtype, op.input_ids, op.output_ids) for op in workload.ops])
    tensors = tuple([(t.tensor_id, t.kind, t.dtype, t.first_op, t.last_op) for t in workload.tensors])
    return ops, tensors


class StructureCache:
    """Values built from a workload's structure, shared by the workloads of equal structure.

    Each structure is numbered when first met (its key is hashed and compared once per workload,
    the number kept in the workload cache); values are kept per number.
    """

    def __init__(self, max_structures: int = MAX_STRUCTURES) -> None:
        self._numbers: dict[tuple[Any, ...], int] = {}
        self._keys: dict[int, tuple[Any, ...]] = {}
        self._entries: OrderedDict[int, dict[Hashable, Any]] = OrderedDict()
        self._counter = itertools.count()
        self.max_structures = max_structures

    def number(self, workload: Workload) -> int:
        """The number of ``workload``'s structure (kept per workload)."""
        return WORKLOAD_CACHE.get(workload, ("structure", id(self)), lambda: self._register(structure_key(workload)))

    def _register(self, key: tuple[Any, ...]) -> int:
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
                self._numbers.pop(self._keys.pop(dropped, ()), None)
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

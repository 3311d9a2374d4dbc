"""The dispatch-level recorder: one :class:`hwmodel.step.workload.OpRecord` per aten op that does work.

A ``TorchDispatchMode`` sees every aten op after autograd, so forward, backward and the optimizer's
ops all pass through :meth:`Recorder.record`. Views move no data and are not recorded; copies are.
Allocations left uninitialised (``empty``...) and ``_unsafe_view`` (its input's storage under a new
shape) are recorded, for the storages they create or share, with no bytes moved
(:data:`~pytest_dojo.capture.shapes.NO_TRAFFIC_OPS`).
The owning module is the innermost one ``torch.utils.module_tracker.ModuleTracker`` reports
(``"Global"`` outside any module).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.utils._pytree as pytree
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils.module_tracker import ModuleTracker

from hwmodel import OpRecord
from hwmodel.step.workload import ROOT_MODULE
from pytest_dojo.capture.formulas import check_same_dtype, count_flops, gemms, nbytes
from pytest_dojo.capture.shapes import NO_TRAFFIC_OPS, implicit_gemms, rows
from pytest_dojo.capture.storage import Storage, StorageTable, dtype_name

IGNORED_OPS = frozenset(
    {
        "prim.device.default",
        "aten._local_scalar_dense.default",
        "aten.lift_fresh.default",
        "profiler._record_function_enter_new.default",
        "profiler._record_function_exit._RecordFunction",
    }
)
"""Bookkeeping dispatches that do no work on the device."""


@dataclass
class Recorder:
    """State of one capture: the ops so far, every storage seen and the current phase."""

    tracker: ModuleTracker
    phase: str = "forward"
    ops: list[OpRecord] = field(default_factory=list)
    table: StorageTable = field(default_factory=StorageTable)

    def storage_of(self, tensor: torch.Tensor, kind: str = "activation") -> Storage:
        return self.table.of(tensor, kind, len(self.ops))

    def module(self) -> str:
        parents = self.tracker.parents
        if not parents:
            return ROOT_MODULE
        return max(parents, key=lambda name: (name.count("."), name))

    def _touch(self, tensors: Sequence[torch.Tensor], index: int, *, written: bool) -> tuple[int, ...]:
        ids = []
        for tensor in tensors:
            storage = self.storage_of(tensor)
            storage.last_op = index
            if written:
                storage.last_write_op = index
            ids.append(storage.tensor_id)
        return tuple(ids)

    def record(self, func: torch._ops.OpOverload, args: tuple[Any, ...], kwargs: dict[str, Any], out: Any) -> None:
        name = str(func)
        if name in IGNORED_OPS or func.is_view:
            return
        inputs = unique_tensors(pytree.tree_leaves((args, kwargs)))
        outputs = unique_tensors([*pytree.tree_leaves(out), *mutated_arguments(func, args, kwargs)])
        index = len(self.ops)
        input_ids = self._touch(inputs, index, written=False)
        output_ids = self._touch(outputs, index, written=True)
        flops, source = count_flops(func, args, kwargs, out, outputs)
        everything = [*outputs, *inputs]
        reference = next((t for t in everything if t.is_floating_point()), everything[0] if everything else None)
        moves_data = name not in NO_TRAFFIC_OPS
        row_count, row_elements = rows(func, args, kwargs)
        self.ops.append(
            OpRecord(
                name=name,
                phase=self.phase,
                module=self.module(),
                flops=flops,
                flop_source=source,
                bytes_read=sum(nbytes(t) for t in inputs) if moves_data else 0,
                bytes_written=sum(nbytes(t) for t in outputs) if moves_data else 0,
                output_elements=sum(t.numel() for t in outputs),
                dtype=dtype_name(reference.dtype) if reference is not None else "float32",
                input_ids=input_ids,
                output_ids=output_ids,
                gemms=gemms(func, args, kwargs, out),
                implicit_gemms=implicit_gemms(func, args, kwargs, out),
                rows=row_count,
                row_elements=row_elements,
            )
        )

    def last_backward_write(self, storage: Storage) -> int:
        """The last backward op that wrote a gradient: the op after which it may be all-reduced."""
        if storage.first_op < 0 or storage.last_write_op < 0:
            return -1
        index = storage.last_write_op
        while index >= 0 and self.ops[index].phase == "optimizer":
            index -= 1
        while index >= 0 and storage.tensor_id not in self.ops[index].output_ids:
            index -= 1
        return index


def unique_tensors(leaves: Sequence[Any]) -> list[torch.Tensor]:
    """The tensors among ``leaves``, each once, in order."""
    seen: set[int] = set()
    unique = []
    for leaf in leaves:
        if isinstance(leaf, torch.Tensor) and id(leaf) not in seen:
            seen.add(id(leaf))
            unique.append(leaf)
    return unique


def mutated_arguments(func: torch._ops.OpOverload, args: tuple[Any, ...], kwargs: dict[str, Any]) -> list[Any]:
    """Tensors an op writes in place (``add_``, ``_foreach_mul_``...): its schema marks them."""
    mutated: list[Any] = []
    for position, argument in enumerate(func._schema.arguments):
        if argument.alias_info is None or not argument.alias_info.is_write:
            continue
        value = args[position] if position < len(args) else kwargs.get(argument.name)
        mutated.extend(pytree.tree_leaves(value))
    return mutated


class DispatchRecorder(TorchDispatchMode):  # type: ignore[no-untyped-call]
    """Runs each op (on fake tensors), then hands it to the :class:`Recorder`."""

    def __init__(self, recorder: Recorder) -> None:
        super().__init__()  # type: ignore[no-untyped-call]
        self.recorder = recorder

    def __torch_dispatch__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        kwargs = kwargs or {}
        check_same_dtype(func, args)
        out = func(*args, **kwargs)
        self.recorder.record(func, args, kwargs, out)
        return out

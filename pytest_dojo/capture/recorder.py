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

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch._subclasses.fake_tensor import FakeTensor
from torch.utils._mode_utils import no_dispatch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils.module_tracker import ModuleTracker

from hwmodel import OpRecord, ParameterRecord, TensorRecord
from hwmodel.step.workload import ROOT_MODULE
from pytest_dojo.capture.formulas import check_same_dtype, count_flops, gemms, nbytes
from pytest_dojo.capture.shapes import NO_TRAFFIC_OPS, conv_window, implicit_gemms, rows
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


@dataclass(frozen=True)
class OpInfo:
    """What the recorder needs of an op overload, read once from its schema and tags."""

    name: str
    recorded: bool
    """False for views and :data:`IGNORED_OPS`."""
    mutated: tuple[tuple[int, str], ...]
    """``(position, name)`` of the arguments the op writes in place (its schema marks them)."""
    skippable: bool
    """An in-place ``_foreach_`` op that returns nothing: its record needs its arguments only."""

    @classmethod
    def of(cls, func: torch._ops.OpOverload) -> OpInfo:
        info = _OP_INFO.get(func)
        if info is None:
            name = str(func)
            schema = func._schema
            mutated = tuple(
                (position, argument.name)
                for position, argument in enumerate(schema.arguments)
                if argument.alias_info is not None and argument.alias_info.is_write
            )
            info = cls(
                name=name,
                recorded=name not in IGNORED_OPS and not func.is_view,
                mutated=mutated,
                skippable=(
                    func._overloadpacket.__name__.startswith("_foreach_") and bool(mutated) and not schema.returns
                ),
            )
            _OP_INFO[func] = info
        return info


_OP_INFO: dict[Any, OpInfo] = {}


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
            storage = self.table.of(tensor, "activation", index)
            storage.last_op = index
            if written:
                storage.last_write_op = index
            ids.append(storage.tensor_id)
        return tuple(ids)

    def hold(self, value: Any) -> None:
        """Keep the storages of every tensor ``value`` holds alive through the last op so far: what
        a forward pass returns lives until its caller drops it (an inference step's logits and the
        key/value cache a causal language model returns)."""
        last = len(self.ops) - 1
        for tensor in reachable_tensors(value):
            if self.table.has(tensor):
                storage = self.table.of(tensor, "activation", last)
                storage.last_op = max(storage.last_op, last)

    def record(self, func: torch._ops.OpOverload, args: tuple[Any, ...], kwargs: dict[str, Any], out: Any) -> None:
        info = OpInfo.of(func)
        if not info.recorded:
            return
        inputs = unique_tensors(tensor_leaves((args, kwargs)))
        outputs = unique_tensors([*tensor_leaves(out), *mutated_arguments(info, args, kwargs)])
        index = len(self.ops)
        input_ids = self._touch(inputs, index, written=False)
        output_ids = self._touch(outputs, index, written=True)
        flops, source = count_flops(func, args, kwargs, out, outputs)
        reference = next((t for t in outputs if t.is_floating_point()), None)
        if reference is None:
            reference = next((t for t in inputs if t.is_floating_point()), None)
        if reference is None and (outputs or inputs):
            reference = (outputs or inputs)[0]
        moves_data = info.name not in NO_TRAFFIC_OPS
        row_count, row_elements = rows(func, args, kwargs)
        self.ops.append(
            OpRecord(
                name=info.name,
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
                conv_window=conv_window(func, args, kwargs, out),
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


@dataclass(frozen=True)
class OptimizerTail:
    """The optimizer phase of one recorded step, and the forward and backward it followed.

    The optimizer step sees parameters, gradients and its own state, never the batch. Another
    batch's forward and backward that record the same ops on the same tensor ids, and see every
    gradient, are followed by the same optimizer records: :meth:`splice` appends these to them.
    """

    prefix: tuple[tuple[str, tuple[int, ...], tuple[int, ...]], ...]
    """``(name, input_ids, output_ids)`` of each forward and backward op."""
    storages_before: int
    """Storages seen before the optimizer phase: those the optimizer's records may refer to."""
    ops: tuple[OpRecord, ...]
    tensors: tuple[TensorRecord, ...]
    """The whole tensor table of the recorded step (storages the optimizer made come last)."""

    @classmethod
    def of(cls, recorder: Recorder) -> OptimizerTail:
        """The tail of a step recorded to its end (optimizer included)."""
        start = next((i for i, op in enumerate(recorder.ops) if op.phase == "optimizer"), len(recorder.ops))
        tensors = recorder.table.records()
        return cls(
            prefix=_signature(recorder.ops[:start]),
            storages_before=sum(1 for t in tensors if t.first_op < start),
            ops=tuple(recorder.ops[start:]),
            tensors=tensors,
        )

    def fits(self, storages: int, gradients_recorded: bool, ops: Sequence[OpRecord]) -> bool:
        """Whether a step stopped after backward, with ``storages`` storages seen and ``ops``
        recorded (every gradient among the storages, ``gradients_recorded``), touched what this
        tail's step touched."""
        return storages == self.storages_before and gradients_recorded and _signature(ops) == self.prefix

    def splice(
        self, ops: tuple[OpRecord, ...], tensors: tuple[TensorRecord, ...]
    ) -> tuple[tuple[OpRecord, ...], tuple[TensorRecord, ...]]:
        """The ops and tensor table of a step stopped after backward, followed by this tail's
        optimizer step."""
        start = len(self.prefix)
        spliced = list(tensors)
        for index, record in enumerate(spliced):
            if self.tensors[index].last_op >= start:
                spliced[index] = dataclasses.replace(record, last_op=self.tensors[index].last_op)
        return (*ops, *self.ops), (*spliced, *self.tensors[self.storages_before :])


@dataclass(frozen=True)
class BeforeOptimizer:
    """A step at ``batch_size`` recorded up to its optimizer phase, in plain records: what a forked
    child sends back, for the process that has the optimizer's records to finish
    (:meth:`OptimizerTail.fits` reads ``storages``, the storages seen after backward, and
    ``gradients_recorded``, whether every gradient was among them)."""

    batch_size: int
    ops: tuple[OpRecord, ...]
    tensors: tuple[TensorRecord, ...]
    parameters: tuple[ParameterRecord, ...]
    storages: int
    gradients_recorded: bool


def _signature(ops: Sequence[OpRecord]) -> tuple[tuple[str, tuple[int, ...], tuple[int, ...]], ...]:
    return tuple((op.name, op.input_ids, op.output_ids) for op in ops)


def tensor_leaves(tree: Any) -> list[Any]:
    """The leaves of nested tuples, lists and dicts, in ``torch.utils._pytree``'s order: all an aten
    op's arguments and results are made of (a faster walk than the general pytree one)."""
    if isinstance(tree, torch.Tensor):
        return [tree]
    leaves: list[Any] = []
    _collect(tree, leaves)
    return leaves


def _collect(tree: Any, leaves: list[Any]) -> None:
    if isinstance(tree, (tuple, list)):
        for item in tree:
            _collect(item, leaves)
    elif isinstance(tree, dict):
        for item in tree.values():
            _collect(item, leaves)
    elif tree is not None:
        leaves.append(tree)


HELD_DEPTH = 6
"""How deep :func:`reachable_tensors` looks into returned objects (a transformers ``ModelOutput``
holds a ``DynamicCache`` that holds its layers' key and value tensors: four levels)."""


def reachable_tensors(value: Any, depth: int = HELD_DEPTH) -> list[torch.Tensor]:
    """The tensors ``value`` holds: in tuples, lists and dicts, and in the attributes of other
    objects (a model output's cache), each object visited once, at most ``depth`` levels down."""
    found: list[torch.Tensor] = []
    seen: set[int] = set()

    def visit(item: Any, left: int) -> None:
        if id(item) in seen or left < 0 or isinstance(item, (str, bytes, int, float, bool, torch.nn.Module)):
            return
        seen.add(id(item))
        if isinstance(item, torch.Tensor):
            found.append(item)
        elif isinstance(item, (tuple, list)):
            for element in item:
                visit(element, left - 1)
        elif isinstance(item, dict):
            for element in item.values():
                visit(element, left - 1)
        elif hasattr(item, "__dict__"):
            for element in vars(item).values():
                visit(element, left - 1)

    visit(value, depth)
    return found


def unique_tensors(leaves: Sequence[Any]) -> list[torch.Tensor]:
    """The tensors among ``leaves``, each once, in order."""
    seen: set[int] = set()
    unique = []
    for leaf in leaves:
        if isinstance(leaf, torch.Tensor) and id(leaf) not in seen:
            seen.add(id(leaf))
            unique.append(leaf)
    return unique


def mutated_arguments(info: OpInfo, args: tuple[Any, ...], kwargs: dict[str, Any]) -> list[Any]:
    """Tensors an op writes in place (``add_``, ``_foreach_mul_``...)."""
    mutated: list[Any] = []
    for position, name in info.mutated:
        value = args[position] if position < len(args) else kwargs.get(name)
        mutated.extend(tensor_leaves(value))
    return mutated


class DispatchRecorder(TorchDispatchMode):  # type: ignore[no-untyped-call]
    """Runs each op (on fake tensors), then hands it to the :class:`Recorder`."""

    def __init__(self, recorder: Recorder) -> None:
        super().__init__()  # type: ignore[no-untyped-call]
        self.recorder = recorder

    def __torch_dispatch__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        if func is _DEVICE and type(args[0]) is FakeTensor and not args[0].fake_mode.in_kernel_invocation:
            # A fake tensor's device, as FakeTensorMode answers it: two of every three dispatches of
            # a step are this query (autograd and modules asking where a tensor lives).
            return args[0].fake_device
        kwargs = kwargs or {}
        if func is _LOCAL_SCALAR_DENSE and _constant_of(args[0]) is not None:
            # .item() of a constant (an optimizer's step count): FakeTensorMode would compute the
            # same number from the same constant, after a dispatch-cache attempt it always bypasses.
            with no_dispatch():
                return func(_constant_of(args[0]))
        check_same_dtype(func, args)
        if self.recorder.phase == "optimizer" and _runs_for_nothing(func, args, kwargs):
            out = None
        else:
            out = func(*args, **kwargs)
        self.recorder.record(func, args, kwargs, out)
        return out


_LOCAL_SCALAR_DENSE = torch.ops.aten._local_scalar_dense.default
_DEVICE = torch.ops.prim.device.default


def _constant_of(tensor: Any) -> torch.Tensor | None:
    """The real value FakeTensorMode keeps for a fake tensor made from a literal (None otherwise),
    where FakeTensorMode itself would compute on it: a fake tensor with static sizes."""
    if not isinstance(tensor, FakeTensor) or tensor._has_symbolic_sizes_strides:
        return None
    constant: torch.Tensor | None = tensor.constant
    return constant


def _runs_for_nothing(func: torch._ops.OpOverload, args: tuple[Any, ...], kwargs: dict[str, Any]) -> bool:
    """Whether running ``func`` on fake tensors would change nothing the capture sees.

    An optimizer's in-place ``_foreach_`` update returns nothing and changes no shape: its record
    comes from its arguments alone, and on fake tensors it computes nothing. Running it still costs
    FakeTensor's cache key over every tensor of its lists, or, on a miss, one meta kernel per
    tensor. Writes to a tensor FakeTensorMode tracks as a constant (a step counter read back with
    ``.item()``) do run, so the values Python code reads stay those of a real run.
    """
    info = OpInfo.of(func)
    if not info.skippable:
        return False
    return not any(getattr(t, "constant", None) is not None for t in mutated_arguments(info, args, kwargs))

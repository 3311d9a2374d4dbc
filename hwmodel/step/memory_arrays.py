"""The per-workload columns of the memory model: tensor lifetimes and bytes, by op and in total.

What is built from the workload's structure (which tensors are activations and when they live,
which op first reads each parameter, which op writes which tensor) is shared by the workloads of
one step at every batch (:mod:`hwmodel.step.structure`); the bytes are read per workload. Bytes
are whole numbers, so every sum here is exact in any order.
"""

from __future__ import annotations

from dataclasses import dataclass
from operator import attrgetter

import numpy as np
import numpy.typing as npt

from hwmodel.ops.classes.registry import MATRIX_CLASSES, op_class, op_classes
from hwmodel.step.derived import WORKLOAD_CACHE, DerivedCache
from hwmodel.step.structure import STRUCTURE_CACHE
from hwmodel.step.workload import PHASES, Workload

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]
BACKWARD = PHASES.index("backward")


@dataclass(frozen=True, eq=False)
class MemoryArrays:
    """Per-workload arrays for the memory model, built once and cached on the workload.

    Attributes:
        activation_first / activation_last: lifetime (op indices) of each input or activation.
        activation_nbytes: its captured size; ``activation_dtype_index`` indexes ``dtype_names``.
        saved_bytes_by_op: bytes of activations each forward op writes that a backward op reads
            (what a pipeline stage keeps per micro-batch in flight).
        parameter_bytes_by_op: captured parameter bytes first read by each op (which layer holds
            which weights).
        matrix_parameter_bytes: parameter bytes read by forward matrix ops (split by tensor
            parallelism); ``parameter_bytes``: every parameter's bytes.
        activation_output_bytes_by_op: captured bytes of the activations each op writes (not
            gradients of parameters): what a tensor-parallel op gathers or scatters.
        smallest_output_bytes_by_op: captured bytes of each op's smallest output (a batch norm's
            per-channel statistics).
    """

    activation_first: IntArray
    activation_last: IntArray
    activation_nbytes: FloatArray
    activation_dtype_index: IntArray
    dtype_names: tuple[str, ...]
    saved_bytes_by_op: FloatArray
    parameter_bytes_by_op: FloatArray
    matrix_parameter_bytes: float
    parameter_bytes: float
    optimizer_state_bytes: float
    buffer_bytes: float
    parameter_count: int
    activation_output_bytes_by_op: FloatArray
    smallest_output_bytes_by_op: FloatArray


@dataclass(frozen=True, eq=False)
class TensorStructure:
    """Which tensors (by position in ``workload.tensors``) each memory column reads, and where.

    Attributes:
        live / live_first / live_last / live_dtype_index / dtype_names: inputs and activations
            with their lifetimes (op indices) and interned dtypes.
        saved / saved_op: activations a forward op writes and a backward op reads, and that op.
        parameters: each parameter once (its last record); ``matrix_parameters`` those forward
            matrix ops read; ``first_reader_op`` / ``first_reader_tensor``: the op that first reads
            each parameter.
        optimizer_state / buffers: every tensor of those kinds.
        output_op / output_tensor / output_is_activation: each recorded output of each op.
    """

    live: IntArray
    live_first: IntArray
    live_last: IntArray
    live_dtype_index: IntArray
    dtype_names: tuple[str, ...]
    saved: IntArray
    saved_op: IntArray
    parameters: IntArray
    matrix_parameters: IntArray
    first_reader_op: IntArray
    first_reader_tensor: IntArray
    optimizer_state: IntArray
    buffers: IntArray
    output_op: IntArray
    output_tensor: IntArray
    output_is_activation: npt.NDArray[np.bool_]


def memory_arrays(workload: Workload, cache: DerivedCache = WORKLOAD_CACHE) -> MemoryArrays:
    """The memory arrays of ``workload``, kept in ``cache`` for as long as the workload lives."""
    return cache.get(workload, ("memory_arrays", op_classes().version), lambda: _memory_arrays(workload))


def tensor_structure(workload: Workload) -> TensorStructure:
    """The :class:`TensorStructure` of ``workload``, shared by the workloads of its structure."""
    key = ("tensor_structure", op_classes().version)
    return STRUCTURE_CACHE.get(workload, key, lambda: _tensor_structure(workload))


def _positions(values: list[int]) -> IntArray:
    return np.asarray(values, dtype=np.int64).reshape(len(values))


def _live_and_saved(workload: Workload) -> dict[str, list[int]]:
    """Positions of the live tensors (with lifetimes and dtype indices) and of the saved ones."""
    count = len(workload.ops)
    phase_of = [PHASES.index(op.phase) for op in workload.ops]
    columns: dict[str, list[int]] = {name: [] for name in ("live", "first", "last", "dtype", "saved", "saved_op")}
    dtypes: dict[str, int] = {}
    for position, tensor in enumerate(workload.tensors):
        if tensor.kind not in ("activation", "input"):
            continue
        first = max(tensor.first_op, 0)
        columns["live"].append(position)
        columns["first"].append(first)
        columns["last"].append(max(tensor.last_op, first))
        columns["dtype"].append(dtypes.setdefault(tensor.dtype, len(dtypes)))
        if (
            tensor.kind == "activation"
            and 0 <= tensor.first_op < count
            and 0 <= tensor.last_op < count
            and phase_of[tensor.first_op] == 0
            and phase_of[tensor.last_op] == BACKWARD
        ):
            columns["saved"].append(position)
            columns["saved_op"].append(tensor.first_op)
    columns["dtype_names"] = list(dtypes)  # type: ignore[arg-type]
    return columns


def _reads_and_writes(workload: Workload) -> dict[str, list[int]]:
    """Positions of each op's recorded outputs, of the op first reading each parameter, and of the
    parameters forward matrix ops read (a tensor id recorded twice: its last record)."""
    position_of = {tensor.tensor_id: position for position, tensor in enumerate(workload.tensors)}
    parameter_of = {t.tensor_id: position for position, t in enumerate(workload.tensors) if t.kind == "parameter"}
    columns: dict[str, list[int]] = {name: [] for name in ("out_op", "out", "out_activation", "read_op", "read")}
    columns["parameters"] = list(parameter_of.values())
    seen: set[int] = set()
    matrix: dict[int, int] = {}
    for index, op in enumerate(workload.ops):
        for tensor_id in op.output_ids:
            position = position_of.get(tensor_id)
            if position is not None:
                columns["out_op"].append(index)
                columns["out"].append(position)
                columns["out_activation"].append(int(workload.tensors[position].kind == "activation"))
        forward_matrix = op.phase == "forward" and op_class(op.name) in MATRIX_CLASSES
        for tensor_id in op.input_ids:
            position = parameter_of.get(tensor_id)
            if position is None:
                continue
            if tensor_id not in seen:
                seen.add(tensor_id)
                columns["read_op"].append(index)
                columns["read"].append(position)
            if forward_matrix:
                matrix.setdefault(tensor_id, position)
    columns["matrix"] = list(matrix.values())
    return columns


def _tensor_structure(workload: Workload) -> TensorStructure:
    kinds = [tensor.kind for tensor in workload.tensors]
    live = _live_and_saved(workload)
    access = _reads_and_writes(workload)
    structure = TensorStructure(
        live=_positions(live["live"]),
        live_first=_positions(live["first"]),
        live_last=_positions(live["last"]),
        live_dtype_index=_positions(live["dtype"]),
        dtype_names=tuple(live["dtype_names"]),  # type: ignore[arg-type]
        saved=_positions(live["saved"]),
        saved_op=_positions(live["saved_op"]),
        parameters=_positions(access["parameters"]),
        matrix_parameters=_positions(access["matrix"]),
        first_reader_op=_positions(access["read_op"]),
        first_reader_tensor=_positions(access["read"]),
        optimizer_state=_positions([p for p, kind in enumerate(kinds) if kind == "optimizer_state"]),
        buffers=_positions([p for p, kind in enumerate(kinds) if kind == "buffer"]),
        output_op=_positions(access["out_op"]),
        output_tensor=_positions(access["out"]),
        output_is_activation=np.asarray(access["out_activation"], dtype=np.bool_).reshape(len(access["out"])),
    )
    for values in vars(structure).values():
        if isinstance(values, np.ndarray):
            values.flags.writeable = False
    return structure


def _sums(op: IntArray, nbytes: FloatArray, count: int) -> FloatArray:
    """Bytes per op (``op`` of each value), over ``count`` ops."""
    return np.asarray(np.bincount(op, weights=nbytes, minlength=count), dtype=np.float64)


def _memory_arrays(workload: Workload) -> MemoryArrays:
    count = len(workload.ops)
    structure = tensor_structure(workload)
    nbytes = np.fromiter(map(attrgetter("nbytes"), workload.tensors), dtype=np.float64, count=len(workload.tensors))
    output_bytes = nbytes[structure.output_tensor]
    smallest = np.full(count, np.inf)
    np.minimum.at(smallest, structure.output_op, output_bytes)
    activation = structure.output_is_activation
    return MemoryArrays(
        activation_first=structure.live_first,
        activation_last=structure.live_last,
        activation_nbytes=nbytes[structure.live],
        activation_dtype_index=structure.live_dtype_index,
        dtype_names=structure.dtype_names,
        saved_bytes_by_op=_sums(structure.saved_op, nbytes[structure.saved], count),
        parameter_bytes_by_op=_sums(structure.first_reader_op, nbytes[structure.first_reader_tensor], count),
        matrix_parameter_bytes=float(nbytes[structure.matrix_parameters].sum()),
        parameter_bytes=float(nbytes[structure.parameters].sum()),
        optimizer_state_bytes=float(nbytes[structure.optimizer_state].sum()),
        buffer_bytes=float(nbytes[structure.buffers].sum()),
        parameter_count=workload.parameter_count,
        activation_output_bytes_by_op=_sums(structure.output_op[activation], output_bytes[activation], count),
        smallest_output_bytes_by_op=np.where(np.isinf(smallest), 0.0, smallest),
    )

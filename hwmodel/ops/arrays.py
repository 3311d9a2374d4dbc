"""The per-op columns of a workload as numpy arrays: what every vectorised cost reads.

Built once per workload (it is immutable) and kept in a :class:`~hwmodel.step.derived.DerivedCache`;
the columns that do not change with the batch once per structure (:mod:`hwmodel.step.structure`).
"""

from __future__ import annotations

from dataclasses import dataclass
from operator import attrgetter

import numpy as np
import numpy.typing as npt

from hwmodel.ops.classes.registry import OpClassSet, op_classes
from hwmodel.spec.units import FLOAT_DTYPES
from hwmodel.step.derived import WORKLOAD_CACHE, DerivedCache
from hwmodel.step.structure import STRUCTURE_CACHE
from hwmodel.step.workload import PHASES, Workload

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]


@dataclass(frozen=True, eq=False)
class OpStructure:
    """The columns of :class:`WorkloadArrays` that do not depend on the batch (read-only arrays,
    shared by the workloads of one structure: :mod:`hwmodel.step.structure`)."""

    class_index: IntArray
    phase_index: IntArray
    is_matrix: npt.NDArray[np.bool_]
    is_float: npt.NDArray[np.bool_]
    dtype_names: tuple[str, ...]
    dtype_index: IntArray
    module_index: IntArray
    module_names: tuple[str, ...]
    op_name_index: IntArray
    op_names: tuple[str, ...]
    tensor_lists: FloatArray


@dataclass(frozen=True, eq=False)
class WorkloadArrays(OpStructure):
    """The per-op columns of a workload as numpy arrays, built once per workload: its
    :class:`OpStructure` (shared by every batch of the step) and the columns read per workload.

    Module and op names are interned: ``module_index[i]`` indexes ``module_names``.
    """

    flops: FloatArray
    bytes_read: FloatArray
    bytes_written: FloatArray
    output_elements: FloatArray
    has_gemms: npt.NDArray[np.bool_]
    gemm_op_index: IntArray
    gemm_shapes: FloatArray
    """One row per recorded GEMM: ``gemm_op_index`` is its op, ``gemm_shapes`` its (count, m, n, k)."""


def _intern(values: list[str]) -> tuple[IntArray, tuple[str, ...]]:
    names: dict[str, int] = {}
    indices = np.fromiter((names.setdefault(value, len(names)) for value in values), dtype=np.int64, count=len(values))
    return indices, tuple(names)


def workload_arrays(workload: Workload, cache: DerivedCache = WORKLOAD_CACHE) -> WorkloadArrays:
    """Arrays of ``workload``, kept in ``cache`` for as long as the (immutable) workload lives.

    Class indices follow the registered op classes, so the entry is kept per registry version.
    """
    classes = op_classes()
    return cache.get(workload, ("arrays", classes.version), lambda: _workload_arrays(workload, classes))


def op_structure(workload: Workload, op_class_set: OpClassSet) -> OpStructure:
    """The :class:`OpStructure` of ``workload`` under ``op_class_set``, shared by its structure."""
    key = ("op_structure", op_class_set.version)
    return STRUCTURE_CACHE.get(workload, key, lambda: _op_structure(workload, op_class_set))


def _op_structure(workload: Workload, op_class_set: OpClassSet) -> OpStructure:
    ops = workload.ops
    count = len(ops)
    class_index = [op_class_set.index(op.name) for op in ops]
    matrix = [op_class_set.names[index] in op_class_set.matrix for index in class_index]
    dtype_index, dtype_names = _intern([op.dtype for op in ops])
    module_index, module_names = _intern([op.module for op in ops])
    op_name_index, op_names = _intern([op.name for op in ops])
    structure = OpStructure(
        class_index=np.asarray(class_index, dtype=np.int64).reshape(count),
        phase_index=np.fromiter((PHASES.index(op.phase) for op in ops), dtype=np.int64, count=count),
        is_matrix=np.asarray(matrix, dtype=np.bool_).reshape(count),
        is_float=np.fromiter((op.dtype in FLOAT_DTYPES for op in ops), dtype=np.bool_, count=count),
        dtype_names=dtype_names,
        dtype_index=dtype_index,
        module_index=module_index,
        module_names=module_names,
        op_name_index=op_name_index,
        op_names=op_names,
        tensor_lists=np.fromiter(
            (max(1, len(op.output_ids)) if op.name.startswith("aten._foreach_") else 1 for op in ops),
            dtype=np.float64,
            count=count,
        ),
    )
    for values in vars(structure).values():
        if isinstance(values, np.ndarray):
            values.flags.writeable = False
    return structure


def _workload_arrays(workload: Workload, op_class_set: OpClassSet) -> WorkloadArrays:
    ops = workload.ops
    count = len(ops)
    structure = op_structure(workload, op_class_set)
    return WorkloadArrays(
        **vars(structure),
        flops=np.fromiter(map(attrgetter("flops"), ops), dtype=np.float64, count=count),
        bytes_read=np.fromiter(map(attrgetter("bytes_read"), ops), dtype=np.float64, count=count),
        bytes_written=np.fromiter(map(attrgetter("bytes_written"), ops), dtype=np.float64, count=count),
        output_elements=np.fromiter(map(attrgetter("output_elements"), ops), dtype=np.float64, count=count),
        has_gemms=np.fromiter((bool(op.gemms) for op in ops), dtype=np.bool_, count=count),
        gemm_op_index=np.asarray([index for index, op in enumerate(ops) for _ in op.gemms], dtype=np.int64),
        gemm_shapes=np.asarray([gemm for op in ops for gemm in op.gemms], dtype=np.float64).reshape(-1, 4),
    )

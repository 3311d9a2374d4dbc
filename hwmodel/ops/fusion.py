"""Compiled execution: which ops a graph compiler fuses into one kernel, and what that saves.

``eager`` execution launches every captured op as PyTorch eager does: each reads its operands from
and writes its results to local memory. ``compiled`` execution groups ops by the rules of
Inductor's scheduler (``torch/_inductor/scheduler.py``, ``can_fuse``), read without running it:

* only **pointwise ops and reductions** fuse (elementwise, row-wise norms and softmax, dropout,
  reductions, copies); a matrix op (matmul, convolution, attention) is its own kernel and fuses
  with nothing: Inductor calls cuBLAS / cuDNN as extern kernels unless ``max_autotune`` picks a
  Triton template, the only case with epilogue fusion;
* a node joins a group when it reads a tensor the group produced (vertical fusion) or a tensor the
  group read (horizontal fusion), and its iteration space matches the group's: Inductor's
  ``(numel, rnumel)``: the same number of elements in all (a pointwise producer into a reduction
  over those elements), or a pointwise node over a reduction's output (a reduction's epilogue);
* fusion stays within a phase (forward and backward are separate compiled graphs), leaves the
  optimizer as captured (its ``_foreach_`` ops are already multi-tensor kernels), and a group is a
  contiguous run of ops (views and allocations between them launch nothing), so no group depends
  on itself through an op outside it; at most :data:`MAX_FUSION_SIZE` nodes
  (``config.max_fusion_size``).

A fused group is one launch that reads its external inputs once and writes the tensors someone
outside it reads: a tensor produced inside the group is read from registers, an input already read
by the group is not read again, and a tensor whose every reader is in the group is never written.
A tensor read by an op outside the group (a second consumer, the backward pass) stays in memory.
Each op keeps its own row (its FLOPs, its share of the bytes): :func:`fused_costs` scales its
data movement to what it still moves and charges the group's launch once, on its first op.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from hwmodel.errors import SpecError
from hwmodel.ops.arrays import workload_arrays
from hwmodel.ops.classes.base import packet_name
from hwmodel.ops.cost import OpCosts
from hwmodel.ops.gpu_lowering import FUSED_ATTENTION
from hwmodel.ops.kernels.views import is_zero_traffic
from hwmodel.spec.chip import EXECUTION_MODES
from hwmodel.spec.units import DTYPE_BYTES
from hwmodel.step.derived import WORKLOAD_CACHE
from hwmodel.step.workload import OpRecord, Workload

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]
BoolArray = npt.NDArray[np.bool_]

MAX_FUSION_SIZE = 64
"""Most nodes in one fused kernel (Inductor's ``config.max_fusion_size``)."""
ALLOCATIONS = frozenset({"empty", "empty_like", "empty_strided", "new_empty"})
"""Zero-traffic ops that make a new storage (every other one is a view of its input)."""
PERSISTENT_KINDS = frozenset({"input", "parameter", "buffer", "optimizer_state"})
"""Tensors that outlive the step: a write to them always reaches memory."""


def check_execution(mode: str) -> str:
    """``mode`` if it is one of :data:`EXECUTION_MODES`, else a one-line error."""
    if mode not in EXECUTION_MODES:
        raise SpecError(f"execution must be one of {', '.join(EXECUTION_MODES)}, got {mode!r}")
    return mode


@dataclass(frozen=True, eq=False)
class Fusion:
    """Per op of a workload under compiled execution.

    ``group`` is the fused group of each op (-1: not fused with anything); ``leader`` marks the op
    that launches its group's kernel; ``read_bytes`` and ``written_bytes`` are the captured bytes
    each op still moves through memory. ``groups`` counts the groups of two or more ops.
    """

    group: IntArray
    leader: BoolArray
    read_bytes: FloatArray
    written_bytes: FloatArray
    groups: int

    @property
    def members(self) -> BoolArray:
        """True for the ops in a fused group."""
        return np.asarray(self.group >= 0)


def workload_fusion(workload: Workload) -> Fusion:
    """The :class:`Fusion` of ``workload`` under compiled execution, kept in the workload cache."""
    return WORKLOAD_CACHE.get(workload, ("fusion", "compiled"), lambda: fuse(workload))


@dataclass(slots=True)
class _Group:
    number: int
    total: int
    outers: set[int]
    produced: set[int]
    loaded: set[int]
    members: list[int]


def _elements(workload: Workload) -> dict[int, int]:
    return {t.tensor_id: t.nbytes // DTYPE_BYTES.get(t.dtype, 4) for t in workload.tensors}


def _fusible(op: OpRecord, is_matrix: bool) -> bool:
    packet = packet_name(op.name)
    return not (is_matrix or op.phase == "optimizer" or packet in FUSED_ATTENTION or packet.startswith("_foreach_"))


def _space(op: OpRecord, inputs: list[int], outputs: list[int], elements: dict[int, int]) -> tuple[int, int]:
    """(all elements, output elements) of ``op``'s iteration, by its largest input and output
    tensors (a norm's statistics ride along): a reduction's total exceeds its output."""
    largest_input = max((elements.get(tensor, 0) for tensor in inputs), default=0)
    largest_output = max((elements.get(tensor, 0) for tensor in outputs), default=0) or op.output_elements
    return max(largest_input, largest_output), largest_output


def fuse(workload: Workload) -> Fusion:
    """Group ``workload``'s ops as a compiler fuses them (see the module docstring)."""
    ops, count = workload.ops, len(workload.ops)
    matrix = workload_arrays(workload).is_matrix
    elements, alias = _elements(workload), dict[int, int]()
    group_of = np.full(count, -1, dtype=np.int64)
    groups: list[_Group] = []
    current: _Group | None = None
    for index, op in enumerate(ops):
        inputs = list(dict.fromkeys(alias.get(tensor, tensor) for tensor in op.input_ids))
        if is_zero_traffic(op.name):
            if packet_name(op.name) not in ALLOCATIONS:  # a view is its input's storage
                for tensor in op.output_ids:
                    alias[tensor] = inputs[0] if inputs and tensor not in inputs else alias.get(tensor, tensor)
            continue
        if not _fusible(op, bool(matrix[index])):
            current = None
            continue
        outputs = [alias.get(tensor, tensor) for tensor in op.output_ids]
        total, outer = _space(op, inputs, outputs, elements)
        if current is None or not _joins(current, inputs, total, outer, ops[current.members[0]].phase == op.phase):
            current = _Group(len(groups), total, set(), set(), set(), [])
            groups.append(current)
        current.members.append(index)
        current.outers.add(outer)
        group_of[index] = current.number
        current.loaded.update(inputs)
        current.produced.update(outputs)
    return _account(workload, group_of, alias)


def _joins(group: _Group, inputs: list[int], total: int, outer: int, same_phase: bool) -> bool:
    if not same_phase or len(group.members) >= MAX_FUSION_SIZE:
        return False
    connected = any(tensor in group.produced or tensor in group.loaded for tensor in inputs)
    pointwise = total == outer
    return connected and (total == group.total or (pointwise and outer in group.outers))


def _account(workload: Workload, group_of: IntArray, alias: dict[int, int]) -> Fusion:
    """The bytes each op still moves and the leader of each group, once the groups are known."""
    ops, count = workload.ops, len(workload.ops)
    sizes = {t.tensor_id: float(t.nbytes) for t in workload.tensors}
    kinds = {t.tensor_id: t.kind for t in workload.tensors}
    readers: dict[int, list[int]] = {}
    for index, op in enumerate(ops):
        if not is_zero_traffic(op.name):
            for tensor in dict.fromkeys(alias.get(t, t) for t in op.input_ids):
                readers.setdefault(tensor, []).append(index)
    members = np.bincount(group_of[group_of >= 0]) if np.any(group_of >= 0) else np.zeros(1, dtype=np.int64)
    group = np.where((group_of >= 0) & (members[np.maximum(group_of, 0)] > 1), group_of, -1)
    read = np.array([float(op.bytes_read) for op in ops], dtype=np.float64)
    written = np.array([float(op.bytes_written) for op in ops], dtype=np.float64)
    leader = np.zeros(count, dtype=np.bool_)
    seen: dict[int, set[int]] = {}  # per group, the tensors it has loaded or produced so far
    for index in map(int, np.flatnonzero(group >= 0)):
        op, number = ops[index], int(group[index])
        leader[index] = number not in seen
        loaded = seen.setdefault(number, set())
        inputs = list(dict.fromkeys(alias.get(t, t) for t in op.input_ids))
        outputs = list(dict.fromkeys(alias.get(t, t) for t in op.output_ids))
        read[index] -= min(read[index], sum(sizes.get(t, 0.0) for t in inputs if t in loaded))
        internal = [
            t
            for t in outputs
            if kinds.get(t) not in PERSISTENT_KINDS
            and readers.get(t)
            and all(group[r] == number and r >= index for r in readers[t])
        ]
        written[index] -= min(written[index], sum(sizes.get(t, 0.0) for t in internal))
        loaded.update(inputs)
        loaded.update(outputs)
    return Fusion(group=group, leader=leader, read_bytes=read, written_bytes=written, groups=len(seen))


def fused_costs(costs: OpCosts, fusion: Fusion, captured_bytes: FloatArray) -> OpCosts:
    """``costs`` (one kernel per op) under ``fusion``: each fused op's data movement scaled to the
    bytes it still moves, and one launch per group (the largest of its ops' launch costs, charged to
    its first op); FLOPs and compute unchanged."""
    members = fusion.members
    if not np.any(members):
        return costs
    kept = fusion.read_bytes + fusion.written_bytes
    fraction = np.divide(kept, captured_bytes, out=np.ones_like(kept), where=captured_bytes > 0)
    memory_s = np.where(members, costs.memory_s * np.minimum(fraction, 1.0), costs.memory_s)
    launch = np.zeros(int(fusion.group.max()) + 1)
    np.maximum.at(launch, fusion.group[members], costs.overhead_s[members])
    overhead_s = np.where(members, np.where(fusion.leader, launch[np.maximum(fusion.group, 0)], 0.0), costs.overhead_s)
    time_s = np.maximum(costs.compute_s, memory_s) + overhead_s
    for values in (memory_s, overhead_s, time_s):
        values.flags.writeable = False
    return OpCosts(
        compute_s=costs.compute_s, memory_s=memory_s, overhead_s=overhead_s, time_s=time_s, flops=costs.flops
    )

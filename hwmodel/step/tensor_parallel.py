"""Which ops a tensor-parallel group shards, and where its collectives go, as Megatron-LM runs it.

Read from the capture alone (op order, tensor ids, which inputs are parameters, which ops are
matrix ops), forward first:

* **Pairs**: the matrix ops that read a parameter (weighted matrix ops), in forward order, are
  paired greedily: a weighted op ``P`` and the next one ``Q`` form a pair when ``Q`` depends on
  ``P`` and no op between them that lies on a path from ``P`` to ``Q`` (the region) combines what
  flows from ``P`` with another activation at least as large as it (a residual add: broadcast
  masks and biases are smaller) or normalises over the features (a LayerNorm). Weighted ops
  right after ``P`` that read the same activations (separate query, key and value projections)
  join it when ``Q`` depends on each. ``P`` is column-parallel (output features split, no
  gather), the region runs on its shard (attention per head, the MLP activation), ``Q`` is
  row-parallel (input features split) and all-reduces its output. Every other op runs replicated.
* **Vocabulary-parallel head**: the last weighted op, unpaired, whose descendants run a row-wise
  op (the log-softmax of the loss), no matrix op and no residual (the output projection and the
  loss) is split by vocabulary with its descendants (the
  cross-entropy on each chip's logits), which all-reduce ``3 x rows`` FP32 values (the row maxima,
  the sums of exponentials, the target logits). An op that reads the head's weight and is not a
  matrix op (the tied word embedding) looks its vocabulary slice up and all-reduces its output.
* **Backward**: a matrix op reading a column-parallel (or head) weight computes its input gradient
  from a sharded gradient: it runs on the shard and all-reduces its output (the conjugate
  all-reduce); one reading a row-parallel weight, and every op reading a sharded tensor (or the
  embedding's indices), runs on the shard.

A sharded op's FLOPs, bytes and written activations are divided by ``tp``. A weighted matrix op in
no pair and not the head (a convolution network's unpaired layers: a residual add between two
convolutions breaks a pair) keeps the plain rule: its output channels split, its output gathered
forward and its input gradient reduce-scattered backward; so does every matrix op outside the
sharded ops (a backward one reduce-scatters its output). A network without pairs runs that rule
alone. With ``tp = 1`` nothing is sharded.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from hwmodel.ops.arrays import workload_arrays
from hwmodel.ops.cost import OpCosts
from hwmodel.step.derived import WORKLOAD_CACHE
from hwmodel.step.structure import STRUCTURE_CACHE
from hwmodel.step.workload import Workload

BoolArray = npt.NDArray[np.bool_]
FloatArray = npt.NDArray[np.float64]
CROSS_ENTROPY_REDUCTIONS = 3
"""FP32 values per row a vocabulary-parallel cross-entropy all-reduces (max, sum of exp, target logit)."""
FP32_BYTES = 4
FEATURE_NORMS = ("layer_norm", "group_norm", "rms_norm")
"""Op names of norms over the feature axis: between a column- and a row-parallel op they would
need every feature, so no pair spans one (a batch norm, per channel, may)."""


@dataclass(frozen=True, kw_only=True, slots=True)
class Sharding:
    """Per op (aligned with ``workload.ops``), how a tensor-parallel group runs it.

    Attributes:
        sharded: runs on the group's shard (work divided by ``tp``, no gather).
        all_reduce: all-reduces its output after it (a row-parallel op forward, a column-parallel
            input gradient backward, the vocabulary-parallel embedding).
        gathered: keeps the plain rule (a matrix op outside the sharded ones).
        cross_entropy_rows: rows whose statistics it all-reduces (vocabulary-parallel loss), else 0.
        pairs: (column-parallel op, row-parallel op) indices, forward.
    """

    sharded: BoolArray
    all_reduce: BoolArray
    gathered: BoolArray
    cross_entropy_rows: npt.NDArray[np.int64]
    pairs: tuple[tuple[int, int], ...]


def sharding(workload: Workload) -> Sharding:
    """The :class:`Sharding` of ``workload`` (kept per structure: it reads no sizes' values but
    their order, and the structure fixes both)."""
    return STRUCTURE_CACHE.get(workload, "tensor_parallel_sharding", lambda: _sharding(workload))


@dataclass(slots=True)
class _Graph:
    parents: list[set[int]]
    foreign: list[dict[int, int]]  # op -> {producer op: bytes} of its activation inputs
    weights: list[frozenset[int]]  # parameter ids each op reads
    weighted: list[int]  # forward matrix ops reading a parameter
    feature_norms: set[int]  # ops normalising over the features (a split feature axis breaks them)


def _graph(workload: Workload, is_matrix: BoolArray) -> _Graph:
    kinds = {tensor.tensor_id: tensor.kind for tensor in workload.tensors}
    nbytes = {tensor.tensor_id: tensor.nbytes for tensor in workload.tensors}
    producer: dict[int, int] = {}
    graph = _Graph(parents=[], foreign=[], weights=[], weighted=[], feature_norms=set())
    for index, op in enumerate(workload.ops):
        made = {producer[t]: nbytes.get(t, 0) for t in op.input_ids if t in producer and kinds.get(t) == "activation"}
        graph.parents.append(set(made))
        graph.foreign.append(made)
        graph.weights.append(frozenset(t for t in op.input_ids if kinds.get(t) == "parameter"))
        if any(norm in op.name for norm in FEATURE_NORMS):
            graph.feature_norms.add(index)
        if op.phase == "forward":
            if is_matrix[index] and graph.weights[index]:
                graph.weighted.append(index)
            for tensor_id in op.output_ids:
                producer[tensor_id] = index
    return graph


def _descendants(graph: _Graph, starts: set[int], stop: int) -> set[int]:
    """Ops in ``(min(starts), stop]`` that depend on one of ``starts`` (and ``starts`` themselves)."""
    found = set(starts)
    for index in range(min(starts) + 1, stop + 1):
        if graph.parents[index] & found:
            found.add(index)
    return found


def _siblings(graph: _Graph, weighted: list[int], k: int) -> list[int]:
    """The weighted op at ``k`` and the ones right after it that read the same activations (separate
    query, key and value projections): together they are column-parallel."""
    end = k + 1
    while end < len(weighted) - 1 and graph.parents[weighted[end]] == graph.parents[weighted[k]]:
        end += 1
    return weighted[k:end]


def _region(graph: _Graph, columns: list[int], row: int) -> set[int] | None:
    """The ops between column-parallel ops and a row-parallel one on a path from the first to the
    second; None when they do not form a pair (see the module docstring)."""
    first = columns[0]
    below = _descendants(graph, set(columns), row)
    if row not in below:
        return None
    above = {row}
    for index in range(row, first, -1):
        if index in above:
            above |= {parent for parent in graph.parents[index] if first <= parent and parent in below}
    if not above.issuperset(columns):
        return None
    region = above - {row} - set(columns)
    if region & graph.feature_norms or _mixes(graph, region | {row}, above - {row}):
        return None
    return region


def _mixes(graph: _Graph, ops: set[int], inside: set[int]) -> bool:
    """True when one of ``ops`` combines what flows from ``inside`` with another activation at
    least as large (a residual: it cannot run on a shard)."""
    for index in ops:
        own = [size for op, size in graph.foreign[index].items() if op in inside]
        other = [size for op, size in graph.foreign[index].items() if op not in inside]
        if own and other and max(other) >= max(own):
            return True
    return False


def _sharding(workload: Workload) -> Sharding:
    arrays = workload_arrays(workload)
    count = len(workload.ops)
    is_matrix = np.asarray(arrays.is_matrix, dtype=np.bool_)
    graph = _graph(workload, is_matrix)
    forward_end = max((i for i, op in enumerate(workload.ops) if op.phase == "forward"), default=-1)
    sharded = np.zeros(count, dtype=np.bool_)
    all_reduce = np.zeros(count, dtype=np.bool_)
    rows = np.zeros(count, dtype=np.int64)
    pairs: list[tuple[int, int]] = []
    column_weights: set[int] = set()
    row_weights: set[int] = set()
    weighted, k = graph.weighted, 0
    while k < len(weighted):
        columns = _siblings(graph, weighted, k)
        after = k + len(columns)
        region = _region(graph, columns, weighted[after]) if after < len(weighted) else None
        if region is None:
            if k == len(weighted) - 1:
                _vocabulary_head(workload, graph, weighted[k], forward_end, (sharded, all_reduce, rows), column_weights)
            k += 1
            continue
        row = weighted[after]
        pairs.extend((column, row) for column in columns)
        sharded[[*columns, row, *sorted(region)]] = True
        all_reduce[row] = True
        for column in columns:
            column_weights |= graph.weights[column]
        row_weights |= graph.weights[row]
        k = after + 1
    _backward(workload, is_matrix, sharded, all_reduce, column_weights, row_weights)
    gathered = is_matrix & ~sharded & (arrays.phase_index < 2)
    for values in (sharded, all_reduce, gathered, rows):
        values.flags.writeable = False
    return Sharding(
        sharded=sharded, all_reduce=all_reduce, gathered=gathered, cross_entropy_rows=rows, pairs=tuple(pairs)
    )


def _vocabulary_head(
    workload: Workload,
    graph: _Graph,
    head: int,
    forward_end: int,
    marks: tuple[BoolArray, BoolArray, npt.NDArray[np.int64]],
    column_weights: set[int],
) -> None:
    """Shard the output projection ``head`` and the loss after it by vocabulary, when nothing after
    it runs a matrix op; the ops reading its weight (the tied embedding) look up their slice."""
    sharded, all_reduce, rows = marks
    below = _descendants(graph, {head}, forward_end)
    arrays = workload_arrays(workload)
    row_op = next((i for i in sorted(below) if workload.ops[i].rows > 0), None)
    if row_op is None or any(arrays.is_matrix[index] for index in below - {head}) or _mixes(graph, below, below):
        return
    sharded[sorted(below)] = True
    rows[row_op] = workload.ops[row_op].rows
    column_weights |= graph.weights[head]
    for index, op in enumerate(workload.ops[:head]):
        if op.phase == "forward" and not arrays.is_matrix[index] and graph.weights[index] & graph.weights[head]:
            sharded[index] = all_reduce[index] = True


def _backward(
    workload: Workload,
    is_matrix: BoolArray,
    sharded: BoolArray,
    all_reduce: BoolArray,
    column_weights: set[int],
    row_weights: set[int],
) -> None:
    """Mark the backward ops that run on the shard (see the module docstring)."""
    shard_ids = {t for i, op in enumerate(workload.ops) if sharded[i] and not all_reduce[i] for t in op.output_ids}
    kinds = {tensor.tensor_id: tensor.kind for tensor in workload.tensors}
    lookups = {
        t
        for i, op in enumerate(workload.ops)
        if op.phase == "forward" and sharded[i] and all_reduce[i] and not is_matrix[i]
        for t in op.input_ids
        if kinds.get(t) in ("input", "activation")
    }
    for index, op in enumerate(workload.ops):
        if op.phase != "backward":
            continue
        reads = set(op.input_ids)
        if is_matrix[index] and reads & column_weights:
            sharded[index] = all_reduce[index] = True
            shard_ids.difference_update(op.output_ids)
        elif (is_matrix[index] and reads & row_weights) or reads & shard_ids or reads & lookups:
            sharded[index] = True
            shard_ids.update(op.output_ids)
        else:
            shard_ids.difference_update(op.output_ids)


def sharded_activation_fraction(workload: Workload, tp: int, scale_by_dtype: FloatArray) -> float:
    """The activation peak one chip holds under the sharding, as a fraction of the unsharded peak
    (a sharded op's outputs held ``1 / tp``; the same liveness sweep as the memory model)."""
    if tp == 1:
        return 1.0

    def build() -> float:
        from hwmodel.step.memory_arrays import memory_arrays, tensor_structure

        arrays, structure = memory_arrays(workload), tensor_structure(workload)
        marks = sharding(workload).sharded
        first_ops = np.array([workload.tensors[p].first_op for p in structure.live.tolist()], dtype=np.int64)
        split = (first_ops >= 0) & marks[np.maximum(first_ops, 0)]
        size = arrays.activation_nbytes * scale_by_dtype[arrays.activation_dtype_index]
        count = len(workload.ops)
        peaks = []
        for values in (size, np.where(split, size / tp, size)):
            delta = np.bincount(arrays.activation_first, weights=values, minlength=count + 1)
            delta -= np.bincount(arrays.activation_last + 1, weights=values, minlength=count + 1)
            peaks.append(float(np.cumsum(delta)[:-1].max()) if len(values) else 0.0)
        return peaks[1] / peaks[0] if peaks[0] > 0 else 1.0

    key = ("tp_activation_fraction", tp, tuple(scale_by_dtype.tolist()))
    return WORKLOAD_CACHE.get(workload, key, build)


def shard_costs(costs: OpCosts, workload: Workload, tp: int) -> OpCosts:
    """``costs`` (matrix ops already split ``tp`` ways) with every other sharded op's work divided
    by ``tp``: its compute, traffic and FLOPs, not its launch overhead."""
    if tp == 1:
        return costs
    arrays = workload_arrays(workload)
    rest = sharding(workload).sharded & ~np.asarray(arrays.is_matrix, dtype=np.bool_) & (arrays.phase_index < 2)
    share = np.where(rest, 1.0 / tp, 1.0)
    scaled = OpCosts(
        compute_s=costs.compute_s * share,
        memory_s=costs.memory_s * share,
        overhead_s=costs.overhead_s,
        time_s=(costs.time_s - costs.overhead_s) * share + costs.overhead_s,
        flops=costs.flops * share,
    )
    for values in (scaled.compute_s, scaled.memory_s, scaled.time_s, scaled.flops):
        values.flags.writeable = False
    return scaled


def work_share(workload: Workload, tp: int, optimizer_share: float) -> FloatArray | None:
    """Per op, the share of its work one chip of a tensor-parallel group runs: ``1 / tp`` of a
    matrix op or a sharded op, ``optimizer_share`` of an optimizer op; None when ``tp`` is 1."""
    if tp == 1:
        return None
    arrays = workload_arrays(workload)
    optimizer = arrays.phase_index == 2
    split = (np.asarray(arrays.is_matrix, dtype=np.bool_) | sharding(workload).sharded) & ~optimizer
    return np.asarray(np.where(split, 1.0 / tp, np.where(optimizer, optimizer_share, 1.0)), dtype=np.float64)


def collective_bytes(workload: Workload, output_bytes: FloatArray) -> dict[str, FloatArray]:
    """Per op and collective kind, the bytes each chip of the group contributes: the gathered
    output of a plain-rule matrix op forward (``all_gather``) or backward (``reduce_scatter``), the
    output of an all-reducing op and the cross-entropy statistics (``all_reduce``); 0 elsewhere.
    ``output_bytes`` are each op's activation output bytes in the step's stored dtypes."""
    arrays = workload_arrays(workload)
    marks = sharding(workload)
    forward = arrays.phase_index == 0
    statistics = CROSS_ENTROPY_REDUCTIONS * FP32_BYTES * marks.cross_entropy_rows.astype(np.float64)
    return {
        "all_gather": np.where(marks.gathered & forward, output_bytes, 0.0),
        "reduce_scatter": np.where(marks.gathered & ~forward, output_bytes, 0.0),
        "all_reduce": np.where(marks.all_reduce, output_bytes, 0.0) + statistics,
    }

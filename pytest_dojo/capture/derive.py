"""The step at any per-replica batch from captures at two: every recorded number, checked affine.

A training step's ops do not change with the batch; their sizes do, and in an ordinary network
each size is an exact affine function of the batch ``b``: a tensor holds ``b x`` (or none of) its
per-sample elements, an op's bytes are those of its tensors, and its FLOPs are a per-element
count. :func:`fit_batch_affine` takes two captures of one step, checks that they record the same
ops (a convolution's window among what must match) on the same tensors, and fits ``value = slope
x b + intercept`` to every number: each :class:`~hwmodel.OpRecord` field (FLOPs, bytes read and
written, output elements, rows and row length, every GEMM dimension) and every tensor's size.
:meth:`BatchAffineStep.at` then gives the step at any batch in the fit's domain, equal field by
field to a fresh capture at that batch.

What the fit refuses (:class:`DerivationError`, so the caller captures afresh):

* ops, tensors or parameters that differ between the captures (a step whose ops depend on the
  batch), named at the first difference;
* a number whose slope or intercept is not an integer (no affine rule with whole coefficients);
* a tensor whose size is neither constant nor proportional to the batch (a ``b x b`` similarity
  matrix is ``4 b^2`` bytes: affine at two batches, but not proportional);
* a GEMM with two or more dimensions that grow with the batch (its work is quadratic, even where
  each dimension is affine, as they are fitted one by one);
* a batch outside the fit's domain: where a derived number would be negative, a GEMM dimension
  below 1, a FLOP count not exactly a float, or across a batch at which ATen's CPU kernels choose
  differently (:data:`KERNEL_CHOICE_BATCHES`) where the captures cannot show the choice.

Limits: two points see no curvature of what they do not check. An op whose cost is quadratic in
the batch while none of its tensors is (a reduction over a ``b x b`` broadcast view) would pass the
checks. :meth:`BatchAffineStep.check` compares a third capture with the derivation.

A derived workload shares its template's structure (:data:`hwmodel.step.structure.STRUCTURE_CACHE`;
the fit checked it), so the simulator does not compare it again.

Batch-norm statistics and other reductions over the batch need no rule of their own: their
inputs hold ``b x`` per-sample elements (bytes and FLOPs proportional to ``b``) and their outputs
are per-channel (constant), so each of their numbers is affine, and checked as such.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import Any

from hwmodel import OpRecord, TensorRecord, Workload
from hwmodel.step.structure import STRUCTURE_CACHE
from pytest_dojo.errors import CaptureError

EXACT_FLOAT_LIMIT = 2**53
"""Integers up to this are exact as floats: a derived FLOP count beyond it is refused."""

SINGLE_SAMPLE_BATCH = 2
"""Below this batch (at batch 1) a size-1 dimension makes permuted tensors contiguous, so copies
vanish, and ATen's CPU convolution picks other kernels for small inputs."""

SLOW_CONVOLUTION_BATCH = 16
"""From this batch on, ATen's CPU convolution runs 1x1 kernels on one thread with oneDNN; below
it, with ``slow_conv2d``, whose per-sample GEMMs the capture records."""

KERNEL_CHOICE_BATCHES = (SINGLE_SAMPLE_BATCH, SLOW_CONVOLUTION_BATCH)
"""Batches at which ATen's CPU backend chooses differently below and from that batch on. A fit
derives across one only when its two captures straddle it (they then show whether the choice
changes a recorded number, and are refused if it does), or, for :data:`SLOW_CONVOLUTION_BATCH`,
when both captures lie below it and no convolution records GEMMs (no ``slow_conv2d`` to leave)."""

Field = tuple[int, int]
"""``(slope, intercept)``: a recorded number as ``slope x batch + intercept``."""


class DerivationError(CaptureError):
    """Two captures that do not determine the step at another batch (ops that differ, a number that
    is not affine in the batch, a batch outside the fit's domain): capture that batch afresh."""


@dataclass(frozen=True, slots=True)
class _OpFit:
    """One op whose numbers change with the batch: ``fields`` in :func:`_numbers` order."""

    template: OpRecord
    flops: Field
    fields: tuple[Field, ...]


@dataclass(frozen=True, slots=True)
class _Rebuilt:
    """What a derivation rebuilds: per op (position, template, FLOPs line, first line and count in
    ``lines``, explicit GEMMs) and per tensor (position, template, bytes line) that change."""

    ops: tuple[tuple[int, OpRecord, int, int, int, int, int], ...]
    lines: tuple[Field, ...]
    tensors: tuple[tuple[int, TensorRecord, int, int], ...]


@dataclass(frozen=True)
class BatchAffineStep:
    """A step whose every recorded number is an exact affine function of the per-replica batch.

    ``ops`` holds the op itself where no number of it changes with the batch. Derived workloads are
    valid for batches ``lowest`` to ``highest`` (None: no upper bound).
    """

    template: Workload
    batches: tuple[int, int]
    ops: tuple[OpRecord | _OpFit, ...]
    tensor_bytes: tuple[Field, ...]
    lowest: int
    highest: int | None

    def covers(self, batch_size: int) -> bool:
        """Whether :meth:`at` derives ``batch_size``."""
        return batch_size >= self.lowest and (self.highest is None or batch_size <= self.highest)

    def at(self, batch_size: int) -> Workload:
        """The step at ``batch_size``, as a fresh capture at that batch records it."""
        if not self.covers(batch_size):
            upper = "any larger batch" if self.highest is None else f"{self.highest}"
            raise DerivationError(
                f"{self.template.name}: batch {batch_size} is outside what the captures at "
                f"{self.batches[0]} and {self.batches[1]} determine ({self.lowest} to {upper})"
            )
        template = self.template
        workload = Workload(
            name=template.name,
            batch_size=batch_size,
            ops=_ops_at(template.ops, self._rebuilt, batch_size),
            tensors=_tensors_at(template.tensors, self._rebuilt, batch_size),
            parameters=template.parameters,
            optimizer=template.optimizer,
            schema_version=template.schema_version,
            mode=template.mode,
        )
        STRUCTURE_CACHE.share(workload, template)
        return workload

    @cached_property
    def _rebuilt(self) -> _Rebuilt:
        """What :meth:`at` rebuilds, flattened once per fit."""
        ops: list[tuple[int, OpRecord, int, int, int, int, int]] = []
        lines: list[Field] = []
        for position, op in enumerate(self.ops):
            if isinstance(op, _OpFit):
                ops.append((position, op.template, *op.flops, len(lines), len(op.fields), len(op.template.gemms)))
                lines += op.fields
        pairs = enumerate(zip(self.template.tensors, self.tensor_bytes, strict=True))
        tensors = tuple((position, tensor, *line) for position, (tensor, line) in pairs if line[0] != 0)
        return _Rebuilt(ops=tuple(ops), lines=tuple(lines), tensors=tensors)

    def check(self, workload: Workload) -> None:
        """Raise :class:`DerivationError` unless ``workload`` (a capture at a third batch) equals
        the derivation at its batch: a check for curvature that two captures cannot see."""
        derived = self.at(workload.batch_size)
        if derived == workload:
            return
        _same_structure(derived, workload)
        for index, (ours, theirs) in enumerate(zip(derived.ops, workload.ops, strict=True)):
            if ours != theirs:
                raise DerivationError(
                    f"{workload.name}: op {index} ({_describe(theirs)}) at batch {workload.batch_size} is not "
                    f"what batches {self.batches[0]} and {self.batches[1]} predict: not affine in the batch"
                )
        raise DerivationError(
            f"{workload.name}: a tensor's size at batch {workload.batch_size} is not what batches "
            f"{self.batches[0]} and {self.batches[1]} predict: not affine in the batch"
        )


def derive_workload(first: Workload, second: Workload, batch_size: int) -> Workload:
    """The step at ``batch_size`` from two captures of it at other per-replica batches, exactly as a
    fresh capture at ``batch_size`` records it; :class:`DerivationError` where that cannot be
    derived (see :mod:`pytest_dojo.capture.derive`)."""
    return fit_batch_affine(first, second).at(batch_size)


def fit_batch_affine(first: Workload, second: Workload) -> BatchAffineStep:
    """Fit every number of two captures of one step (at different batches) as affine in the batch.

    Fit once and derive many batches with :meth:`BatchAffineStep.at`.
    """
    if first.batch_size == second.batch_size:
        raise DerivationError(
            f"{first.name}: two captures at the same batch ({first.batch_size}) cannot be fitted: "
            "capture at two different batches"
        )
    _same_structure(first, second)
    batches = (first.batch_size, second.batch_size)
    ops = tuple(
        _fit_op(index, a, b, batches, first.name)
        for index, (a, b) in enumerate(zip(first.ops, second.ops, strict=True))
    )
    tensor_bytes = tuple(_fit_tensor(a, b, batches, first) for a, b in zip(first.tensors, second.tensors, strict=True))
    lowest, highest = _domain(ops, tensor_bytes, batches, first)
    return BatchAffineStep(
        template=first, batches=batches, ops=ops, tensor_bytes=tensor_bytes, lowest=lowest, highest=highest
    )


def _describe(op: OpRecord) -> str:
    return f"{op.name} in {op.phase}, module {op.module}"


def _op_identity(op: OpRecord) -> tuple[object, ...]:
    return (op.name, op.phase, op.module, op.dtype, op.flop_source, op.input_ids, op.output_ids, op.conv_window)


def _same_structure(first: Workload, second: Workload) -> None:
    """The same ops on the same tensors, the same tensor table and the same parameters."""
    name = first.name
    pair = f"batches {first.batch_size} and {second.batch_size}"
    steps = [(step.name, step.optimizer, step.schema_version, step.mode) for step in (first, second)]
    if steps[0] != steps[1]:
        raise DerivationError(f"{name}: the captures at {pair} are of different steps (name, optimizer or mode)")
    for index, (a, b) in enumerate(zip(first.ops, second.ops, strict=False)):
        if _op_identity(a) != _op_identity(b):
            raise DerivationError(
                f"{name}: op {index} differs between {pair}: {_describe(a)} (inputs {list(a.input_ids)}, outputs "
                f"{list(a.output_ids)}) and {_describe(b)} (inputs {list(b.input_ids)}, outputs {list(b.output_ids)})"
                ": the step's ops depend on the batch"
            )
    if len(first.ops) != len(second.ops):
        index = min(len(first.ops), len(second.ops))
        longer = first if len(first.ops) > len(second.ops) else second
        raise DerivationError(
            f"{name}: {len(first.ops)} ops at batch {first.batch_size}, {len(second.ops)} at batch "
            f"{second.batch_size}; the first extra one is op {index}, {_describe(longer.ops[index])}:"
            " the step's ops depend on the batch"
        )
    for a_tensor, b_tensor in zip(first.tensors, second.tensors, strict=False):
        a_key = (a_tensor.tensor_id, a_tensor.dtype, a_tensor.kind, a_tensor.first_op, a_tensor.last_op)
        b_key = (b_tensor.tensor_id, b_tensor.dtype, b_tensor.kind, b_tensor.first_op, b_tensor.last_op)
        if a_key != b_key:
            raise DerivationError(f"{name}: tensor {a_tensor.tensor_id} differs between {pair}: {a_key} and {b_key}")
    if len(first.tensors) != len(second.tensors):
        raise DerivationError(f"{name}: {len(first.tensors)} and {len(second.tensors)} tensors at {pair}")
    if first.parameters != second.parameters:
        raise DerivationError(f"{name}: the parameters differ between {pair}")


def _numbers(op: OpRecord) -> Iterator[int]:
    """An op's integer fields, flattened: bytes, elements, rows, then every GEMM dimension."""
    yield from (op.bytes_read, op.bytes_written, op.output_elements, op.rows, op.row_elements)
    for gemm in (*op.gemms, *op.implicit_gemms):
        yield from gemm


def _line(first: int, second: int, batches: tuple[int, int]) -> Field | None:
    """Whole ``(slope, intercept)`` through both points, None if there is none."""
    slope, rest = divmod(second - first, batches[1] - batches[0])
    if rest:
        return None
    return slope, first - slope * batches[0]


def _fit_op(index: int, a: OpRecord, b: OpRecord, batches: tuple[int, int], network: str) -> OpRecord | _OpFit:
    if a == b:
        return a
    where = f"{network}: op {index} ({_describe(a)})"
    if (len(a.gemms), len(a.implicit_gemms)) != (len(b.gemms), len(b.implicit_gemms)):
        raise DerivationError(
            f"{where} runs {len(a.gemms)} GEMMs at batch {batches[0]}, {len(b.gemms)} at {batches[1]}:"
            " ATen picks another kernel"
        )
    if not (a.flops.is_integer() and b.flops.is_integer()):
        raise DerivationError(f"{where}: FLOPs {a.flops} and {b.flops} are not whole: no exact affine rule")
    flops = _line(int(a.flops), int(b.flops), batches)
    fields = [_line(x, y, batches) for x, y in zip(_numbers(a), _numbers(b), strict=True)]
    if flops is None or any(field is None for field in fields):
        raise DerivationError(f"{where}: a number changes by a fraction per sample: no exact affine rule")
    exact = tuple(field for field in fields if field is not None)
    for number, gemm in enumerate((*a.gemms, *a.implicit_gemms)):
        grows = [field[0] for field in exact[5 + 4 * number : 9 + 4 * number] if field[0] != 0]
        if len(grows) > 1:
            raise DerivationError(
                f"{where}: GEMM {gemm} has {len(grows)} dimensions that grow with the batch: its work is "
                "quadratic in the batch"
            )
    return _OpFit(template=a, flops=flops, fields=exact)


def _fit_tensor(a: TensorRecord, b: TensorRecord, batches: tuple[int, int], workload: Workload) -> Field:
    if a.nbytes == b.nbytes:
        return 0, a.nbytes
    if a.nbytes * batches[1] != b.nbytes * batches[0]:
        made = f"made by op {a.first_op} ({_describe(workload.ops[a.first_op])})" if a.first_op >= 0 else a.kind
        raise DerivationError(
            f"{workload.name}: tensor {a.tensor_id} ({made}) holds {a.nbytes} bytes at batch {batches[0]} and "
            f"{b.nbytes} at batch {batches[1]}: neither constant nor proportional to the batch (quadratic?)"
        )
    slope = b.nbytes // batches[1] if b.nbytes % batches[1] == 0 else None
    if slope is None or slope * batches[0] != a.nbytes:
        raise DerivationError(f"{workload.name}: tensor {a.tensor_id}: bytes per sample are not whole")
    return slope, 0


def _domain(
    ops: Sequence[OpRecord | _OpFit], tensor_bytes: Sequence[Field], batches: tuple[int, int], workload: Workload
) -> tuple[int, int | None]:
    """The batches at which every derived number is valid and ATen chooses as at the captures."""
    lowest, highest = 1, None
    bounds: list[tuple[Field, int, int | None]] = [(field, 0, None) for field in tensor_bytes]
    for op in ops:
        if isinstance(op, OpRecord):
            continue
        bounds.append((op.flops, 0, EXACT_FLOAT_LIMIT))
        bounds += [(field, 0, None) for field in op.fields[:5]]
        bounds += [(field, 1, None) for field in op.fields[5:]]
    for (slope, intercept), minimum, maximum in bounds:
        if slope > 0:
            lowest = max(lowest, -((intercept - minimum) // slope))
            if maximum is not None:
                highest = _lower(highest, (maximum - intercept) // slope)
        elif slope < 0:
            highest = _lower(highest, (intercept - minimum) // -slope)
    for threshold in KERNEL_CHOICE_BATCHES:
        sides = {batch >= threshold for batch in batches}
        if sides == {True}:
            lowest = max(lowest, threshold)
        elif sides == {False} and _choice_shows(threshold, workload):
            highest = _lower(highest, threshold - 1)
    return lowest, highest


def _choice_shows(threshold: int, workload: Workload) -> bool:
    """Whether a step captured below ``threshold`` records what ATen chooses differently from it on."""
    if threshold != SLOW_CONVOLUTION_BATCH:
        return True
    return any(op.gemms for op in workload.ops if op.name.startswith("aten.convolution"))


def _lower(bound: int | None, value: int) -> int:
    return value if bound is None else min(bound, value)


# A derivation builds thousands of records from parts the fit checked (the template's strings and
# ids, numbers its domain keeps valid): _ops_at and _tensors_at set their fields through the slots'
# descriptors, without the records' __post_init__ checks, in one loop over the flattened numbers.
_NEW = object.__new__


def _setters(kind: type, names: tuple[str, ...]) -> tuple[Any, ...]:
    """The slot setters of ``kind``'s fields ``names``, which must be all of its fields."""
    fields = tuple(getattr(kind, "__slots__", ()))
    if set(names) != set(fields):
        raise TypeError(f"{kind.__name__} has fields {fields}, not {names}")
    return tuple(getattr(kind, name).__set__ for name in names)


(
    _NAME, _PHASE, _MODULE, _FLOPS, _SOURCE, _READ, _WRITTEN, _ELEMENTS, _DTYPE, _INPUTS, _OUTPUTS, _GEMMS, _IMPLICIT,
    _ROWS, _ROW_ELEMENTS, _CONV_WINDOW,
) = _setters(OpRecord, (
    "name", "phase", "module", "flops", "flop_source", "bytes_read", "bytes_written", "output_elements", "dtype",
    "input_ids", "output_ids", "gemms", "implicit_gemms", "rows", "row_elements", "conv_window",
))  # fmt: skip
_ID, _NBYTES, _TENSOR_DTYPE, _KIND, _FIRST, _LAST = _setters(
    TensorRecord, ("tensor_id", "nbytes", "dtype", "kind", "first_op", "last_op"))  # fmt: skip


def _ops_at(template: tuple[OpRecord, ...], rebuilt: _Rebuilt, batch: int) -> tuple[OpRecord, ...]:
    """``template``'s ops with the numbers of ``batch`` where they change."""
    values = [slope * batch + intercept for slope, intercept in rebuilt.lines]
    ops = list(template)
    for position, op_template, flop_slope, flop_intercept, start, count, explicit in rebuilt.ops:
        op: OpRecord = _NEW(OpRecord)
        _NAME(op, op_template.name)
        _PHASE(op, op_template.phase)
        _MODULE(op, op_template.module)
        _FLOPS(op, float(flop_slope * batch + flop_intercept))
        _SOURCE(op, op_template.flop_source)
        _READ(op, values[start])
        _WRITTEN(op, values[start + 1])
        _ELEMENTS(op, values[start + 2])
        _DTYPE(op, op_template.dtype)
        _INPUTS(op, op_template.input_ids)
        _OUTPUTS(op, op_template.output_ids)
        _ROWS(op, values[start + 3])
        _ROW_ELEMENTS(op, values[start + 4])
        _CONV_WINDOW(op, op_template.conv_window)
        dims = iter(values[start + 5 : start + count])
        gemms = tuple(zip(dims, dims, dims, dims, strict=True))
        _GEMMS(op, gemms[:explicit])
        _IMPLICIT(op, gemms[explicit:])
        ops[position] = op
    return tuple(ops)


def _tensors_at(template: tuple[TensorRecord, ...], rebuilt: _Rebuilt, batch: int) -> tuple[TensorRecord, ...]:
    """``template``'s tensors with the sizes of ``batch`` where they change."""
    tensors = list(template)
    for position, tensor, slope, intercept in rebuilt.tensors:
        resized: TensorRecord = _NEW(TensorRecord)
        _ID(resized, tensor.tensor_id)
        _NBYTES(resized, slope * batch + intercept)
        _TENSOR_DTYPE(resized, tensor.dtype)
        _KIND(resized, tensor.kind)
        _FIRST(resized, tensor.first_op)
        _LAST(resized, tensor.last_op)
        tensors[position] = resized
    return tuple(tensors)

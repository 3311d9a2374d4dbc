"""A captured training step as plain data: the ops, the tensors they touch and the parameters.

This is the boundary between the capture (torch) and the hardware model (no torch). Every record is a
frozen dataclass of ints, floats and strings, serializable to JSON and back without loss, so a
workload can be cached, diffed, stored with a baseline and simulated on any machine.

Units: FLOPs, bytes and element counts. A workload is captured at one per-replica batch
(``batch_size`` samples); a plan that splits a global batch asks for the workload of its own
per-replica batch through a :class:`WorkloadSource`.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any, Protocol

from hwmodel.errors import WorkloadError
from hwmodel.step.derived import WORKLOAD_CACHE

SCHEMA_VERSION = 2
PHASES = ("forward", "backward", "optimizer")
STEP_MODES = ("train", "forward_backward", "inference")
"""What a captured step runs: the whole training step, forward and backward without the optimizer,
or a no-grad forward pass."""
TENSOR_KINDS = ("input", "parameter", "buffer", "gradient", "optimizer_state", "activation")
FLOP_SOURCES = ("torch", "formula", "unmodeled")
ROOT_MODULE = "Global"
"""Module path given to ops that run outside every module (the loss, the optimizer)."""
CONV_WINDOW = (
    "kernel_h", "kernel_w", "stride_h", "stride_w", "dilation_h", "dilation_w", "groups",
    "in_channels", "out_channels", "in_h", "in_w", "out_h", "out_w",
)  # fmt: skip
"""The fields of ``OpRecord.conv_window``, in order: a 2-D convolution's window and image sizes."""


@dataclass(frozen=True, kw_only=True, slots=True)
class TensorRecord:
    """One storage the step touches. ``first_op``/``last_op`` bound its lifetime (op indices).

    ``first_op`` is -1 for storages that exist before the step (parameters, inputs, optimizer state,
    buffers); ``last_op`` is -1 for storages that no op reads after creating them.
    """

    tensor_id: int
    nbytes: int
    dtype: str
    kind: str
    first_op: int
    last_op: int

    def __post_init__(self) -> None:
        if self.kind not in TENSOR_KINDS:
            raise WorkloadError(f"tensor {self.tensor_id}: kind must be one of {TENSOR_KINDS}, got {self.kind!r}")
        if self.nbytes < 0:
            raise WorkloadError(f"tensor {self.tensor_id}: nbytes must be >= 0, got {self.nbytes}")


@dataclass(frozen=True, kw_only=True, slots=True)
class OpRecord:
    """One dispatched aten op of the step, with its cost inputs.

    ``flops`` comes from torch's flop registry (``flop_source="torch"``), from our formulas
    (``"formula"``), or is 0 for an op nobody has a formula for (``"unmodeled"``: costed by its
    bytes and listed in the report). ``output_elements`` is what the op can be parallelised over
    (its occupancy of a chip's compute units). ``gemms`` lists the matrix multiplies its kernel
    runs, as ``(count, m, n, k)`` (:mod:`hwmodel.ops.gemm`), where the capture knows them: a chip with
    measured GEMM rates times the op by their shapes; empty for every other op. These are the host
    CPU's lowering (per-sample ``slow_conv2d``, CPU flash attention blocks).

    ``implicit_gemms`` are the matrix multiplies an accelerator runs for this op, also as
    ``(count, m, n, k)``, whatever the host does: ``mm``/``addmm``/``bmm``/``baddbmm`` as they are; a
    convolution as implicit GEMM, one per group (``count = groups``, ``N`` the batch): forward
    ``M = N Ho Wo``, ``N = C_out/groups``, ``K = C_in/groups x kh kw``; input gradient ``M = N H W``,
    ``N = C_in/groups``, ``K = C_out/groups x kh kw``; weight gradient ``M = C_out/groups``,
    ``N = C_in/groups x kh kw``, ``K = N Ho Wo`` (only the gradients the backward computes; a
    transposed convolution's forward is the input gradient of the convolution it inverts);
    attention as its ``Q K^T`` and ``P V`` batched GEMMs forward, and ``Q K^T``, ``P^T dO``,
    ``dO V^T``, ``dS K``, ``dS^T Q`` backward (``count`` = batch x heads). Empty for other ops.

    ``row_elements`` is the length of the row a row-wise op reduces over (LayerNorm: the
    normalised elements; softmax and log-softmax: the ``dim`` size; forward and backward) and
    ``rows`` how many such rows its input holds (``rows x row_elements`` = the input's elements);
    both 0 for other ops.

    ``conv_window`` describes a non-transposed 2-D convolution (forward or backward) by the fields
    of :data:`CONV_WINDOW`: its window, groups, channels and the input's and output's height and
    width, none of which depends on the batch. An accelerator library may run such a convolution by
    another algorithm than its implicit GEMM (cuDNN's Winograd for a 3 x 3 window at stride 1).
    Empty for other ops.
    """

    name: str
    phase: str
    module: str
    flops: float
    flop_source: str
    bytes_read: int
    bytes_written: int
    output_elements: int
    dtype: str
    input_ids: tuple[int, ...] = ()
    output_ids: tuple[int, ...] = ()
    gemms: tuple[tuple[int, int, int, int], ...] = ()
    implicit_gemms: tuple[tuple[int, int, int, int], ...] = ()
    rows: int = 0
    row_elements: int = 0
    conv_window: tuple[int, ...] = ()

    def __post_init__(self) -> None:
        for label, gemms in (("GEMM", self.gemms), ("implicit GEMM", self.implicit_gemms)):
            if any(len(gemm) != 4 or min(gemm) < 1 for gemm in gemms):
                raise WorkloadError(
                    f"op {self.name}: every {label} must be (count, m, n, k) of positive ints, got {gemms}"
                )
        if self.rows < 0 or self.row_elements < 0:
            raise WorkloadError(f"op {self.name}: rows and row_elements must be >= 0")
        if self.conv_window and (len(self.conv_window) != len(CONV_WINDOW) or min(self.conv_window) < 1):
            raise WorkloadError(
                f"op {self.name}: conv_window must be {len(CONV_WINDOW)} positive ints "
                f"({', '.join(CONV_WINDOW)}), got {self.conv_window}"
            )
        if self.phase not in PHASES:
            raise WorkloadError(f"op {self.name}: phase must be one of {PHASES}, got {self.phase!r}")
        if self.flop_source not in FLOP_SOURCES:
            raise WorkloadError(f"op {self.name}: flop_source must be one of {FLOP_SOURCES}, got {self.flop_source!r}")
        if self.flops < 0 or self.bytes_read < 0 or self.bytes_written < 0 or self.output_elements < 0:
            raise WorkloadError(f"op {self.name}: flops, bytes and output_elements must be >= 0")


@dataclass(frozen=True, kw_only=True, slots=True)
class ParameterRecord:
    """A trainable parameter: its gradient must be all-reduced once ``grad_ready_op`` has run."""

    name: str
    numel: int
    dtype: str
    grad_ready_op: int


@dataclass(frozen=True, kw_only=True)
class Workload:
    """One captured step at ``batch_size`` samples: a training step (forward, backward, optimizer)
    or, as ``mode`` says (:data:`STEP_MODES`), forward and backward alone or inference."""

    name: str
    batch_size: int
    ops: tuple[OpRecord, ...]
    tensors: tuple[TensorRecord, ...] = ()
    parameters: tuple[ParameterRecord, ...] = ()
    optimizer: str = "AdamW"
    schema_version: int = SCHEMA_VERSION
    mode: str = "train"

    def __post_init__(self) -> None:
        if self.batch_size < 1:
            raise WorkloadError(f"workload {self.name}: batch_size must be >= 1, got {self.batch_size}")
        if self.mode not in STEP_MODES:
            raise WorkloadError(f"workload {self.name}: mode must be one of {STEP_MODES}, got {self.mode!r}")
        if self.schema_version != SCHEMA_VERSION:
            raise WorkloadError(
                f"workload {self.name}: schema version {self.schema_version} is not supported "
                f"(this pytest-dojo reads version {SCHEMA_VERSION}); capture it again"
            )

    def _sum_flops_by_phase(self) -> dict[str, float]:
        by_phase = dict.fromkeys(PHASES, 0.0)
        for op in self.ops:
            by_phase[op.phase] += op.flops
        return by_phase

    @property
    def flops_total(self) -> float:
        """FLOPs of one step over all phases."""
        return sum(WORKLOAD_CACHE.get(self, "flops_by_phase", self._sum_flops_by_phase).values())

    @property
    def flops_by_phase(self) -> dict[str, float]:
        """FLOPs of one step per phase (forward, backward, optimizer)."""
        return dict(WORKLOAD_CACHE.get(self, "flops_by_phase", self._sum_flops_by_phase))

    @property
    def parameter_count(self) -> int:
        """Trainable parameters (elements)."""
        return sum(p.numel for p in self.parameters)

    @property
    def keeps_gradients(self) -> bool:
        """Whether the step has weight gradients: to hold in memory and, across data-parallel
        replicas, to all-reduce. An inference step runs under ``no_grad`` and has none."""
        return self.mode != "inference"

    @property
    def unmodeled_ops(self) -> dict[str, int]:
        """Op name -> count, for ops with no FLOP formula (costed by bytes only)."""
        return dict(sorted(Counter(op.name for op in self.ops if op.flop_source == "unmodeled").items()))

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready dict; :meth:`from_dict` inverts it exactly (``mode`` is written only
        when it is not ``"train"``, so a training step's dict is what it was before modes)."""
        return {
            "schema_version": self.schema_version,
            "name": self.name,
            "batch_size": self.batch_size,
            "optimizer": self.optimizer,
            **({"mode": self.mode} if self.mode != "train" else {}),
            "ops": [asdict(op) for op in self.ops],
            "tensors": [asdict(t) for t in self.tensors],
            "parameters": [asdict(p) for p in self.parameters],
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Workload:
        """Rebuild a workload from :meth:`to_dict` output; a malformed dict is a one-line error."""
        try:
            version = int(data["schema_version"])
            if version != SCHEMA_VERSION:
                raise WorkloadError(f"workload schema version {version} is not supported (expected {SCHEMA_VERSION})")
            return cls(
                name=str(data["name"]),
                batch_size=int(data["batch_size"]),
                optimizer=str(data.get("optimizer", "AdamW")),
                mode=str(data.get("mode", "train")),
                ops=tuple(
                    OpRecord(
                        **{
                            **op,
                            "input_ids": tuple(op["input_ids"]),
                            "output_ids": tuple(op["output_ids"]),
                            "gemms": _gemms(op.get("gemms", ())),
                            "implicit_gemms": _gemms(op.get("implicit_gemms", ())),
                            "conv_window": tuple(int(value) for value in op.get("conv_window", ())),
                        }
                    )
                    for op in data["ops"]
                ),
                tensors=tuple(TensorRecord(**t) for t in data["tensors"]),
                parameters=tuple(ParameterRecord(**p) for p in data["parameters"]),
                schema_version=version,
            )
        except WorkloadError:
            raise
        except (KeyError, TypeError, ValueError) as error:
            raise WorkloadError(f"malformed workload data: {type(error).__name__}: {error}") from None

    def to_json(self) -> str:
        """Compact JSON text of :meth:`to_dict`."""
        return json.dumps(self.to_dict(), separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str) -> Workload:
        """Parse :meth:`to_json` output."""
        try:
            data = json.loads(text)
        except json.JSONDecodeError as error:
            raise WorkloadError(f"workload is not valid JSON: {error}") from None
        if not isinstance(data, dict):
            raise WorkloadError("workload JSON must be an object")
        return cls.from_dict(data)


def _gemms(data: Any) -> tuple[tuple[int, int, int, int], ...]:
    """GEMMs read from JSON lists; a GEMM of the wrong length is refused by :class:`OpRecord`."""
    gemms: list[Any] = [tuple(int(d) for d in gemm) for gemm in data]
    return tuple(gemms)


class WorkloadSource(Protocol):
    """Gives the workload of one replica at a given per-replica batch.

    Plans that split the global batch differently need differently sized steps; the plugin
    implements this by capturing (and caching) the step at each batch size it is asked for.

    A source may also have ``prepare(batch_sizes: Sequence[int]) -> None``: the plan search calls it,
    where present, with every per-replica batch it will ask for before it asks, so that a source
    that captures can produce several in one go (it must answer each request as it would without).
    """

    @property
    def global_batch(self) -> int:
        """Samples in one global step."""
        ...

    def workload(self, batch_size: int) -> Workload:
        """The captured step of one replica at ``batch_size`` samples."""
        ...


@dataclass(frozen=True)
class FixedWorkloads:
    """A :class:`WorkloadSource` over workloads captured ahead of time, keyed by batch size."""

    by_batch: Mapping[int, Workload]
    global_batch: int

    def workload(self, batch_size: int) -> Workload:
        try:
            return self.by_batch[batch_size]
        except KeyError:
            known = ", ".join(str(b) for b in sorted(self.by_batch))
            raise WorkloadError(f"no workload captured at batch size {batch_size} (have: {known})") from None

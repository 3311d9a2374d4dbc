"""How a training step is laid onto the chips: degrees of data, tensor and pipeline parallelism."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache

import numpy as np

from hwmodel.errors import PlanError
from hwmodel.spec.mesh import Mesh

_DEGREES = {"dp": "data_parallel", "tp": "tensor_parallel", "pp": "pipeline_parallel", "mb": "micro_batches"}


@dataclass(frozen=True, kw_only=True)
class Plan:
    """Degrees of parallelism; their product is the number of chips the plan uses.

    ``data_parallel`` replicas each take ``global_batch / data_parallel`` samples;
    ``tensor_parallel`` chips split each layer; ``pipeline_parallel`` stages split the layers, fed
    with ``micro_batches`` micro-batches per step.
    """

    data_parallel: int
    tensor_parallel: int = 1
    pipeline_parallel: int = 1
    micro_batches: int = 1

    def __post_init__(self) -> None:
        for name in ("data_parallel", "tensor_parallel", "pipeline_parallel", "micro_batches"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise PlanError(f"plan {name} must be an integer >= 1, got {value!r}")

    @property
    def chips_used(self) -> int:
        """Chips the plan occupies."""
        return self.data_parallel * self.tensor_parallel * self.pipeline_parallel

    def __str__(self) -> str:
        parts = [f"dp={self.data_parallel}"]
        if self.tensor_parallel > 1:
            parts.append(f"tp={self.tensor_parallel}")
        if self.pipeline_parallel > 1:
            parts.append(f"pp={self.pipeline_parallel} mb={self.micro_batches}")
        return " ".join(parts)

    @classmethod
    def parse(cls, text: str) -> Plan:
        """The plan of :meth:`__str__`'s text, as a report's JSON or a command line gives it.

        >>> Plan.parse("dp=5 pp=5 mb=8")
        Plan(data_parallel=5, tensor_parallel=1, pipeline_parallel=5, micro_batches=8)
        """
        degrees: dict[str, int] = {}
        for part in text.split():
            key, _, value = part.partition("=")
            if key not in _DEGREES or not value.isdigit():
                raise PlanError(f"cannot read the plan {text!r}: expected parts like dp=25 tp=5 pp=2 mb=8")
            degrees[_DEGREES[key]] = int(value)
        if "data_parallel" not in degrees:
            raise PlanError(f"cannot read the plan {text!r}: it names no dp= degree")
        return cls(**degrees)

    def check_fits(self, mesh: Mesh) -> None:
        """The plan must use exactly the chips of ``mesh``."""
        if self.chips_used != mesh.num_chips:
            raise PlanError(
                f"plan {self} uses {self.chips_used} chips but mesh {mesh} has {mesh.num_chips}; "
                "the degrees must multiply to the mesh's chip count"
            )


def data_parallel(mesh: Mesh) -> Plan:
    """Every chip a data-parallel replica."""
    return Plan(data_parallel=mesh.num_chips)


@dataclass(frozen=True, kw_only=True)
class GroupShape:
    """A group of chips that run one collective: ``rows x cols`` chips, ``*_stride`` apart.

    ``concurrent_groups`` congruent groups run the same collective at once (every group of that
    kind in the plan), interleaved before they repeat (as :mod:`hwmodel.collectives.routing` places them): a
    group whose members are ``s`` chips apart along a row shares that row's links with the
    ``s - 1`` groups between its members.
    """

    rows: int
    cols: int
    row_stride: int = 1
    col_stride: int = 1
    concurrent_groups: int = 1

    @property
    def size(self) -> int:
        """Chips in the group."""
        return self.rows * self.cols


@dataclass(frozen=True, kw_only=True)
class PlanLayout:
    """Where a plan's groups sit on the mesh.

    Chips are numbered row-major; chip ``((d * pp) + s) * tp + t`` is tensor rank ``t`` of stage
    ``s`` of replica ``d``. Tensor-parallel groups are therefore runs of neighbouring chips in a row
    (the cheapest collectives, issued on the critical path), pipeline stages are neighbouring runs
    (point-to-point over few hops), and data-parallel groups are strided across the whole mesh (the
    gradient all-reduce, which overlaps the backward pass).

    >>> layout = plan_layout(Plan(data_parallel=5, tensor_parallel=5), Mesh(rows=5, cols=5))
    >>> layout.tensor_group
    GroupShape(rows=1, cols=5, row_stride=1, col_stride=1, concurrent_groups=5)
    >>> layout.data_group
    GroupShape(rows=5, cols=1, row_stride=1, col_stride=1, concurrent_groups=5)
    """

    tensor_group: GroupShape
    data_group: GroupShape
    pipeline_hops: int


def _run_group(length: int, stride: int, mesh: Mesh, what: str, plan: Plan) -> GroupShape:
    """Chips ``0, stride, 2 stride, ...`` (``length`` of them) in row-major order, as a group shape."""
    if length == 1:
        return GroupShape(rows=1, cols=1)
    span = length * stride
    if stride < mesh.cols:
        if mesh.cols % stride == 0 and span <= mesh.cols and mesh.cols % span == 0:
            return GroupShape(rows=1, cols=length, col_stride=stride, concurrent_groups=mesh.num_chips // length)
        if mesh.cols % stride == 0 and span % mesh.cols == 0:
            per_row = mesh.cols // stride
            return GroupShape(
                rows=length // per_row, cols=per_row, col_stride=stride, concurrent_groups=mesh.num_chips // length
            )
    elif stride % mesh.cols == 0:
        row_stride = stride // mesh.cols
        return GroupShape(rows=length, cols=1, row_stride=row_stride, concurrent_groups=mesh.num_chips // length)
    raise PlanError(
        f"plan {plan}: the {what} groups ({length} chips, {stride} apart) do not tile mesh {mesh}; "
        f"choose degrees that divide its {mesh.cols} columns or are multiples of them"
    )


@cache
def plan_layout(plan: Plan, mesh: Mesh) -> PlanLayout:
    """The group shapes of ``plan`` on ``mesh`` (which it must fit); a pure function, cached, so
    that a plan's groups are the same objects every step (cheap keys for the collective prices)."""
    plan.check_fits(mesh)
    tensor = _run_group(plan.tensor_parallel, 1, mesh, "tensor-parallel", plan)
    inner = plan.tensor_parallel * plan.pipeline_parallel
    data = _run_group(plan.data_parallel, inner, mesh, "data-parallel", plan)
    return PlanLayout(tensor_group=tensor, data_group=data, pipeline_hops=pipeline_hops(plan, mesh))


def pipeline_hops(plan: Plan, mesh: Mesh) -> int:
    """Links crossed between neighbouring stages of the first replica, at most: stage ``s`` starts
    at chip ``s x tp`` (row-major), routes are dimension-ordered.

    >>> pipeline_hops(Plan(data_parallel=1, tensor_parallel=2, pipeline_parallel=4), Mesh(rows=2, cols=4))
    3
    """
    if plan.pipeline_parallel == 1:
        return 0
    starts = np.arange(plan.pipeline_parallel, dtype=np.int64) * plan.tensor_parallel
    rows, cols = np.divmod(starts, mesh.cols)
    return int((np.abs(np.diff(rows)) + np.abs(np.diff(cols))).max())

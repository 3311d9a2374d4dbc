"""How a training step is laid onto the chips: degrees of data, tensor and pipeline parallelism."""

from __future__ import annotations

from dataclasses import dataclass

from hwmodel.errors import PlanError
from hwmodel.mesh import Mesh


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

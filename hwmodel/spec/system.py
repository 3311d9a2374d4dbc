"""A system: chips of one kind, the fabric that joins them and the mesh they form."""

from __future__ import annotations

from dataclasses import dataclass

from hwmodel.spec.chip import ChipSpec
from hwmodel.spec.fabric import FabricSpec
from hwmodel.spec.mesh import Mesh


@dataclass(frozen=True, kw_only=True)
class System:
    """``mesh.num_chips`` chips of ``chip`` joined by ``fabric``."""

    chip: ChipSpec
    fabric: FabricSpec
    mesh: Mesh

    @property
    def num_chips(self) -> int:
        """Chips in the system."""
        return self.mesh.num_chips

    @property
    def peak_bf16_flops_per_s(self) -> float:
        """Dense BF16 peak of every chip together: the denominator of MFU."""
        return self.chip.matrix_bf16_flops_per_s * self.num_chips

    def describe(self) -> str:
        """One line for report headers: chip, mesh, chips and peak."""
        return (
            f"chip {self.chip.name}, mesh {self.mesh} ({self.num_chips} chips, fabric {self.fabric.name}), "
            f"peak {self.peak_bf16_flops_per_s / 1e15:.3g} PFLOP/s BF16"
        )

"""What the kernel models need to know about a GPU: datasheet figures, nothing fitted.

Units: FLOP/s, bytes/s, bytes. ``matrix_flops_per_s`` is the rate GEMMs and convolutions run at in
the chosen precision (IEEE FP32 on the CUDA cores for ``fp32``; the tensor-core rate for ``tf32``
and ``bf16``, with ``matrix_on_tensor_cores``); ``fp32_flops_per_s`` is the vector (CUDA-core) rate
that elementwise math runs at. ``power_limit_w`` is the board power limit (W), which caps the clock
of long FP32 GEMMs on low-power cards (T4, P4), and ``process_nm`` the silicon process's feature
size (nm), which sets the energy of a FLOP; ``None`` where unknown (no cap).
"""

from __future__ import annotations

from dataclasses import dataclass, fields

from hwmodel.errors import SpecError


@dataclass(frozen=True, kw_only=True)
class KernelDevice:
    """A GPU as the kernel models see it.

    Not modelled: the power cap of tensor-core GEMMs, thermal throttling, the per-SM limits on resident threads and
    registers (the models use one set of limits for every generation), memory sizes.
    """

    name: str
    num_sms: int
    fp32_flops_per_s: float
    matrix_flops_per_s: float
    memory_bytes_per_s: float
    l2_bytes: float
    power_limit_w: float | None = None
    process_nm: float | None = None
    matrix_on_tensor_cores: bool = False

    def __post_init__(self) -> None:
        for field in fields(self):
            value = getattr(self, field.name)
            if field.name in ("name", "matrix_on_tensor_cores") or (
                field.name in ("power_limit_w", "process_nm") and value is None
            ):
                continue
            if field.name == "l2_bytes" and value == 0:
                continue
            if not value > 0:
                raise SpecError(f"KernelDevice {self.name!r}: {field.name} must be > 0, got {value!r}")

    @property
    def matrix_flops_per_sm_per_s(self) -> float:
        return self.matrix_flops_per_s / self.num_sms

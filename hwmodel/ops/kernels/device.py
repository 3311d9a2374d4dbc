"""What the kernel models need to know about a GPU: datasheet figures, nothing fitted.

Units: FLOP/s, bytes/s, bytes. ``matrix_flops_per_s`` is the rate GEMMs and convolutions run at in
the chosen precision (IEEE FP32 on the CUDA cores for ``fp32``; the tensor-core rate for ``tf32``
and ``bf16``, with ``matrix_on_tensor_cores``); ``fp32_flops_per_s`` is the vector (CUDA-core) rate
that elementwise math runs at. ``power_limit_w`` is the board power limit (W), which caps the clock
of long FP32 GEMMs on low-power cards (T4, P4), and ``process_nm`` the silicon process's feature
size (nm), which sets the energy of a FLOP; ``None`` where unknown (no cap).
``max_threads_per_sm`` is the most threads an SM holds at once (2,048 on Pascal, Volta, Ampere and
Hopper; 1,024 on Turing), which sets how many CTAs of a row reduction run side by side;
``l1_bytes_per_sm`` the L1 data cache of one SM (bytes; the unified L1 / shared memory from Volta
on), where a row that a kernel reads several times stays between its passes; 0 where unknown.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

from hwmodel.errors import SpecError


@dataclass(frozen=True, kw_only=True)
class KernelDevice:
    """A GPU as the kernel models see it.

    Not modelled: the power cap of tensor-core GEMMs, thermal throttling, the per-SM register file and
    shared-memory limits on resident CTAs, memory sizes.
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
    max_threads_per_sm: int = 2048
    l1_bytes_per_sm: float = 0.0

    def __post_init__(self) -> None:
        for field in fields(self):
            value = getattr(self, field.name)
            if field.name in ("name", "matrix_on_tensor_cores") or (
                field.name in ("power_limit_w", "process_nm") and value is None
            ):
                continue
            if field.name in ("l2_bytes", "l1_bytes_per_sm") and value == 0:
                continue
            if not value > 0:
                raise SpecError(f"KernelDevice {self.name!r}: {field.name} must be > 0, got {value!r}")

    @property
    def matrix_flops_per_sm_per_s(self) -> float:
        return self.matrix_flops_per_s / self.num_sms

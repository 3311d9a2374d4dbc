"""The kernel models' view of a preset chip under a precision policy.

Matrix ops run at the rate the policy selects (:meth:`hwmodel.spec.chip.ChipSpec.matrix_rate_for`:
IEEE FP32 on a GPU's CUDA cores for ``fp32``, the tensor cores for ``tf32`` on Ampere and later and
for ``bf16``); everything else at the vector FP32 rate. Resident threads and the L1 data cache per
SM come from the preset (2,048 threads and no L1 figure where it gives none). The process feature
size the power cap needs is the chip's ``process_node_nm``; a chip without it gets no power cap.
"""

from __future__ import annotations

from hwmodel.ops.kernels.device import KernelDevice
from hwmodel.spec.chip import ChipSpec
from hwmodel.spec.precision import Precision


def kernel_device_from_chip(chip: ChipSpec, precision: Precision) -> KernelDevice:
    """The :class:`KernelDevice` of ``chip`` when it trains under ``precision``.

    >>> from hwmodel.spec.presets import get_preset
    >>> from hwmodel.spec.precision import FP32
    >>> device = kernel_device_from_chip(get_preset("t4").chip, FP32)
    >>> device.num_sms, device.matrix_flops_per_s == device.fp32_flops_per_s, device.power_limit_w
    (40, True, 70.0)
    >>> device.max_threads_per_sm, device.l1_bytes_per_sm
    (1024, 65536.0)
    """
    _, matrix_rate = chip.matrix_rate_for(precision)
    return KernelDevice(
        name=chip.name,
        num_sms=chip.compute_units,
        fp32_flops_per_s=chip.vector_flops_per_s,
        matrix_flops_per_s=matrix_rate,
        memory_bytes_per_s=chip.local_memory_read_bytes_per_s,
        l2_bytes=chip.l2_cache_bytes,
        power_limit_w=None if chip.power_limit_w is None else float(chip.power_limit_w),
        process_nm=chip.process_node_nm,
        matrix_on_tensor_cores=matrix_rate != chip.matrix_fp32_flops_per_s,
        max_threads_per_sm=chip.max_threads_per_compute_unit or 2048,
        l1_bytes_per_sm=float(chip.l1_cache_bytes_per_compute_unit),
    )

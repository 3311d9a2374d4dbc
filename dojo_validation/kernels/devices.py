"""Kernel-model devices from the measured GPUs' records (``devices/*.json`` of the data set).

A record gives ``Num_Sm``, ``SingleFLOPs`` (FP32 GFLOP/s), ``Mem_Bw`` (GB/s, 1e9 bytes/s) and
``L2Cache`` (MB, read as MiB: NVIDIA's "40 MB" L2 is 40 x 2^20 bytes). The measurements are IEEE
FP32, so GEMMs run at the FP32 rate too. The board power limit and the process, which the records
lack, come from the datasheets and whitepapers (:data:`POWER_LIMIT_W`, :data:`PROCESS_NM`), and so do
the resident threads and the L1 data cache per SM (:data:`MAX_THREADS_PER_SM`, :data:`L1_BYTES_PER_SM`).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from hwmodel.errors import SpecError
from hwmodel.ops.kernels.device import KernelDevice

RECORD_FIELDS = ("Device", "Num_Sm", "SingleFLOPs", "Mem_Bw", "L2Cache")

POWER_LIMIT_W = {
    "Tesla P100-PCIE-16GB": 250.0,
    "Tesla P4": 75.0,
    "Tesla T4": 70.0,
    "Tesla V100-PCIE-32GB": 250.0,
    "NVIDIA A100-PCIE-40GB": 250.0,
    "NVIDIA A100 80GB PCIe": 300.0,
    "NVIDIA A100-SXM4-40GB": 400.0,
}
"""Board power limits (W), which the records lack: the datasheets cited in docs/reference/gpus.md
(DS-P100, DS-P4 (50 or 75 W, configurable: the higher setting), DS-T4, DS-V100, DS-A100-40, DS-A100)."""

PROCESS_NM = {
    "Tesla P100-PCIE-16GB": 16.0,
    "Tesla P4": 16.0,
    "Tesla T4": 12.0,
    "Tesla V100-PCIE-32GB": 12.0,
    "NVIDIA A100-PCIE-40GB": 7.0,
    "NVIDIA A100 80GB PCIe": 7.0,
    "NVIDIA A100-SXM4-40GB": 7.0,
}
"""Process feature size (nm): TSMC 16 nm FinFET for Pascal (WP-P100; GP104 likewise), TSMC 12 nm FFN
for Volta and Turing (WP-V100, WP-Turing), TSMC 7 nm N7 for A100 (WP-A100)."""


MAX_THREADS_PER_SM = {
    "Tesla P100-PCIE-16GB": 2048,
    "Tesla P4": 2048,
    "Tesla T4": 1024,
    "Tesla V100-PCIE-32GB": 2048,
    "NVIDIA A100-PCIE-40GB": 2048,
    "NVIDIA A100 80GB PCIe": 2048,
    "NVIDIA A100-SXM4-40GB": 2048,
}
"""Most resident threads per SM, which the records lack: compute capability 6.0 / 6.1 / 7.0 / 8.0
hold 2,048, Turing (7.5) 1,024 (CUDA-CC, cited in docs/reference/gpus.md)."""

L1_BYTES_PER_SM = {
    "Tesla P100-PCIE-16GB": 24 * 2**10,
    "Tesla P4": 48 * 2**10,
    "Tesla T4": 64 * 2**10,
    "Tesla V100-PCIE-32GB": 128 * 2**10,
    "NVIDIA A100-PCIE-40GB": 192 * 2**10,
    "NVIDIA A100 80GB PCIe": 192 * 2**10,
    "NVIDIA A100-SXM4-40GB": 192 * 2**10,
}
"""Largest L1 data cache per SM (bytes), which the records lack: the L1 / texture cache of Pascal
(24 KB GP100, 48 KB GP104: TG-Pascal), the combined L1 / shared memory from Volta on (128 KB V100:
WP-V100; 192 KB A100: WP-A100), of which Turing's L1 takes at most 64 KB of 96 (TG-Turing); the
figures of docs/reference/gpus.md and the presets."""


def kernel_device_from_record(record: Mapping[str, Any]) -> KernelDevice:
    """The FP32 :class:`KernelDevice` of one device record."""
    missing = [name for name in RECORD_FIELDS if name not in record]
    if missing:
        raise SpecError(f"device record {record.get('Device', '?')!r}: missing {', '.join(missing)}")
    fp32 = float(record["SingleFLOPs"]) * 1e9
    return KernelDevice(
        name=str(record["Device"]),
        num_sms=int(record["Num_Sm"]),
        fp32_flops_per_s=fp32,
        matrix_flops_per_s=fp32,
        memory_bytes_per_s=float(record["Mem_Bw"]) * 1e9,
        l2_bytes=float(record["L2Cache"]) * 2**20,
        power_limit_w=POWER_LIMIT_W.get(str(record["Device"])),
        process_nm=PROCESS_NM.get(str(record["Device"])),
        max_threads_per_sm=MAX_THREADS_PER_SM.get(str(record["Device"]), 2048),
        l1_bytes_per_sm=float(L1_BYTES_PER_SM.get(str(record["Device"]), 0)),
    )


def kernel_device_from_file(path: Path) -> KernelDevice:
    """The :class:`KernelDevice` of a device record file; a file that is not one is a ``SpecError``."""
    try:
        record = json.loads(path.read_text())
    except (OSError, ValueError) as error:
        raise SpecError(f"{path}: not a readable device record ({error})") from None
    if not isinstance(record, dict):
        raise SpecError(f"{path}: a device record is a JSON object")
    return kernel_device_from_record(record)

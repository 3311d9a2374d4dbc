"""Kernel-model devices for the measured GPUs: the shipped presets, so validation scores what users run.

Each measured GPU (``devices/*.json`` of the data set) has a preset built from its datasheet
(:data:`PRESET_OF_DEVICE`); the kernel models see it as :func:`~hwmodel.ops.kernels.from_chip.
kernel_device_from_chip` does at ``fp32`` (the measurements are IEEE FP32). The data set's records
differ from the datasheets in places: Tesla P4's says 40 SMs of 64 cores where GP104 has 20 of 128
(DS-P4, TG-Pascal), and its FP32 rates and L2 sizes are computed from clocks and MiB rather than
quoted. A record of a GPU without a preset (a user's own ``--device FILE``) is read as it is:
``Num_Sm``, ``SingleFLOPs`` (FP32 GFLOP/s), ``Mem_Bw`` (GB/s, 1e9 bytes/s) and ``L2Cache`` (MB, read
as MiB), with no power cap, 2,048 resident threads and no L1 figure, since a record has none of them.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

from hwmodel.errors import SpecError
from hwmodel.ops.kernels.device import KernelDevice
from hwmodel.ops.kernels.from_chip import kernel_device_from_chip
from hwmodel.spec.precision import FP32
from hwmodel.spec.presets import get_preset

RECORD_FIELDS = ("Device", "Num_Sm", "SingleFLOPs", "Mem_Bw", "L2Cache")

PRESET_OF_DEVICE = {
    "Tesla P100-PCIE-16GB": "p100-pcie-16gb",
    "Tesla P4": "p4",
    "Tesla T4": "t4",
    "Tesla V100-PCIE-32GB": "v100-pcie-32gb",
    "NVIDIA A100-PCIE-40GB": "a100-pcie-40gb",
    "NVIDIA A100 80GB PCIe": "a100-pcie-80gb",
    "NVIDIA A100-SXM4-40GB": "a100-sxm4-40gb",
}
"""The preset of each measured GPU, by the ``Device`` name its record and kernel rows carry."""


def kernel_device_from_record(record: Mapping[str, Any]) -> KernelDevice:
    """The FP32 :class:`KernelDevice` of one device record: its preset's where it has one."""
    missing = [name for name in RECORD_FIELDS if name not in record]
    if missing:
        raise SpecError(f"device record {record.get('Device', '?')!r}: missing {', '.join(missing)}")
    name = str(record["Device"])
    if name in PRESET_OF_DEVICE:
        return replace(kernel_device_from_chip(get_preset(PRESET_OF_DEVICE[name]).chip, FP32), name=name)
    fp32 = float(record["SingleFLOPs"]) * 1e9
    return KernelDevice(
        name=name,
        num_sms=int(record["Num_Sm"]),
        fp32_flops_per_s=fp32,
        matrix_flops_per_s=fp32,
        memory_bytes_per_s=float(record["Mem_Bw"]) * 1e9,
        l2_bytes=float(record["L2Cache"]) * 2**20,
        power_limit_w=None,
        process_nm=None,
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

"""The ``host`` chip: this machine's CPU, with rates measured by microbenchmarks, not published.

The rates come from a calibration file written by ``python -m pytest_dojo.hostbench`` (JSON, SI
units): matrix FLOP/s per dtype, vector FLOP/s, memory bandwidth and the per-op overhead, with the
machine they were measured on, when, how and with how many threads. :func:`calibration_path` says
which file is read: ``$DOJO_HOST_CALIBRATION`` if set, else the file shipped in ``hwmodel/spec``
(measured on the project's CI machine: re-measure on another machine).

The host is modelled as one chip:

* compute units: the intra-op threads of the calibration (a 1-thread calibration has one unit, so
  occupancy is always 1); the work granules, memory kind and execution mode are data in the
  ``host`` preset file (``hwmodel/spec/presets/host.toml``);
* matrix multiplies by shape: the FLOP/s of ``torch.mm`` at a grid of ``(m, n, k)`` shapes
  (:class:`~hwmodel.ops.gemm.GemmRateTable`), for the ops whose GEMMs the capture records, plus
  the fetch of their operands from beyond the caches where measured
  (``gemm_cold_operand_bytes_per_s``: in a training step a GEMM's operands were last touched a
  working set ago);
* element functions by their measured rate (``element_rates``: ``sqrt``, ``exp``, ``gelu``...,
  :mod:`hwmodel.ops.element_rates`) where measured;
* local memory: the machine's DRAM, one bandwidth shared by reads and writes: the ``copy_`` rate at
  the largest size the calibration measured; the smaller sizes are cache tiers, each at the copy's
  footprint (bytes read plus written: a 2 MiB copy moves 4 MiB), which is what an op's bytes are
  compared with; the largest of them stands for the chip's ``l2_cache_bytes`` (the largest working
  set measured to run faster than DRAM; 0 without tiers);
* fixed cost per op: the dispatch of one tiny op from Python (``dispatch_overhead_s``), the unit
  of the efficiency row's per-class overhead factors; the fabric's hop latency is the tiny
  training step's time per op (``op_overhead_s``);
* TF32: a CPU has no TF32 mode, so ``tf32`` matmuls run at the FP32 ``torch.mm`` rate; the clock
  is not measured (``clock_hz`` None), nor a power limit;
* fabric: chips of a multi-host mesh would be processes on this machine exchanging through shared
  memory: a link moves half the copy bandwidth per direction and each hop costs one op overhead
  [D/U]. Only ``1x1`` was validated.

Not modelled: NUMA, SMT, frequency scaling, other processes competing for the cores.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, replace
from importlib import resources
from pathlib import Path
from typing import Any

from hwmodel.errors import SpecError
from hwmodel.ops.gemm import GemmRateTable
from hwmodel.spec.chip import ChipSpec
from hwmodel.spec.fabric import FabricSpec

CALIBRATION_ENV = "DOJO_HOST_CALIBRATION"
CALIBRATION_FILE = "host_calibration.json"
CALIBRATION_SCHEMA_VERSION = 1


class HostCalibrationWarning(UserWarning):
    """Issued when the host calibration cannot be read: the ``host`` preset is then not registered."""


@dataclass(frozen=True, kw_only=True)
class HostCalibration:
    """Measured rates of this machine (SI units) and where they come from.

    Attributes:
        matrix_fp32_flops_per_s / matrix_bf16_flops_per_s: ``torch.mm`` rate by dtype.
        vector_flops_per_s: FP32 multiply-add rate on cache-resident data.
        memory_bytes_per_s: bytes read plus written per second by a copy too large for any cache.
        cache_tiers: ``(footprint bytes, bytes_per_s)`` copy rates at the smaller measured sizes, each
            keyed by what the copy reads plus writes (twice its tensor).
        gemm_rates: ``torch.mm`` FLOP/s by shape; None in a calibration measured without them.
        gemm_cold_operand_bytes_per_s: operand bytes per second a ``torch.mm`` fetches when the
            caches were swept before it (its extra time over its warm time); None where not
            measured (or where the sweep cost nothing measurable).
        element_rates: ``(aten function, elements per second)`` of transcendental element
            functions on cache-resident FP32; empty where not measured.
        op_overhead_s: a tiny training step's time per aten op (Python, autograd and dispatch
            between ops included): the fabric's hop latency.
        dispatch_overhead_s: time of one tiny op issued from Python (``torch.add`` of two
            1-element tensors): the fixed cost every op pays as the per-op timer sees it, the
            unit of the efficiency row's per-class overhead factors.
        threads: intra-op threads the rates were measured with.
        memory_capacity_bytes: physical memory of the machine.
        measured_utc, command, machine: provenance (machine: sorted (key, value) pairs).
    """

    matrix_fp32_flops_per_s: float
    matrix_bf16_flops_per_s: float
    vector_flops_per_s: float
    memory_bytes_per_s: float
    op_overhead_s: float
    dispatch_overhead_s: float
    threads: int
    memory_capacity_bytes: float
    measured_utc: str
    cache_tiers: tuple[tuple[float, float], ...] = ()
    gemm_rates: GemmRateTable | None = None
    gemm_cold_operand_bytes_per_s: float | None = None
    element_rates: tuple[tuple[str, float], ...] = ()
    command: str
    machine: tuple[tuple[str, str], ...] = ()

    def __post_init__(self) -> None:
        for name in (
            "matrix_fp32_flops_per_s",
            "matrix_bf16_flops_per_s",
            "vector_flops_per_s",
            "memory_bytes_per_s",
            "memory_capacity_bytes",
        ):
            if not getattr(self, name) > 0:
                raise SpecError(f"host calibration: {name} must be > 0, got {getattr(self, name)}")
        for name in ("op_overhead_s", "dispatch_overhead_s"):
            if not getattr(self, name) >= 0:
                raise SpecError(f"host calibration: {name} must be >= 0, got {getattr(self, name)}")
        if self.threads < 1:
            raise SpecError(f"host calibration: threads must be >= 1, got {self.threads}")
        cold = self.gemm_cold_operand_bytes_per_s
        if cold is not None and not cold > 0:
            raise SpecError(f"host calibration: gemm_cold_operand_bytes_per_s must be > 0, got {cold}")
        for name, rate in self.element_rates:
            if not rate > 0:
                raise SpecError(f"host calibration: element rate of {name} must be > 0, got {rate}")

    def describe(self) -> str:
        """One line: the machine and when it was measured."""
        machine = dict(self.machine)
        return (
            f"{machine.get('processor', '?')}, {self.threads} thread(s), measured {self.measured_utc} "
            f"on {machine.get('hostname', '?')}"
        )


def calibration_from_dict(data: dict[str, Any]) -> HostCalibration:
    """Parse a calibration document (``pytest_dojo.hostbench`` output); a bad one is a one-line error."""
    try:
        version = int(data["schema_version"])
        if version != CALIBRATION_SCHEMA_VERSION:
            raise SpecError(
                f"host calibration schema version {version} is not supported (expected {CALIBRATION_SCHEMA_VERSION}); "
                "re-measure with python -m pytest_dojo.hostbench"
            )
        machine = data.get("machine", {})
        measured = data.get("memory_bytes_per_s_by_size", {})
        by_footprint = sorted((2.0 * float(size), float(rate)) for size, rate in measured.items())
        bandwidth = by_footprint[-1][1] if by_footprint else float(data["memory_bytes_per_s"])
        gemm = data.get("gemm_flops_per_s")
        gemm_rates = None
        if gemm is not None:
            gemm_rates = GemmRateTable(
                dims=tuple(int(size) for size in gemm["dims"]),
                flops_per_s=tuple(float(rate) for rate in gemm["flops_per_s"]),
                source=f"torch.mm by shape, measured {data['measured_utc']}",
            )
        cold = data.get("gemm_cold_operand_bytes_per_s")
        elements = data.get("element_rates_per_s", {})
        return HostCalibration(
            gemm_cold_operand_bytes_per_s=None if cold is None else float(cold),
            element_rates=tuple(sorted((str(name), float(rate)) for name, rate in elements.items())),
            matrix_fp32_flops_per_s=float(data["matrix_fp32_flops_per_s"]),
            matrix_bf16_flops_per_s=float(data["matrix_bf16_flops_per_s"]),
            vector_flops_per_s=float(data["vector_flops_per_s"]),
            memory_bytes_per_s=bandwidth,
            cache_tiers=tuple(by_footprint[:-1]),
            gemm_rates=gemm_rates,
            op_overhead_s=float(data["op_overhead_s"]),
            dispatch_overhead_s=float(data["dispatch_overhead_s"]),
            threads=int(data["threads"]),
            memory_capacity_bytes=float(machine.get("memory_bytes") or data.get("memory_capacity_bytes", 0)),
            measured_utc=str(data["measured_utc"]),
            command=str(data.get("command", "")),
            machine=tuple(sorted((str(key), str(value)) for key, value in machine.items())),
        )
    except SpecError:
        raise
    except (KeyError, TypeError, ValueError, AttributeError) as error:
        raise SpecError(f"host calibration is malformed: {type(error).__name__}: {error}") from None


def calibration_path() -> Path:
    """``$DOJO_HOST_CALIBRATION`` if set, else the calibration shipped with the package."""
    override = os.environ.get(CALIBRATION_ENV)
    if override:
        return Path(override)
    return Path(str(resources.files("hwmodel.spec").joinpath(CALIBRATION_FILE)))


def load_calibration(path: Path | None = None) -> HostCalibration:
    """Read and check a calibration file (default: :func:`calibration_path`)."""
    source = path or calibration_path()
    try:
        text = source.read_text(encoding="utf-8")
    except OSError as error:
        raise SpecError(
            f"cannot read the host calibration {source}: {error.strerror}; "
            "measure one with python -m pytest_dojo.hostbench --output PATH"
        ) from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as error:
        raise SpecError(f"host calibration {source} is not valid JSON: {error}") from None
    if not isinstance(data, dict):
        raise SpecError(f"host calibration {source} must be a JSON object")
    return calibration_from_dict(data)


def calibrated_fields(calibration: HostCalibration) -> dict[str, Any]:
    """The fields of a chip that ``calibration`` measures, in SI units."""
    return {
        "matrix_bf16_flops_per_s": calibration.matrix_bf16_flops_per_s,
        "matrix_fp32_flops_per_s": calibration.matrix_fp32_flops_per_s,
        "matrix_tf32_flops_per_s": calibration.matrix_fp32_flops_per_s,
        "vector_flops_per_s": calibration.vector_flops_per_s,
        "compute_units": calibration.threads,
        "local_memory_bytes": calibration.memory_capacity_bytes,
        "local_memory_read_bytes_per_s": calibration.memory_bytes_per_s,
        "local_memory_write_bytes_per_s": calibration.memory_bytes_per_s,
        "op_overhead_s": calibration.dispatch_overhead_s,
        "cache_tiers": calibration.cache_tiers,
        "l2_cache_bytes": calibration.cache_tiers[-1][0] if calibration.cache_tiers else 0.0,
        "gemm_rates": calibration.gemm_rates,
        "gemm_cold_operand_bytes_per_s": calibration.gemm_cold_operand_bytes_per_s,
        "element_rates": calibration.element_rates,
        "measured_threads": calibration.threads,
        "source": f"measured by pytest_dojo.hostbench: {calibration.describe()}",
    }


def host_chip(calibration: HostCalibration, static: Mapping[str, Any]) -> ChipSpec:
    """The ``host`` chip: the measured rates of ``calibration`` with the ``static`` fields of its preset.

    ``static`` holds what the calibration does not measure (name, work granules, memory kind,
    execution mode, efficiency row, ...), as the ``host`` preset file gives them.
    """
    return ChipSpec(**static, **calibrated_fields(calibration))


def with_calibration(chip: ChipSpec, calibration: HostCalibration) -> ChipSpec:
    """``chip`` (a measured preset's) with every measured field taken from ``calibration`` instead."""
    return replace(chip, **calibrated_fields(calibration))


def host_fabric(calibration: HostCalibration) -> FabricSpec:
    """Processes on this machine joined through shared memory (see the module docstring)."""
    link = calibration.memory_bytes_per_s / 2
    return FabricSpec(
        name="host-shared-memory",
        topology="mesh2d",
        link_bytes_per_s=link,
        hop_latency_s=calibration.op_overhead_s,
        collective_step_latency_s=calibration.op_overhead_s,
        tile_rows=1,
        tile_cols=1,
        inter_tile_link_bytes_per_s=link,
        inter_tile_hop_latency_s=calibration.op_overhead_s,
        host_ingest="none",
        source=f"derived from the host calibration: {calibration.describe()}",
    )


def host_chip_and_fabric(static: Mapping[str, Any], path: Path | None = None) -> tuple[ChipSpec, FabricSpec]:
    """Chip and fabric of the ``host`` preset from the calibration file and the preset's ``static`` fields."""
    calibration = load_calibration(path)
    try:
        return host_chip(calibration, static), host_fabric(calibration)
    except TypeError as error:
        raise SpecError(f"host preset: {error}") from None

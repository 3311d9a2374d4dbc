"""The kernel models' fitted parameters: few, in hardware units, shared by every device.

They live in ``parameters.json`` beside this module, with where they came from (the measurement
files, the devices fitted on, the command and the date). Inside the dataclass every value is SI
(seconds, fractions, FLOP per byte); :data:`UNITS` says how each is shown to people.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields
from functools import cache
from pathlib import Path
from typing import Any

from hwmodel.errors import SpecError

PARAMETERS_FILE = Path(__file__).with_name("parameters.json")


def _parameter(meaning: str, unit: str, lower: float, upper: float) -> Any:
    return field(metadata={"meaning": meaning, "unit": unit, "bounds": (lower, upper)})


@dataclass(frozen=True, kw_only=True)
class KernelParameters:
    """The fitted constants of :mod:`hwmodel.ops.kernels` (each field's metadata holds its meaning,
    display unit and the bounds the fit searches within)."""

    gemm_launch_s: float = _parameter("floor of one batched-GEMM call (launch and dispatch)", "us", 1e-6, 1e-4)
    linear_launch_s: float = _parameter("floor of one linear-layer call (GEMM with bias)", "us", 1e-6, 2e-4)
    conv_launch_s: float = _parameter("floor of one convolution call (its transforms and GEMM)", "us", 1e-6, 2e-4)
    winograd_gemm_fraction: float = _parameter(
        "fraction of a GEMM tile's rate the 36 products of a non-fused Winograd F(4x4, 3x3) convolution reach",
        "",
        0.05,
        1.0,
    )
    elementwise_launch_s: float = _parameter("floor of one elementwise kernel", "us", 1e-6, 1e-4)
    layernorm_launch_s: float = _parameter("floor of one LayerNorm kernel", "us", 1e-6, 1e-4)
    softmax_launch_s: float = _parameter("floor of one softmax kernel", "us", 1e-6, 1e-4)
    gemm_peak_fraction: float = _parameter("fraction of the per-SM matrix peak a large tile reaches", "", 0.3, 1.0)
    gemm_half_intensity: float = _parameter(
        "tile intensity (FLOP per byte loaded into the tile) at which a tile reaches half its peak fraction",
        "FLOP/B",
        0.01,
        20.0,
    )
    fp32_energy_per_flop_nm_j: float = _parameter(
        "board energy per FP32 GEMM FLOP on the CUDA cores, per nm of process feature size",
        "pJ/nm",
        1e-14,
        1e-11,
    )
    memory_bandwidth_fraction: float = _parameter("sustained fraction of the datasheet memory bandwidth", "", 0.3, 1.0)
    l2_bandwidth_multiple: float = _parameter(
        "bandwidth of a working set that fits L2, as a multiple of the sustained memory bandwidth", "x", 1.0, 6.0
    )
    rowwise_wave_latency_s: float = _parameter(
        "one dependent memory round trip of a wave of row-reduction CTAs (its load, reduction and barrier)",
        "us",
        1e-8,
        2e-5,
    )
    l1_row_fraction: float = _parameter(
        "share of an SM's L1 that keeps the rows of its resident softmax CTAs between their passes", "", 0.05, 2.0
    )

    def __post_init__(self) -> None:
        for item in fields(self):
            value = getattr(self, item.name)
            if not value > 0:
                raise SpecError(f"KernelParameters: {item.name} must be > 0, got {value!r}")

    def as_dict(self) -> dict[str, float]:
        return asdict(self)


PARAMETER_NAMES = tuple(item.name for item in fields(KernelParameters))
UNITS = {item.name: item.metadata["unit"] for item in fields(KernelParameters)}
MEANINGS = {item.name: item.metadata["meaning"] for item in fields(KernelParameters)}
BOUNDS: dict[str, tuple[float, float]] = {item.name: item.metadata["bounds"] for item in fields(KernelParameters)}


def display_value(name: str, value: float) -> str:
    """A parameter in its display unit (``25.3 us``, ``0.812``)."""
    if UNITS[name] == "us":
        return f"{value * 1e6:.3g} us"
    if UNITS[name] == "pJ/nm":
        return f"{value * 1e12:.3g} pJ/nm"
    unit = UNITS[name]
    return f"{value:.3g} {unit}".rstrip()


def parameters_from_mapping(values: dict[str, Any]) -> KernelParameters:
    """Parameters from a mapping of field names to SI values; a missing or unknown name is an error."""
    missing = sorted(set(PARAMETER_NAMES) - set(values))
    unknown = sorted(set(values) - set(PARAMETER_NAMES))
    if missing or unknown:
        raise SpecError(f"kernel parameters: missing {missing}, unknown {unknown}")
    return KernelParameters(**{name: float(values[name]) for name in PARAMETER_NAMES})


@cache
def load_parameters(path: Path = PARAMETERS_FILE) -> KernelParameters:
    """The fitted parameters recorded in ``path`` (default: the shipped ``parameters.json``)."""
    document = json.loads(path.read_text())
    return parameters_from_mapping(document["parameters"])


def load_provenance(path: Path = PARAMETERS_FILE) -> dict[str, Any]:
    """Where the recorded parameters came from: data files, devices, command, date, training error."""
    provenance: dict[str, Any] = json.loads(path.read_text())["provenance"]
    return provenance

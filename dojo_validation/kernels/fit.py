"""Fitting the kernel models' parameters on measured train-shape kernels (numpy only).

The parameters fall into groups that touch disjoint op classes, fitted one after the other in log
space by a bounded Nelder–Mead search (:func:`nelder_mead`): the memory system on the elementwise
rows, then the row reductions (LayerNorm, softmax) with the memory system fixed, then the GEMMs
(``bmm``, ``linear``), then the convolution floor. The objective is the mean relative error
|predicted / measured - 1| (the figure validation reports) with every (op, device) pair weighted
alike, so no device or op dominates by its row count. Only rows with ``Split == "train-shapes"``
of the devices fitted on are used.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace

import numpy as np
from numpy.typing import NDArray

from dojo_validation.kernels.data import ELEMENTWISE_OPS, KernelRows
from hwmodel.ops.kernels.device import KernelDevice
from hwmodel.ops.kernels.dispatch import predict_seconds
from hwmodel.ops.kernels.parameters import BOUNDS, KernelParameters

Array = NDArray[np.float64]

START = KernelParameters(
    gemm_launch_s=2e-5,
    linear_launch_s=4e-5,
    conv_launch_s=4e-5,
    winograd_gemm_fraction=0.5,
    elementwise_launch_s=2e-5,
    layernorm_launch_s=3e-5,
    softmax_launch_s=2.5e-5,
    gemm_peak_fraction=0.85,
    gemm_half_intensity=2.0,
    fp32_energy_per_flop_nm_j=1e-12,
    memory_bandwidth_fraction=0.8,
    l2_bandwidth_multiple=2.0,
    rowwise_wave_latency_s=1e-6,
    l1_row_fraction=0.5,
)
"""Where the search starts: round figures of the right order."""


@dataclass(frozen=True)
class Group:
    """Parameters fitted together, on the rows of ``ops``."""

    names: tuple[str, ...]
    ops: tuple[str, ...]
    family: str


GROUPS = (
    Group(
        ("elementwise_launch_s", "memory_bandwidth_fraction", "l2_bandwidth_multiple"),
        ELEMENTWISE_OPS,
        "vector",
    ),
    Group(
        ("layernorm_launch_s", "softmax_launch_s", "rowwise_wave_latency_s", "l1_row_fraction"),
        ("ln", "softmax"),
        "vector",
    ),
    Group(
        ("gemm_launch_s", "linear_launch_s", "gemm_peak_fraction", "gemm_half_intensity", "fp32_energy_per_flop_nm_j"),
        ("bmm", "linear"),
        "matmul",
    ),
    Group(("conv_launch_s", "winograd_gemm_fraction"), ("conv",), "conv"),
)

Progress = Callable[[str], None]


def _silent(message: str) -> None:
    """Progress sink that drops everything."""


def nelder_mead(
    objective: Callable[[Array], float],
    start: Array,
    *,
    step: float = 0.3,
    iterations: int = 200,
    tolerance: float = 1e-5,
) -> Array:
    """Minimise ``objective`` from ``start`` with the Nelder–Mead simplex (standard coefficients)."""
    size = len(start)
    simplex = [start.copy()] + [start + step * np.eye(size)[i] for i in range(size)]
    values = [objective(point) for point in simplex]
    for _ in range(iterations):
        order = np.argsort(values)
        simplex, values = [simplex[i] for i in order], [values[i] for i in order]
        if values[-1] - values[0] < tolerance:
            break
        centroid = np.mean(simplex[:-1], axis=0)
        reflected = centroid + (centroid - simplex[-1])
        value = objective(reflected)
        if value < values[0]:
            expanded = centroid + 2.0 * (centroid - simplex[-1])
            expanded_value = objective(expanded)
            simplex[-1], values[-1] = (expanded, expanded_value) if expanded_value < value else (reflected, value)
        elif value < values[-2]:
            simplex[-1], values[-1] = reflected, value
        else:
            contracted = centroid + 0.5 * (simplex[-1] - centroid)
            contracted_value = objective(contracted)
            if contracted_value < values[-1]:
                simplex[-1], values[-1] = contracted, contracted_value
            else:
                simplex = [simplex[0] + 0.5 * (point - simplex[0]) for point in simplex]
                values = [values[0], *(objective(point) for point in simplex[1:])]
    best: Array = simplex[int(np.argmin(values))]
    return best


@dataclass(frozen=True)
class Batch:
    """Rows of one (op, device) pair, ready to predict."""

    op: str
    device: KernelDevice
    shapes: Mapping[str, Array]
    latency_s: Array


def batches(
    rows: KernelRows, ops: Sequence[str], devices: Mapping[str, KernelDevice], per_pair: int | None, seed: int = 0
) -> list[Batch]:
    """The train-shape rows of ``ops`` on ``devices``, at most ``per_pair`` per (op, device) pair
    (a seeded sample), as :class:`Batch` es."""
    rng = np.random.default_rng(seed)
    result = []
    train = rows.split == "train-shapes"
    for op in ops:
        for name, device in devices.items():
            index = np.flatnonzero(train & (rows.op == op) & (rows.device == name))
            if per_pair is not None and len(index) > per_pair:
                index = np.sort(rng.choice(index, per_pair, replace=False))
            if len(index):
                result.append(Batch(op, device, {k: v[index] for k, v in rows.shapes.items()}, rows.latency_s[index]))
    return result


def mean_relative_error(parameters: KernelParameters, pairs: Sequence[Batch]) -> float:
    """Mean over (op, device) pairs of the mean |predicted / measured - 1|."""
    errors = []
    for pair in pairs:
        predicted = predict_seconds(pair.op, pair.shapes, pair.device, parameters)
        errors.append(float(np.mean(np.abs(predicted / pair.latency_s - 1.0))))
    return float(np.mean(errors))


def fit_group(parameters: KernelParameters, group: Group, pairs: Sequence[Batch], iterations: int) -> KernelParameters:
    """``parameters`` with ``group``'s entries refitted on ``pairs``."""
    lower = np.log([BOUNDS[name][0] for name in group.names])
    upper = np.log([BOUNDS[name][1] for name in group.names])

    def with_values(point: Array) -> KernelParameters:
        values = np.exp(np.clip(point, lower, upper))
        return replace(parameters, **dict(zip(group.names, (float(v) for v in values), strict=True)))

    start = np.log([getattr(parameters, name) for name in group.names])
    best = nelder_mead(lambda point: mean_relative_error(with_values(point), pairs), start, iterations=iterations)
    return with_values(best)


def fit(
    rows: Mapping[str, KernelRows],
    devices: Mapping[str, KernelDevice],
    *,
    per_pair: int | None = 400,
    iterations: int = 150,
    start: KernelParameters = START,
    progress: Progress = _silent,
) -> KernelParameters:
    """Parameters fitted on the train-shape rows of ``devices`` (``rows`` by family), group by group."""
    parameters = start
    for group in GROUPS:
        if group.family not in rows:
            continue
        pairs = batches(rows[group.family], group.ops, devices, per_pair)
        if not pairs:
            continue
        parameters = fit_group(parameters, group, pairs, iterations)
        progress(f"  fitted {', '.join(group.names)}: mean relative error {mean_relative_error(parameters, pairs):.3f}")
    return parameters

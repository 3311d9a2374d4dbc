"""Fit per-op-class efficiencies from measured per-op times: the data of ``efficiency.json``.

Input: for each network of a calibration set, its captured :class:`~hwmodel.Workload` and the
measured time of every aten op of one real step, as ``(op name, phase, seconds)`` in dispatch order
(``dojo_validation.measure.OpTimer`` records them at the capture's level). Measured ops are paired with
captured ops by the k-th occurrence of each (name, phase), so a stray op on either side does not
shift the rest.

For op class ``c`` the model predicts each paired op at ``max(compute_i / e_c, memory_i / m_c) +
o_c x overhead``, where ``compute_i`` and ``memory_i`` are the op's times at peak (efficiency 1, from
:func:`hwmodel.ops.cost.op_costs`), ``e_c``, ``m_c`` are the class's compute and memory efficiencies
and ``o_c`` scales the chip's fixed cost per op for the class (an op's launch or dispatch cost
differs by kind: a CPU convolution builds a oneDNN primitive, a pointwise op does not). An op
timed by its measured GEMM shapes keeps ``memory_i`` as it is (a floor at the plain bandwidth,
:func:`hwmodel.ops.matrix.gemm_timed`): ``m_c`` is fitted on the class's other ops. An element
function timed by its measured rate (:mod:`hwmodel.ops.element_rates`) keeps ``compute_i`` as it
is: ``e_c`` is fitted on the class's other ops.
The fit picks ``(e_c, m_c, o_c)`` on a log grid in (0, 1] minimising, over the calibration networks,

    sum_n  w_cn * ln(predicted_cn / measured_cn)^2,     w_cn = measured_cn / measured_n

(``measured_cn``: class ``c``'s measured op time in network ``n``; ``measured_n``: all its paired
op time), so each network counts by how much of its step the class takes, and a class's total, not
each op, is matched. Ties go to the higher efficiency. Classes with no measured op keep 1.0.

One efficiency pair per class, for every network: no per-network factor exists. Efficiencies are
capped at 1: an op that beats the calibrated peak (cache-resident data on a CPU) is overpredicted.
The search is coarse to fine: for each overhead factor of :data:`OVERHEAD_GRID`, every fourth
efficiency grid point; then the full grid around the best one.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from hwmodel.errors import SpecError, WorkloadError
from hwmodel.ops.classes.registry import op_classes
from hwmodel.ops.cost import op_costs
from hwmodel.ops.efficiency import EfficiencyTable
from hwmodel.ops.element_rates import element_timed
from hwmodel.ops.matrix import class_indices, gemm_timed
from hwmodel.spec.chip import ChipSpec
from hwmodel.spec.precision import Precision
from hwmodel.step.workload import Workload

MeasuredOp = tuple[str, str, float]
"""(aten op name as the capture records it, phase, seconds)."""

EFFICIENCY_GRID = tuple(float(value) for value in np.geomspace(1.0, 1e-3, 121))
"""Candidate efficiencies, highest first (so ties resolve upwards): 1 down to 0.001, 121 steps."""

OVERHEAD_GRID = tuple(10 ** (step / 10) for step in range(-13, 28))
"""Candidate factors on the chip's per-op fixed cost (a tiny op's dispatch on the host): 10^(k/10) from
0.05x to 500x, 1.0 among them (a oneDNN convolution's primitive set-up costs some 80 dispatches)."""


def peak_table() -> EfficiencyTable:
    """Efficiency 1.0 for every registered op class: the model's times at peak."""
    ones = (1.0,) * len(op_classes().names)
    return EfficiencyTable(chip="peak", compute=ones, memory=ones, calibration="peak ceilings")


@dataclass(frozen=True, kw_only=True)
class CalibrationSample:
    """One calibration network: its captured step and the measured per-op times of one real step."""

    name: str
    workload: Workload
    measured_ops: tuple[MeasuredOp, ...]


@dataclass(frozen=True, kw_only=True)
class Pairing:
    """Captured op indices and the measured seconds paired with them, and what stayed unpaired."""

    op_index: npt.NDArray[np.int64]
    measured_s: npt.NDArray[np.float64]
    unpaired_captured: int
    unpaired_measured: int


def pair_ops(workload: Workload, measured: Sequence[MeasuredOp]) -> Pairing:
    """Pair the k-th captured and k-th measured op of each (name, phase).

    >>> from hwmodel.step.workload import OpRecord
    >>> op = lambda name: OpRecord(name=name, phase="forward", module="m", flops=0.0, flop_source="formula",
    ...                            bytes_read=0, bytes_written=0, output_elements=1, dtype="float32")
    >>> w = Workload(name="w", batch_size=1, ops=(op("aten.mm.default"), op("aten.add.Tensor"), op("aten.mm.default")))
    >>> p = pair_ops(w, [("aten.mm.default", "forward", 1.0), ("aten.relu.default", "forward", 5.0),
    ...                  ("aten.mm.default", "forward", 2.0)])
    >>> p.op_index.tolist(), p.measured_s.tolist(), p.unpaired_captured, p.unpaired_measured
    ([0, 2], [1.0, 2.0], 1, 1)
    """
    queues: dict[tuple[str, str], list[float]] = defaultdict(list)
    for name, phase, seconds in measured:
        if seconds < 0:
            raise WorkloadError(f"measured op {name} has a negative time {seconds}")
        queues[(name, phase)].append(float(seconds))
    positions: dict[tuple[str, str], int] = defaultdict(int)
    indices: list[int] = []
    times: list[float] = []
    for index, op in enumerate(workload.ops):
        key = (op.name, op.phase)
        position = positions[key]
        queue = queues.get(key)
        if queue is not None and position < len(queue):
            indices.append(index)
            times.append(queue[position])
            positions[key] = position + 1
    paired = len(indices)
    return Pairing(
        op_index=np.asarray(indices, dtype=np.int64),
        measured_s=np.asarray(times, dtype=np.float64),
        unpaired_captured=len(workload.ops) - paired,
        unpaired_measured=len(measured) - paired,
    )


@dataclass(frozen=True, kw_only=True)
class ClassFit:
    """The fitted efficiencies of one class and how well they match the calibration set."""

    op_class: str
    compute: float
    memory: float
    paired_ops: int
    overhead: float = 1.0
    measured_s: float
    predicted_s: float


@dataclass(frozen=True, kw_only=True)
class EfficiencyFit:
    """A fitted table and the per-class details."""

    table: EfficiencyTable
    classes: tuple[ClassFit, ...]
    networks: tuple[str, ...]


@dataclass
class _ClassData:
    compute_s: list[npt.NDArray[np.float64]]
    memory_s: list[npt.NDArray[np.float64]]
    measured_s: list[npt.NDArray[np.float64]]
    sample: list[npt.NDArray[np.int64]]
    overhead_s: list[npt.NDArray[np.float64]]
    bandwidth_only: list[npt.NDArray[np.bool_]]
    measured_rate: list[npt.NDArray[np.bool_]]


def fit_efficiency(
    samples: Sequence[CalibrationSample], chip: ChipSpec, precision: Precision, *, calibration: str
) -> EfficiencyFit:
    """Per-class (compute, memory) efficiencies of ``chip`` that best explain ``samples``."""
    if not samples:
        raise SpecError("calibration needs at least one network")
    names = op_classes().names
    peak_efficiency = peak_table()
    data = {name: _ClassData([], [], [], [], [], [], []) for name in names}
    sample_totals = np.zeros(len(samples))
    for sample_index, sample in enumerate(samples):
        pairing = pair_ops(sample.workload, sample.measured_ops)
        peak = op_costs(sample.workload, chip, peak_efficiency, precision)
        classes = class_indices(sample.workload, chip)[pairing.op_index]
        timed_by_shape = gemm_timed(sample.workload, chip)[pairing.op_index]
        timed_by_element = element_timed(sample.workload, chip)[pairing.op_index]
        sample_totals[sample_index] = float(pairing.measured_s.sum())
        for class_index, name in enumerate(names):
            mask = classes == class_index
            if not mask.any():
                continue
            chosen = pairing.op_index[mask]
            data[name].compute_s.append(peak.compute_s[chosen])
            data[name].overhead_s.append(peak.overhead_s[chosen])
            data[name].memory_s.append(peak.memory_s[chosen])
            data[name].bandwidth_only.append(timed_by_shape[mask])
            data[name].measured_rate.append(timed_by_element[mask])
            data[name].measured_s.append(pairing.measured_s[mask])
            data[name].sample.append(np.full(int(mask.sum()), sample_index, dtype=np.int64))
    grid = np.asarray(EFFICIENCY_GRID)
    fits = []
    for name in names:
        fits.append(_fit_class(name, data[name], grid, sample_totals, len(samples)))
    table = EfficiencyTable(
        chip=chip.name,
        compute=tuple(fit.compute for fit in fits),
        memory=tuple(fit.memory for fit in fits),
        overhead=tuple(fit.overhead for fit in fits),
        calibration=calibration,
        classes=names,
    )
    return EfficiencyFit(table=table, classes=tuple(fits), networks=tuple(sample.name for sample in samples))


@dataclass(frozen=True, eq=False)
class _Objective:
    """Weighted squared log error of one class's predicted against measured time, per sample.

    Ops arrive grouped by sample (in sample order), so per-sample sums are segment sums from
    ``starts``.
    """

    compute_s: npt.NDArray[np.float64]
    memory_s: npt.NDArray[np.float64]
    bandwidth_only: npt.NDArray[np.bool_]
    measured_rate: npt.NDArray[np.bool_]
    starts: npt.NDArray[np.int64]
    overhead_by_sample_s: npt.NDArray[np.float64]
    target_s: npt.NDArray[np.float64]
    weights: npt.NDArray[np.float64]

    def __call__(
        self, compute_efficiency: float, memory_grid: npt.NDArray[np.float64], overhead_factor: float
    ) -> npt.NDArray[np.float64]:
        compute = np.where(self.measured_rate, self.compute_s, self.compute_s / compute_efficiency)[:, None]
        memory = np.where(
            self.bandwidth_only[:, None], self.memory_s[:, None], self.memory_s[:, None] / memory_grid[None, :]
        )
        per_op = np.maximum(compute, memory)
        predicted = (
            np.add.reduceat(per_op, self.starts, axis=0) + (self.overhead_by_sample_s * overhead_factor)[:, None]
        )
        log_ratio = np.log(predicted / self.target_s[:, None])
        values: npt.NDArray[np.float64] = (self.weights[:, None] * log_ratio**2).sum(axis=0)
        return values

    def search(
        self, compute_grid: npt.NDArray[np.float64], memory_grid: npt.NDArray[np.float64], overheads: Sequence[float]
    ) -> tuple[float, float, float, float]:
        """(error, compute efficiency, memory efficiency, overhead factor) of the best grid point."""
        best = (np.inf, 1.0, 1.0, 1.0)
        for overhead_factor in overheads:
            for compute_efficiency in compute_grid:
                values = self(float(compute_efficiency), memory_grid, overhead_factor)
                column = int(np.argmin(values))
                if values[column] < best[0] - 1e-15:
                    best = (
                        float(values[column]),
                        float(compute_efficiency),
                        float(memory_grid[column]),
                        overhead_factor,
                    )
        return best


def _around(values: npt.NDArray[np.float64], value: float) -> npt.NDArray[np.float64]:
    """The grid points within four steps of the one nearest ``value``."""
    index = int(np.argmin(np.abs(values - value)))
    return values[max(0, index - 4) : index + 5]


def _fit_class(
    name: str,
    data: _ClassData,
    grid: npt.NDArray[np.float64],
    sample_totals: npt.NDArray[np.float64],
    num_samples: int,
) -> ClassFit:
    if not data.measured_s:
        return ClassFit(op_class=name, compute=1.0, memory=1.0, paired_ops=0, measured_s=0.0, predicted_s=0.0)
    compute_s = np.concatenate(data.compute_s)
    memory_s = np.concatenate(data.memory_s)
    measured_s = np.concatenate(data.measured_s)
    sample = np.concatenate(data.sample)
    measured_by_sample = np.asarray(np.bincount(sample, weights=measured_s, minlength=num_samples), dtype=np.float64)
    present = np.flatnonzero(measured_by_sample > 0)
    op_overhead_s = np.concatenate(data.overhead_s)
    bandwidth_only = np.concatenate(data.bandwidth_only)
    measured_rate = np.concatenate(data.measured_rate)
    objective = _Objective(
        compute_s=compute_s,
        memory_s=memory_s,
        bandwidth_only=bandwidth_only,
        measured_rate=measured_rate,
        starts=np.searchsorted(sample, present),
        overhead_by_sample_s=np.asarray(
            np.bincount(sample, weights=op_overhead_s, minlength=num_samples)[present], dtype=np.float64
        ),
        target_s=measured_by_sample[present],
        weights=measured_by_sample[present] / np.where(sample_totals[present] > 0, sample_totals[present], 1.0),
    )
    # Coarse pass over every fourth efficiency and every overhead factor, then the full grids
    # around the coarse optimum.
    coarse = grid[::4]
    _, compute_coarse, memory_coarse, overhead_coarse = objective.search(coarse, coarse, OVERHEAD_GRID)
    _, compute_efficiency, memory_efficiency, overhead_factor = objective.search(
        _around(grid, compute_coarse),
        _around(grid, memory_coarse),
        tuple(float(value) for value in _around(np.asarray(OVERHEAD_GRID), overhead_coarse)),
    )
    per_op = np.maximum(
        np.where(measured_rate, compute_s, compute_s / compute_efficiency),
        np.where(bandwidth_only, memory_s, memory_s / memory_efficiency),
    )
    per_op = per_op + op_overhead_s * overhead_factor
    return ClassFit(
        op_class=name,
        compute=compute_efficiency,
        memory=memory_efficiency,
        overhead=overhead_factor,
        paired_ops=len(measured_s),
        measured_s=float(measured_s.sum()),
        predicted_s=float(per_op.sum()),
    )


def efficiency_row(fit: EfficiencyFit, provenance: dict[str, Any]) -> dict[str, Any]:
    """The JSON row of ``efficiency.json`` for a fit, with its provenance."""
    return {
        "calibration": fit.table.calibration,
        "provenance": {**provenance, "networks": list(fit.networks)},
        "classes": {
            item.op_class: {
                "compute": round(item.compute, 6),
                "memory": round(item.memory, 6),
                "overhead": round(item.overhead, 6),
                "paired_ops": item.paired_ops,
                "measured_s": round(item.measured_s, 9),
                "predicted_s": round(item.predicted_s, 9),
            }
            for item in fit.classes
        },
    }


def write_row(path: Path, chip: str, row: dict[str, Any]) -> None:
    """Replace (or add) ``chip``'s row of the efficiency file at ``path``, keeping every other row."""
    data = json.loads(path.read_text(encoding="utf-8"))
    if "chips" not in data or not isinstance(data["chips"], dict):
        raise SpecError(f"{path}: no 'chips' object")
    data["chips"][chip] = row
    path.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")

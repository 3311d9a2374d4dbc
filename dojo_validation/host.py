"""Measure the suite on this CPU and compare with the ``host`` preset: shared by the scripts and ASV.

Measured data (one JSON per run, committed under ``dojo_validation/data``) holds, per network at its
``small`` size and host batch: the real step times (after warm-up, fixed threads) and the per-op
times of a few more steps (median per op), plus the machine. Predictions recapture each network
with :func:`pytest_dojo.capture.capture_train_step` (FP32, as the CPU step runs) and simulate it
with :func:`hwmodel.step.simulate` on the ``host`` chip, 1x1. :func:`leave_one_out` fits the
efficiencies without a network (:mod:`hwmodel.ops.calibration`) and predicts that network.
"""

from __future__ import annotations

import json
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import torch

from dojo_validation import measure
from hwmodel import Workload, make_system, simulate
from hwmodel.ops.calibration import CalibrationSample, EfficiencyFit, fit_efficiency
from hwmodel.ops.efficiency import EfficiencyTable
from hwmodel.spec.precision import FP32
from pytest_dojo.capture import capture_train_step

DATA_DIR = Path(__file__).resolve().parent / "data"
HOST_SIZE = "small"
HOST_BATCHES: dict[str, int] = {
    "hydranet": 2,
    "occupancy": 2,
    "lanes": 2,
    "efficientdet_d0": 2,
    "regnety_1_6gf": 8,
    "regnety_4_0gf": 8,
    "regnety_8_0gf": 8,
    "mlp": 64,
    "cnn": 16,
    "transformer": 8,
}
"""Batch per network for the CPU: steps of tens to a few hundred milliseconds on one core."""
DEFAULT_THREADS = 1
FORMAT = "pytest-dojo/host-measured/1"


def measure_network(name: str, *, batch: int, threads: int, repeats: int = 11, op_repeats: int = 5) -> dict[str, Any]:
    """Real step times and median per-op times of ``name`` at ``small`` size on this CPU."""
    torch.set_num_threads(threads)
    step = measure.prepare(measure.all_networks()[name], HOST_SIZE, batch, "cpu")
    times = measure.time_steps(step, warmup=2, repeats=repeats, budget_s=30.0)
    ops = measure.median_op_times(measure.time_ops(step, repeats=op_repeats))
    return {
        "network": name,
        "size": HOST_SIZE,
        "batch_size": batch,
        "step_times_s": times,
        "median_step_s": statistics.median(times),
        "op_steps": op_repeats,
        "ops": [[op_name, phase, seconds] for op_name, phase, seconds in ops],
    }


def measure_all(
    names: Sequence[str], *, threads: int = DEFAULT_THREADS, progress: Callable[[str], None] = print
) -> dict[str, Any]:
    """Measure every network of ``names``; the document :func:`load_measured` reads."""
    document: dict[str, Any] = {
        "format": FORMAT,
        "environment": measure.environment(torch.device("cpu")) | {"torch_threads": threads},
        "runs": [],
    }
    for name in names:
        started = time.perf_counter()
        record = measure_network(name, batch=HOST_BATCHES[name], threads=threads)
        document["runs"].append(record)
        elapsed = time.perf_counter() - started
        progress(f"measured {name}: median step {record['median_step_s'] * 1e3:.1f} ms ({elapsed:.0f} s)")
    return document


def load_measured(path: Path) -> dict[str, Any]:
    """A measured-data document written by :func:`measure_all`."""
    data: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    if data.get("format") != FORMAT:
        raise ValueError(f"{path} is not a host measurement ({FORMAT})")
    return data


def latest_measured() -> Path:
    """The newest committed host measurement in ``dojo_validation/data``."""
    files = sorted(DATA_DIR.glob("host_measured_*.json"))
    if not files:
        raise FileNotFoundError(
            f"no host_measured_*.json in {DATA_DIR}; run python -m dojo_validation.validate_host --measure"
        )
    return files[-1]


@cache
def capture(name: str, size: str, batch: int, threads: int = DEFAULT_THREADS) -> Workload:
    """The captured FP32 step of ``name``, with ATen's kernel choices for ``threads`` intra-op threads
    (the thread count the measured step ran with: ATen picks some convolution kernels by it)."""
    spec = measure.all_networks()[name]
    with torch.device("meta"):
        model = spec.build(size)
    inputs, targets = spec.make_batch(size, batch, "meta")
    return capture_train_step(model, inputs, targets=targets, loss_fn=spec.loss, name=name, intra_op_threads=threads)


def samples(document: dict[str, Any]) -> list[CalibrationSample]:
    """Calibration samples (captured workload + measured ops) of every run in ``document``."""
    result = []
    threads = int(document["environment"].get("torch_threads", DEFAULT_THREADS))
    for run in document["runs"]:
        workload = capture(run["network"], run["size"], run["batch_size"], threads)
        measured = tuple((str(name), str(phase), float(seconds)) for name, phase, seconds in run["ops"])
        result.append(CalibrationSample(name=run["network"], workload=workload, measured_ops=measured))
    return result


def predict_s(workload: Workload, table: EfficiencyTable) -> float:
    """Simulated step time of ``workload`` on the host preset, 1x1, FP32, with ``table``."""
    return simulate(workload, make_system("host", "1x1"), precision=FP32, efficiency=table).step_time_s


def fit(samples_: Sequence[CalibrationSample], calibration: str) -> EfficiencyFit:
    """Host efficiencies fitted on ``samples_``."""
    return fit_efficiency(samples_, make_system("host", "1x1").chip, FP32, calibration=calibration)


@dataclass(frozen=True, kw_only=True)
class Comparison:
    """Measured against predicted step time of one network."""

    network: str
    batch_size: int
    measured_s: float
    predicted_s: float

    @property
    def error(self) -> float:
        """Signed relative error of the prediction: (predicted - measured) / measured."""
        return (self.predicted_s - self.measured_s) / self.measured_s


def leave_one_out(document: dict[str, Any]) -> list[Comparison]:
    """For each network: fit on all the others, predict it, compare with its measured median step."""
    all_samples = samples(document)
    results = []
    for index, run in enumerate(document["runs"]):
        others = [sample for position, sample in enumerate(all_samples) if position != index]
        table = fit(others, calibration=f"leave-one-out without {run['network']}").table
        results.append(
            Comparison(
                network=run["network"],
                batch_size=run["batch_size"],
                measured_s=float(run["median_step_s"]),
                predicted_s=predict_s(all_samples[index].workload, table),
            )
        )
    return results


def median_absolute_error(comparisons: Sequence[Comparison]) -> float:
    """Median of |error| over the comparisons (a fraction: 0.1 is 10%)."""
    return statistics.median(abs(item.error) for item in comparisons)


def host_median_error(path: Path | None = None) -> float:
    """Leave-one-out median absolute error of the host preset on the committed measurement.

    What ASV tracks: it changes when the capture, the cost model or the fitting changes, never with
    the machine that runs it (the measured times are committed data).
    """
    return median_absolute_error(leave_one_out(load_measured(path or latest_measured())))

"""Compare measured H200 steps (``measure_h200.py`` JSON) with the h200 preset; fit an h200 row.

    python -m dojo_validation.h200.compare_h200 dojo_validation/h200/data/h200_measured_<date>.json [--write-row]

Each measured (network, size, batch) is captured here with FakeTensorMode on the meta device and
simulated on the ``h200`` preset, 1x1, mixed BF16 (as measured: autocast forward, FP32 master
weights and AdamW state). Three predictions per network:

* ``preset``: the preset's own op cost model (the GPU kernel models);
* ``fit-all``: per-class efficiencies fitted on every network's measured per-op times;
* ``held-out``: fitted on every *other* network (leave-one-out), the honest figure. Target: median
  absolute error <= 15%.

``--write-row`` stores the fit on all networks as the ``h200`` row of ``hwmodel/ops/efficiency.json``
with its provenance. Not modelled, and so part of the error: autocast's casts (``_to_copy``), which
the FP32 capture never sees, and the GPU idling while Python launches small kernels.
"""

from __future__ import annotations

import argparse
import json
import statistics
from collections.abc import Sequence
from importlib import resources
from pathlib import Path
from typing import Any

from dojo_validation import host
from hwmodel import get_preset, make_system, simulate
from hwmodel.ops.calibration import CalibrationSample, EfficiencyFit, efficiency_row, fit_efficiency, write_row
from hwmodel.ops.efficiency import EfficiencyTable
from hwmodel.spec.precision import MIXED_BF16

MEDIAN_TARGET = 0.15


def _samples(document: dict[str, Any]) -> list[tuple[dict[str, Any], CalibrationSample]]:
    pairs = []
    for run in document["runs"]:
        if "error" in run or "ops" not in run:
            continue
        workload = host.capture(run["network"], run["size"], run["batch_size"])
        measured = tuple((str(name), str(phase), float(seconds)) for name, phase, seconds in run["ops"])
        label = f"{run['network']}/{run['size']}/b{run['batch_size']}"
        pairs.append((run, CalibrationSample(name=label, workload=workload, measured_ops=measured)))
    return pairs


def _predict(sample: CalibrationSample, table: EfficiencyTable | None) -> float:
    """Step time on one H200: with ``table`` on the roofline, or (None) by the preset's own kernel models."""
    system = make_system("h200", "1x1")
    return simulate(sample.workload, system, precision=MIXED_BF16, efficiency=table).step_time_s


def _print_measurement(path: Path, document: dict[str, Any]) -> None:
    """The machine, the GPU's measured ceilings and the runs that failed."""
    environment = document.get("environment", {})
    print(
        f"data: {path}: {environment.get('gpu', '?')}, torch {environment.get('torch')}, "
        f"measured {environment.get('date_utc')}"
    )
    if "ceilings" in document:
        ceilings = document["ceilings"]
        print(
            "ceilings: "
            + ", ".join(
                f"{key} {value:.4g}" if isinstance(value, float) else f"{key} {value}"
                for key, value in ceilings.items()
            )
        )
    for run in document["runs"]:
        if "error" in run:
            print(f"not measured: {run['network']} {run['size']} b{run['batch_size']}: {run['error']}")


def _print_predictions(pairs: list[tuple[dict[str, Any], CalibrationSample]], all_fit: EfficiencyFit) -> None:
    """Per network: measured, preset, fit-on-all and held-out step times with their errors."""
    chip = make_system("h200", "1x1").chip
    samples = [sample for _, sample in pairs]
    preset_table = get_preset("h200").efficiency
    columns = " ".join(f"{title:>9} {'err':>7}" for title in ("preset ms", "fit-all", "held-out"))
    header = f"{'network':<28} {'measured ms':>12} {columns}"
    print(header)
    print("-" * len(header))
    held_out_errors = []
    for index, (run, sample) in enumerate(pairs):
        measured = float(run["median_step_s"])
        others = [other for position, other in enumerate(samples) if position != index]
        row = [_predict(sample, preset_table), _predict(sample, all_fit.table)]
        if others:
            held = fit_efficiency(others, chip, MIXED_BF16, calibration=f"without {sample.name}").table
            row.append(_predict(sample, held))
            held_out_errors.append(abs(row[-1] - measured) / measured)
        cells = " ".join(f"{value * 1e3:>9.2f} {(value - measured) / measured:>+7.1%}" for value in row)
        print(f"{sample.name:<28} {measured * 1e3:>12.2f} {cells}")
    if held_out_errors:
        print(
            f"held-out (leave-one-out): median |error| {statistics.median(held_out_errors):.1%} "
            f"(target <= {MEDIAN_TARGET:.0%}), worst {max(held_out_errors):.1%}"
        )
    print(
        "fit on all: " + ", ".join(f"{item.op_class} {item.compute:.3g}/{item.memory:.3g}" for item in all_fit.classes)
    )


def _write_h200_row(measured: Path, environment: dict[str, Any], all_fit: EfficiencyFit) -> None:
    path = Path(str(resources.files("hwmodel.ops").joinpath("efficiency.json")))
    provenance = {
        "what": "per-op CUDA-event times of bf16-autocast training steps, fitted per op class",
        "when": environment.get("date_utc"),
        "machine": f"{environment.get('gpu')}, torch {environment.get('torch')}, CUDA {environment.get('cuda')}",
        "command": f"python -m dojo_validation.h200.compare_h200 {measured} --write-row",
    }
    write_row(path, "h200", efficiency_row(all_fit, provenance))
    print(f"wrote the h200 row of {path}")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("measured", type=Path, help="h200_measured.json from measure_h200.py")
    parser.add_argument("--write-row", action="store_true", help="store the fit on all networks as the h200 row")
    args = parser.parse_args(argv)
    document = json.loads(args.measured.read_text(encoding="utf-8"))
    _print_measurement(args.measured, document)
    pairs = _samples(document)
    if not pairs:
        print("no measured network to compare")
        return 1
    samples = [sample for _, sample in pairs]
    chip = make_system("h200", "1x1").chip
    all_fit = fit_efficiency(samples, chip, MIXED_BF16, calibration="h200: all measured networks")
    _print_predictions(pairs, all_fit)
    if args.write_row:
        _write_h200_row(args.measured, document.get("environment", {}), all_fit)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Tables and PNG figures of ``pytest-dojo whatif``: rendering only, every figure comes from a report."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from hwmodel.studies.scaling import ScalingCurve
from hwmodel.studies.sensitivity import Sensitivity
from pytest_dojo.cli.common import text_table


def rate(value: float) -> str:
    return f"{value:,.0f}" if value >= 100 else f"{value:.3g}"


def breakdown_text(report: Any) -> str:
    parts = sorted(((s, p) for p, s in report.breakdown_s.parts().items() if s > 0), reverse=True)
    return ", ".join(f"{p} {s * 1e3:.3g} ms" for s, p in parts)


def print_sensitivity(result: Sensitivity) -> None:
    base = result.baseline
    print(f"{base.workload} on {base.chip} {base.mesh} ({base.num_chips} chips), global batch {base.global_batch}")
    print(
        f"baseline: {base.step_time_s * 1e3:.3f} ms/step, {rate(base.samples_per_s)} samples/s, "
        f"MFU {base.mfu * 100:.1f}%, bound {base.bound}"
    )
    print(f"breakdown: {breakdown_text(base)}")
    rows = [
        (entry.label, f"{entry.speedup:.3f}x", f"{entry.step_time_s * 1e3:.3f}", entry.bound)
        for entry in result.entries
    ]
    factor = f"{result.factor:g}x better"
    for line in text_table((f"hardware change ({factor})", "speedup", "step ms", "new bound"), rows):
        print(line)


def plot_sensitivity(result: Sensitivity, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    entries = list(reversed(result.entries))
    labels = [f"{'1/' if e.lowers else ''}{e.factor:g}x {e.label}" for e in entries]
    fig, axis = plt.subplots(figsize=(8, 0.45 * len(entries) + 1.6))
    bars = axis.barh(labels, [e.speedup for e in entries], color="#4477aa")
    axis.axvline(1.0, color="black", linewidth=0.8)
    for bar, entry in zip(bars, entries, strict=True):
        axis.text(bar.get_width(), bar.get_y() + bar.get_height() / 2, f" {entry.speedup:.2f}x", va="center")
    base = result.baseline
    axis.set_xlabel("step-time speedup over the baseline (x)")
    axis.set_xlim(0, max(e.speedup for e in entries) * 1.18)
    title = f"{base.workload} on {base.mesh} {base.chip}: baseline {base.step_time_s * 1e3:.1f} ms/step"
    axis.set_title(f"{title}, bound {base.bound}", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def print_scaling(curve: ScalingCurve) -> None:
    batch_note = "fixed global batch" if curve.mode == "strong" else "fixed per-chip batch"
    print(f"{curve.mode} scaling ({batch_note}) of {curve.workload} on {curve.chip}")
    rows = []
    for point in curve.points:
        report = point.report
        if report is None:
            rows.append(
                (
                    point.label,
                    point.mesh,
                    str(point.num_chips),
                    str(point.global_batch),
                    str(point.per_chip_batch or "-"),
                    "-",
                    "-",
                    "-",
                    "-",
                    "-",
                )
            )
            continue
        rows.append(
            (
                point.label,
                point.mesh,
                str(point.num_chips),
                str(point.global_batch),
                str(point.per_chip_batch),
                f"{report.step_time_s * 1e3:.2f}",
                rate(report.samples_per_s),
                f"{(point.efficiency or 0) * 100:.1f}%",
                f"{report.mfu * 100:.1f}%",
                report.bound,
            )
        )
    columns = (
        "mesh",
        "chips RxC",
        "chips",
        "global batch",
        "per chip",
        "step ms",
        "samples/s",
        "efficiency",
        "MFU",
        "bound",
    )
    for line in text_table(columns, rows):
        print(line)
    for point in curve.points:
        if point.report is None:
            print(f"  {point.label}: not run: {point.reason}")


def plot_scaling(curves: Sequence[ScalingCurve], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.5))
    markers = {"strong": "o", "weak": "s"}
    annotated: set[str] = set()
    for curve in curves:
        points = [p for p in curve.points if p.report is not None]
        if not points:
            continue
        chips = [p.num_chips for p in points]
        throughput = [p.samples_per_s or 0.0 for p in points]
        batch = points[0].global_batch if curve.mode == "strong" else points[0].per_chip_batch
        batch_text = f"global batch {batch}" if curve.mode == "strong" else f"{batch} sample(s)/chip"
        label = f"{curve.mode} ({batch_text})"
        left.plot(chips, throughput, marker=markers[curve.mode], label=label)
        ideal = [throughput[0] * c / chips[0] for c in chips]
        left.plot(chips, ideal, linestyle=":", color="grey", linewidth=1)
        right.plot(chips, [(p.efficiency or 0) * 100 for p in points], marker=markers[curve.mode], label=label)
        for point in points:
            if point.label in annotated:
                continue
            annotated.add(point.label)
            left.annotate(
                point.label,
                (point.num_chips, point.samples_per_s or 0.0),
                textcoords="offset points",
                xytext=(4, -10),
                fontsize=8,
            )
    workload = next((c.workload for c in curves if c.workload), "")
    chip = curves[0].chip if curves else ""
    left.set_xscale("log")
    left.set_yscale("log")
    left.margins(x=0.12)
    left.set_xlabel("chips in the mesh")
    left.set_ylabel("simulated throughput (samples/s)")
    left.set_title(f"{workload} on {chip}: throughput (dotted: linear)", fontsize=10)
    left.grid(True, which="both", alpha=0.3)
    left.legend(fontsize=8)
    right.set_xscale("log")
    right.set_ylim(0, 105)
    right.set_xlabel("chips in the mesh")
    right.set_ylabel("scaling efficiency (%)")
    right.set_title("samples/s per chip relative to the smallest mesh", fontsize=10)
    right.grid(True, which="both", alpha=0.3)
    right.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)

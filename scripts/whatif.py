"""What-if studies from the command line: sensitivity, scaling curves, ingest and Dojo against GPUs.

Captures a suite network's training step (``suites.networks``, under ``FakeTensorMode`` on the meta
device, so any size is cheap) once per per-chip batch, then runs :mod:`hwmodel.whatif` on it and
prints tables; ``--plot`` writes PNG figures with matplotlib.

Examples (from the repository root)::

    python scripts/whatif.py sensitivity --network hydranet --size full --mesh 5x5 --ingest pcie
    python scripts/whatif.py scaling --network hydranet --size full --mode weak --batch 1 --plot scaling.png
    python scripts/whatif.py ingest --meshes 5x5,tray,exapod --samples-per-s 300
    python scripts/whatif.py compare --network hydranet --size full --systems d1:tile,a100:1x8,h100:1x8
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from hwmodel import HwModelError, System, Workload, make_system, parse_mesh  # noqa: E402
from hwmodel.ingest import AUTOPILOT_CAMERAS, HOST_LINKS, DataFeed, dojo_ingest_path, ingest  # noqa: E402
from hwmodel.whatif import (  # noqa: E402
    ScalingCurve,
    Sensitivity,
    compare_systems,
    scaling_curve,
    sensitivity,
)

DEFAULT_MESHES = "1x1,2x2,5x5,tray,exapod"


def progress(message: str) -> None:
    """Progress goes to stderr, so tables on stdout stay clean."""
    print(message, file=sys.stderr, flush=True)


class NetworkSteps:
    """Captured steps of one suite network, one per per-chip batch, captured on first use."""

    def __init__(self, network: str, size: str) -> None:
        import torch

        from suites.networks import get_network

        self.spec = get_network(network)
        self.size = size
        self.name = f"{network}/{size}"
        with torch.device("meta"):
            self.model = self.spec.build(size)
        self._steps: dict[int, Workload] = {}

    def other_input_bytes_per_sample(self) -> float:
        """Bytes per sample of every input but the camera images, and of the targets, as the host
        would send them: floating point in BF16 (the compute dtype), integers as they are."""
        import torch

        inputs, targets = self.spec.make_batch(self.size, 1, "meta")
        tensors = [t for name, t in inputs.items() if name != "images"]
        tensors += [t for t in torch.utils._pytree.tree_leaves(targets) if isinstance(t, torch.Tensor)]
        return float(sum(t.numel() * (2 if t.is_floating_point() else t.element_size()) for t in tensors))

    def __call__(self, batch: int) -> Workload:
        cached = self._steps.get(batch)
        if cached is not None:
            return cached
        from pytest_dojo.capture import capture_train_step

        start = time.perf_counter()
        inputs, targets = self.spec.make_batch(self.size, batch, "meta")
        workload = capture_train_step(self.model, inputs, targets=targets, loss_fn=self.spec.loss, name=self.name)
        seconds = time.perf_counter() - start
        progress(f"captured {self.name} at batch {batch}: {len(workload.ops)} ops in {seconds:.1f} s")
        self._steps[batch] = workload
        return workload


def feed_factory(host_link: str | None, steps: NetworkSteps) -> Callable[[System], DataFeed | None] | None:
    """Dojo ingest for D1 systems over ``host_link``: the 8 camera frames of a sample plus the
    network's other inputs and targets. None leaves ingest out."""
    if host_link is None:
        return None
    sample = replace(AUTOPILOT_CAMERAS, other_bytes_per_sample=steps.other_input_bytes_per_sample())
    progress(
        f"ingest sample: {sample.camera_bytes_per_sample / 1e6:.2f} MB of camera frames + "
        f"{sample.other_bytes_per_sample / 1e6:.2f} MB of other inputs and targets over host {host_link}"
    )

    def feed_for(system: System) -> DataFeed | None:
        if system.chip.name != "d1":
            return None
        return DataFeed(sample=sample, path=dojo_ingest_path(system.num_chips, host_link))

    return feed_for


def table(columns: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    """Plain text table: first column left-aligned, the others right-aligned."""
    widths = [max(len(columns[i]), *(len(row[i]) for row in rows)) for i in range(len(columns))]

    def line(cells: Sequence[str]) -> str:
        return "  ".join(c.ljust(widths[i]) if i == 0 else c.rjust(widths[i]) for i, c in enumerate(cells)).rstrip()

    return [line(columns), line(["-" * w for w in widths]), *(line(row) for row in rows)]


def rate(value: float) -> str:
    return f"{value:,.0f}" if value >= 100 else f"{value:.3g}"


def breakdown_text(report: Any) -> str:
    parts = sorted(((s, p) for p, s in report.breakdown_s.items() if s > 0), reverse=True)
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
    for line in table((f"hardware change ({factor})", "speedup", "step ms", "new bound"), rows):
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
    for line in table(columns, rows):
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


def meshes_from(text: str) -> list[tuple[str, Any]]:
    return [(name.strip(), parse_mesh(name)) for name in text.split(",") if name.strip()]


def run_sensitivity(args: argparse.Namespace) -> None:
    steps = NetworkSteps(args.network, args.size)
    system = make_system(args.chip, args.mesh)
    feed_for = feed_factory(args.ingest, steps)
    result = sensitivity(
        steps(args.per_chip_batch), system, factor=args.factor, feed=feed_for(system) if feed_for else None
    )
    print_sensitivity(result)
    if args.plot:
        plot_sensitivity(result, Path(args.plot))
        progress(f"wrote {args.plot}")


def run_scaling(args: argparse.Namespace) -> None:
    steps = NetworkSteps(args.network, args.size)
    meshes = meshes_from(args.meshes)
    modes = ("strong", "weak") if args.mode == "both" else (args.mode,)
    feed_for = feed_factory(args.ingest, steps)
    curves = []
    for mode in modes:
        batch = args.global_batch if mode == "strong" else args.batch
        curve = scaling_curve(steps, args.chip, meshes, mode=mode, batch=batch, feed_for=feed_for)
        print_scaling(curve)
        print()
        curves.append(curve)
    if args.plot:
        plot_scaling(curves, Path(args.plot))
        progress(f"wrote {args.plot}")


def run_ingest(args: argparse.Namespace) -> None:
    sample = AUTOPILOT_CAMERAS
    if args.network:
        other = NetworkSteps(args.network, args.size).other_input_bytes_per_sample()
        sample = replace(sample, other_bytes_per_sample=other)
    print(
        f"sample: {sample.cameras} cameras x {sample.width_pixels}x{sample.height_pixels} x "
        f"{sample.bits_per_pixel} bit = {sample.camera_bytes_per_sample / 1e6:.2f} MB of frames"
        + (
            f" + {sample.other_bytes_per_sample / 1e6:.2f} MB of other {args.network}/{args.size} inputs and targets"
            if args.network
            else ""
        )
    )
    rows = []
    for label, mesh in meshes_from(args.meshes):
        for host_link in HOST_LINKS:
            path = dojo_ingest_path(mesh.num_chips, host_link)
            batch = mesh.num_chips * args.per_chip_batch
            cost = ingest(DataFeed(sample=sample, path=path), batch)
            needed = args.samples_per_s * mesh.num_chips if args.samples_per_s else None
            rows.append(
                (
                    label,
                    host_link,
                    f"{path.dips:.3g}",
                    f"{path.host_bytes_per_s / 1e9:,.0f}",
                    f"{path.dip_link_bytes_per_s / 1e9:,.0f}",
                    str(batch),
                    f"{cost.time_s * 1e3:.3f}",
                    rate(cost.samples_per_s_limit),
                    cost.bound,
                    "-" if needed is None else ("INGEST-BOUND" if needed > cost.samples_per_s_limit else "ok"),
                )
            )
    columns = (
        "mesh",
        "host link",
        "DIPs",
        "host GB/s",
        "DIP link GB/s",
        "batch",
        "ingest ms",
        "max samples/s",
        "bound",
        "at target",
    )
    for line in table(columns, rows):
        print(line)
    if args.samples_per_s:
        print(f"target: {args.samples_per_s:g} samples/s per chip")


def run_compare(args: argparse.Namespace) -> None:
    steps = NetworkSteps(args.network, args.size)
    systems = []
    for item in args.systems.split(","):
        chip, _, mesh = item.partition(":")
        systems.append((f"{chip.strip()} {mesh.strip()}", make_system(chip.strip(), mesh.strip() or "1x1")))
    feed_for = feed_factory(args.ingest, steps)
    rows_out = compare_systems(steps, systems, per_chip_batch=args.per_chip_batch, feed_for=feed_for)
    reference = next((row.report.samples_per_s for row in rows_out if row.report is not None), None)
    rows = []
    for row in rows_out:
        system, report = row.system, row.report
        peak = f"{system.peak_bf16_flops_per_s / 1e15:.2f}"
        if report is None:
            rows.append((row.label, str(system.num_chips), peak, "-", "-", "-", "-", "-", "-", "-"))
            continue
        rows.append(
            (
                row.label,
                str(system.num_chips),
                peak,
                str(report.global_batch),
                f"{report.step_time_s * 1e3:.2f}",
                rate(report.samples_per_s),
                rate(row.samples_per_s_per_chip or 0.0),
                f"{report.mfu * 100:.1f}%",
                report.bound,
                f"{report.samples_per_s / reference:.2f}x" if reference else "-",
            )
        )
    print(f"{steps.name}, data parallel at {args.per_chip_batch} sample(s) per chip")
    columns = (
        "system",
        "chips",
        "peak PFLOP/s",
        "global batch",
        "step ms",
        "samples/s",
        "per chip",
        "MFU",
        "bound",
        "vs first",
    )
    for line in table(columns, rows):
        print(line)
    for row in rows_out:
        if row.report is None:
            print(f"  {row.label}: not run: {row.reason}")


def parser() -> argparse.ArgumentParser:
    main = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    commands = main.add_subparsers(dest="command", required=True)

    def network_options(command: argparse.ArgumentParser) -> None:
        command.add_argument("--network", default="hydranet", help="suite network (default: %(default)s)")
        command.add_argument("--size", default="full", choices=("small", "full"), help="default: %(default)s")
        command.add_argument(
            "--ingest",
            choices=HOST_LINKS,
            default=None,
            help="model camera ingest over this host link (D1 only); default: left out",
        )

    sens = commands.add_parser("sensitivity", help="rank hardware changes by the speedup they buy")
    network_options(sens)
    sens.add_argument("--chip", default="d1")
    sens.add_argument("--mesh", default="5x5", metavar="ROWSxCOLS")
    sens.add_argument("--per-chip-batch", type=int, default=1)
    sens.add_argument("--factor", type=float, default=2.0, help="improvement per parameter (default: %(default)s)")
    sens.add_argument("--plot", metavar="PNG")
    sens.set_defaults(run=run_sensitivity)

    scale = commands.add_parser("scaling", help="throughput and efficiency against mesh size")
    network_options(scale)
    scale.add_argument("--chip", default="d1")
    scale.add_argument("--meshes", default=DEFAULT_MESHES, help="comma-separated (default: %(default)s)")
    scale.add_argument("--mode", choices=("strong", "weak", "both"), default="both")
    scale.add_argument("--batch", type=int, default=1, help="per-chip batch of weak scaling (default: %(default)s)")
    scale.add_argument(
        "--global-batch", type=int, default=3000, help="global batch of strong scaling (default: %(default)s)"
    )
    scale.add_argument("--plot", metavar="PNG")
    scale.set_defaults(run=run_scaling)

    feed = commands.add_parser("ingest", help="camera ingest time and limit per mesh and host link")
    feed.add_argument("--meshes", default="5x5,tray,exapod")
    feed.add_argument("--network", default=None, help="add this suite network's other inputs and targets per sample")
    feed.add_argument("--size", default="full", choices=("small", "full"), help="default: %(default)s")
    feed.add_argument("--per-chip-batch", type=int, default=1)
    feed.add_argument(
        "--samples-per-s",
        type=float,
        default=0.0,
        metavar="PER_CHIP",
        help="flag meshes whose ingest cannot feed this many samples/s per chip",
    )
    feed.set_defaults(run=run_ingest)

    compare = commands.add_parser("compare", help="the same step on several systems, side by side")
    network_options(compare)
    compare.add_argument("--systems", default="d1:tile,a100:1x8,h100:1x8", help="CHIP:MESH,... (default: %(default)s)")
    compare.add_argument("--per-chip-batch", type=int, default=1)
    compare.set_defaults(run=run_compare)
    return main


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        args.run(args)
    except (HwModelError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""``pytest-dojo whatif STUDY``: sensitivity, scaling curves, ingest and Dojo against GPUs.

Captures a network of :mod:`dojo_networks` (under ``FakeTensorMode`` on the meta device, so any
size is cheap) once per per-chip batch, then runs :mod:`hwmodel.studies.whatif` on it and prints
tables; ``--plot`` writes PNG figures with matplotlib (:mod:`pytest_dojo.cli.whatif_report`).

Examples::

    pytest-dojo whatif sensitivity --network hydranet --size full --mesh 5x5 --ingest pcie
    pytest-dojo whatif scaling --network hydranet --size full --mode weak --batch 1 --plot scaling.png
    pytest-dojo whatif ingest --meshes 5x5,tray,exapod --samples-per-s 300
    pytest-dojo whatif compare --network hydranet --size full --systems d1:tile,a100:1x8,h100:1x8
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

from hwmodel import HwModelError, System, Workload, make_system, parse_mesh
from hwmodel.studies.ingest import AUTOPILOT_CAMERAS, HOST_LINKS, DataFeed, dojo_ingest_path, ingest, ingest_path_for
from hwmodel.studies.scaling import scaling_curve
from hwmodel.studies.sensitivity import sensitivity
from hwmodel.studies.whatif import compare_systems
from pytest_dojo.cli.common import EXIT_OK, EXIT_USAGE, add_command, error_line, progress, text_table
from pytest_dojo.cli.whatif_report import plot_scaling, plot_sensitivity, print_scaling, print_sensitivity, rate

DEFAULT_MESHES = "1x1,2x2,5x5,tray,exapod"


class NetworkSteps:
    """Captured steps of one suite network, one per per-chip batch, captured on first use."""

    def __init__(self, network: str, size: str) -> None:
        import torch

        from dojo_networks import get_network

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
    """Ingest over ``host_link`` for systems whose fabric feeds the chips through DIPs (Dojo): the 8
    camera frames of a sample plus the network's other inputs and targets. None leaves ingest out."""
    if host_link is None:
        return None
    sample = replace(AUTOPILOT_CAMERAS, other_bytes_per_sample=steps.other_input_bytes_per_sample())
    progress(
        f"ingest sample: {sample.camera_bytes_per_sample / 1e6:.2f} MB of camera frames + "
        f"{sample.other_bytes_per_sample / 1e6:.2f} MB of other inputs and targets over host {host_link}"
    )

    def feed_for(system: System) -> DataFeed | None:
        path = ingest_path_for(system, host_link)
        return None if path is None else DataFeed(sample=sample, path=path)

    return feed_for


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
    for line in text_table(columns, rows):
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
    rows_out = compare_systems(
        steps, systems, per_chip_batch=args.per_chip_batch, feed_for=feed_for, execution=args.execution
    )
    reference = next((row.report.samples_per_s for row in rows_out if row.report is not None), None)
    rows = []
    for row in rows_out:
        system, report = row.system, row.report
        peak = f"{system.peak_bf16_flops_per_s / 1e15:.2f}"
        if report is None:
            rows.append((row.label, str(system.num_chips), peak, "-", "-", "-", "-", "-", "-", "-", "-"))
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
                report.op_cost_model.execution if report.op_cost_model is not None else "-",
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
        "execution",
    )
    for line in text_table(columns, rows):
        print(line)
    for row in rows_out:
        if row.report is None:
            print(f"  {row.label}: not run: {row.reason}")


def _network_options(command: argparse.ArgumentParser) -> None:
    """The options that pick the captured network and its ingest."""
    command.add_argument("--network", default="hydranet", help="suite network (default: %(default)s)")
    command.add_argument("--size", default="full", choices=("small", "full"), help="default: %(default)s")
    command.add_argument(
        "--ingest",
        choices=HOST_LINKS,
        default=None,
        help="model camera ingest over this host link (D1 only); default: left out",
    )


def register(commands_of_cli: Any) -> None:
    main = add_command(
        commands_of_cli,
        "whatif",
        run,
        summary="what-if studies: sensitivity, scaling, ingest, Dojo against GPUs",
        doc=__doc__,
    )
    commands = main.add_subparsers(dest="study", required=True, metavar="STUDY")

    sens = commands.add_parser("sensitivity", help="rank hardware changes by the speedup they buy")
    _network_options(sens)
    sens.add_argument("--chip", default="d1")
    sens.add_argument("--mesh", default="5x5", metavar="ROWSxCOLS")
    sens.add_argument("--per-chip-batch", type=int, default=1)
    sens.add_argument("--factor", type=float, default=2.0, help="improvement per parameter (default: %(default)s)")
    sens.add_argument("--plot", metavar="PNG")
    sens.set_defaults(study_run=run_sensitivity)

    scale = commands.add_parser("scaling", help="throughput and efficiency against mesh size")
    _network_options(scale)
    scale.add_argument("--chip", default="d1")
    scale.add_argument("--meshes", default=DEFAULT_MESHES, help="comma-separated (default: %(default)s)")
    scale.add_argument("--mode", choices=("strong", "weak", "both"), default="both")
    scale.add_argument("--batch", type=int, default=1, help="per-chip batch of weak scaling (default: %(default)s)")
    scale.add_argument(
        "--global-batch", type=int, default=3000, help="global batch of strong scaling (default: %(default)s)"
    )
    scale.add_argument("--plot", metavar="PNG")
    scale.set_defaults(study_run=run_scaling)

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
    feed.set_defaults(study_run=run_ingest)

    compare = commands.add_parser("compare", help="the same step on several systems, side by side")
    _network_options(compare)
    compare.add_argument("--systems", default="d1:tile,a100:1x8,h100:1x8", help="CHIP:MESH,... (default: %(default)s)")
    compare.add_argument("--per-chip-batch", type=int, default=1)
    compare.add_argument(
        "--execution",
        choices=("eager", "compiled"),
        default=None,
        help="run every chip in this mode (default: each chip's own: d1 compiled, GPUs eager)",
    )
    compare.set_defaults(study_run=run_compare)


def run(arguments: argparse.Namespace) -> int:
    try:
        arguments.study_run(arguments)
    except (HwModelError, ValueError) as error:
        error_line("error", error)
        return EXIT_USAGE
    return EXIT_OK

"""Published check: EfficientDet-D0 training throughput on A100, predicted with the a100 preset.

    python -m dojo_validation.published

Reference (``docs/reference/dojo-hardware.md``, "Published training throughput"): NVIDIA
DeepLearningExamples, PyTorch/Detection/Efficientdet README, DGX A100 80GB: 255 img/s on 1 GPU and
1,835 on 8 (AMP, batch 150 per GPU); 170 and 1,213 (TF32, batch 80). The suite's
``efficientdet_d0`` (512x512, 90 classes) is captured at the per-GPU batch and simulated on
``a100`` meshes 1x1 and 1x8 (one NVSwitch node) with the preset's efficiency row. Nothing here is
fitted to these numbers: they are held out, and the error is reported whatever it is.

NB: the reference run feeds real COCO images through NVIDIA's data loader with DALI, EMA weights and
a fused optimizer; the suite network trains on synthetic targets with AdamW(foreach). The model's
step therefore omits data loading and anchor matching, and counts AdamW rather than SGD updates.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from dataclasses import dataclass

from dojo_validation import host
from hwmodel import get_preset, make_system, simulate
from hwmodel.spec.precision import MIXED_BF16, TF32, Precision
from hwmodel.step.workload import FixedWorkloads


@dataclass(frozen=True, kw_only=True)
class PublishedPoint:
    """One published figure: images/s of EfficientDet-D0 training on ``gpus`` A100s."""

    precision_name: str
    precision: Precision
    batch_per_gpu: int
    gpus: int
    images_per_s: float


# docs/reference/dojo-hardware.md, "Published training throughput" (DeepLearningExamples).
PUBLISHED = (
    PublishedPoint(precision_name="AMP", precision=MIXED_BF16, batch_per_gpu=150, gpus=1, images_per_s=255),
    PublishedPoint(precision_name="AMP", precision=MIXED_BF16, batch_per_gpu=150, gpus=8, images_per_s=1835),
    PublishedPoint(precision_name="TF32", precision=TF32, batch_per_gpu=80, gpus=1, images_per_s=170),
    PublishedPoint(precision_name="TF32", precision=TF32, batch_per_gpu=80, gpus=8, images_per_s=1213),
)


def predictions(chip: str = "a100", efficiency_chip: str | None = None) -> list[tuple[PublishedPoint, float]]:
    """(published point, predicted images/s) for every point of :data:`PUBLISHED`, with the
    efficiency row of ``efficiency_chip`` (default: the chip's own)."""
    table = get_preset(efficiency_chip or chip).efficiency
    results = []
    for point in PUBLISHED:
        workload = host.capture("efficientdet_d0", "full", point.batch_per_gpu)
        mesh = "1x1" if point.gpus == 1 else f"1x{point.gpus}"
        source = FixedWorkloads(by_batch={point.batch_per_gpu: workload}, global_batch=point.batch_per_gpu * point.gpus)
        report = simulate(source, make_system(chip, mesh), precision=point.precision, efficiency=table)
        results.append((point, report.samples_per_s))
    return results


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--efficiency-from",
        default=None,
        metavar="CHIP",
        help="use another chip's efficiency row, e.g. h200 once it is calibrated (default: a100's own)",
    )
    args = parser.parse_args(argv)
    table = get_preset(args.efficiency_from or "a100").efficiency
    if table is None:
        print("op costs: the chip's kernel models (hwmodel.ops.cost_model)")
    else:
        print(f"efficiency row: {table.chip} ({table.calibration})")
    print(f"{'precision':<9} {'batch/GPU':>9} {'GPUs':>5} {'published img/s':>16} {'predicted':>10} {'error':>8}")
    for point, predicted in predictions(efficiency_chip=args.efficiency_from):
        error = (predicted - point.images_per_s) / point.images_per_s
        print(
            f"{point.precision_name:<9} {point.batch_per_gpu:>9} {point.gpus:>5} {point.images_per_s:>16,.0f} "
            f"{predicted:>10,.0f} {error:>+8.1%}"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

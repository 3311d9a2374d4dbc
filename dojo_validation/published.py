"""Published check: EfficientDet-D0 training throughput on A100, predicted with the a100 preset.

    python -m dojo_validation.published

Reference (``docs/reference/dojo-hardware.md``, "Published training throughput"): NVIDIA
DeepLearningExamples, PyTorch/Detection/Efficientdet README, DGX A100 80GB: 255 img/s on 1 GPU and
1,835 on 8 (AMP, batch 150 per GPU); 170 and 1,213 (TF32, batch 80). The suite's
``efficientdet_d0`` (512x512, 90 classes) is captured at the per-GPU batch and simulated on
``a100`` meshes 1x1 and 1x8 (one NVSwitch node) with the preset's op-cost model (the GPU kernel
models). Nothing here is
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
from hwmodel.ops.arrays import workload_arrays
from hwmodel.ops.calibration import peak_table
from hwmodel.ops.classes.registry import op_classes
from hwmodel.ops.cost_model import step_op_costs
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


def predictions(chip: str = "a100") -> list[tuple[PublishedPoint, float]]:
    """(published point, predicted images/s) for every point of :data:`PUBLISHED`, with the chip's
    own op-cost model."""
    results = []
    for point in PUBLISHED:
        workload = host.capture("efficientdet_d0", "full", point.batch_per_gpu)
        mesh = "1x1" if point.gpus == 1 else f"1x{point.gpus}"
        source = FixedWorkloads(by_batch={point.batch_per_gpu: workload}, global_batch=point.batch_per_gpu * point.gpus)
        report = simulate(source, make_system(chip, mesh), precision=point.precision)
        results.append((point, report.samples_per_s))
    return results


def class_breakdown_ms(point: PublishedPoint, chip: str = "a100") -> dict[str, tuple[float, float]]:
    """Per op class, one GPU's op time (ms) for ``point``'s step: (the chip's kernel models,
    the roofline at peak that costed every GPU op before the kernel models)."""
    workload = host.capture("efficientdet_d0", "full", point.batch_per_gpu)
    spec = get_preset(chip).chip
    modelled = step_op_costs(workload, spec, point.precision, None).time_s
    at_peak = step_op_costs(workload, spec, point.precision, peak_table()).time_s
    class_names = op_classes().names
    classes = workload_arrays(workload).class_index
    return {
        name: (1e3 * float(modelled[classes == index].sum()), 1e3 * float(at_peak[classes == index].sum()))
        for index, name in enumerate(class_names)
        if (classes == index).any()
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--breakdown", action="store_true", help="also print one GPU's op time by op class")
    args = parser.parse_args(argv)
    print(f"op costs: {get_preset('a100').chip.op_cost_model} model of the a100 preset")
    print(f"{'precision':<9} {'batch/GPU':>9} {'GPUs':>5} {'published img/s':>16} {'predicted':>10} {'error':>8}")
    for point, predicted in predictions():
        error = (predicted - point.images_per_s) / point.images_per_s
        print(
            f"{point.precision_name:<9} {point.batch_per_gpu:>9} {point.gpus:>5} {point.images_per_s:>16,.0f} "
            f"{predicted:>10,.0f} {error:>+8.1%}"
        )
    if args.breakdown:
        for point in (p for p in PUBLISHED if p.gpus == 1):
            print(f"\n{point.precision_name}, batch {point.batch_per_gpu}, one GPU: op time by class (ms)")
            print(f"{'class':<14} {'kernel models':>14} {'peak roofline':>14}")
            for name, (modelled_ms, peak_ms) in class_breakdown_ms(point).items():
                print(f"{name:<14} {modelled_ms:>14,.1f} {peak_ms:>14,.1f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

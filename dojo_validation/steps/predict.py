"""One label's prediction with its device's preset at ``fp32``, its roofline and its op classes.

A single-GPU label is the captured step (:mod:`~dojo_validation.steps.build`) simulated on a
``1x1`` mesh of the device's preset, less what the measurement did not time and plus what it did
beyond the captured step:

* a training label times ``model(input_ids)`` and ``loss.backward()``, not the loss itself: the
  loss's forward ops (those outside the model) are taken out;
* it never zeroes the gradients between iterations, so each backward adds its gradients to the
  ones already there (PyTorch's ``AccumulateGrad``): one elementwise kernel per parameter, reading
  two gradients and writing one, costed by the kernel models' streaming rule
  (:func:`accumulation_seconds`).

A ``fusion`` label (inference under ``torch.compile``) is simulated in compiled execution.

A 4-GPU label is its plan (:data:`~dojo_validation.steps.labels.PLANS`) on a ``1x4`` mesh of the
preset, a whole training step with AdamW, as the plan asks for each replica's batch.

The roofline is ``max(FLOPs / FP32 peak, captured bytes / datasheet bandwidth)`` per op, summed,
with no launch, over the same ops (a 4-GPU label: the global step's over four GPUs, with no
communication).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from dojo_validation.steps.build import capture_label
from dojo_validation.steps.labels import Published, StepLabel, layer_file
from dojo_validation.steps.layers import Attribution, attribute, captured_classes, measured_classes, sum_by_class
from hwmodel import Workload, make_system, simulate
from hwmodel.ops.arrays import workload_arrays
from hwmodel.ops.cost_model import step_op_costs
from hwmodel.ops.kernels.from_chip import kernel_device_from_chip
from hwmodel.ops.kernels.memory_bound import achieved_bandwidth
from hwmodel.ops.kernels.parameters import load_parameters
from hwmodel.spec.chip import ChipSpec
from hwmodel.spec.precision import Precision, parse_precision
from hwmodel.step.workload import ROOT_MODULE, FixedWorkloads

PRECISION = "fp32"
"""Every label was measured in IEEE FP32."""


@dataclass(frozen=True)
class StepPrediction:
    """A label, its predicted step and roofline (ms) and where the error comes from."""

    label: StepLabel
    predicted_ms: float
    roofline_ms: float
    forward_ms: float
    backward_ms: float
    published: Published
    attribution: Attribution | None

    @property
    def error(self) -> float:
        """``predicted / measured - 1``."""
        return self.predicted_ms / self.label.measured_ms - 1.0

    @property
    def roofline_error(self) -> float:
        return self.roofline_ms / self.label.measured_ms - 1.0


def timed_ops(workload: Workload, label: StepLabel) -> np.ndarray:
    """Per op, whether the measurement timed it (a training label's loss forward is untimed)."""
    untimed = [
        not label.distributed and label.mode == "train" and op.phase == "forward" and op.module == ROOT_MODULE
        for op in workload.ops
    ]
    return ~np.asarray(untimed, dtype=np.bool_)


def accumulation_seconds(workload: Workload, chip: ChipSpec, precision: Precision) -> float:
    """Adding this step's gradients to the existing ones: per parameter, one kernel streaming two
    gradients in and one out at the kernel models' achieved bandwidth, plus the chip's launch."""
    device = kernel_device_from_chip(chip, precision)
    moved = np.asarray([3.0 * 4.0 * parameter.numel for parameter in workload.parameters], dtype=np.float64)
    streaming = moved / achieved_bandwidth(moved, device, load_parameters())
    return float(np.sum(streaming)) + chip.op_overhead_s * len(moved)


def roofline_seconds(workload: Workload, chip: ChipSpec, timed: np.ndarray) -> float:
    """``max(FLOPs / FP32 peak, bytes / datasheet bandwidth)`` per timed op, summed."""
    arrays = workload_arrays(workload)
    compute = arrays.flops / chip.matrix_fp32_flops_per_s
    memory = (arrays.bytes_read + arrays.bytes_written) / chip.local_memory_read_bytes_per_s
    return float(np.sum(np.maximum(compute, memory)[timed]))


def predict_label(label: StepLabel, published: Published, with_layers: bool = True) -> StepPrediction:
    """``label``'s prediction (see the module docstring)."""
    if label.distributed:
        return _predict_distributed(label, published)
    workload = capture_label(label)
    precision = parse_precision(PRECISION)
    system = make_system(label.preset, label.mesh)
    chip = system.chip
    report = simulate(workload, system, precision=precision, execution=label.execution)
    times = np.asarray(step_op_costs(workload, chip, precision, None, execution=label.execution).time_s)
    timed = timed_ops(workload, label)
    untimed_s = float(np.sum(times[~timed]))
    accumulation_s = accumulation_seconds(workload, chip, precision) if label.mode == "train" else 0.0
    predicted_s = report.step_time_s - untimed_s + accumulation_s
    attribution = None
    path = layer_file(label) if with_layers else None
    if path is not None:
        by_class = sum_by_class(np.asarray(captured_classes(workload))[timed], times[timed] * 1e3)
        by_class["accumulation"] = by_class.get("accumulation", 0.0) + accumulation_s * 1e3
        attribution = attribute(by_class, measured_classes(path, label.num_layers), label.measured_ms)
    roofline_s = roofline_seconds(workload, chip, timed)
    if label.mode == "train":  # the accumulation's bytes
        roofline_s += 3.0 * 4.0 * workload.parameter_count / chip.local_memory_read_bytes_per_s
    return StepPrediction(
        label=label,
        predicted_ms=predicted_s * 1e3,
        roofline_ms=roofline_s * 1e3,
        forward_ms=(report.phase_time_s.forward_s - untimed_s) * 1e3,
        backward_ms=(report.phase_time_s.backward_s + accumulation_s) * 1e3,
        published=published,
        attribution=attribution,
    )


def _predict_distributed(label: StepLabel, published: Published) -> StepPrediction:
    plan = label.plan
    assert plan is not None
    precision = parse_precision(PRECISION)
    system = make_system(label.preset, label.mesh)
    by_batch = {batch: capture_label(label, batch) for batch in label.replica_batches}
    source = FixedWorkloads(by_batch=by_batch, global_batch=label.batch)
    report = simulate(source, system, plan=plan, precision=precision)
    replica = by_batch[label.replica_batches[0]]
    timed = np.ones(len(replica.ops), dtype=np.bool_)
    roofline_s = roofline_seconds(replica, system.chip, timed) * plan.data_parallel / system.num_chips
    return StepPrediction(
        label=label,
        predicted_ms=report.step_time_s * 1e3,
        roofline_ms=roofline_s * 1e3,
        forward_ms=report.phase_time_s.forward_s * 1e3,
        backward_ms=report.phase_time_s.backward_s * 1e3,
        published=published,
        attribution=None,
    )

"""How well the ``host`` preset predicts this project's own measured CPU steps (lower is better).

``dojo_validation.host.host_median_error()`` fits the host efficiencies leaving each network out, predicts
that network's step and compares with the committed measurement (``dojo_validation/data``); the worst
network's error is tracked beside the median (targets: 10% and 25%). The figure
moves when the capture, the cost model or the fitting moves, never with the machine that runs it.
Commits without ``dojo_validation.host`` (before it, ``validation.host``) or without a committed
measurement are skipped.

Beside it, the GPU kernel models' leave-one-device-out error per op class
(:class:`KernelPredictionError`) and the error on measured transformer steps per GPU
(:class:`StepPredictionError`).
"""

from __future__ import annotations

import statistics
from typing import Any

from . import _project


class HostPredictionError:
    """Leave-one-out median absolute relative error of the host model's step-time predictions."""

    unit = "fraction"
    timeout = 900.0
    version = "1"

    def setup(self) -> None:
        host = _project.commit_module("dojo_validation.host", before="validation.host")
        if not hasattr(host, "host_median_error"):
            raise NotImplementedError("this commit's host validation has no host_median_error")
        try:
            self.measured: Any = host.latest_measured()
        except FileNotFoundError as error:
            raise NotImplementedError(f"this commit has no host measurement ({error})") from None
        self.host: Any = host

    def track_host_median_error(self) -> float:
        return float(self.host.host_median_error(self.measured))

    def track_host_worst_error(self) -> float:
        comparisons = self.host.leave_one_out(self.host.load_measured(self.measured))
        return float(max(abs(item.error) for item in comparisons))


class KernelPredictionError:
    """Leave-one-device-out mean |predicted / measured - 1| of the GPU kernel models, per op class.

    ``dojo_validation.kernels.lodo`` fits the kernel parameters on four measured GPUs and scores the
    fifth one's test-shape kernels (A100 80GB PCIe with a fit on all five); the figure is the mean
    over the left-out devices' rows (targets: ``lodo.TARGETS``). Deterministic: the fit samples rows
    with a fixed seed. Commits without ``dojo_validation.kernels`` are skipped.
    """

    unit = "fraction"
    timeout = 900.0
    version = "1"
    params = ("bmm", "linear", "elementwise", "softmax", "layernorm", "conv")
    param_names = ("op_class",)

    def setup_cache(self) -> dict[str, float]:
        lodo = _kernel_lodo()
        results = lodo.leave_one_device_out(lodo.data.load_all(), lodo.devices_by_name())
        means: dict[str, float] = lodo.class_means(results)
        return means

    def setup(self, means: dict[str, float], op_class: str) -> None:
        if op_class not in means:
            raise NotImplementedError(f"this commit scores no {op_class} kernels")

    def track_kernel_lodo_mean_error(self, means: dict[str, float], op_class: str) -> float:
        return float(means[op_class])


class StepPredictionError:
    """Median and worst |predicted / measured - 1| of measured transformer steps on NVIDIA GPUs,
    per device (``pytest-dojo validate steps``: training and inference on one GPU, the three
    4-GPU plans on ``4xA100-SXM``, and apart, the ``torch.compile`` inference steps predicted in
    compiled execution: ``A100-40 compiled``).

    Nothing is fitted on these steps, so the figures move only when the capture, the op costs or
    the step model move. Needs Hugging Face ``transformers`` (the ``[validation]`` extra); commits
    without ``dojo_validation.steps``, or an environment without ``transformers``, are skipped.
    """

    unit = "fraction"
    timeout = 1800.0
    version = "1"
    params = ("A100-80", "V100", "A100-40", "P100", "T4", "P4", "4xA100-SXM", "A100-40 compiled")
    param_names = ("device",)

    def setup_cache(self) -> dict[str, tuple[float, float]]:
        steps = _step_validation()
        predictions = steps.predict_all(steps.load_labels(), with_layers=False, progress=False)
        errors: dict[str, list[float]] = {}
        for prediction in predictions:
            label = prediction.label
            compiled = getattr(label, "execution", "eager") == "compiled"
            key = f"{label.short_device} compiled" if compiled else label.short_device
            errors.setdefault(key, []).append(abs(prediction.error))
        return {device: (float(statistics.median(values)), max(values)) for device, values in errors.items()}

    def setup(self, errors: dict[str, tuple[float, float]], device: str) -> None:
        if device not in errors:
            raise NotImplementedError(f"this commit predicts no measured step on {device}")

    def track_step_median_error(self, errors: dict[str, tuple[float, float]], device: str) -> float:
        return errors[device][0]

    def track_step_worst_error(self, errors: dict[str, tuple[float, float]], device: str) -> float:
        return errors[device][1]


def _step_validation() -> Any:
    """``dojo_validation.steps.validate`` of the commit under test (it holds ``load_labels`` and
    ``predict_all``)."""
    try:
        package = _project.commit_module("dojo_validation", before="dojo_validation")
        from importlib import import_module

        validate = import_module(f"{package.__name__}.steps.validate")
        import_module("transformers")
    except ImportError as error:
        raise NotImplementedError(f"this commit or environment cannot validate steps ({error})") from None
    return validate


def _kernel_lodo() -> Any:
    try:
        package = _project.commit_module("dojo_validation", before="dojo_validation")
        from importlib import import_module

        lodo = import_module(f"{package.__name__}.kernels.lodo")
    except ImportError as error:
        raise NotImplementedError(f"this commit has no kernel validation ({error})") from None
    if not hasattr(lodo, "class_means"):
        raise NotImplementedError("this commit's kernel validation has no class_means")
    return lodo

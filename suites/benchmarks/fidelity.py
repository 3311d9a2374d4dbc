"""How well the ``host`` preset predicts this project's own measured CPU steps (lower is better).

``dojo_validation.host.host_median_error()`` fits the host efficiencies leaving each network out, predicts
that network's step and compares with the committed measurement (``dojo_validation/data``); the worst
network's error is tracked beside the median (targets: 10% and 25%). The figure
moves when the capture, the cost model or the fitting moves, never with the machine that runs it.
Commits without ``dojo_validation.host`` (before it, ``validation.host``) or without a committed
measurement are skipped.
"""

from __future__ import annotations

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

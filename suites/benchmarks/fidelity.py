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

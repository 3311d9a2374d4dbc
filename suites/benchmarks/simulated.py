"""Simulated training step of the full-size networks on D1 meshes: deterministic modelled figures.

The full-size step of each network is captured once per run (``setup_cache``, a few seconds per
network, torch only there); each benchmark then simulates it data-parallel over one mesh, with
``hwmodel`` alone. Results are exact: the same commit gives the same numbers on any machine.

asv treats every increase as a regression (asv issue #1617). So:

* ``SimulatedStepTime.track_step_time``: seconds per step, lower is better: the figure that
  ``asv continuous`` / pytest-dojo asv-gate gate on;
* ``SimulatedThroughput.track_samples_per_s``: the same step as samples/s, for reading the graphs
  (a drop is the regression; pytest-dojo asv-gate checks it with the direction inverted);
* ``SimulatorSpeed.time_simulate``: how long the simulator itself takes.
"""

from __future__ import annotations

import pickle
from typing import Any

from . import _project


class _FullNetworkOnMesh:
    """Shared parameters and the shared capture (``setup_cache``) of the simulated benchmarks.

    Subclasses inherit ``setup_cache``: asv keys the cache by the function's source location, so
    the capture runs once for all of them.
    """

    params = (list(_project.NETWORKS), list(_project.MESHES))
    param_names = ("network", "mesh")
    timeout = 900.0
    version = "1"

    def setup_cache(self) -> dict[str, Any]:
        return _project.capture_full_steps()

    def setup(self, workloads: dict[str, Any], network: str, mesh: str) -> None:
        self.workload = _fresh_workload(workloads, network)
        self.report = _project.simulate(self.workload, mesh)


class SimulatedThroughput(_FullNetworkOnMesh):
    """Samples per second of the simulated full-size step (higher is better)."""

    unit = "samples/s"

    def track_samples_per_s(self, workloads: dict[str, Any], network: str, mesh: str) -> float:
        return float(self.report.samples_per_s)


class SimulatedStepTime(_FullNetworkOnMesh):
    """Seconds per simulated full-size step (lower is better)."""

    unit = "seconds"

    def track_step_time(self, workloads: dict[str, Any], network: str, mesh: str) -> float:
        return float(self.report.step_time_s)


class SimulatorSpeed(_FullNetworkOnMesh):
    """Wall-clock of one ``hwmodel.simulate`` call on a workload it has not seen (cold).

    hwmodel memoizes derived arrays on a workload object, so every timed call gets a fresh copy
    (asv re-runs ``setup`` before each timed call).
    """

    repeat = (3, 10, 5.0)

    def setup(self, workloads: dict[str, Any], network: str, mesh: str) -> None:
        self.workload = _fresh_workload(workloads, network)
        _project.system(mesh)

    def time_simulate(self, workloads: dict[str, Any], network: str, mesh: str) -> None:
        _project.simulate(self.workload, mesh)


def _fresh_workload(workloads: dict[str, Any], network: str) -> Any:
    """A copy of the cached workload of ``network`` that no simulation has touched."""
    workload = workloads[network]
    if isinstance(workload, str):
        raise NotImplementedError(workload)
    return pickle.loads(pickle.dumps(workload))

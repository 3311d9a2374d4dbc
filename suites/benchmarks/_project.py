"""Guarded access to the project under test, for benchmarks that run against old commits.

Everything here imports the project lazily and turns "this commit does not have it" into
``NotImplementedError`` (asv's skip). Any other error is a real failure and propagates. The module
name starts with an underscore and defines no ``time_``/``track_``/``peakmem_`` names, so asv finds
no benchmark in it.

The settings below are the contract between the benchmarks and tests/test_asv.py, which checks
that the recorded figures equal what the plugin reports for the same network and mesh.
"""

from __future__ import annotations

import importlib
import sys
import time
from pathlib import Path
from typing import Any

NETWORKS = ("hydranet", "occupancy", "lanes")
"""The Autopilot-style networks of ``dojo_networks`` whose history is recorded."""
MESHES = ("1x1", "5x5", "10x15")
"""One D1; one training tile (5x5); one system tray (2x3 tiles = 10x15 chips: docs/reference/
dojo-hardware.md, "System tray and cabinet": system tray [S])."""
CHIP = "d1"
FULL_BATCH_PER_CHIP = 1
"""Samples per chip of the simulated full-size step: every chip a data-parallel replica, as the
plugin's default plan does, so the global batch is ``FULL_BATCH_PER_CHIP x chips``."""
SMALL_BATCH = 2
"""Samples of the real ``small`` step timed on the host."""


def commit_module(name: str, before: str) -> Any:
    """The commit's package ``name``, or the module ``before`` in commits from before that package.

    A package counts only if it sits beside the ``hwmodel`` under test: in ``-E existing`` mode the
    project's own environment also has today's packages installed (editable), and an older commit's
    checkout on ``ASV_PYTHONPATH`` must not be measured with today's networks. Older layouts
    (``suites.networks``, ``validation``) come from the commit's checkout, which is on the path in
    both of asv's modes (asv.conf.json).
    """
    try:
        import hwmodel
    except ImportError as error:
        raise NotImplementedError(f"this commit has no hwmodel ({error})") from None
    try:
        package = importlib.import_module(name)
    except ImportError:
        package = None
    if package is not None and _root(package) == _root(hwmodel):
        return package
    try:
        return importlib.import_module(before)
    except ImportError as error:
        raise NotImplementedError(f"this commit has no {name} ({error})") from None


def _root(module: Any) -> Path:
    """The directory that holds the package ``module`` (a checkout, or site-packages)."""
    return Path(module.__file__).resolve().parent.parent


def suite_network(name: str) -> Any:
    """The commit's spec of the network called ``name``, or ``NotImplementedError`` if it has none."""
    networks = commit_module("dojo_networks", before="suites.networks")
    registry = getattr(networks, "NETWORKS", {})
    if name not in registry:
        raise NotImplementedError(f"this commit's networks have no network {name!r}")
    return networks.get_network(name)


def capture_module() -> Any:
    """The commit's ``pytest_dojo.capture``, or ``NotImplementedError`` if it has none."""
    try:
        from pytest_dojo import capture
    except ImportError as error:
        raise NotImplementedError(f"this commit has no pytest_dojo.capture ({error})") from None
    if not hasattr(capture, "capture_train_step"):
        raise NotImplementedError("this commit's pytest_dojo.capture has no capture_train_step")
    return capture


def full_step_inputs(name: str, batch: int) -> tuple[Any, Any, Any, Any]:
    """(spec, model, inputs, targets) of the full-size ``name`` on the meta device (no storage)."""
    import torch

    spec = suite_network(name)
    with torch.device("meta"):
        model = spec.build("full")
    inputs, targets = spec.make_batch("full", batch, "meta")
    return spec, model, inputs, targets


def capture_full_step(name: str) -> Any:
    """The ``hwmodel.Workload`` of one replica of the full-size ``name``, at ``FULL_BATCH_PER_CHIP``.

    The same call the plugin's ``dojo.train_step(model, inputs, targets=..., loss_fn=spec.loss)``
    makes for each data-parallel replica.
    """
    suite_network(name)
    capture = capture_module()
    spec, model, inputs, targets = full_step_inputs(name, FULL_BATCH_PER_CHIP)
    start = time.perf_counter()
    workload = capture.capture_train_step(model, inputs, targets=targets, loss_fn=spec.loss, name=name)
    print(
        f"captured {name} (full, batch {FULL_BATCH_PER_CHIP}): {len(workload.ops)} ops in "
        f"{time.perf_counter() - start:.1f} s",
        file=sys.stderr,
    )
    return workload


def capture_full_steps() -> dict[str, Any]:
    """Per network: its captured workload, or the reason this commit cannot provide it (a string)."""
    workloads: dict[str, Any] = {}
    for name in NETWORKS:
        try:
            workloads[name] = capture_full_step(name)
        except NotImplementedError as error:
            workloads[name] = str(error)
    return workloads


def system(mesh: str) -> Any:
    """The commit's ``hwmodel`` system of ``mesh`` D1 chips, or ``NotImplementedError``."""
    try:
        import hwmodel
    except ImportError as error:
        raise NotImplementedError(f"this commit has no hwmodel ({error})") from None
    if not hasattr(hwmodel, "make_system") or not hasattr(hwmodel, "simulate"):
        raise NotImplementedError("this commit's hwmodel has no make_system/simulate")
    return hwmodel.make_system(CHIP, mesh)


def simulate(workload: Any, mesh: str) -> Any:
    """The commit's ``hwmodel.Report`` of ``workload`` data-parallel over ``mesh``."""
    import hwmodel

    return hwmodel.simulate(workload, system(mesh))

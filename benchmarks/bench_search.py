"""``plan="auto"`` from cold at scale, and the suites cold and warm, measured in one run.

Prints, for a 20-layer MLP (1,024 features, a global batch of 4 samples per chip) and the full
HydraNet (``dojo_networks.get_network("hydranet")``, 1 sample per chip) on a D1 tile (5x5), a tray
(10x15), a cabinet (10x30) and an ExaPOD (50x60):

* the whole search from cold (``hwmodel.search_plans`` on a fresh
  :class:`pytest_dojo.plugin.steps.CapturedStep`, so every workload is produced afresh: captures
  and derived batches included, the hardware model's caches cleared; torch's import and its
  one-time set-up excluded), in wall-clock seconds and in CPU seconds of this process and of the
  child a two-size capture forks (:mod:`pytest_dojo.capture.forked`; other work on the machine
  inflates these less than the wall clock, and where the child runs beside this process they add
  up to more than the wall clock);
* plans ranked, simulated in full and pruned by their bounds; fresh captures (and the capture
  calls that made them) and derived batches the step produced; seconds spent producing workloads;
  plans simulated, and plans ranked (bounded, pruned or simulated), per second of the rest;
* the best plan, and whether the ExaPOD search meets its target (< 5 s).

Then ``pytest suites --dojo-mesh=5x5 -p no:randomly`` twice in a subprocess, with a fresh
``--basetemp`` and cache directory, as a user's first and second run: cold after ``--cache-clear``
and with the repository's own bytecode removed (a fresh checkout has none: its modules compile,
and pytest rewrites the plugin's), then warm (targets < 30 s and < 10 s). Both runs keep and write
bytecode as Python does by default: a ``PYTHONDONTWRITEBYTECODE`` in the environment is dropped
for them (with it, every run compiles the repository's modules again; the report says so).

Wall-clock figures share the machine with whatever else runs. Progress lines go to stderr.

Run from the repository root: ``python -m benchmarks.bench_search [--meshes 5x5,tray] [--networks mlp]
[--no-suites]``; ``--only exapod`` is ``--meshes exapod --no-suites``.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from dojo_networks import get_network
from hwmodel import make_system
from hwmodel.collectives.pricing import clear_price_caches
from hwmodel.search.plans import plan_layout
from hwmodel.search.ranking import PlanRanking, search_plans
from pytest_dojo.capture import capture_train_step
from pytest_dojo.plugin.steps import CapturedStep

MESHES = ("5x5", "tray", "cabinet", "exapod")
SEARCH_TARGET_S = 5.0
SUITES_COLD_TARGET_S = 30.0
SUITES_WARM_TARGET_S = 10.0
MLP_LAYERS = 20
MLP_FEATURES = 1024
REPOSITORY = Path(__file__).resolve().parent.parent
PACKAGES = ("hwmodel", "pytest_dojo", "dojo_networks", "dojo_validation")
"""The repository's importable packages (pyproject.toml's ``[tool.setuptools] packages``)."""


def progress(message: str) -> None:
    print(f"  .. {message}", file=sys.stderr, flush=True)


@dataclass(frozen=True, kw_only=True)
class Network:
    """A network of the benchmark: how to build its step for a global batch, and samples per chip."""

    name: str
    samples_per_chip: int
    step: Callable[[int], CapturedStep]


def mlp_step(global_batch: int) -> CapturedStep:
    """A 20-layer MLP (Linear + ReLU, 1,024 features) on the meta device."""
    layers: list[torch.nn.Module] = []
    with torch.device("meta"):
        for _ in range(MLP_LAYERS):
            layers += [torch.nn.Linear(MLP_FEATURES, MLP_FEATURES), torch.nn.ReLU()]
        model = torch.nn.Sequential(*layers)
        inputs = torch.empty(global_batch, MLP_FEATURES)
    return CapturedStep(model, inputs, name=f"mlp{MLP_LAYERS}")


def hydranet_step(global_batch: int) -> CapturedStep:
    """The full HydraNet on the meta device, with its own loss and targets."""
    spec = get_network("hydranet")
    with torch.device("meta"):
        model = spec.build("full")
    inputs, targets = spec.make_batch("full", global_batch, "meta")
    return CapturedStep(model, inputs, targets=targets, loss_fn=spec.loss, name="hydranet-full")


NETWORKS = (
    Network(name="mlp", samples_per_chip=4, step=mlp_step),
    Network(name="hydranet", samples_per_chip=1, step=hydranet_step),
)


def clear_model_caches() -> None:
    """Forget the hardware model's cached prices and layouts (workload caches die with the workloads)."""
    clear_price_caches()
    plan_layout.cache_clear()


def warm_up_torch() -> None:
    """Capture a tiny step once: torch's lazy imports and one-time set-up are not the search's."""
    capture_train_step(torch.nn.Linear(4, 2), torch.randn(5, 4))


def cpu_seconds() -> float:
    """CPU seconds of this process and of its children that have ended (a capture's forked child)."""
    times = os.times()
    return times.user + times.system + times.children_user + times.children_system


@dataclass(frozen=True, kw_only=True)
class SearchRun:
    ranking: PlanRanking
    search_s: float
    search_cpu_s: float
    produce_s: float
    captures: int
    capture_calls: int
    derived: int


def cold_search(network: Network, mesh: str) -> SearchRun:
    """One search from cold on ``mesh``: a fresh step, cleared caches."""
    system = make_system("d1", mesh)
    step = network.step(network.samples_per_chip * system.num_chips)
    clear_model_caches()
    start, start_cpu = time.perf_counter(), cpu_seconds()
    ranking = search_plans(step, system)
    search_s, search_cpu_s = time.perf_counter() - start, cpu_seconds() - start_cpu
    return SearchRun(
        ranking=ranking,
        search_s=search_s,
        search_cpu_s=search_cpu_s,
        produce_s=float(getattr(step, "capture_s", 0.0)),
        captures=int(getattr(step, "fresh_captures", 0)),
        capture_calls=int(getattr(step, "capture_calls", 0)),
        derived=int(getattr(step, "derived_batches", 0)),
    )


def print_searches(networks: list[Network], meshes: list[str]) -> dict[tuple[str, str], SearchRun]:
    header = (
        f"  {'network':<9} {'mesh':<8} {'chips':>5} {'plans':>5} {'evals':>5} {'pruned':>6} {'capt':>4} "
        f"{'calls':>5} {'deriv':>5} {'produce s':>9} {'search s':>8} {'cpu s':>6} {'evals/s':>8} {'plans/s':>8}  best"
    )
    print('plan="auto" from cold (captures included; torch import excluded):')
    print(header)
    runs: dict[tuple[str, str], SearchRun] = {}
    for network in networks:
        for mesh in meshes:
            progress(f"plan=auto for {network.name} on {mesh}")
            run = runs[(network.name, mesh)] = cold_search(network, mesh)
            ranking = run.ranking
            simulate_s = max(run.search_s - run.produce_s, 1e-9)
            best = ranking.report
            print(
                f"  {network.name:<9} {mesh:<8} {best.num_chips:>5} {len(ranking.entries):>5} "
                f"{ranking.evaluated:>5} {ranking.pruned:>6} {run.captures:>4} {run.capture_calls:>5} {run.derived:>5} "
                f"{run.produce_s:>9.2f} {run.search_s:>8.2f} {run.search_cpu_s:>6.2f} "
                f"{ranking.evaluated / simulate_s:>8,.0f} "
                f"{len(ranking.entries) / simulate_s:>8,.0f}  "
                f"{best.plan} ({best.samples_per_s:,.0f} samples/s)",
                flush=True,
            )
    return runs


def suites_run(basetemp: Path, cache_dir: Path, *extra: str) -> tuple[float, int]:
    """Seconds and exit code of ``pytest suites --dojo-mesh=5x5 -p no:randomly`` in a subprocess."""
    command = [
        sys.executable,
        "-m",
        "pytest",
        "suites",
        "--dojo-mesh=5x5",
        "-p",
        "no:randomly",
        "-q",
        f"--basetemp={basetemp}",
        "-o",
        f"cache_dir={cache_dir}",
        *extra,
    ]
    environment = {key: value for key, value in os.environ.items() if key != "PYTHONDONTWRITEBYTECODE"}
    start = time.perf_counter()
    completed = subprocess.run(command, cwd=REPOSITORY, env=environment, capture_output=True, text=True, check=False)
    return time.perf_counter() - start, completed.returncode


def remove_repository_bytecode() -> None:
    """Delete the ``__pycache__`` folders of the repository's own code (not of its virtual
    environment): the bytecode a fresh checkout lacks."""
    for package in (*PACKAGES, "suites", "benchmarks"):
        for folder in sorted((REPOSITORY / package).rglob("__pycache__")):
            shutil.rmtree(folder, ignore_errors=True)


def print_suites() -> tuple[float, float]:
    with tempfile.TemporaryDirectory(prefix="bench-search-") as directory:
        root = Path(directory)
        progress("suites, cold (--cache-clear, the repository's bytecode removed)")
        remove_repository_bytecode()
        cold, cold_code = suites_run(root / "cold", root / "cache", "--cache-clear")
        progress("suites, warm")
        warm, warm_code = suites_run(root / "warm", root / "cache")
    print("\npytest suites --dojo-mesh=5x5 -p no:randomly (subprocess, interpreter and torch import included):")
    print(f"  cold (after --cache-clear, no bytecode of the repository): {cold:6.1f} s (exit {cold_code})")
    print(f"  warm (same cache dir, the bytecode the cold run wrote):    {warm:6.1f} s (exit {warm_code})")
    if "PYTHONDONTWRITEBYTECODE" in os.environ:
        print("  (PYTHONDONTWRITEBYTECODE is set here and was dropped for these runs: with it, a warm run")
        print("   compiles every module of the repository again, as the cold run does)")
    return cold, warm


def verdict(label: str, value: float, target: float) -> str:
    return f"  {label:<56} {value:8.2f} s  < {target:g} s: {'met' if value < target else 'NOT met'}"


def print_targets(runs: dict[tuple[str, str], SearchRun], suites: tuple[float, float] | None) -> None:
    print("\ntargets:")
    for (network, mesh), run in runs.items():
        if mesh == "exapod":
            print(verdict(f'plan="auto" {network} on exapod, cold', run.search_s, SEARCH_TARGET_S))
            # The target is the wall clock of the whole search on the machine's cores; its CPU time
            # (the forked child's included) is what it would take on one.
            print(f"    (CPU seconds, the capture's forked child included: {run.search_cpu_s:.2f} s)")
    if suites is not None:
        print(verdict("suites cold", suites[0], SUITES_COLD_TARGET_S))
        print(verdict("suites warm", suites[1], SUITES_WARM_TARGET_S))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--meshes", default=",".join(MESHES), help="comma-separated meshes. Default: %(default)s")
    parser.add_argument(
        "--networks", default=",".join(n.name for n in NETWORKS), help="comma-separated networks. Default: %(default)s"
    )
    parser.add_argument("--no-suites", action="store_true", help="skip the suites' cold and warm runs")
    parser.add_argument("--only", choices=MESHES, help="one mesh, both networks, no suites")
    arguments: Any = parser.parse_args(argv)
    if arguments.only:
        arguments.meshes, arguments.no_suites = arguments.only, True
    chosen = set(arguments.networks.split(","))
    networks = [network for network in NETWORKS if network.name in chosen]
    progress("warming torch up")
    warm_up_torch()
    runs = print_searches(networks, arguments.meshes.split(","))
    suites = None if arguments.no_suites else print_suites()
    print_targets(runs, suites)


if __name__ == "__main__":
    main()

"""Simulator speed after capture, measured side by side in one run (medians; no timed assertions).

Prints, for the full HydraNet step (``dojo_networks.get_network("hydranet")``, captured once per
per-replica batch under FakeTensorMode):

* evaluations per second of one (workload, 5x5 D1 tile, plan) for a data-parallel, a tensor-
  parallel and a pipeline plan (target >= 1,000/s for one plan; Calculon evaluates ~274/s);
* one evaluation on 1, 25, 150, 300 and 3,000 chips (``1x1``, ``5x5``, ``tray``, ``cabinet``,
  ``exapod``), cold (first evaluation on that mesh: collective prices not yet cached) and warm
  (target < 50 ms at 3,000 chips, growing no faster than linearly in chips);
* ``plan="auto"`` over a 5x5 with the captures done (target < 1 s), with the batch sizes the
  search asked the workload source for;
* building the timeline and its Chrome trace for one plan (only done on request).

Wall-clock figures share the machine with whatever else runs; the ``cpu`` columns (this process's
CPU time, ``time.process_time``) show what an evaluation costs when it has a core to itself
(target >= 10,000 evaluations/s for the data-parallel plan).

``--baseline-tree PATH`` also measures the evaluations of another checkout of this repository
(``git worktree add PATH COMMIT``, or ``git archive COMMIT | tar -x -C PATH``) on the same
workload, in a subprocess that imports that tree's ``hwmodel``, right after this one's: the two
rates side by side in one run.

Run from the repository root: ``python -m benchmarks.bench_simulator [--repeats N] [--baseline-tree PATH]``.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import torch

from dojo_networks import get_network
from hwmodel import Plan, Workload, make_system, simulate
from hwmodel.collectives.pricing import clear_price_caches
from hwmodel.search.ranking import search_plans
from hwmodel.step.simulate import StepOptions
from hwmodel.step.trace import step_trace, validate_chrome_trace
from hwmodel.step.workload import FixedWorkloads
from pytest_dojo.capture import capture_train_step

NETWORK = "hydranet"
GLOBAL_BATCH = 25
SCALING_MESHES = (("1x1", 1), ("5x5", 25), ("tray", 150), ("cabinet", 300), ("exapod", 3000))
PLANS = (
    Plan(data_parallel=25),
    Plan(data_parallel=5, tensor_parallel=5),
    Plan(data_parallel=5, pipeline_parallel=5, micro_batches=5),
)


def progress(message: str) -> None:
    print(f"  .. {message}", file=sys.stderr, flush=True)


def capture(batch: int) -> Workload:
    spec = get_network(NETWORK)
    with torch.device("meta"):
        model = spec.build("full")
    inputs, targets = spec.make_batch("full", batch, "meta")
    return capture_train_step(model, inputs, targets=targets, loss_fn=spec.loss, name=f"{NETWORK}-full")


def median_s(
    function: Callable[[], Any], repeats: int, inner: int = 1, clock: Callable[[], float] = time.perf_counter
) -> float:
    """Median over ``repeats`` of the mean time of ``inner`` calls, on ``clock`` (wall or CPU)."""
    samples = []
    for _ in range(repeats):
        start = clock()
        for _ in range(inner):
            function()
        samples.append((clock() - start) / inner)
    return statistics.median(samples)


def cpu_s(function: Callable[[], Any], repeats: int, inner: int = 1) -> float:
    """:func:`median_s` in this process's CPU time: what the evaluation costs when it has a core."""
    return median_s(function, repeats, inner, clock=time.process_time)


def _capture_all() -> dict[int, Workload]:
    """The full network's step at per-replica batches 1, 5 and 25, with a line on what it holds."""
    workloads: dict[int, Workload] = {}
    capture_s: dict[int, float] = {}
    for batch in (1, 5, 25):
        progress(f"capturing {NETWORK} full at batch {batch}")
        start = time.perf_counter()
        workloads[batch] = capture(batch)
        capture_s[batch] = time.perf_counter() - start
    one = workloads[1]
    print(
        f"{NETWORK} full: {len(one.ops)} ops, {one.parameter_count / 1e6:.1f} M parameters, "
        f"{one.flops_total / 1e12:.2f} TFLOP per sample-step; capture "
        + ", ".join(f"batch {b}: {s:.1f} s" for b, s in capture_s.items())
    )
    return workloads


BASELINE_SCRIPT = """
import dataclasses, json, statistics, sys, time
from hwmodel import Plan, make_system, simulate
from hwmodel.step import workload as records
# An older tree reads its own workload schema: the same ops, without the fields it predates.
data = json.loads(open(sys.argv[1]).read())
known = {field.name for field in dataclasses.fields(records.OpRecord)}
data["schema_version"] = records.SCHEMA_VERSION
data["ops"] = [{key: value for key, value in op.items() if key in known} for op in data["ops"]]
one = records.Workload.from_dict(data)
tile = make_system("d1", "5x5")
repeats = int(sys.argv[2])
for text in sys.argv[3:]:
    plan = Plan.parse(text)
    report = simulate(one, tile, plan=plan)
    samples = []
    for _ in range(repeats):
        start = time.process_time()
        for _ in range(50):
            simulate(one, tile, plan=plan)
        samples.append((time.process_time() - start) / 50)
    print(text, 1 / statistics.median(samples), report.step_time_s)
"""
"""Run in a baseline tree: CPU evaluations/s and step time of each plan given, one line each."""


def _baseline_rates(tree: Path, one: Workload, repeats: int) -> dict[str, tuple[float, float]]:
    """(cpu evaluations/s, step seconds) per plan, measured by the ``hwmodel`` of ``tree``."""
    with tempfile.TemporaryDirectory() as directory:
        workload_file = Path(directory) / "workload.json"
        workload_file.write_text(one.to_json())
        command = [sys.executable, "-c", BASELINE_SCRIPT, str(workload_file), str(repeats), *map(str, PLANS)]
        environment = {**os.environ, "PYTHONPATH": str(tree)}
        completed = subprocess.run(command, cwd=tree, env=environment, capture_output=True, text=True, check=True)
    rates: dict[str, tuple[float, float]] = {}
    for line in completed.stdout.splitlines():
        *words, rate, step = line.split()
        rates[" ".join(words)] = (float(rate), float(step))
    return rates


def _print_plan_evaluations(one: Workload, tile: Any, repeats: int, baseline_tree: Path | None) -> None:
    print("\nevaluations of one (workload at batch 1 per replica, 5x5 D1, plan) after capture:")
    print(f"  {'plan':<22} {'evals/s':>9} {'ms/eval':>8} {'cpu evals/s':>12} {'step ms':>9} {'samples/s':>10}")
    rates: dict[str, tuple[float, float]] = {}
    for plan in PLANS:
        report = simulate(one, tile, plan=plan)
        per_eval = median_s(partial(simulate, one, tile, plan=plan), repeats, inner=50)
        per_eval_cpu = cpu_s(partial(simulate, one, tile, plan=plan), repeats, inner=50)
        rates[str(plan)] = (1 / per_eval_cpu, report.step_time_s)
        print(
            f"  {plan!s:<22} {1 / per_eval:>9,.0f} {per_eval * 1e3:>8.3f} {1 / per_eval_cpu:>12,.0f} "
            f"{report.step_time_s * 1e3:>9.3f} {report.samples_per_s:>10,.1f}"
        )
    if baseline_tree is None:
        return
    progress(f"the same evaluations with the hwmodel of {baseline_tree}")
    baseline = _baseline_rates(baseline_tree, one, repeats)
    print(f"\nthe same, this tree against {baseline_tree} (measured right after, same workload):")
    print(f"  {'plan':<22} {'cpu evals/s':>12} {'baseline':>12} {'speedup':>8} {'same step':>9}")
    for plan in PLANS:
        rate, step = rates[str(plan)]
        old_rate, old_step = baseline[str(plan)]
        same = "yes" if step == old_step else "NO"
        print(f"  {plan!s:<22} {rate:>12,.0f} {old_rate:>12,.0f} {rate / old_rate:>7.1f}x {same:>9}")


def _print_scaling(one: Workload, repeats: int) -> None:
    print("\none evaluation (data parallel over every chip) against chips:")
    print(f"  {'mesh':<8} {'chips':>6} {'cold ms':>8} {'warm ms':>8} {'cpu ms':>7} {'warm us/chip':>13} {'step ms':>8}")
    for mesh, chips in SCALING_MESHES:
        system = make_system("d1", mesh)
        clear_price_caches()
        start = time.perf_counter()
        report = simulate(one, system)
        cold = time.perf_counter() - start
        warm = median_s(partial(simulate, one, system), repeats, inner=20)
        warm_cpu = cpu_s(partial(simulate, one, system), repeats, inner=20)
        print(
            f"  {mesh:<8} {chips:>6} {cold * 1e3:>8.2f} {warm * 1e3:>8.3f} {warm_cpu * 1e3:>7.3f} "
            f"{warm / chips * 1e6:>13.3f} {report.step_time_s * 1e3:>8.3f}"
        )


def _print_plan_search(workloads: dict[int, Workload], tile: Any, repeats: int) -> None:
    source = FixedWorkloads(by_batch=workloads, global_batch=GLOBAL_BATCH)
    progress("plan=auto over 5x5")
    clear_price_caches()
    start = time.perf_counter()
    ranking = search_plans(source, tile, options=StepOptions())
    cold = time.perf_counter() - start
    warm = median_s(lambda: search_plans(source, tile, options=StepOptions()), repeats)
    warm_cpu = cpu_s(lambda: search_plans(source, tile, options=StepOptions()), repeats)
    fitted = [entry for entry in ranking.entries if entry.fits]
    print(
        f"\nplan=auto over 5x5 at global batch {GLOBAL_BATCH}: {len(ranking.entries)} plans "
        f"({ranking.evaluated} simulated, {ranking.pruned} pruned by their bound, {len(fitted)} fit), "
        f"cold {cold * 1e3:.1f} ms, warm {warm * 1e3:.1f} ms (cpu {warm_cpu * 1e3:.1f} ms); "
        f"batch sizes asked "
        f"{sorted(ranking.batch_sizes_requested)}; best {ranking.report.plan} at "
        f"{ranking.report.samples_per_s:,.1f} samples/s"
    )
    for entry in fitted[:5]:
        print(
            f"  {entry.plan:<22} {entry.samples_per_s:>10,.1f} samples/s  "
            f"step {(entry.step_time_s or 0.0) * 1e3:8.3f} ms  {entry.bound:<8} {entry.memory_strategy}"
        )


def _print_trace(one: Workload, tile: Any, repeats: int) -> None:
    plan = PLANS[0]
    trace_s = median_s(lambda: step_trace(one, tile, plan), max(repeats // 2, 1))
    document = step_trace(one, tile, plan)
    problems = validate_chrome_trace(document)
    print(
        f"\ntimeline + Chrome trace of {plan} on 5x5: {trace_s * 1e3:.1f} ms, "
        f"{len(document['traceEvents'])} events, {'valid' if not problems else problems[:2]}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7, help="timed repeats per figure (median). Default: 7")
    parser.add_argument(
        "--baseline-tree", type=Path, default=None, help="another checkout to measure side by side. Default: none"
    )
    arguments = parser.parse_args()
    repeats = arguments.repeats
    workloads = _capture_all()
    tile = make_system("d1", "5x5")
    _print_plan_evaluations(workloads[1], tile, repeats, arguments.baseline_tree)
    _print_scaling(workloads[1], repeats)
    _print_plan_search(workloads, tile, repeats)
    _print_trace(workloads[1], tile, repeats)


if __name__ == "__main__":
    main()

"""Simulated values change only on purpose: synthetic workloads under every plan kind and preset
(fast), and the suites' ``--dojo-json`` results on D1, A100 and H100 (slow, one pytest subprocess
per configuration), compared bit for bit with the references in ``tests/data/behaviour_reference``.

The references were first written before the packages were restructured (which changed no value),
and written again when the kernel models replaced peak ceilings for D1 and the GPU presets. A
change to the model that moves a simulated value rewrites them in the same commit, and says why.
Fields that describe the run rather than the simulation (machine, commit, versions, capture and
wall-clock times) are left out of the comparison.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from synthetic_workloads import chain_workload

from hwmodel import Plan, StepOptions, make_system, search_plans, simulate
from hwmodel.spec.precision import parse_precision
from hwmodel.step.workload import FixedWorkloads

REFERENCE_DIR = Path(__file__).parent / "data" / "behaviour_reference"
REPOSITORY = Path(__file__).parent.parent

#: (case name, preset, mesh, precision or None for the preset's, plan)
SYNTHETIC_CASES: list[tuple[str, str, str, str | None, Plan | str | None]] = [
    ("d1-1x1", "d1", "1x1", None, None),
    ("d1-5x5-dp", "d1", "5x5", None, None),
    ("d1-1x4-tp", "d1", "1x4", None, Plan(data_parallel=1, tensor_parallel=4)),
    ("d1-1x4-pp", "d1", "1x4", None, Plan(data_parallel=1, pipeline_parallel=4, micro_batches=4)),
    (
        "d1-2x4-hybrid",
        "d1",
        "2x4",
        None,
        Plan(data_parallel=2, tensor_parallel=2, pipeline_parallel=2, micro_batches=2),
    ),
    ("d1-1x4-auto", "d1", "1x4", None, "auto"),
    ("d1-10x15-dp", "d1", "10x15", None, None),
    ("a100-1x8-dp", "a100", "1x8", None, None),
    ("a100-2x8-dp", "a100", "2x8", None, None),
    ("h100-1x1-fp32", "h100", "1x1", "fp32", None),
    ("h200-1x4-tp", "h200", "1x4", None, Plan(data_parallel=1, tensor_parallel=4)),
    ("host-1x1", "host", "1x1", None, None),
]

#: Fields of a results-file entry or report that describe the run, not the simulation.
RUN_FIELDS = frozenset({"capture_s", "commit", "machine", "wallclock", "versions", "change_pct", "ordinal"})


def synthetic_report(case: tuple[str, str, str, str | None, Plan | str | None]) -> dict[str, Any]:
    """The report of one synthetic case, as JSON data."""
    _, preset, mesh, precision, plan = case
    system = make_system(preset, mesh)
    num_chips = system.mesh.num_chips
    global_batch = num_chips * 4
    batches = sorted({global_batch // divisor for divisor in range(1, num_chips + 1) if global_batch % divisor == 0})
    source = FixedWorkloads(
        by_batch={batch: chain_workload(layers=4, batch=batch, width=512) for batch in batches},
        global_batch=global_batch,
    )
    options: dict[str, Any] = {"plan": plan}
    if precision is not None:
        options["precision"] = parse_precision(precision)
    if plan == "auto":
        # every candidate simulated, as when the references were written (tests/test_plans.py shows
        # the pruned search gives the same report, with the plans it drops marked pruned)
        step_options = StepOptions(precision=options["precision"]) if "precision" in options else StepOptions()
        report = search_plans(source, system, options=step_options, prune=False).report
    else:
        report = simulate(source, system, **options)
    return json.loads(json.dumps(report.to_dict()))


def simulated_values(value: Any) -> Any:
    """``value`` without the fields that describe the run, nor those the references predate."""
    if isinstance(value, dict):
        return {key: simulated_values(item) for key, item in value.items() if key not in RUN_FIELDS}
    if isinstance(value, list):
        return [simulated_values(item) for item in value]
    return value


@pytest.mark.parametrize("case", SYNTHETIC_CASES, ids=[case[0] for case in SYNTHETIC_CASES])
def test_synthetic_reports_are_unchanged(case: tuple[str, str, str, str | None, Plan | str | None]) -> None:
    reference = json.loads((REFERENCE_DIR / "synthetic_reports.json").read_text())
    assert simulated_values(synthetic_report(case)) == simulated_values(reference[case[0]])


SUITE_RUNS = {
    "suites_d1_5x5.json": ["--dojo-mesh=5x5"],
    "suites_a100_2x8.json": ["--dojo-chip=a100", "--dojo-mesh=2x8"],
    "suites_h100_1x4_fp32.json": ["--dojo-chip=h100", "--dojo-mesh=1x4", "--dojo-precision=fp32"],
}


@pytest.mark.slow
@pytest.mark.parametrize("reference_name", sorted(SUITE_RUNS))
def test_suite_results_are_unchanged(reference_name: str, tmp_path: Path) -> None:
    results = tmp_path / "results.json"
    command = [sys.executable, "-m", "pytest", "suites", "-q", "-p", "no:cacheprovider", "-p", "no:randomly"]
    command += [*SUITE_RUNS[reference_name], "--dojo-thresholds=", f"--dojo-json={results}"]
    completed = subprocess.run(command, cwd=REPOSITORY, capture_output=True, text=True, check=False)
    assert completed.returncode == 0, completed.stdout[-2000:] + completed.stderr[-2000:]
    measured = {entry["nodeid"]: simulated_values(entry) for entry in json.loads(results.read_text())["results"]}
    reference = json.loads((REFERENCE_DIR / reference_name).read_text())
    expected = {entry["nodeid"]: simulated_values(entry) for entry in reference["results"]}
    assert measured.keys() == expected.keys()
    for nodeid, entry in expected.items():
        assert measured[nodeid] == entry, nodeid

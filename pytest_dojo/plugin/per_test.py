"""What the plugin does around each test: marker limits, the gate, step reports and sensitivity.

The hardware model is imported only for a test that simulated a step.
"""

from __future__ import annotations

import pytest

from pytest_dojo.plugin.session import DojoSession, TestResult
from pytest_dojo.plugin.thresholds import ThresholdError, Thresholds, parse_limits

SENSITIVITY_KEY = pytest.StashKey[dict[tuple[str, str, int], list[str]]]()
"""``--dojo-sensitivity``: the ranked what-if lines of each step, keyed like :attr:`TestResult.key`."""


def marker_thresholds(item: pytest.Item) -> Thresholds:
    """Limits from ``@pytest.mark.dojo(...)``; a bad marker fails the test in one line."""
    marker = item.get_closest_marker("dojo")
    if marker is None:
        return Thresholds()
    if marker.args:
        pytest.fail(f"@pytest.mark.dojo takes keyword arguments only, got {marker.args!r}", pytrace=False)
    try:
        return parse_limits(marker.kwargs, "@pytest.mark.dojo")
    except ThresholdError as error:
        message = str(error)
    pytest.fail(message, pytrace=False)


def gate_test(session: DojoSession, nodeid: str, marked: Thresholds) -> list[str]:
    """Judge every step the test simulated, record the verdicts, return the failure lines."""
    indices = session.results_of(nodeid)
    if not indices:
        return []
    from pytest_dojo.plugin import gate
    from pytest_dojo.plugin.results_json import key_of

    settings = session.options
    file_limits = settings.thresholds.lookup(nodeid, str(session.system.mesh)) if settings.thresholds else Thresholds()
    limits = marked.merged_over(file_limits)
    baseline = settings.baseline.by_key if settings.baseline else {}
    failures: list[str] = []
    for index in indices:
        result = session.results[index]
        entry = result.to_dict()
        judgement = gate.judge(
            entry["report"],
            limits,
            baseline.get(key_of(entry)),
            has_baseline_file=settings.baseline is not None,
            max_regression_pct=settings.max_regression_pct,
            require_baseline=settings.require_baseline,
        )
        notes = judgement.failures + judgement.notes
        session.results[index] = result.with_verdict(judgement.verdict, notes, judgement.change_pct)
        failures.extend(f"dojo gate ({result.network} on {session.system.mesh}): {line}" for line in judgement.failures)
        if settings.report_dir is not None:
            write_step_report(session, session.results[index])
    return failures


def write_step_report(session: DojoSession, result: TestResult) -> None:
    """``--dojo-report-dir``: the step's trace and plots; a file that cannot be written fails the test."""
    from pytest_dojo.plugin import report_dir

    try:
        report_dir.write_step_report(
            session.options.report_dir,  # type: ignore[arg-type]
            result.nodeid,
            result.network,
            result.ordinal,
            result.report,
            session.system,
            session.artifacts.pop(result.key, None),
        )
    except report_dir.ReportDirError as error:
        message = str(error)
    else:
        return
    pytest.fail(message, pytrace=False)


def rank_sensitivity(config: pytest.Config, session: DojoSession, nodeid: str) -> None:
    """``--dojo-sensitivity``: rank hardware changes for each step the test simulated."""
    indices = session.results_of(nodeid)
    if not indices or not session.options.sensitivity:
        return
    ranked = config.stash.setdefault(SENSITIVITY_KEY, {})
    for index in indices:
        result = session.results[index]
        if result.key not in ranked:
            ranked[result.key] = _sensitivity(session, result)


def _sensitivity(session: DojoSession, result: TestResult) -> list[str]:
    """The step re-simulated with each hardware parameter 2x better (:func:`hwmodel.studies.sensitivity.sensitivity`),
    under the plan the report used; the step is the latest capture of that network and global batch."""
    from hwmodel import HwModelError
    from hwmodel.studies.sensitivity import sensitivity
    from hwmodel.studies.whatif import plan_of

    steps = [
        step
        for step in session.captures.values()
        if step.name == result.network and step.global_batch == result.report.global_batch
    ]
    if not steps:
        return ["not available: the captured step is no longer cached"]
    try:
        cost_model = result.report.op_cost_model
        return sensitivity(
            steps[-1],
            session.system,
            plan=plan_of(result.report),
            precision=session.options.precision,
            execution=cost_model.execution if cost_model is not None else None,
        ).ranked_lines()
    except HwModelError as error:
        return [f"not available: {error}"]

"""pytest hooks of pytest-dojo; everything else lives in its own module.

Registered through the ``pytest11`` entry point. Torch is imported only when a test captures a
step, so ``pytest --help`` and runs without the ``dojo`` fixture do not pay for it.

Gating happens in a ``pytest_runtest_call`` wrapper, after the test body: a broken threshold or a
regression against the baseline fails that test like an assertion would, with a one-line message.
Under pytest-xdist the workers send their results to the controller (``workeroutput``), which
merges them before writing the summary, the JSON file and the baseline.
"""

from __future__ import annotations

import json
from collections.abc import Generator
from typing import Any

import pytest

from pytest_dojo import gate, options, report
from pytest_dojo.fixtures import dojo
from pytest_dojo.results_json import (
    ResultsFileError,
    build_document,
    git_commit,
    key_of,
    machine_info,
    write_json_atomic,
)
from pytest_dojo.session import DOJO_SESSION_KEY, DojoSession, TestResult
from pytest_dojo.thresholds import ThresholdError, Thresholds, parse_limits
from pytest_dojo.wallclock import dojo_wallclock, pytest_benchmark_update_machine_info

__all__ = ["dojo", "dojo_wallclock", "pytest_benchmark_update_machine_info"]

WORKER_OUTPUT_KEY = "dojo_results"
SENSITIVITY_OUTPUT_KEY = "dojo_sensitivity"
SENSITIVITY_KEY = pytest.StashKey[dict[tuple[str, str, int], list[str]]]()
"""``--dojo-sensitivity``: the ranked what-if lines of each step, keyed like :attr:`TestResult.key`."""


def pytest_addoption(parser: pytest.Parser) -> None:
    options.register(parser)


@pytest.hookimpl(tryfirst=True)
def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "dojo(min_samples_per_s=None, max_step_ms=None, min_mfu=None): floors and ceilings on this test's "
        "simulated figures (pytest-dojo)",
    )
    config.stash[DOJO_SESSION_KEY] = DojoSession.from_options(options.parse_options(config))


def pytest_report_header(config: pytest.Config) -> str:
    return report.header_line(config.stash[DOJO_SESSION_KEY].system)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_protocol(item: pytest.Item, nextitem: pytest.Item | None) -> Generator[None, object, object]:
    session = item.config.stash[DOJO_SESSION_KEY]
    session.current_nodeid = item.nodeid
    try:
        return (yield)
    finally:
        session.current_nodeid = ""


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


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Generator[None, object, object]:
    marked = marker_thresholds(item)
    outcome = yield
    session = item.config.stash[DOJO_SESSION_KEY]
    failures = gate_test(session, item.nodeid, marked)
    if marked and not session.results_of(item.nodeid):
        failures.append("has @pytest.mark.dojo thresholds but simulated no training step (use the dojo fixture)")
    if failures:
        pytest.fail("\n".join(failures), pytrace=False)
    return outcome


def gate_test(session: DojoSession, nodeid: str, marked: Thresholds) -> list[str]:
    """Judge every step the test simulated, record the verdicts, return the failure lines."""
    settings = session.options
    file_limits = settings.thresholds.lookup(nodeid, str(session.system.mesh)) if settings.thresholds else Thresholds()
    limits = marked.merged_over(file_limits)
    baseline = settings.baseline.by_key if settings.baseline else {}
    failures: list[str] = []
    for index in session.results_of(nodeid):
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
            _write_step_report(session, session.results[index])
    return failures


def _write_step_report(session: DojoSession, result: TestResult) -> None:
    from pytest_dojo import report_dir

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


@pytest.hookimpl(trylast=True)
def pytest_runtest_teardown(item: pytest.Item) -> None:
    """``--dojo-sensitivity``: rank hardware changes for each step the test simulated."""
    session = item.config.stash[DOJO_SESSION_KEY]
    if not session.options.sensitivity:
        return
    ranked = item.config.stash.setdefault(SENSITIVITY_KEY, {})
    for index in session.results_of(item.nodeid):
        result = session.results[index]
        if result.key not in ranked:
            ranked[result.key] = _sensitivity(session, result)


def _sensitivity(session: DojoSession, result: TestResult) -> list[str]:
    """The step re-simulated with each hardware parameter 2x better (:func:`hwmodel.whatif.sensitivity`),
    under the plan the report used; the step is the latest capture of that network and global batch."""
    from hwmodel import HwModelError
    from hwmodel.whatif import plan_of, sensitivity

    steps = [
        step
        for step in session.captures.values()
        if step.name == result.network and step.global_batch == result.report.global_batch
    ]
    if not steps:
        return ["not available: the captured step is no longer cached"]
    try:
        return sensitivity(
            steps[-1], session.system, plan=plan_of(result.report), precision=session.options.precision
        ).ranked_lines()
    except HwModelError as error:
        return [f"not available: {error}"]


def _is_worker(config: pytest.Config) -> bool:
    return hasattr(config, "workerinput")


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    config = session.config
    dojo_session = config.stash.get(DOJO_SESSION_KEY, None)
    if dojo_session is None:
        return
    if _is_worker(config):
        payload = {
            "results": [result.to_dict() for result in dojo_session.results],
            "wallclock": dojo_session.wallclock,
        }
        config.workeroutput[WORKER_OUTPUT_KEY] = json.dumps(payload)  # type: ignore[attr-defined]
        ranked = [[*key, lines] for key, lines in config.stash.get(SENSITIVITY_KEY, {}).items()]
        config.workeroutput[SENSITIVITY_OUTPUT_KEY] = json.dumps(ranked)  # type: ignore[attr-defined]
        return
    _write_outputs(session, dojo_session)


@pytest.hookimpl(optionalhook=True)
def pytest_testnodedown(node: Any, error: Any) -> None:
    """pytest-xdist: merge a finished worker's results into the controller's session."""
    ranked = json.loads(getattr(node, "workeroutput", {}).get(SENSITIVITY_OUTPUT_KEY, "[]"))
    for nodeid, network, ordinal, lines in ranked:
        node.config.stash.setdefault(SENSITIVITY_KEY, {})[(nodeid, network, ordinal)] = lines
    output = getattr(node, "workeroutput", {}).get(WORKER_OUTPUT_KEY)
    if output is None:
        return
    dojo_session = node.config.stash[DOJO_SESSION_KEY]
    payload = json.loads(output)
    dojo_session.results.extend(TestResult.from_dict(entry) for entry in payload["results"])
    dojo_session.wallclock.extend(payload["wallclock"])


def _write_outputs(config_session: pytest.Session, dojo_session: DojoSession) -> None:
    config = config_session.config
    settings = dojo_session.options
    targets = [(path, True) for path in (settings.json_path,) if path is not None]
    targets += [(path, False) for path in (settings.save_baseline_path,) if path is not None]
    if not targets:
        return
    commit = git_commit(config.rootpath)
    machine = machine_info()
    results = [result.to_dict() for result in dojo_session.sorted_results()]
    for path, measured in targets:
        document = build_document(
            chip=dojo_session.system.chip.name,
            mesh=str(dojo_session.system.mesh),
            commit=commit,
            machine=machine,
            results=results,
            wallclock=dojo_session.wallclock if measured else (),
            include_measured=measured,
        )
        try:
            write_json_atomic(path, document)
        except ResultsFileError as error:
            dojo_session.write_errors.append(str(error))
            if config_session.exitstatus == pytest.ExitCode.OK:
                config_session.exitstatus = pytest.ExitCode.TESTS_FAILED
        else:
            dojo_session.written.append(f"{'results' if measured else 'baseline'} written to {path}")


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter, exitstatus: int, config: pytest.Config) -> None:
    session = config.stash.get(DOJO_SESSION_KEY, None)
    if session is None or _is_worker(config):
        return
    for line in session.write_errors:
        terminalreporter.write_line(f"ERROR: {line}", red=True)
    if not session.results:
        return
    results = session.sorted_results()
    terminalreporter.section("dojo: simulated training steps")
    terminalreporter.write_line(report.header_line(session.system))
    with_baseline = session.options.baseline is not None
    rows = report.result_rows(results, with_baseline=with_baseline)
    for line in report.table_lines(rows, report.column_names(with_baseline)):
        terminalreporter.write_line(line)
    for line in report.note_lines(results):
        terminalreporter.write_line(line, yellow=True)
    if session.options.thresholds is not None:
        gated = session.options.thresholds.tests_for_mesh(str(session.system.mesh))
        idle = report.idle_thresholds_line(gated, {result.nodeid for result in results})
        if idle:
            terminalreporter.write_line(idle, yellow=True)
    unmodeled = report.unmodeled_line(results)
    if unmodeled:
        terminalreporter.write_line(unmodeled, yellow=True)
    for line in session.written:
        terminalreporter.write_line(line)
    if session.options.report_dir is not None:
        terminalreporter.write_line(f"step reports (trace.json, *.png) written under {session.options.report_dir}")
    ranked = config.stash.get(SENSITIVITY_KEY, {})
    if ranked:
        terminalreporter.section("dojo: hardware sensitivity (one parameter at a time, 2x better)")
        for line in report.sensitivity_lines(ranked):
            terminalreporter.write_line(line)

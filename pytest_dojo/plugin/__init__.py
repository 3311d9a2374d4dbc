"""pytest hooks of pytest-dojo; everything else lives in its own module.

Registered through the ``pytest11`` entry point (``dojo = "pytest_dojo.plugin"``). The plugin stays
out of the way of a project that does not use it: importing it loads neither torch, numpy nor the
hardware model, and it prints its header line ("pytest-dojo: chip d1, mesh 5x5 ...") only where it
is in use: a dojo option or ini key is set (the header, before collection), or a collected test uses
the ``dojo`` or ``dojo_wallclock`` fixture or the ``dojo`` marker (after collection). The settings
are parsed at configure time in the first case, so that a bad one is a usage error before any test
runs, and on first use otherwise.

Modules: :mod:`~pytest_dojo.plugin.options` (options and ini keys), :mod:`~pytest_dojo.plugin.session`
(run state), :mod:`~pytest_dojo.plugin.fixtures` and :mod:`~pytest_dojo.plugin.wallclock` (the
fixtures), :mod:`~pytest_dojo.plugin.per_test` (gate, step reports and sensitivity per test),
:mod:`~pytest_dojo.plugin.outputs` (results files, pytest-xdist merging),
:mod:`~pytest_dojo.plugin.summary` (the terminal summary). Gating happens in a
``pytest_runtest_call`` wrapper, after the test body: a broken threshold or a regression against
the baseline fails that test like an assertion would, with a one-line message.
"""

from __future__ import annotations

import json
import os
from collections.abc import Generator
from typing import Any

import pytest

from pytest_dojo.plugin import host_rates, options, outputs, per_test
from pytest_dojo.plugin.capture_cache import CaptureCache
from pytest_dojo.plugin.fixtures import dojo
from pytest_dojo.plugin.session import DOJO_SESSION_KEY, DojoSession
from pytest_dojo.plugin.wallclock import dojo_wallclock, pytest_benchmark_update_machine_info

__all__ = ["dojo", "dojo_wallclock", "pytest_benchmark_update_machine_info"]

DOJO_FIXTURES = frozenset({"dojo", "dojo_wallclock"})
CAPTURE_COUNTS_KEY = "dojo_capture_counts"
"""pytest-xdist ``workeroutput`` key of a worker's :class:`~pytest_dojo.plugin.steps.CaptureCounts`."""


def pytest_addoption(parser: pytest.Parser) -> None:
    options.register(parser)


@pytest.hookimpl(tryfirst=True)
def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "dojo(min_samples_per_s=None, max_step_ms=None, min_mfu=None): floors and ceilings on this test's "
        "simulated figures (pytest-dojo)",
    )
    session = DojoSession(
        load_options=lambda: options.parse_options(config),
        open_capture_cache=lambda: CaptureCache.for_config(config),
        open_pytest_cache=lambda: getattr(config, "cache", None),
        controller_host_rates=lambda: getattr(config, "workerinput", {}).get(host_rates.WORKER_INPUT_KEY),
    )
    config.stash[DOJO_SESSION_KEY] = session
    if options.options_in_use(config):
        session.activate()


def pytest_report_header(config: pytest.Config) -> str | list[str] | None:
    session = config.stash[DOJO_SESSION_KEY]
    if not session.active:
        return None
    from pytest_dojo.plugin.summary import header_line

    header = header_line(session.system)
    return header if session.host_rates is None else [header, session.host_rates.line()]


def uses_dojo(item: pytest.Item) -> bool:
    """Whether a test asks for a dojo fixture or carries the ``dojo`` marker."""
    fixtures = getattr(item, "fixturenames", ())
    return bool(DOJO_FIXTURES.intersection(fixtures)) or item.get_closest_marker("dojo") is not None


def pytest_collection_finish(session: pytest.Session) -> None:
    """The header line, after collection, where only the tests (no option, no ini key) use the plugin."""
    dojo_session = session.config.stash[DOJO_SESSION_KEY]
    if dojo_session.active or not any(uses_dojo(item) for item in session.items):
        return
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    if reporter is not None and reporter.verbosity >= 0:
        from pytest_dojo.plugin.summary import header_line

        reporter.write_line(header_line(dojo_session.system))


@pytest.hookimpl(wrapper=True)
def pytest_runtest_protocol(item: pytest.Item, nextitem: pytest.Item | None) -> Generator[None, object, object]:
    session = item.config.stash[DOJO_SESSION_KEY]
    session.current_nodeid = item.nodeid
    try:
        return (yield)
    finally:
        session.current_nodeid = ""


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Generator[None, object, object]:
    marked = per_test.marker_thresholds(item)
    outcome = yield
    session = item.config.stash[DOJO_SESSION_KEY]
    failures = per_test.gate_test(session, item.nodeid, marked)
    if marked and not session.results_of(item.nodeid):
        failures.append("has @pytest.mark.dojo thresholds but simulated no training step (use the dojo fixture)")
    if failures:
        pytest.fail("\n".join(failures), pytrace=False)
    return outcome


@pytest.hookimpl(trylast=True)
def pytest_runtest_teardown(item: pytest.Item) -> None:
    per_test.rank_sensitivity(item.config, item.config.stash[DOJO_SESSION_KEY], item.nodeid)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    dojo_session = session.config.stash.get(DOJO_SESSION_KEY, None)
    if dojo_session is None or not (dojo_session.active or dojo_session.results):
        return
    if outputs.is_worker(session.config):
        outputs.send_to_controller(session.config, dojo_session)
        from pytest_dojo.plugin.steps import CaptureCounts

        counts = CaptureCounts.of(dojo_session.captures.values())
        session.config.workeroutput[CAPTURE_COUNTS_KEY] = json.dumps(counts.to_dict())  # type: ignore[attr-defined]
    else:
        outputs.write_outputs(session, dojo_session)


@pytest.hookimpl(optionalhook=True)
def pytest_configure_node(node: Any) -> None:
    """pytest-xdist: a worker gets the controller's host rates (measured once, here, before any
    worker starts), so workers neither measure side by side nor lose them to ``--cache-clear``."""
    session = node.config.stash[DOJO_SESSION_KEY]
    if session.active and session.system is not None and session.host_rates is not None:
        node.workerinput[host_rates.WORKER_INPUT_KEY] = json.dumps(session.host_rates.for_worker())


@pytest.hookimpl(optionalhook=True)
def pytest_testnodedown(node: Any, error: Any) -> None:
    """pytest-xdist: merge a finished worker's results into the controller's session."""
    session = node.config.stash[DOJO_SESSION_KEY]
    outputs.merge_worker(node, session)
    counts = getattr(node, "workeroutput", {}).get(CAPTURE_COUNTS_KEY)
    if counts is not None:
        session.worker_capture_counts.append(json.loads(counts))


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter, exitstatus: int, config: pytest.Config) -> None:
    session = config.stash.get(DOJO_SESSION_KEY, None)
    if session is None or outputs.is_worker(config) or not (session.active or session.results):
        return
    from pytest_dojo.plugin.summary import write_summary

    ranked: dict[tuple[str, str, int], list[str]] = config.stash.get(per_test.SENSITIVITY_KEY, {})
    write_summary(terminalreporter, session, ranked)
    write_capture_counts(terminalreporter, config, session)


def write_capture_counts(
    terminalreporter: pytest.TerminalReporter, config: pytest.Config, session: DojoSession
) -> None:
    """One line: how many workloads were captured, derived or loaded from the persistent cache."""
    from pytest_dojo.plugin.steps import CaptureCounts

    counts = CaptureCounts.of(session.captures.values())
    for worker_counts in session.worker_capture_counts:
        counts += CaptureCounts.from_dict(worker_counts)
    if counts == CaptureCounts():
        return
    cache = session.capture_cache
    directory = None if cache is None else os.path.relpath(cache.directory, config.rootpath)
    terminalreporter.write_line(counts.line(directory))

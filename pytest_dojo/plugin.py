"""pytest hooks of pytest-dojo; everything else lives in its own module.

Registered through the ``pytest11`` entry point. Torch is imported only when a test captures a
step, so ``pytest --help`` and runs without the ``dojo`` fixture do not pay for it.
"""

from __future__ import annotations

from collections.abc import Generator

import pytest

from pytest_dojo import options, report
from pytest_dojo.fixtures import dojo
from pytest_dojo.session import DOJO_SESSION_KEY, DojoSession

__all__ = ["dojo"]


def pytest_addoption(parser: pytest.Parser) -> None:
    options.register(parser)


@pytest.hookimpl(tryfirst=True)
def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "dojo: pytest-dojo settings for this test")
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


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter, exitstatus: int, config: pytest.Config) -> None:
    session = config.stash.get(DOJO_SESSION_KEY, None)
    if session is None or not session.results:
        return
    terminalreporter.section("dojo: simulated training steps")
    terminalreporter.write_line(report.header_line(session.system))
    for line in report.table_lines(report.result_rows(session.results)):
        terminalreporter.write_line(line)
    unmodeled = report.unmodeled_line(session.results)
    if unmodeled:
        terminalreporter.write_line(unmodeled, yellow=True)

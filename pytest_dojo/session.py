"""The plugin's run state: settings, the system under simulation, the capture cache and the results.

One :class:`DojoSession` lives in ``config.stash`` for the whole run, registered in
``pytest_configure``. Tests reach it through the ``dojo`` fixture.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import pytest

from hwmodel import Report, System, make_system
from pytest_dojo.options import DojoOptions

if TYPE_CHECKING:
    from pytest_dojo.steps import CapturedStep


@dataclass(frozen=True, kw_only=True)
class TestResult:
    """One simulated step, as a test produced it."""

    nodeid: str
    network: str
    report: Report
    capture_s: float


@dataclass
class DojoSession:
    """Everything the plugin keeps across tests of one run."""

    options: DojoOptions
    system: System
    results: list[TestResult] = field(default_factory=list)
    captures: dict[Any, CapturedStep] = field(default_factory=dict)
    current_nodeid: str = ""

    @classmethod
    def from_options(cls, options: DojoOptions) -> DojoSession:
        return cls(options=options, system=make_system(options.chip, options.mesh))

    def add_result(self, network: str, report: Report, capture_s: float) -> None:
        """Keep a report for the summary, under the test that is running."""
        self.results.append(
            TestResult(nodeid=self.current_nodeid or "<outside a test>", network=network, report=report, capture_s=capture_s)
        )


DOJO_SESSION_KEY = pytest.StashKey[DojoSession]()

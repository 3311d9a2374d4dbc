"""The plugin's run state: settings, the system under simulation, the captured steps and the results.

One :class:`DojoSession` lives in ``config.stash`` for the whole run, registered in
``pytest_configure``. Tests reach it through the ``dojo`` fixture. Its settings are parsed, and the
system built, on first use (:attr:`DojoSession.options`), so a run that never uses the plugin
imports neither :mod:`hwmodel` nor torch. Under pytest-xdist each worker
keeps its own session and sends its results to the controller as JSON-ready dicts
(:meth:`TestResult.to_dict`), where they are merged.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from hwmodel import Report, System
    from pytest_dojo.plugin.capture_cache import CaptureCache
    from pytest_dojo.plugin.host_rates import HostRates
    from pytest_dojo.plugin.options import DojoOptions
    from pytest_dojo.plugin.report_dir import StepArtifacts
    from pytest_dojo.plugin.steps import CapturedStep

VERDICT_NOT_GATED = "-"
VERDICT_OK = "ok"
VERDICT_FAIL = "FAIL"


@dataclass(frozen=True, kw_only=True)
class TestResult:
    """One simulated step, as a test produced it, and the gate's verdict on it.

    ``ordinal`` counts the earlier steps of the same network in the same test, so a test that
    simulates one network twice keeps two distinct baseline entries. ``notes`` carry the gate's
    messages (failures, or "no baseline entry").
    """

    __test__ = False

    nodeid: str
    network: str
    report: Report
    capture_s: float
    ordinal: int = 0
    verdict: str = VERDICT_NOT_GATED
    notes: tuple[str, ...] = ()
    change_pct: float | None = None

    def to_dict(self) -> dict[str, Any]:
        """The entry of the results file (see :mod:`pytest_dojo.plugin.results_json`)."""
        return {
            "nodeid": self.nodeid,
            "network": self.network,
            "ordinal": self.ordinal,
            "verdict": self.verdict,
            "messages": list(self.notes),
            "change_pct": self.change_pct,
            "capture_s": self.capture_s,
            "report": self.report.to_dict(),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TestResult:
        from hwmodel import Report

        return cls(
            nodeid=str(data["nodeid"]),
            network=str(data["network"]),
            report=Report.from_dict(data["report"]),
            capture_s=float(data.get("capture_s", 0.0)),
            ordinal=int(data.get("ordinal", 0)),
            verdict=str(data.get("verdict", VERDICT_NOT_GATED)),
            notes=tuple(data.get("messages", ())),
            change_pct=None if data.get("change_pct") is None else float(data["change_pct"]),
        )

    @property
    def key(self) -> tuple[str, str, int]:
        """(node id, network, ordinal): identifies the step within a run."""
        return (self.nodeid, self.network, self.ordinal)

    def with_verdict(self, verdict: str, notes: tuple[str, ...], change_pct: float | None) -> TestResult:
        return dataclasses.replace(self, verdict=verdict, notes=notes, change_pct=change_pct)


@dataclass
class DojoSession:
    """Everything the plugin keeps across tests of one run; ``load_options`` parses the settings,
    ``open_capture_cache`` opens the persistent capture cache (None where there is none)."""

    load_options: Callable[[], DojoOptions]
    open_capture_cache: Callable[[], CaptureCache | None] = lambda: None
    open_pytest_cache: Callable[[], pytest.Cache | None] = lambda: None
    controller_host_rates: Callable[[], str | None] = lambda: None
    """Under xdist, the host rates document the controller measured (or read) for the workers."""
    host_rates: HostRates | None = None
    """The measured preset's rates (``host``), where the system has such a chip; set with the system."""
    results: list[TestResult] = field(default_factory=list)
    wallclock: list[dict[str, Any]] = field(default_factory=list)
    captures: dict[Any, CapturedStep] = field(default_factory=dict)
    worker_capture_counts: list[dict[str, Any]] = field(default_factory=list)
    artifacts: dict[tuple[str, str, int], StepArtifacts] = field(default_factory=dict)
    current_nodeid: str = ""
    written: list[str] = field(default_factory=list)
    write_errors: list[str] = field(default_factory=list)
    _options: DojoOptions | None = None
    _system: System | None = None
    _capture_cache: tuple[CaptureCache | None] | None = None

    @property
    def active(self) -> bool:
        """Whether the settings have been parsed: the plugin is in use in this run."""
        return self._options is not None

    def activate(self) -> None:
        """Parse the settings now (a bad one raises ``pytest.UsageError``), before any test runs."""
        self._options = self.options

    @property
    def options(self) -> DojoOptions:
        """The parsed settings (parsed on first use)."""
        if self._options is None:
            self._options = self.load_options()
        return self._options

    @property
    def system(self) -> System:
        """Chips, fabric and mesh under simulation (built on first use)."""
        if self._system is None:
            from hwmodel import make_system

            system = make_system(self.options.chip, self.options.mesh)
            if system.chip.measured_threads is not None:
                from pytest_dojo.plugin import host_rates

                self.host_rates = host_rates.resolve(
                    self.open_pytest_cache(), self.options.host_calibration, given=self.controller_host_rates()
                )
                system = host_rates.apply(system, self.host_rates)
            self._system = system
        return self._system

    @property
    def capture_cache(self) -> CaptureCache | None:
        """The persistent capture cache (opened on first use), None under ``-p no:cacheprovider``."""
        if self._capture_cache is None:
            self._capture_cache = (self.open_capture_cache(),)
        return self._capture_cache[0]

    def add_result(self, network: str, report: Report, capture_s: float) -> TestResult:
        """Keep a report for the summary, under the test that is running."""
        nodeid = self.current_nodeid or "<outside a test>"
        ordinal = sum(1 for result in self.results if result.nodeid == nodeid and result.network == network)
        result = TestResult(nodeid=nodeid, network=network, report=report, capture_s=capture_s, ordinal=ordinal)
        self.results.append(result)
        return result

    def results_of(self, nodeid: str) -> list[int]:
        """Indices in :attr:`results` of the steps that test ``nodeid`` simulated."""
        return [index for index, result in enumerate(self.results) if result.nodeid == nodeid]

    def sorted_results(self) -> list[TestResult]:
        """Results in a fixed order (node id, network, ordinal): the same serially and under xdist."""
        return sorted(self.results, key=lambda result: (result.nodeid, result.network, result.ordinal))


DOJO_SESSION_KEY = pytest.StashKey[DojoSession]()

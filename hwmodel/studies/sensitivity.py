"""Sensitivity: which hardware change buys the most.

Improve one hardware parameter at a time by a factor (2x FLOP/s, 2x link bandwidth, half the hop
latency...: the :data:`~hwmodel.studies.whatif.KNOBS`) and rank the parameters by the step-time
speedup each buys. Speedup is ``baseline step time / variant step time`` (> 1 is faster).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from hwmodel.errors import SpecError
from hwmodel.ops.efficiency import EfficiencyTable
from hwmodel.search.plans import Plan
from hwmodel.spec.precision import Precision
from hwmodel.spec.system import System
from hwmodel.step.report import Report
from hwmodel.step.workload import Workload, WorkloadSource
from hwmodel.studies.ingest import DataFeed
from hwmodel.studies.whatif import Hardware, Knob, precision_for, select_knobs, simulate_on

DEFAULT_FACTOR = 2.0


def _factor_text(factor: float, lowers: bool) -> str:
    text = f"{factor:g}x"
    return f"1/{text}" if lowers else text


@dataclass(frozen=True, kw_only=True)
class SensitivityEntry:
    """The step with one knob improved by ``factor``."""

    knob: str
    label: str
    factor: float
    lowers: bool
    step_time_s: float
    speedup: float
    bound: str

    def describe(self) -> str:
        """``"2x FLOP/s: 1.95x faster (bound compute)"``."""
        return f"{_factor_text(self.factor, self.lowers)} {self.label}: {self.speedup:.2f}x faster (bound {self.bound})"


@dataclass(frozen=True, kw_only=True)
class Sensitivity:
    """The baseline step and every applicable knob, ranked by speedup (largest first)."""

    baseline: Report
    factor: float
    entries: tuple[SensitivityEntry, ...]

    def ranked_lines(self) -> list[str]:
        """One line per knob, best first."""
        return [entry.describe() for entry in self.entries]

    def summary(self, limit: int = 3) -> str:
        """The ``limit`` best knobs on one line, separated by semicolons."""
        return "; ".join(entry.describe() for entry in self.entries[:limit])


def sensitivity(
    source: Workload | WorkloadSource,
    system: System,
    *,
    factor: float = DEFAULT_FACTOR,
    knobs: Sequence[str | Knob] | None = None,
    feed: DataFeed | None = None,
    plan: Plan | None = None,
    precision: Precision | None = None,
    efficiency: EfficiencyTable | None = None,
    execution: str | None = None,
) -> Sensitivity:
    """Step-time speedup from improving each hardware parameter by ``factor``, ranked.

    ``knobs`` names knobs of :data:`~hwmodel.studies.whatif.KNOBS` and may add custom :class:`Knob` objects (a combined
    change, say). ``precision`` and ``execution`` default to the chip preset's. The efficiency table is the
    baseline chip's for every variant. Ties keep the order of the knobs.
    """
    if not factor > 1:
        raise SpecError(f"what-if factor must be > 1 (an improvement), got {factor}")
    hardware = Hardware(system=system, feed=feed)
    precision = precision_for(system, precision)
    baseline = simulate_on(source, hardware, plan, precision, efficiency, execution)
    entries = []
    for knob in select_knobs(knobs):
        if not knob.applies(hardware):
            continue
        variant = simulate_on(source, knob.improve(hardware, factor), plan, precision, efficiency, execution)
        entries.append(
            SensitivityEntry(
                knob=knob.name,
                label=knob.describe(hardware),
                factor=factor,
                lowers=knob.lowers,
                step_time_s=variant.step_time_s,
                speedup=baseline.step_time_s / variant.step_time_s,
                bound=variant.bound,
            )
        )
    ranked = sorted(enumerate(entries), key=lambda item: (-item[1].speedup, item[0]))
    return Sensitivity(baseline=baseline, factor=factor, entries=tuple(entry for _, entry in ranked))

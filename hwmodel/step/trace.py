"""A simulated step as a Chrome / Perfetto trace (the Trace Event Format's JSON object form).

Layout: one process per chip class (``"chip"`` when every chip does the same work, ``"stage s"``
under pipeline parallelism), named with the chips it stands for; one thread per track of that
class (``compute``, ``tensor-parallel``, ``batchnorm-sync``, ``data-parallel``,
``point-to-point``, ``memory``). Every busy interval is a complete event (``"ph": "X"``) with
``ts`` and ``dur`` in microseconds; names come from ``"M"`` metadata events (``process_name``,
``thread_name``, and sort indices so tracks keep their order). Events are sorted by ``ts``.

:func:`validate_chrome_trace` checks what Perfetto's JSON importer needs: the fields and their
types, non-negative times, metadata for every (pid, tid) used, sorted complete events, and that
the document survives a JSON round trip.

Reference: "Trace Event Format" (Google, the catapult project's specification of the format that
chrome://tracing and ui.perfetto.dev import).
"""

from __future__ import annotations

import json
import math
from typing import Any

from hwmodel.search.plans import Plan
from hwmodel.spec.system import System
from hwmodel.step.simulate import StepOptions, evaluate
from hwmodel.step.timeline import Timeline
from hwmodel.step.workload import Workload, WorkloadSource

MICROSECONDS_PER_SECOND = 1e6


LANE_ORDER = ("compute", "tensor-parallel", "batchnorm-sync", "point-to-point", "data-parallel", "memory")


def _track_order(track: str) -> tuple[int, str, int, str]:
    chip_class, _, lane = track.partition("/")
    number = chip_class.rsplit(" ", 1)[-1]
    lane = lane or "compute"
    rank = LANE_ORDER.index(lane) if lane in LANE_ORDER else len(LANE_ORDER)
    return (int(number) if number.isdigit() else -1, chip_class, rank, lane)


def chrome_trace(timeline: Timeline, *, title: str = "pytest-dojo step") -> dict[str, Any]:
    """The trace document of ``timeline``: ``{"traceEvents": [...], "displayTimeUnit": "ms", ...}``."""
    processes: dict[str, int] = {}
    threads: dict[tuple[str, str], int] = {}
    lanes_per_class: dict[str, int] = {}
    for track in sorted(timeline.tracks(), key=_track_order):
        chip_class, _, lane = track.partition("/")
        processes.setdefault(chip_class, len(processes) + 1)
        if (chip_class, lane or "compute") not in threads:
            lanes_per_class[chip_class] = lanes_per_class.get(chip_class, 0) + 1
            threads[(chip_class, lane or "compute")] = lanes_per_class[chip_class]
    metadata: list[dict[str, Any]] = []
    for chip_class, pid in processes.items():
        chips = timeline.classes.get(chip_class)
        label = f"{chip_class} ({chips} chips)" if chips is not None else chip_class
        metadata.append({"name": "process_name", "ph": "M", "pid": pid, "tid": 0, "args": {"name": label}})
        metadata.append({"name": "process_sort_index", "ph": "M", "pid": pid, "tid": 0, "args": {"sort_index": pid}})
    for (chip_class, lane), tid in threads.items():
        pid = processes[chip_class]
        metadata.append({"name": "thread_name", "ph": "M", "pid": pid, "tid": tid, "args": {"name": lane}})
        metadata.append({"name": "thread_sort_index", "ph": "M", "pid": pid, "tid": tid, "args": {"sort_index": tid}})
    events: list[dict[str, Any]] = []
    for interval in timeline.intervals:
        chip_class, _, lane = interval.track.partition("/")
        events.append(
            {
                "name": interval.name,
                "cat": interval.category,
                "ph": "X",
                "ts": max(interval.start_s, 0.0) * MICROSECONDS_PER_SECOND,
                "dur": max(interval.duration_s, 0.0) * MICROSECONDS_PER_SECOND,
                "pid": processes[chip_class],
                "tid": threads[(chip_class, lane or "compute")],
                "args": dict(interval.args),
            }
        )
    events.sort(key=lambda event: (event["ts"], event["pid"], event["tid"], -event["dur"]))
    return {
        "traceEvents": metadata + events,
        "displayTimeUnit": "ms",
        "otherData": {"title": title, "step_time_us": timeline.step_time_s * MICROSECONDS_PER_SECOND},
    }


def step_trace(
    source: Workload | WorkloadSource, system: System, plan: Plan, options: StepOptions | None = None
) -> dict[str, Any]:
    """Simulate one step with its timeline and return its trace document."""
    result = evaluate(source, system, plan, options, keep_timeline=True)
    assert result.timeline is not None
    title = f"{result.report.workload} on {system.mesh} {system.chip.name}, {result.report.plan}"
    return chrome_trace(result.timeline, title=title)


def validate_chrome_trace(document: Any) -> list[str]:
    """Problems that would stop Perfetto from importing ``document`` (empty when it is well formed)."""
    problems: list[str] = []
    try:
        document = json.loads(json.dumps(document, allow_nan=False))
    except (TypeError, ValueError) as error:
        return [f"not serializable as strict JSON: {error}"]
    if not isinstance(document, dict) or not isinstance(document.get("traceEvents"), list):
        return ["the document must be an object with a 'traceEvents' list"]
    named: set[tuple[int, int]] = set()
    named_processes: set[int] = set()
    last_ts = -math.inf
    for position, event in enumerate(document["traceEvents"]):
        where = f"event {position}"
        if not isinstance(event, dict):
            problems.append(f"{where}: not an object")
            continue
        phase = event.get("ph")
        if not isinstance(event.get("name"), str):
            problems.append(f"{where}: 'name' must be a string")
        if not isinstance(event.get("pid"), int) or not isinstance(event.get("tid"), int):
            problems.append(f"{where}: 'pid' and 'tid' must be integers")
            continue
        if phase == "M":
            if event["name"] == "process_name":
                named_processes.add(event["pid"])
            if event["name"] == "thread_name":
                named.add((event["pid"], event["tid"]))
            if not isinstance(event.get("args"), dict):
                problems.append(f"{where}: metadata needs 'args'")
        elif phase == "X":
            ts, dur = event.get("ts"), event.get("dur")
            if not isinstance(ts, (int, float)) or not isinstance(dur, (int, float)):
                problems.append(f"{where}: 'ts' and 'dur' must be numbers")
                continue
            if ts < 0 or dur < 0:
                problems.append(f"{where}: negative time (ts {ts}, dur {dur})")
            if ts < last_ts:
                problems.append(f"{where}: not sorted by ts ({ts} after {last_ts})")
            last_ts = ts
            if (event["pid"], event["tid"]) not in named or event["pid"] not in named_processes:
                problems.append(f"{where}: pid {event['pid']} tid {event['tid']} has no name metadata before it")
        else:
            problems.append(f"{where}: phase {phase!r} is not 'X' or 'M'")
    return problems

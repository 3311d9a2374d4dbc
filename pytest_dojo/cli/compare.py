"""``pytest-dojo compare OLD.json NEW.json``: the baseline gate outside pytest, for CI steps that run no tests.

Applies the baseline rule of :mod:`pytest_dojo.plugin.gate` to every simulated step of two results
files (``--dojo-json`` or ``--dojo-save-baseline`` output) and, with
``--wallclock-max-regression=PCT``, the noise-aware rule of :mod:`pytest_dojo.plugin.noise` to their
wall-clock entries. Exit status: 0 when nothing regressed, 1 on a regression (or, with
``--require-all``, a step of OLD missing from NEW), 2 on bad input (one ``error:`` line).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Mapping
from typing import Any

from pytest_dojo.cli.common import EXIT_OK, EXIT_REGRESSION, EXIT_USAGE, add_command, percent
from pytest_dojo.plugin import gate, noise
from pytest_dojo.plugin.results_json import ResultsFile, ResultsFileError, key_of, load_results, sort_key


def register(commands: Any) -> None:
    parser = add_command(
        commands, "compare", run, summary="gate NEW results against OLD; exit 1 on a regression", doc=__doc__
    )
    parser.add_argument("old", metavar="OLD.json", help="baseline results file")
    parser.add_argument("new", metavar="NEW.json", help="results file to check")
    parser.add_argument(
        "--max-regression",
        type=percent,
        default=gate.DEFAULT_MAX_REGRESSION_PCT,
        metavar="PCT",
        help=f"largest drop of simulated samples/s that passes, in percent. Default: {gate.DEFAULT_MAX_REGRESSION_PCT}",
    )
    parser.add_argument(
        "--wallclock-max-regression",
        type=percent,
        default=None,
        metavar="PCT",
        help="also gate wall-clock entries with the noise-aware rule at this tolerance. Default: off",
    )
    parser.add_argument(
        "--require-all", action="store_true", help="fail when a step of OLD is missing from NEW. Default: off"
    )


def run(arguments: argparse.Namespace) -> int:
    try:
        status, lines = compare(
            arguments.old,
            arguments.new,
            arguments.max_regression,
            arguments.wallclock_max_regression,
            arguments.require_all,
        )
    except ResultsFileError as error:
        print(f"pytest-dojo: error: {error}", file=sys.stderr)
        return EXIT_USAGE
    for line in lines:
        print(line)
    return status


def _step_name(entry: Mapping[str, Any]) -> str:
    ordinal = f" #{entry['ordinal'] + 1}]" if entry.get("ordinal") else "]"
    return f"{entry['nodeid']} [{entry['network']}" + ordinal


def compare(
    old_path: str, new_path: str, max_regression_pct: float, wallclock_pct: float | None, require_all: bool
) -> tuple[int, list[str]]:
    """Exit status and report lines for ``pytest-dojo compare``."""
    old = load_results(old_path)
    new = load_results(new_path)
    old_index = old.index()
    lines: list[str] = []
    regressed = False
    for entry in sorted(new.results, key=sort_key):
        name = _step_name(entry)
        baseline = old_index.pop(key_of(entry), None)
        if baseline is None:
            lines.append(f"new   {name}: no entry in {old.path}")
            continue
        comparison = gate.compare_reports(baseline, entry["report"], max_regression_pct)
        if comparison.regressed:
            regressed = True
            lines.append(f"FAIL  {name}: {comparison.message()}")
        else:
            lines.append(f"ok    {name}: samples/s {comparison.change_pct:+.2f}%")
    for key in sorted(old_index):
        regressed = regressed or require_all
        lines.append(f"{'FAIL' if require_all else 'gone'}  {key[0]} [{key[1]}]: in {old.path} but not in {new.path}")
    if wallclock_pct is not None:
        clock_regressed, clock_lines = _compare_wallclock(old, new, wallclock_pct)
        regressed = regressed or clock_regressed
        lines += clock_lines
    summary = "regression" if regressed else "no regression"
    lines.append(f"pytest-dojo compare: {summary} ({len(new.results)} steps, tolerance {max_regression_pct:g}%)")
    return (EXIT_REGRESSION if regressed else EXIT_OK), lines


def _compare_wallclock(old: ResultsFile, new: ResultsFile, wallclock_pct: float) -> tuple[bool, list[str]]:
    """The noise-aware rule on the wall-clock entries both files have."""
    old_clock = {(e["nodeid"], e["network"], int(e.get("ordinal", 0))): e for e in old.document.get("wallclock", [])}
    regressed = False
    lines = []
    for entry in sorted(new.document.get("wallclock", []), key=sort_key):
        previous = old_clock.get((entry["nodeid"], entry["network"], int(entry.get("ordinal", 0))))
        if previous is None:
            continue
        clock = noise.comparable_clock(previous, entry)
        verdict = noise.compare_rounds(previous[clock], entry[clock], wallclock_pct)
        regressed = regressed or verdict.regressed
        lines.append(
            f"{'FAIL' if verdict.regressed else 'ok  '}  {entry['nodeid']} [{entry['network']}] wall-clock: "
            f"{verdict.describe()} [{clock}]"
        )
    return regressed, lines

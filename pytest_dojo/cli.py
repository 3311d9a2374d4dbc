"""``pytest-dojo``: the gate outside pytest, for CI steps that run no tests.

``pytest-dojo thresholds RESULTS.json --margin=PCT`` prints a thresholds file whose floors sit
``PCT`` % under the simulated samples/s of a results file (how ``suites/thresholds.toml`` is made).

``pytest-dojo compare OLD.json NEW.json --max-regression=PCT`` applies the baseline rule of
:mod:`pytest_dojo.gate` to every simulated step of two results files (``--dojo-json`` or
``--dojo-save-baseline`` output) and, with ``--wallclock-max-regression=PCT``, the noise-aware rule
of :mod:`pytest_dojo.noise` to their wall-clock entries. Exit status: 0 when nothing regressed,
1 on a regression (or, with ``--require-all``, a step of OLD missing from NEW), 2 on bad input
(one ``error:`` line, no traceback).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections.abc import Sequence

from pytest_dojo import gate, noise
from pytest_dojo.options import parse_percent
from pytest_dojo.results_json import ResultsFileError, key_of, load_results, sort_key

EXIT_OK = 0
EXIT_REGRESSION = 1
EXIT_USAGE = 2
DEFAULT_FLOOR_MARGIN_PCT = 10.0


def _percent(text: str) -> float:
    try:
        return parse_percent(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="pytest-dojo", description="pytest-dojo results tools")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    compare = commands.add_parser("compare", help="gate NEW results against OLD; exit 1 on a regression")
    compare.add_argument("old", metavar="OLD.json", help="baseline results file")
    compare.add_argument("new", metavar="NEW.json", help="results file to check")
    compare.add_argument(
        "--max-regression",
        type=_percent,
        default=gate.DEFAULT_MAX_REGRESSION_PCT,
        metavar="PCT",
        help=f"largest drop of simulated samples/s that passes, in percent. Default: {gate.DEFAULT_MAX_REGRESSION_PCT}",
    )
    compare.add_argument(
        "--wallclock-max-regression",
        type=_percent,
        default=None,
        metavar="PCT",
        help="also gate wall-clock entries with the noise-aware rule at this tolerance. Default: off",
    )
    compare.add_argument(
        "--require-all", action="store_true", help="fail when a step of OLD is missing from NEW. Default: off"
    )
    floors = commands.add_parser("thresholds", help="print a thresholds TOML with samples/s floors from a results file")
    floors.add_argument("results", metavar="RESULTS.json", help="results file (--dojo-json output)")
    floors.add_argument(
        "--margin",
        type=_percent,
        default=DEFAULT_FLOOR_MARGIN_PCT,
        metavar="PCT",
        help=f"floor = simulated samples/s x (1 - PCT/100), 3 significant figures, rounded down. "
        f"Default: {DEFAULT_FLOOR_MARGIN_PCT}",
    )
    return parser


def round_down(value: float, digits: int = 3) -> float:
    """``value`` rounded down to ``digits`` significant figures: 38,741 -> 38,700."""
    if value <= 0:
        return 0.0
    scale = 10 ** (math.floor(math.log10(value)) - digits + 1)
    return float(math.floor(value / scale) * scale)


def thresholds_toml(results_path: str, margin_pct: float) -> str:
    """A thresholds file: per test and mesh, a samples/s floor under the slowest step it simulated."""
    document = load_results(results_path)
    floors: dict[tuple[str, str], float] = {}
    for entry in document.results:
        key = (str(entry["nodeid"]), str(entry["report"]["mesh"]))
        floor = round_down(float(entry["report"]["samples_per_s"]) * (1 - margin_pct / 100))
        floors[key] = min(floor, floors.get(key, floor))
    commit = document.document.get("commit") or "unknown"
    lines = [
        f"# Floors at {100 - margin_pct:g}% of the simulated samples/s of {results_path} (commit {commit}),",
        "# rounded down to 3 significant figures: pytest-dojo thresholds RESULTS.json --margin=PCT",
        "schema_version = 1",
    ]
    for (nodeid, mesh), floor in sorted(floors.items()):
        lines += ["", f"[{json.dumps(nodeid)}]", f'"{mesh}" = {{ min_samples_per_s = {floor:.10g} }}']
    return "\n".join(lines) + "\n"


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
        key = key_of(entry)
        name = f"{entry['nodeid']} [{entry['network']}" + (
            f" #{entry['ordinal'] + 1}]" if entry.get("ordinal") else "]"
        )
        baseline = old_index.pop(key, None)
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
        old_clock = {
            (e["nodeid"], e["network"], int(e.get("ordinal", 0))): e for e in old.document.get("wallclock", [])
        }
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
    summary = "regression" if regressed else "no regression"
    lines.append(f"pytest-dojo compare: {summary} ({len(new.results)} steps, tolerance {max_regression_pct:g}%)")
    return (EXIT_REGRESSION if regressed else EXIT_OK), lines


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    arguments = parser.parse_args(argv)
    try:
        if arguments.command == "thresholds":
            print(thresholds_toml(arguments.results, arguments.margin), end="")
            return EXIT_OK
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


if __name__ == "__main__":
    sys.exit(main())

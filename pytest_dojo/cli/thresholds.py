"""``pytest-dojo thresholds RESULTS.json --margin=PCT``: a thresholds file from a results file.

Prints a thresholds TOML whose floors sit ``PCT`` % under the simulated samples/s of each test's
slowest step (how ``suites/thresholds.toml`` is made).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from typing import Any

from pytest_dojo.cli.common import EXIT_OK, EXIT_USAGE, add_command, percent
from pytest_dojo.plugin.results_json import ResultsFileError, load_results

DEFAULT_FLOOR_MARGIN_PCT = 10.0


def register(commands: Any) -> None:
    parser = add_command(
        commands,
        "thresholds",
        run,
        summary="print a thresholds TOML with samples/s floors from a results file",
        doc=__doc__,
    )
    parser.add_argument("results", metavar="RESULTS.json", help="results file (--dojo-json output)")
    parser.add_argument(
        "--margin",
        type=percent,
        default=DEFAULT_FLOOR_MARGIN_PCT,
        metavar="PCT",
        help=f"floor = simulated samples/s x (1 - PCT/100), 3 significant figures, rounded down. "
        f"Default: {DEFAULT_FLOOR_MARGIN_PCT}",
    )


def run(arguments: argparse.Namespace) -> int:
    try:
        print(thresholds_toml(arguments.results, arguments.margin), end="")
    except ResultsFileError as error:
        print(f"pytest-dojo: error: {error}", file=sys.stderr)
        return EXIT_USAGE
    return EXIT_OK


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

"""``pytest-dojo asv-gate BASE HEAD``: exit 1 when HEAD regressed against BASE in the ASV history.

    pytest-dojo asv-gate BASE HEAD [--factor 1.05] [--machine dojo-ci] [--bench REGEX]

Both commits must already be recorded (``pytest-dojo asv-record``, or ``pytest-dojo asv-backfill``
for an older base). This wraps two limits of plain asv:

* ``asv compare`` prints regressions but always exits 0 (asv issue #884); this command prints asv's
  own table, then exits 1 if any benchmark regressed, 0 if none, 2 if a commit has no results.
* asv counts every increase as a regression (asv issue #1617). Here the direction comes from the
  benchmark's unit: for ``samples/s`` (throughput) a *drop* by ``factor`` is the regression, for
  every other unit (seconds, bytes) a rise. So in asv's table a throughput drop shows as an
  improvement; the verdict lines below say it right.

A benchmark that succeeded at BASE and fails at HEAD is a regression; one that is skipped or
missing on either side is not compared. Wall-clock results (with samples) are compared as asv does:
only when the samples differ significantly *and* by more than ``factor``; deterministic ``track_``
figures by ``factor`` alone.
"""

from __future__ import annotations

import argparse
import ast
import json
import math
import re
import subprocess
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pytest_dojo.cli.common import add_command, project_root

HIGHER_IS_BETTER_UNITS = frozenset({"samples/s"})
"""Units of benchmarks where a larger value is better; all others are lower-is-better (asv's view)."""


class GateError(Exception):
    """Bad input to the gate: a one-line message, exit status 2."""


@dataclass(frozen=True, kw_only=True)
class Verdict:
    """One benchmark (one parameter combination) at BASE and at HEAD."""

    name: str
    params: str
    unit: str
    base_value: float | None
    head_value: float | None
    ratio: float
    regressed: bool
    improved: bool

    def line(self) -> str:
        state = "REGRESSED" if self.regressed else ("improved" if self.improved else "same")
        return (
            f"{state:9s}  {self.name}{self.params}  {_format(self.base_value)} -> {_format(self.head_value)} "
            f"{self.unit}  (x{self.ratio:.3f})"
        )


def _format(value: float | None) -> str:
    return "failed" if value is None else f"{value:.6g}"


def _is_result_better(a: float, b: float, a_stats: Any, b_stats: Any, factor: float, use_stats: bool) -> bool:
    """asv's own test (``asv compare``): ``a`` better (smaller) than ``b`` by ``factor``."""
    try:
        from asv.commands.compare import _is_result_better as asv_is_result_better
    except ImportError:
        return a < b / factor
    return bool(asv_is_result_better(a, b, a_stats, b_stats, factor, use_stats=use_stats))


def load_config(path: Path) -> Any:
    """asv's configuration (asv.conf.json allows // comments)."""
    from asv.config import Config

    return Config.load(str(path))


def resolve_commit(name: str) -> str:
    """A full commit hash for ``name`` (anything ``git rev-parse`` accepts)."""
    result = subprocess.run(
        ["git", "-C", str(project_root()), "rev-parse", "--verify", f"{name}^{{commit}}"],
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        raise GateError(f"unknown commit {name!r}")
    return result.stdout.strip()


def _results_for(results_dir: Path, machine: str, commit: str) -> dict[str, Any]:
    """env name -> asv ``Results`` of ``commit`` on ``machine``."""
    from asv import results as asv_results

    found: dict[str, Any] = {}
    if not (results_dir / machine).is_dir():
        raise GateError(f"no results for machine {machine!r} in {results_dir}")
    for result in asv_results.iter_results_for_machine(str(results_dir), machine):
        if result.commit_hash == commit:
            found[result.env_name] = result
    if not found:
        raise GateError(
            f"no results for {commit[:8]} on machine {machine!r} in {results_dir}; "
            "record it with pytest-dojo asv-record"
        )
    return found


def _param_label(combination: Sequence[str], param_names: Sequence[str]) -> str:
    if not combination:
        return ""
    return (
        "("
        + ", ".join(f"{name}={_unquote(value)}" for name, value in zip(param_names, combination, strict=False))
        + ")"
    )


def _unquote(value: str) -> str:
    """asv stores parameter values as their repr: ``'5x5'`` reads ``5x5``."""
    try:
        return str(ast.literal_eval(value))
    except (ValueError, SyntaxError):
        return value


def _values(result: Any, name: str, params: list[list[str]]) -> Iterator[tuple[tuple[str, ...], Any, Any]]:
    """(parameter combination, value, (stats, samples)) of every parameter combination of ``name``."""
    import itertools

    values = result.get_result_value(name, params)
    stats = result.get_result_stats(name, params)
    samples = result.get_result_samples(name, params)
    combinations = list(itertools.product(*params)) if params else [()]
    if not params:
        values, stats, samples = [values], [stats], [samples]
    for combination, value, stat, sample in zip(combinations, values, stats, samples, strict=True):
        yield tuple(combination), value, (stat, sample)


def compare(
    base: dict[str, Any],
    head: dict[str, Any],
    benchmarks: dict[str, Any],
    *,
    factor: float,
    bench: re.Pattern[str] | None,
    use_stats: bool,
) -> list[Verdict]:
    """Direction-aware verdicts for every benchmark present in both commits' results."""
    verdicts: list[Verdict] = []
    for env_name in sorted(set(base) & set(head)):
        base_result, head_result = base[env_name], head[env_name]
        keys = sorted(set(base_result.get_result_keys(benchmarks)) & set(head_result.get_result_keys(benchmarks)))
        for name in keys:
            if bench is not None and not bench.search(name):
                continue
            info = benchmarks[name]
            unit = str(info.get("unit", "seconds"))
            higher_is_better = unit in HIGHER_IS_BETTER_UNITS
            params = info.get("params") or []
            param_names = info.get("param_names") or []
            base_values = {combo: (value, stats) for combo, value, stats in _values(base_result, name, params)}
            for combo, head_value, head_stats in _values(head_result, name, params):
                base_value, base_stats = base_values.get(combo, (math.nan, (None, None)))
                if _skipped(base_value) or _skipped(head_value):
                    continue
                verdicts.append(
                    _verdict(
                        name,
                        _param_label(combo, param_names),
                        unit,
                        higher_is_better,
                        factor,
                        base_value,
                        head_value,
                        base_stats,
                        head_stats,
                        use_stats,
                    )
                )
    return verdicts


def _skipped(value: Any) -> bool:
    return isinstance(value, float) and math.isnan(value)


def _verdict(
    name: str,
    params: str,
    unit: str,
    higher_is_better: bool,
    factor: float,
    base_value: float | None,
    head_value: float | None,
    base_stats: Any,
    head_stats: Any,
    use_stats: bool,
) -> Verdict:
    if base_value is None or head_value is None:
        ratio = math.nan
        regressed = base_value is not None and head_value is None
        improved = base_value is None and head_value is not None
    elif higher_is_better:
        ratio = head_value / base_value if base_value else math.inf
        # Compare the reciprocals: asv's "smaller is better" test then reads "larger is better".
        better, worse = (1 / head_value if head_value else math.inf), (1 / base_value if base_value else math.inf)
        improved = _is_result_better(better, worse, head_stats, base_stats, factor, use_stats)
        regressed = _is_result_better(worse, better, base_stats, head_stats, factor, use_stats)
    else:
        ratio = head_value / base_value if base_value else math.inf
        improved = _is_result_better(head_value, base_value, head_stats, base_stats, factor, use_stats)
        regressed = _is_result_better(base_value, head_value, base_stats, head_stats, factor, use_stats)
    return Verdict(
        name=name,
        params=params,
        unit=unit,
        base_value=base_value,
        head_value=head_value,
        ratio=ratio,
        regressed=regressed,
        improved=improved,
    )


def _factor(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number > 1, got {text!r}") from None
    if not value > 1.0:
        raise argparse.ArgumentTypeError(f"must be > 1, got {value}")
    return value


def register(commands: Any) -> None:
    parser = add_command(
        commands, "asv-gate", run, summary="exit 1 when HEAD regressed against BASE in the ASV history", doc=__doc__
    )
    parser.add_argument("base", help="reference commit (e.g. origin/main)")
    parser.add_argument("head", help="commit under test (e.g. HEAD)")
    parser.add_argument(
        "--factor",
        type=_factor,
        default=1.05,
        help="a change by more than this factor counts (default: %(default)s, i.e. 5%%)",
    )
    parser.add_argument("--machine", default="dojo-ci", help="asv machine name (default: %(default)s)")
    parser.add_argument("--config", type=Path, default=None, help="asv configuration (default: asv.conf.json)")
    parser.add_argument(
        "--results-dir", type=Path, default=None, help="results directory (default: results_dir of the configuration)"
    )
    parser.add_argument("--bench", default=None, metavar="REGEX", help="only benchmarks whose name matches")
    parser.add_argument("--no-stats", action="store_true", help="compare wall-clock by factor alone, as track_")
    parser.add_argument("--quiet", action="store_true", help="do not print asv compare's table")


def run(args: argparse.Namespace) -> int:
    config_path: Path = args.config or project_root() / "asv.conf.json"
    try:
        bench = re.compile(args.bench) if args.bench else None
    except re.error as error:
        print(f"asv_gate: --bench: {error}", file=sys.stderr)
        return 2
    try:
        conf = load_config(config_path)
        results_dir = args.results_dir or Path(conf.results_dir)
        if not results_dir.is_absolute():
            results_dir = config_path.resolve().parent / results_dir
        base_commit, head_commit = resolve_commit(args.base), resolve_commit(args.head)
        base = _results_for(results_dir, args.machine, base_commit)
        head = _results_for(results_dir, args.machine, head_commit)
        benchmarks_file = results_dir / "benchmarks.json"
        if not benchmarks_file.is_file():
            raise GateError(f"{benchmarks_file} is missing; record a commit first")
        benchmarks = {k: v for k, v in json.loads(benchmarks_file.read_text()).items() if k != "version"}
    except GateError as error:
        print(f"asv_gate: {error}", file=sys.stderr)
        return 2

    if not args.quiet:
        conf.results_dir = str(results_dir)
        from asv.commands.compare import Compare

        Compare.print_table(
            conf,
            base_commit,
            head_commit,
            factor=args.factor,
            split=False,
            use_stats=not args.no_stats,
            only_changed=False,
            sort="name",
            machine=args.machine,
            env_names=None,
            commit_names={base_commit: args.base, head_commit: args.head},
        )
        print("(asv's marks take every increase as worse: read samples/s rows the other way round)")

    verdicts = compare(base, head, benchmarks, factor=args.factor, bench=bench, use_stats=not args.no_stats)
    if not verdicts:
        print(f"asv_gate: no benchmark has results at both {base_commit[:8]} and {head_commit[:8]}", file=sys.stderr)
        return 2
    regressions = [verdict for verdict in verdicts if verdict.regressed]
    improvements = [verdict for verdict in verdicts if verdict.improved]
    print(
        f"asv_gate: {args.base} ({base_commit[:8]}) -> {args.head} ({head_commit[:8]}), factor {args.factor}, "
        f"machine {args.machine}: {len(verdicts)} compared, {len(regressions)} regressed, "
        f"{len(improvements)} improved"
    )
    for verdict in regressions + improvements:
        print(verdict.line())
    return 1 if regressions else 0

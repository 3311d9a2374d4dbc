"""Gating through pytest: marker and file thresholds, baselines, verdicts, JSON, bad input."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

MLP_TESTS = """
import pytest
import torch

HIDDEN = {hidden}

def mlp():
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(32, HIDDEN), torch.nn.ReLU(), torch.nn.Linear(HIDDEN, 8))

def test_mlp(dojo):
    dojo.train_step(mlp(), torch.randn(50, 32), name="mlp")

{extra}
"""


def write_tests(pytester: pytest.Pytester, hidden: int = 64, extra: str = "") -> None:
    pytester.makepyfile(test_steps=MLP_TESTS.format(hidden=hidden, extra=extra))


def simulated_rate(pytester: pytest.Pytester, hidden: int = 64) -> float:
    write_tests(pytester, hidden)
    result = pytester.runpytest("--dojo-json=probe.json")
    result.assert_outcomes(passed=1)
    return float(json.loads((pytester.path / "probe.json").read_text())["results"][0]["report"]["samples_per_s"])


def test_marker_floor_fails_the_test_with_one_line(pytester: pytest.Pytester) -> None:
    rate = simulated_rate(pytester)
    floor = rate * 1.25  # 20 % short of this floor: (1.25 - 1) / 1.25
    write_tests(
        pytester,
        extra=f"""
@pytest.mark.dojo(min_samples_per_s={floor!r})
def test_floor(dojo):
    dojo.train_step(mlp(), torch.randn(50, 32), name="mlp")

@pytest.mark.dojo(min_samples_per_s={rate * 0.5!r}, min_mfu=1e-9)
def test_loose(dojo):
    dojo.train_step(mlp(), torch.randn(50, 32), name="mlp")
""",
    )
    result = pytester.runpytest()
    result.assert_outcomes(passed=2, failed=1)
    result.stdout.fnmatch_lines(["dojo gate (mlp on 5x5): samples/s * is below the floor min_samples_per_s=* by 20.0%"])
    result.stdout.fnmatch_lines(
        [
            "test*network*MFU  gate  bound",
            "test_steps.py::test_floor * FAIL  link",
            "test_steps.py::test_loose * ok    link",
            "test_steps.py::test_mlp * -     link",
        ]
    )
    assert "Traceback" not in result.stdout.str()


def test_thresholds_file_by_test_and_mesh(pytester: pytest.Pytester) -> None:
    rate = simulated_rate(pytester)
    pytester.makefile(
        ".toml",
        limits=f"""
schema_version = 1
["test_steps.py::test_mlp"]
"5x5" = {{ min_samples_per_s = {rate * 2!r} }}
"1x5" = {{ min_samples_per_s = {rate * 0.5!r} }}
""",
    )
    write_tests(pytester)
    failing = pytester.runpytest("--dojo-thresholds=limits.toml")
    failing.assert_outcomes(failed=1)
    failing.stdout.fnmatch_lines(["*below the floor min_samples_per_s=* by 50.0%"])
    other_mesh = pytester.runpytest("--dojo-thresholds=limits.toml", "--dojo-mesh=1x5")
    other_mesh.assert_outcomes(passed=1)
    assert "simulated nothing" not in other_mesh.stdout.str()


def test_thresholds_of_tests_that_simulated_nothing_are_listed(pytester: pytest.Pytester) -> None:
    pytester.makefile(
        ".toml",
        limits="""
schema_version = 1
["test_steps.py::test_renamed"]
"5x5" = { min_samples_per_s = 1.0 }
["test_steps.py::test_other_mesh"]
"1x5" = { min_samples_per_s = 1.0 }
""",
    )
    write_tests(pytester)
    result = pytester.runpytest("--dojo-thresholds=limits.toml")
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(
        ["thresholds file: 1 test(s) with limits on this mesh simulated nothing: test_steps.py::test_renamed"]
    )


def ini_floor_file(pytester: pytest.Pytester, nodeid: str, floor: float) -> None:
    """A thresholds file with one floor for ``nodeid`` on every mesh, named by the ini key."""
    pytester.makefile(
        ".toml",
        limits=f"""
schema_version = 1
["{nodeid}"]
"*" = {{ min_samples_per_s = {floor!r} }}
""",
    )
    pytester.makeini("[pytest]\ndojo_thresholds = limits.toml\n")


def test_thresholds_ini_key_and_marker_precedence(pytester: pytest.Pytester) -> None:
    rate = simulated_rate(pytester)
    ini_floor_file(pytester, "test_steps.py::test_marked", rate * 2)
    write_tests(
        pytester,
        extra=f"""
@pytest.mark.dojo(min_samples_per_s={rate * 0.5!r})
def test_marked(dojo):
    dojo.train_step(mlp(), torch.randn(50, 32), name="mlp")
""",
    )
    pytester.runpytest().assert_outcomes(passed=2)


def test_an_empty_thresholds_option_turns_the_ini_file_off(pytester: pytest.Pytester) -> None:
    """The ini key's floor fails the step; ``--dojo-thresholds=`` runs the same step ungated."""
    rate = simulated_rate(pytester)
    ini_floor_file(pytester, "test_steps.py::test_mlp", rate * 2)
    write_tests(pytester)
    pytester.runpytest().assert_outcomes(failed=1)
    pytester.runpytest("--dojo-thresholds=").assert_outcomes(passed=1)


def test_baseline_round_trip_and_attributed_regression(pytester: pytest.Pytester) -> None:
    write_tests(pytester, hidden=64)
    pytester.runpytest("--dojo-save-baseline=base.json").assert_outcomes(passed=1)
    baseline = json.loads((pytester.path / "base.json").read_text())
    assert baseline["schema"] == "pytest-dojo-results" and baseline["schema_version"] == 1
    assert "capture_s" not in baseline["results"][0]

    same = pytester.runpytest("--dojo-baseline=base.json")
    same.assert_outcomes(passed=1)
    same.stdout.fnmatch_lines(["test*MFU  gate  vs baseline  bound", "test_steps.py::test_mlp * ok *+0.00%  link"])

    write_tests(pytester, hidden=4096)
    slower = pytester.runpytest("--dojo-baseline=base.json", "--dojo-max-regression=5")
    slower.assert_outcomes(failed=1)
    slower.stdout.fnmatch_lines(
        [
            "dojo gate (mlp on 5x5): samples/s regressed *% against the baseline (* -> * samples/s, allowed 5%);"
            " changed most: time: *; modules: *; ops: aten.*"
        ]
    )


def test_improvement_passes_the_baseline(pytester: pytest.Pytester) -> None:
    write_tests(pytester, hidden=4096)
    pytester.runpytest("--dojo-save-baseline=base.json").assert_outcomes(passed=1)
    write_tests(pytester, hidden=64)
    pytester.runpytest("--dojo-baseline=base.json").assert_outcomes(passed=1)


def test_missing_baseline_entry_is_reported_not_failed_unless_required(pytester: pytest.Pytester) -> None:
    write_tests(pytester)
    pytester.runpytest("--dojo-save-baseline=base.json", "--dojo-mesh=1x5").assert_outcomes(passed=1)
    lenient = pytester.runpytest("--dojo-baseline=base.json")
    lenient.assert_outcomes(passed=1)
    lenient.stdout.fnmatch_lines(["test_steps.py::test_mlp [mlp]: no baseline entry for mlp on d1 5x5"])
    strict = pytester.runpytest("--dojo-baseline=base.json", "--dojo-require-baseline")
    strict.assert_outcomes(failed=1)
    strict.stdout.fnmatch_lines(["*no baseline entry for mlp on d1 5x5 (--dojo-require-baseline)"])


def test_json_has_schema_machine_commit_chip_mesh_and_reports(pytester: pytest.Pytester) -> None:
    write_tests(
        pytester,
        extra="""
def test_twice(dojo):
    dojo.train_step(mlp(), torch.randn(50, 32), name="mlp")
    dojo.train_step(mlp(), torch.randn(50, 32), name="mlp")
""",
    )
    result = pytester.runpytest("--dojo-json=out/results.json")
    result.assert_outcomes(passed=2)
    result.stdout.fnmatch_lines(["results written to out/results.json"])
    document = json.loads((pytester.path / "out" / "results.json").read_text())
    assert set(document) == {"schema", "schema_version", "commit", "chip", "mesh", "machine", "results", "wallclock"}
    assert (document["chip"], document["mesh"]) == ("d1", "5x5")
    assert document["machine"]["torch"].startswith("2.")
    keys = [(entry["nodeid"], entry["ordinal"]) for entry in document["results"]]
    assert keys == [("test_steps.py::test_mlp", 0), ("test_steps.py::test_twice", 0), ("test_steps.py::test_twice", 1)]
    assert document["results"][0]["report"]["global_batch"] == 50


def test_marked_test_without_a_step_fails(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        test_none="""
import pytest

@pytest.mark.dojo(min_mfu=0.1)
def test_nothing():
    pass
"""
    )
    result = pytester.runpytest()
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["has @pytest.mark.dojo thresholds but simulated no training step*"])


@pytest.mark.parametrize(
    ("marker", "expected"),
    [
        ("dojo(min_samples=5)", "@pytest.mark.dojo: unknown threshold 'min_samples'; known: *"),
        ("dojo(min_mfu=-0.5)", "@pytest.mark.dojo: min_mfu must be a finite number > 0, got -0.5"),
        ("dojo('fast')", "@pytest.mark.dojo takes keyword arguments only, got ('fast',)"),
    ],
)
def test_bad_marker_is_a_one_line_failure(pytester: pytest.Pytester, marker: str, expected: str) -> None:
    pytester.makepyfile(
        test_marker=f"""
import pytest

@pytest.mark.{marker}
def test_marked():
    pass
"""
    )
    result = pytester.runpytest()
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines([expected])
    assert "Traceback" not in result.stdout.str() and "During handling" not in result.stdout.str()


BAD_FILES = {
    "not_toml": ("limits.toml", "schema_version = 1\n[[[\n", "*limits.toml: not valid TOML: *"),
    "unknown_key": (
        "limits.toml",
        'schema_version = 1\n["t.py::test_a"]\n"5x5" = { min_samples = 3 }\n',
        "*unknown threshold 'min_samples'; known: *",
    ),
    "negative": (
        "limits.toml",
        'schema_version = 1\n["t.py::test_a"]\n"5x5" = { max_step_ms = -3 }\n',
        "*max_step_ms must be a finite number > 0, got -3",
    ),
    "non_numeric": (
        "limits.toml",
        'schema_version = 1\n["t.py::test_a"]\n"5x5" = { min_mfu = "high" }\n',
        "*min_mfu must be a number, got 'high'",
    ),
    "bad_mesh_key": (
        "limits.toml",
        'schema_version = 1\n["t.py::test_a"]\n"five" = { min_mfu = 0.1 }\n',
        "*mesh must be ROWSxCOLS*",
    ),
    "no_version": (
        "limits.toml",
        '["t.py::test_a"]\n"5x5" = { min_mfu = 0.1 }\n',
        "*schema_version must be 1, got None",
    ),
    "not_a_test": (
        "limits.toml",
        'schema_version = 1\n[general]\n"5x5" = { min_mfu = 0.1 }\n',
        "*must be a test node id*",
    ),
}


@pytest.mark.parametrize("case", sorted(BAD_FILES))
def test_bad_thresholds_file_is_a_usage_error(pytester: pytest.Pytester, case: str) -> None:
    name, text, expected = BAD_FILES[case]
    (pytester.path / name).write_text(text)
    pytester.makepyfile(test_nothing="def test_nothing():\n    pass\n")
    result = pytester.runpytest(f"--dojo-thresholds={name}")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([f"ERROR: --dojo-thresholds: {expected}"])
    assert "Traceback" not in result.stderr.str()


def test_missing_and_unreadable_thresholds_file(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_nothing="def test_nothing():\n    pass\n")
    missing = pytester.runpytest("--dojo-thresholds=nope.toml")
    assert missing.ret == pytest.ExitCode.USAGE_ERROR
    missing.stderr.fnmatch_lines(["ERROR: --dojo-thresholds: nope.toml: thresholds file not found"])
    (pytester.path / "folder.toml").mkdir()
    unreadable = pytester.runpytest("--dojo-thresholds=folder.toml")
    assert unreadable.ret == pytest.ExitCode.USAGE_ERROR
    unreadable.stderr.fnmatch_lines(["ERROR: --dojo-thresholds: folder.toml: cannot read thresholds file: *"])


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (None, "ERROR: --dojo-baseline: base.json: file not found"),
        ("{not json", "ERROR: --dojo-baseline: base.json: not valid JSON (*"),
        (
            '{"schema": "pytest-dojo-results", "schema_version": 99, "results": []}',
            "ERROR: --dojo-baseline: base.json: results schema version 99 is not supported (expected 1)",
        ),
        ('{"results": []}', "ERROR: --dojo-baseline: base.json: not a pytest-dojo results file*"),
        (
            '{"schema": "pytest-dojo-results", "schema_version": 1, "results": [{"nodeid": "a::b", "network": "n",'
            ' "report": {"schema_version": 7}}]}',
            "ERROR: --dojo-baseline: base.json: result 0 (a::b): report schema version 7 is not supported (expected 1)",
        ),
    ],
)
def test_bad_baseline_is_a_usage_error(pytester: pytest.Pytester, content: str | None, expected: str) -> None:
    if content is not None:
        (pytester.path / "base.json").write_text(content)
    pytester.makepyfile(test_nothing="def test_nothing():\n    pass\n")
    result = pytester.runpytest("--dojo-baseline=base.json")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([expected])
    assert "Traceback" not in result.stderr.str()


@pytest.mark.parametrize("value", ["abc", "-1", "nan", "5%%", ""])
def test_malformed_max_regression_is_a_usage_error(pytester: pytest.Pytester, value: str) -> None:
    pytester.makepyfile(test_nothing="def test_nothing():\n    pass\n")
    result = pytester.runpytest(f"--dojo-max-regression={value}")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["ERROR: --dojo-max-regression: must be a *percentage*"])


@pytest.mark.parametrize(
    "option", ["--dojo-report-dir=blocker/plots", "--dojo-json=blocker/r.json", "--dojo-save-baseline=blocker/b.json"]
)
def test_unwritable_output_is_a_usage_error(pytester: pytest.Pytester, option: str) -> None:
    (pytester.path / "blocker").write_text("a file where a directory should be\n")
    pytester.makepyfile(test_nothing="def test_nothing():\n    pass\n")
    result = pytester.runpytest(option)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([f"ERROR: {option.split('=')[0]}: cannot write to 'blocker*"])
    assert (pytester.path / "blocker").read_text() == "a file where a directory should be\n"


def test_require_baseline_without_baseline_is_a_usage_error(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_nothing="def test_nothing():\n    pass\n")
    result = pytester.runpytest("--dojo-require-baseline")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["ERROR: --dojo-require-baseline needs --dojo-baseline=PATH"])


def test_failed_write_keeps_the_old_file(tmp_path: Path) -> None:
    from pytest_dojo.plugin.results_json import ResultsFileError, write_json_atomic

    target = tmp_path / "results.json"
    target.write_text('{"old": true}\n')
    with pytest.raises(ResultsFileError, match="cannot encode results as JSON"):
        write_json_atomic(target, {"value": float("nan")})
    assert target.read_text() == '{"old": true}\n'
    assert [path.name for path in tmp_path.iterdir()] == ["results.json"]


def test_results_file_that_cannot_be_written_at_the_end(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        test_steps="""
import shutil
from pathlib import Path

import torch

def test_mlp(dojo):
    dojo.train_step(torch.nn.Linear(8, 2), torch.randn(25, 8), name="mlp")
    shutil.rmtree("out")
    Path("out").write_text("now a file\\n")
"""
    )
    result = pytester.runpytest("--dojo-json=out/results.json")
    result.assert_outcomes(passed=1)
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.stdout.fnmatch_lines(["ERROR: out/results.json: cannot write: *"])
    assert (pytester.path / "out").read_text() == "now a file\n"
    assert "Traceback" not in result.stdout.str()


def test_help_lists_the_option_group(pytester: pytest.Pytester) -> None:
    result = pytester.runpytest("--help")
    result.stdout.fnmatch_lines(
        [
            "pytest-dojo: simulated training throughput on a modeled accelerator mesh:",
            "  --dojo-mesh=ROWSxCOLS*",
            "  --dojo-chip=NAME*",
            "  --dojo-thresholds=PATH*",
            "  --dojo-baseline=PATH*",
            "  --dojo-save-baseline=PATH*",
            "  --dojo-max-regression=PCT*",
            "  --dojo-require-baseline*",
            "  --dojo-json=PATH*",
            "  --dojo-report-dir=DIR*",
        ]
    )

"""The ASV history: the benchmarks pass ``asv check``, a recorded run stores exactly the figures the
plugin reports for the same commit, network and mesh, and the gate is direction-aware and exits
non-zero on a regression.

Slow (tens of seconds: asv starts a process per benchmark and captures three full-size networks);
CI runs them with ``pytest -m slow``. They need asv (``pip install -e '.[history]'``).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from suites.benchmarks import _project

REPO_ROOT = Path(__file__).resolve().parent.parent
MACHINE = "dojo-test"
SIMULATED_TRACKS = 2 * len(_project.NETWORKS) * len(_project.MESHES)
"""Results of the two simulated ``track_`` benchmarks: one per network and mesh each."""
CHECKED = (("hydranet", "5x5"), ("occupancy", "10x15"))
"""(network, mesh) pairs compared with the plugin: one training tile and one system tray."""

pytestmark = pytest.mark.slow


def _asv_env(tmp_path: Path) -> dict[str, str]:
    """Environment for asv and the asv-* commands: a private HOME (asv's machine file) and results dir."""
    env = dict(os.environ)
    env.update(
        HOME=str(tmp_path / "home"),
        ASV_DOJO_MACHINE=MACHINE,
        ASV_DOJO_PYTHON=sys.executable,
        ASV_DOJO_ASV_PYTHON=sys.executable,
        ASV_DOJO_RESULTS=str(tmp_path / "results"),
        ASV_DOJO_WRAPPER_DIR=str(tmp_path / "wrapper"),
    )
    (tmp_path / "home").mkdir(exist_ok=True)
    return env


def _dojo(env: dict[str, str], *args: str, timeout: float) -> subprocess.CompletedProcess[str]:
    """``pytest-dojo ARGS`` from the repository root, as CI runs it."""
    return subprocess.run(
        [sys.executable, "-m", "pytest_dojo.cli", *args],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def _git(*args: str) -> str:
    return subprocess.run(
        ["git", "-C", str(REPO_ROOT), *args], capture_output=True, text=True, check=True
    ).stdout.strip()


@pytest.fixture(scope="module")
def recorded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, dict[str, str], str]]:
    """A quick asv run of the simulated ``track_`` benchmarks at HEAD: (results dir, env, commit)."""
    pytest.importorskip("asv")
    tmp_path = tmp_path_factory.mktemp("asv")
    env = _asv_env(tmp_path)
    commit = _git("rev-parse", "HEAD")
    completed = _dojo(
        env,
        "asv-record",
        "HEAD",
        "--quick",
        "--show-stderr",
        "--bench",
        r"simulated\.Simulated(Throughput|StepTime)\.track_",
        timeout=900,
    )
    assert completed.returncode == 0, completed.stdout[-3000:] + completed.stderr[-3000:]
    yield tmp_path / "results", env, commit


def _result_file(results_dir: Path, commit: str) -> Path:
    files = sorted((results_dir / MACHINE).glob(f"{commit[:8]}-*.json"))
    assert len(files) == 1, f"expected one result file for {commit[:8]}, found {files}"
    return files[0]


def _recorded_values(results_dir: Path, commit: str, benchmark: str) -> dict[tuple[str, str], Any]:
    """(network, mesh) -> stored value of ``benchmark`` in asv's result file of ``commit``."""
    import ast
    import itertools

    from asv.results import Results

    result = Results.load(str(_result_file(results_dir, commit)))
    params = result.get_result_params(benchmark)
    values = result.get_result_value(benchmark, params)
    labels = [tuple(ast.literal_eval(value) for value in combination) for combination in itertools.product(*params)]
    return dict(zip(labels, values, strict=True))


def test_asv_check_finds_no_problem(tmp_path: Path) -> None:
    pytest.importorskip("asv")
    completed = subprocess.run(
        [sys.executable, "-m", "asv", "check", "-E", f"existing:{sys.executable}"],
        cwd=REPO_ROOT,
        env=_asv_env(tmp_path) | {"ASV_PYTHONPATH": str(REPO_ROOT)},
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert completed.returncode == 0, completed.stdout + completed.stderr
    assert "No problems found" in completed.stdout


PLUGIN_TEST = """
import json
import pathlib

import pytest
import torch

from dojo_networks import get_network

OUT = pathlib.Path({out!r})


def test_full_step(dojo):
    spec = get_network({network!r})
    with torch.device("meta"):
        model = spec.build("full")
    inputs, targets = spec.make_batch("full", dojo.mesh.num_chips, "meta")
    report = dojo.train_step(model, inputs, targets=targets, loss_fn=spec.loss, name={network!r})
    (OUT / "report.json").write_text(json.dumps(report.to_dict()))
"""


@pytest.mark.parametrize(("network", "mesh"), CHECKED)
def test_recorded_figures_equal_the_plugins(
    recorded: tuple[Path, dict[str, str], str],
    pytester: pytest.Pytester,
    monkeypatch: pytest.MonkeyPatch,
    network: str,
    mesh: str,
) -> None:
    """The stored samples/s and step time are the plugin's, bit for bit, for one sample per chip.

    The plugin runs in a subprocess: a full-size capture imports torch modules that an in-process
    pytester run would drop and register twice.
    """
    results_dir, _, commit = recorded
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(REPO_ROOT), os.environ.get("PYTHONPATH")])))
    pytester.makepyfile(test_full_step=PLUGIN_TEST.format(out=str(pytester.path), network=network))
    run = pytester.runpytest_subprocess(f"--dojo-mesh={mesh}", "--dojo-chip=d1", "-p", "no:cacheprovider")
    run.assert_outcomes(passed=1)
    report = json.loads((pytester.path / "report.json").read_text())

    throughput = _recorded_values(results_dir, commit, "simulated.SimulatedThroughput.track_samples_per_s")
    step_time = _recorded_values(results_dir, commit, "simulated.SimulatedStepTime.track_step_time")
    assert report["global_batch"] == report["num_chips"]
    assert throughput[(network, mesh)] == report["samples_per_s"]
    assert step_time[(network, mesh)] == report["step_time_s"]


def _fake_base_commit(results_dir: Path, head: str, base: str, throughput_factor: float) -> None:
    """Write a result file for ``base``: HEAD's figures with throughput x factor and step time / factor."""
    source = _result_file(results_dir, head)
    data = json.loads(source.read_text())
    column = data["result_columns"].index("result")
    for name, scale in (
        ("simulated.SimulatedThroughput.track_samples_per_s", throughput_factor),
        ("simulated.SimulatedStepTime.track_step_time", 1 / throughput_factor),
    ):
        entry = data["results"][name]
        entry[column] = [value * scale for value in entry[column]]
    data["commit_hash"] = base
    (source.parent / source.name.replace(head[:8], base[:8], 1)).write_text(json.dumps(data))


def _gate(env: dict[str, str], results_dir: Path, base: str, head: str) -> subprocess.CompletedProcess[str]:
    arguments = ["--factor", "1.05", "--machine", MACHINE, "--results-dir", str(results_dir), "--quiet"]
    return _dojo(env, "asv-gate", base, head, *arguments, timeout=300)


def test_gate_fails_on_a_throughput_drop_and_passes_on_a_gain(
    recorded: tuple[Path, dict[str, str], str], tmp_path: Path
) -> None:
    results_dir, env, head = recorded
    try:
        base = _git("rev-parse", f"{head}~1")
    except subprocess.CalledProcessError:
        pytest.skip("the repository has a single commit")
    copy = tmp_path / "results"
    subprocess.run(["cp", "-r", str(results_dir), str(copy)], check=True)

    # The base was 10% faster: HEAD's throughput dropped, its step time rose.
    _fake_base_commit(copy, head, base, throughput_factor=1.10)
    dropped = _gate(env, copy, base, head)
    assert dropped.returncode == 1, dropped.stdout + dropped.stderr
    assert f"{SIMULATED_TRACKS} compared, {SIMULATED_TRACKS} regressed, 0 improved" in dropped.stdout
    assert any(
        line.startswith("REGRESSED") and "track_samples_per_s(network=hydranet, mesh=5x5)" in line
        for line in dropped.stdout.splitlines()
    )

    # The base was 10% slower: a gain, which asv alone would flag for samples/s (asv #1617).
    _fake_base_commit(copy, head, base, throughput_factor=1 / 1.10)
    gained = _gate(env, copy, base, head)
    assert gained.returncode == 0, gained.stdout + gained.stderr
    assert f"{SIMULATED_TRACKS} compared, 0 regressed, {SIMULATED_TRACKS} improved" in gained.stdout

    # Within the factor: neither.
    _fake_base_commit(copy, head, base, throughput_factor=1.01)
    same = _gate(env, copy, base, head)
    assert same.returncode == 0, same.stdout + same.stderr
    assert f"{SIMULATED_TRACKS} compared, 0 regressed, 0 improved" in same.stdout

    # The published page of these two commits, in a browser: two points per series.
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        pytest.skip("chromium is not installed (apt-get install chromium): page check not run")
    html_dir = tmp_path / "html"
    published = _dojo(env, "asv-publish", "--results-dir", str(copy), "--html-dir", str(html_dir), timeout=600)
    assert published.returncode == 0, published.stdout[-2000:] + published.stderr[-2000:]
    checked = _dojo(
        env, "asv-check-page", "--html-dir", str(html_dir), "--min-commits", "2", "--chromium", chromium, timeout=600
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "network-hydranet: 2" in checked.stdout


def test_gate_refuses_a_commit_without_results(recorded: tuple[Path, dict[str, str], str]) -> None:
    results_dir, env, _ = recorded
    first = _git("rev-list", "--max-parents=0", "HEAD").splitlines()[0]
    completed = _gate(env, results_dir, first, "HEAD")
    assert completed.returncode == 2
    assert f"asv_gate: no results for {first[:8]} on machine {MACHINE!r}" in completed.stderr

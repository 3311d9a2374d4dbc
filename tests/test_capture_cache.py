"""The persistent capture cache: entries on disk, the key, and the plugin's use of it across runs."""

from __future__ import annotations

import functools
import gzip
import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch
from synthetic_workloads import chain_workload

from pytest_dojo.capture import capture_key
from pytest_dojo.plugin.capture_cache import CaptureCache

KEY = "a" * 64
OTHER_KEY = "b" * 64


def test_an_entry_round_trips_and_leaves_no_temporary_file(tmp_path: Path) -> None:
    cache = CaptureCache(tmp_path)
    workload = chain_workload(batch=3)
    assert cache.store(KEY, workload)
    assert cache.load(KEY, 3) == workload
    assert cache.load(KEY, 4) is None
    assert [path.name for path in tmp_path.iterdir()] == [f"{KEY}-b3.json.gz"]


def test_batch_sizes_are_those_of_the_key(tmp_path: Path) -> None:
    cache = CaptureCache(tmp_path)
    for batch in (8, 2, 16):
        cache.store(KEY, chain_workload(batch=batch))
    cache.store(OTHER_KEY, chain_workload(batch=4))
    (tmp_path / f"{KEY}-bx.json.gz").write_bytes(b"")
    assert cache.batch_sizes(KEY) == [2, 8, 16]
    assert cache.batch_sizes(OTHER_KEY) == [4]


def _older_schema(data: bytes) -> bytes:
    document = json.loads(gzip.decompress(data))
    document["schema_version"] = 0
    return gzip.compress(json.dumps(document).encode())


CORRUPTIONS: dict[str, Callable[[bytes], bytes]] = {
    "not gzip": lambda data: b"not a gzip stream",
    "truncated": lambda data: data[: len(data) // 2],
    "empty": lambda data: b"",
    "not JSON": lambda data: gzip.compress(b"{ops: ["),
    "not an object": lambda data: gzip.compress(b"[1, 2]"),
    "not UTF-8": lambda data: gzip.compress(b"\xff\xfe"),
    "missing fields": lambda data: gzip.compress(b'{"schema_version": 1}'),
    "older schema": _older_schema,
}


@pytest.mark.parametrize("corruption", sorted(CORRUPTIONS))
def test_an_entry_that_cannot_be_used_is_absent(tmp_path: Path, corruption: str) -> None:
    cache = CaptureCache(tmp_path)
    cache.store(KEY, chain_workload(batch=2))
    path = cache.path(KEY, 2)
    path.write_bytes(CORRUPTIONS[corruption](path.read_bytes()))
    assert cache.load(KEY, 2) is None


def test_an_entry_under_another_batch_name_is_absent(tmp_path: Path) -> None:
    cache = CaptureCache(tmp_path)
    cache.store(KEY, chain_workload(batch=2))
    cache.path(KEY, 2).rename(cache.path(KEY, 5))
    assert cache.load(KEY, 5) is None


def test_a_cache_that_cannot_be_written_says_so_and_keeps_nothing(tmp_path: Path) -> None:
    cache = CaptureCache(tmp_path / "missing")
    assert not cache.store(KEY, chain_workload())
    assert cache.load(KEY, 8) is None
    assert cache.batch_sizes(KEY) == []


class Net(torch.nn.Module):
    def __init__(self, stride: int = 1, channels: int = 4) -> None:
        super().__init__()
        self.conv = torch.nn.Conv2d(3, channels, 3, stride=stride)
        self.norm = torch.nn.BatchNorm2d(channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(self.conv(x)).relu()


def other_loss(outputs: torch.Tensor, targets: Any) -> torch.Tensor:
    return (outputs - targets).abs().mean()


def _key(model: torch.nn.Module | None = None, inputs: Any = None, **step: Any) -> str:
    return capture_key(Net() if model is None else model, torch.empty(2, 3, 8, 8) if inputs is None else inputs, **step)


CHANGES: dict[str, Callable[[], str]] = {
    "stride": lambda: _key(Net(stride=2)),
    "channels": lambda: _key(Net(channels=5)),
    "eval mode": lambda: _key(Net().eval()),
    "input shape": lambda: _key(inputs=torch.empty(3, 3, 8, 8)),
    "input dtype": lambda: _key(inputs=torch.empty(2, 3, 8, 8, dtype=torch.float64)),
    "input structure": lambda: _key(inputs=(torch.empty(2, 3, 8, 8),)),
    "targets": lambda: _key(targets=torch.empty(2, 4, 6, 6)),
    "loss": lambda: _key(loss_fn=other_loss),
    "optimizer": lambda: _key(optimizer=torch.optim.SGD),
    "optimizer settings": lambda: _key(optimizer=functools.partial(torch.optim.SGD, lr=0.1)),
    "name": lambda: _key(name="other"),
    "threads": lambda: _key(intra_op_threads=torch.get_num_threads() + 1),
    "frozen parameter": lambda: _key(_frozen_convolution()),
}


def _frozen_convolution() -> Net:
    model = Net()
    model.conv.requires_grad_(False)
    return model


def test_the_key_is_the_same_for_the_same_step() -> None:
    assert _key() == _key()
    assert _key(optimizer=functools.partial(torch.optim.SGD, lr=0.1)) == _key(
        optimizer=functools.partial(torch.optim.SGD, lr=0.1)
    )
    assert _key(inputs=torch.empty(2, 3, 8, 8, device="meta")) == _key()


@pytest.mark.parametrize("change", sorted(CHANGES))
def test_the_key_changes_with_what_changes_the_ops(change: str) -> None:
    assert CHANGES[change]() != _key()


def test_a_hook_changes_the_key() -> None:
    model = Net()
    model.conv.register_forward_hook(lambda module, args, output: output * 2)
    assert _key(model) != _key()


STEP = """
import torch

SCALE = 2.0


def head(x):
    return x.relu() * SCALE


class Mlp(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.first = torch.nn.Linear(16, 32)
        self.second = torch.nn.Linear(32, 4)

    def forward(self, x):
        return self.second(head(self.first(x)))


def test_step(dojo):
    dojo.train_step(Mlp(), torch.randn(8, 16), name="mlp")
"""

COUNTS = re.compile(r"dojo workloads: (\d+) captured, (\d+) derived, (\d+) loaded")


def _counts(result: pytest.RunResult) -> tuple[int, int, int]:
    matches = [COUNTS.search(line) for line in result.outlines]
    found = [match for match in matches if match is not None]
    assert len(found) == 1, result.stdout.str()
    captured, derived, loaded = (int(group) for group in found[0].groups())
    return captured, derived, loaded


def _reports(pytester: pytest.Pytester) -> list[dict[str, Any]]:
    document = json.loads((pytester.path / "results.json").read_text())
    return [entry["report"] for entry in document["results"]]


def _run(pytester: pytest.Pytester, *arguments: str) -> pytest.RunResult:
    result = pytester.runpytest("--dojo-mesh=2x2", "--dojo-json=results.json", *arguments)
    result.assert_outcomes(passed=1)
    assert "Traceback" not in result.stdout.str()
    return result


def test_a_second_run_loads_the_step_and_cache_clear_empties_the_cache(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_step=STEP)
    first = _run(pytester)
    assert _counts(first) == (1, 0, 0)
    first.stdout.fnmatch_lines(["dojo workloads: * loaded from .pytest_cache/d/dojo-captures (*s)"])
    fresh = _reports(pytester)
    entries = list((pytester.path / ".pytest_cache" / "d" / "dojo-captures").iterdir())
    assert [path.name.endswith("-b2.json.gz") for path in entries] == [True]

    assert _counts(_run(pytester)) == (0, 0, 1)
    assert _reports(pytester) == fresh

    assert _counts(_run(pytester, "--cache-clear")) == (1, 0, 0)
    assert _reports(pytester) == fresh


def test_without_the_cache_provider_every_run_captures(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_step=STEP)
    for _ in range(2):
        result = _run(pytester, "-p", "no:cacheprovider")
        assert _counts(result) == (1, 0, 0)
        result.stdout.fnmatch_lines(["dojo workloads: * loaded (no persistent cache) (*s)"])
    assert not (pytester.path / ".pytest_cache").exists()


EDITS = [
    ("forward", "return self.second(head(self.first(x)))", "return self.second(head(self.first(x)).tanh())", 1),
    ("helper function", "return x.relu() * SCALE", "return x.sigmoid() * SCALE", 1),
    ("module constant", "SCALE = 2.0", "SCALE = 0.5", 1),
    ("unrelated line", "import torch\n", "import torch\n\nUNUSED = 1\n", 0),
]


def test_an_edited_network_is_captured_again(pytester: pytest.Pytester) -> None:
    """Each edit in turn: an edit to what the step runs captures again, an unrelated one loads."""
    source = STEP
    pytester.makepyfile(test_step=source)
    assert _counts(_run(pytester)) == (1, 0, 0)
    for what, old, new, captures in EDITS:
        source = source.replace(old, new, 1)
        pytester.makepyfile(test_step=source)
        assert _counts(_run(pytester)) == (captures, 0, 1 - captures), what


def test_corrupt_entries_are_captured_again_and_rewritten(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_step=STEP)
    _run(pytester)
    fresh = _reports(pytester)
    directory = pytester.path / ".pytest_cache" / "d" / "dojo-captures"
    (entry,) = directory.iterdir()
    entry.write_bytes(b"\x1f\x8b not really gzip")
    assert _counts(_run(pytester)) == (1, 0, 0)
    assert _reports(pytester) == fresh
    assert json.loads(gzip.decompress(entry.read_bytes()))["batch_size"] == 2


XDIST_STEPS = """
import pytest
import torch


@pytest.mark.parametrize("copy", range(4))
def test_step(dojo, copy):
    model = torch.nn.Sequential(torch.nn.Linear(16, 32), torch.nn.ReLU(), torch.nn.Linear(32, 4))
    dojo.train_step(model, torch.randn(8, 16), name="mlp")
"""


@pytest.mark.slow
def test_xdist_workers_share_the_cache(pytester: pytest.Pytester) -> None:
    """Two workers capture the same step at once: each writes a whole entry, and the next run loads it."""
    pytester.makepyfile(test_steps=XDIST_STEPS)
    first = pytester.runpytest_subprocess("-n", "2", "--dojo-mesh=2x2", "-p", "no:randomly")
    first.assert_outcomes(passed=4)
    captured, _, loaded = _counts(first)
    assert 1 <= captured <= 2 and loaded == 0
    directory = pytester.path / ".pytest_cache" / "d" / "dojo-captures"
    names = [path.name for path in directory.iterdir()]
    assert len(names) == 1 and names[0].endswith("-b2.json.gz")
    second = pytester.runpytest_subprocess("-n", "2", "--dojo-mesh=2x2", "-p", "no:randomly")
    second.assert_outcomes(passed=4)
    captured, _, loaded = _counts(second)
    assert captured == 0 and 1 <= loaded <= 2

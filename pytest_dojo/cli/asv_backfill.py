"""``pytest-dojo asv-backfill [N] [REV] [ASV_RUN_OPTIONS...]``: record the last N commits of a branch, offline.

N defaults to 10, REV to HEAD; commits are taken along first parents, oldest first. Each commit is
checked out into its own temporary git worktree and recorded by ``pytest-dojo asv-record``, which
puts that worktree first on the benchmarks' path (``ASV_PYTHONPATH``), so today's benchmark files
measure that commit's hwmodel, pytest_dojo and networks with today's interpreter and dependencies.
Benchmarks whose network or API a commit lacks are recorded as skipped. Nothing is installed or
built; the worktrees are removed afterwards. A commit that already has results for this machine is
skipped unless ``ASV_DOJO_BACKFILL_REDO=1``. Same environment variables as ``asv-record``.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from pytest_dojo.cli.asv_record import DEFAULT_MACHINE
from pytest_dojo.cli.common import (
    EXIT_OK,
    EXIT_REGRESSION,
    EXIT_USAGE,
    add_command,
    error_line,
    project_root,
    whole_number,
)

NAME = "asv_backfill"


def register(commands: Any) -> None:
    parser = add_command(
        commands,
        "asv-backfill",
        run,
        summary="record the last N commits of a branch into the ASV history, one worktree each",
        doc=__doc__,
    )
    parser.add_argument("count", nargs="?", type=whole_number, default=10, metavar="N", help="commits (default: 10)")
    parser.add_argument("rev", nargs="?", default="HEAD", metavar="REV", help="branch or commit (default: HEAD)")
    parser.add_argument("asv_arguments", nargs=argparse.REMAINDER, metavar="ASV_RUN_OPTIONS", help="passed to asv run")


def _git(root: Path, *arguments: str) -> str:
    return subprocess.run(
        ["git", "-C", str(root), *arguments], capture_output=True, text=True, check=True
    ).stdout.strip()


def _recorded(results_dir: Path, machine: str, commit: str) -> bool:
    return os.environ.get("ASV_DOJO_BACKFILL_REDO", "0") != "1" and any(
        (results_dir / machine).glob(f"{commit[:8]}-*.json")
    )


def _record(root: Path, tree: Path, commit: str, asv_arguments: list[str]) -> bool:
    """Record ``commit`` from its own worktree at ``tree``; whether asv succeeded."""
    subprocess.run(["git", "-C", str(root), "worktree", "add", "--detach", "--quiet", str(tree), commit], check=True)
    try:
        command = [sys.executable, "-m", "pytest_dojo.cli", "asv-record", commit, *asv_arguments]
        environment = {**os.environ, "ASV_DOJO_CHECKOUT": str(tree)}
        return subprocess.run(command, cwd=root, env=environment, check=False).returncode == 0
    finally:
        subprocess.run(["git", "-C", str(root), "worktree", "remove", "--force", str(tree)], check=False)


def run(arguments: argparse.Namespace) -> int:
    root = project_root()
    machine = os.environ.get("ASV_DOJO_MACHINE") or DEFAULT_MACHINE
    results_dir = Path(os.environ.get("ASV_DOJO_RESULTS") or root / ".asv" / "results")
    try:
        listed = _git(root, "rev-list", "--first-parent", f"--max-count={arguments.count}", "--reverse", arguments.rev)
    except subprocess.CalledProcessError as error:
        error_line(NAME, (error.stderr or "").strip() or f"unknown revision {arguments.rev!r}")
        return EXIT_USAGE
    commits = listed.split()
    worktrees = Path(tempfile.mkdtemp(prefix="dojo-asv-backfill."))
    failed = 0
    start = time.monotonic()
    try:
        for index, commit in enumerate(commits, start=1):
            subject = _git(root, "log", "-1", "--format=%s", commit)[:60]
            step = f"[{index}/{len(commits)}] {commit[:8]} {subject}"
            if _recorded(results_dir, machine, commit):
                error_line(NAME, f"{step}: already recorded, skipped")
                continue
            error_line(NAME, f"{step} ({time.monotonic() - start:.0f} s so far)")
            if not _record(root, worktrees / commit[:12], commit, arguments.asv_arguments):
                error_line(NAME, f"[{index}/{len(commits)}] {commit[:8]}: asv run failed")
                failed += 1
    finally:
        shutil.rmtree(worktrees, ignore_errors=True)
        subprocess.run(["git", "-C", str(root), "worktree", "prune"], check=False)
    elapsed = time.monotonic() - start
    error_line(NAME, f"{len(commits)} commits in {elapsed:.0f} s, {failed} failed; results in {results_dir / machine}")
    return EXIT_REGRESSION if failed else EXIT_OK

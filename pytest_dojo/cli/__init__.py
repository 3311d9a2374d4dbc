"""``pytest-dojo``: the project's one command, for the work that runs outside a test session.

Each subcommand is one module of this package with a ``register(commands)`` function that adds
its parser and sets ``run``, the function that does the work and returns the exit status. Heavy
imports (torch, asv, the validation package) happen inside ``run``, so ``pytest-dojo --help`` does
not pay for them.

* results files: ``compare`` (gate NEW against OLD), ``thresholds`` (floors from a results file);
* studies and the models: ``whatif``, ``calibrate`` (host), ``calibrate-gpu`` (your GPU), ``validate``;
* GPU kernel latencies: ``predict-kernels``;
* ASV history: ``asv-record``, ``asv-backfill``, ``asv-publish``, ``asv-gate``, ``asv-check-page``;
* the wall-clock rule on this machine: ``noise-study``.

Exit status: 0 on success, 1 on a regression (the gates), 2 on bad input (one line, no traceback).
"""

from __future__ import annotations

import argparse
import importlib
from collections.abc import Sequence

from pytest_dojo.cli.common import EXIT_OK, EXIT_REGRESSION, EXIT_USAGE

__all__ = ["EXIT_OK", "EXIT_REGRESSION", "EXIT_USAGE", "build_parser", "main"]

SUBCOMMAND_MODULES = (
    "compare",
    "thresholds",
    "whatif",
    "calibrate",
    "calibrate_gpu",
    "validate",
    "predict_kernels",
    "asv_record",
    "asv_backfill",
    "asv_publish",
    "asv_gate",
    "asv_check_page",
    "noise_study",
)
"""Modules of :mod:`pytest_dojo.cli`, one per subcommand, in the order ``--help`` lists them."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="pytest-dojo", description="pytest-dojo: results, studies and history tools")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in SUBCOMMAND_MODULES:
        importlib.import_module(f"pytest_dojo.cli.{name}").register(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    arguments = build_parser().parse_args(argv)
    status: int = arguments.run(arguments)
    return status

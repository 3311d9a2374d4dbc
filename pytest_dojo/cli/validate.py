"""``pytest-dojo validate TARGET [ARGS...]``: the model's predictions against measurements.

Targets (each runs a ``main`` of :mod:`dojo_validation`, which is imported only here; ``ARGS``
go to it, so ``pytest-dojo validate host --help`` shows its own options):

* ``host``: measured CPU training steps against the ``host`` preset, leave-one-out
  (:mod:`dojo_validation.validate_host`; ``--measure`` measures now);
* ``published``: published A100 training throughput against the ``a100`` preset
  (:mod:`dojo_validation.published`);
* ``kernels``: the GPU kernel models, leaving one measured device out (:mod:`dojo_validation.kernels.lodo`;
  ``--write-parameters`` records the final fit);
* ``steps``: measured transformer training and inference steps on NVIDIA GPUs, single and 4-GPU,
  against the GPU presets (:mod:`dojo_validation.steps.validate`; needs the ``[validation]`` extra).
"""

from __future__ import annotations

import argparse
import importlib
import sys
from typing import Any

from pytest_dojo.cli.common import add_command

TARGETS = {
    "host": "dojo_validation.validate_host",
    "published": "dojo_validation.published",
    "kernels": "dojo_validation.kernels.lodo",
    "steps": "dojo_validation.steps.validate",
}


def register(commands: Any) -> None:
    parser = add_command(
        commands,
        "validate",
        run,
        summary="predictions against measured and published steps and kernels (host, published, kernels, steps)",
        doc=__doc__,
    )
    parser.add_argument("target", choices=tuple(TARGETS), help="what to validate")
    parser.add_argument("arguments", nargs=argparse.REMAINDER, metavar="ARGS", help="passed to the target")


def run(arguments: argparse.Namespace) -> int:
    module = importlib.import_module(TARGETS[arguments.target])
    program = sys.argv[0]
    sys.argv[0] = f"pytest-dojo validate {arguments.target}"  # the target's usage line names this command
    try:
        status: int = module.main(arguments.arguments)
    finally:
        sys.argv[0] = program
    return status

"""``pytest-dojo calibrate-gpu``: fit the GPU kernel models on one's own GPU.

    pytest-dojo calibrate-gpu measure --out gpu.json          # on the machine with the GPU (<= 10 min)
    pytest-dojo calibrate-gpu fit gpu.json --chip h200        # anywhere: re-fit, write, validate

``measure`` times kernels in the shapes and format of ``dojo_validation/data/gpu_kernels`` (bmm,
linear, elementwise, LayerNorm, softmax, convolution; FP32, CUDA events, warm-up, the data's
mean-of-fastest-5 figure and the median) and a few whole FP32 training steps, into one JSON file
(``dojo_validation.gpu_calibration``). ``fit`` re-fits the kernel models' parameters on that
file's train-shape rows, with ``--chip`` the preset that describes the GPU (SMs, rates, memory),
writes ``NAME.kernel-parameters.json`` and a preset ``NAME.toml`` that uses it
(``--dojo-chip=NAME.toml``), and prints the validation table on the rows it was not fitted on.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from pytest_dojo.cli.common import EXIT_OK, EXIT_USAGE, add_command, error_line, progress, whole_number

COMMAND = "pytest-dojo calibrate-gpu"


def register(commands: Any) -> None:
    parser = add_command(
        commands,
        "calibrate-gpu",
        _usage,
        summary="measure kernels on your GPU and re-fit the kernel models",
        doc=__doc__,
    )
    actions = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    measure = actions.add_parser("measure", help="time kernels and steps on this machine's CUDA GPU into one file")
    measure.set_defaults(run=run_measure)
    measure.add_argument("--out", required=True, type=Path, metavar="FILE", help="the calibration file to write")
    measure.add_argument(
        "--budget-s", type=_positive, default=540.0, metavar="SECONDS", help="time budget. Default: 540"
    )
    measure.add_argument("--train", type=whole_number, default=60, metavar="N", help="train shapes per op. Default: 60")
    measure.add_argument(
        "--test", type=whole_number, default=20, metavar="N", help="held-out shapes per op. Default: 20"
    )
    measure.add_argument("--no-steps", action="store_true", help="kernels only, no whole training steps")
    fit = actions.add_parser("fit", help="re-fit the kernel models on a calibration file and validate them")
    fit.set_defaults(run=run_fit)
    fit.add_argument("file", type=Path, metavar="FILE", help="written by calibrate-gpu measure")
    fit.add_argument("--chip", required=True, metavar="NAME|FILE.toml", help="the preset that describes the GPU")
    fit.add_argument(
        "--name", default=None, metavar="NAME", help="name of the calibrated preset. Default: CHIP-calibrated"
    )
    fit.add_argument("--out-dir", type=Path, default=Path("."), metavar="DIR", help="where to write. Default: .")
    fit.add_argument("--per-pair", type=whole_number, default=400, metavar="N", help="fit rows per op. Default: 400")
    fit.add_argument(
        "--iterations", type=whole_number, default=150, metavar="N", help="Nelder–Mead steps. Default: 150"
    )


def _positive(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number of seconds, got {text!r}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be > 0, got {text!r}")
    return value


def _usage(arguments: argparse.Namespace) -> int:
    error_line(COMMAND, "give an action: measure or fit")
    return EXIT_USAGE


def run_measure(arguments: argparse.Namespace) -> int:
    from dojo_validation.gpu_calibration import measure, shapes

    try:
        device = measure.require_cuda()
    except measure.NoGpuError as error:
        error_line(f"{COMMAND} measure", error)
        return EXIT_USAGE
    plan = shapes.plan(train=arguments.train, test=arguments.test)
    command = " ".join([COMMAND, "measure", *sys.argv[3:]]) if len(sys.argv) > 2 else f"{COMMAND} measure"
    measure.run(
        arguments.out,
        plan,
        budget_s=arguments.budget_s,
        steps=not arguments.no_steps,
        command=command,
        progress=progress,
        device=device,
    )
    return EXIT_OK


def run_fit(arguments: argparse.Namespace) -> int:
    from dojo_validation.gpu_calibration import document, fit
    from hwmodel.errors import HwModelError

    name = (
        arguments.name
        or f"{Path(arguments.chip).stem if arguments.chip.endswith('.toml') else arguments.chip}-calibrated"
    )
    try:
        loaded = document.read(arguments.file)
        fit.calibrate(
            arguments.file,
            loaded,
            arguments.chip,
            name,
            arguments.out_dir,
            per_pair=arguments.per_pair,
            iterations=arguments.iterations,
            progress=progress,
            say=print,
        )
    except (document.CalibrationFileError, HwModelError, FileNotFoundError) as error:
        error_line(f"{COMMAND} fit", error)
        return EXIT_USAGE
    return EXIT_OK

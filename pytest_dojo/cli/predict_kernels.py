"""``pytest-dojo predict-kernels --chip NAME IN.csv[.gz] --out OUT.csv``: kernel latencies predicted.

Reads rows in the format of the GPU kernel measurement files (``dojo_validation/data/gpu_kernels``:
an ``OPName`` and its shape columns) and writes them back with a ``Predicted`` column (ms), every
row as if run on the chosen device by :mod:`hwmodel.ops.kernels` (the ``Device`` column is ignored;
other columns pass through). Operators: bmm, linear, conv, add, mul, div, pow, addu, mulu, divu,
powu, relu, tanh, gelu, ln, softmax. The device is a preset (``--chip``, under ``--precision``) or a
measured device record (``--device FILE.json``, FP32 only). A row whose shape columns are missing or
not positive numbers is an error naming the row by its line in the file (exit 2); a row with an
unknown ``OPName`` is left without a prediction, counted and reported, never guessed.
"""

from __future__ import annotations

import argparse
import csv
import gzip
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any, TextIO

from pytest_dojo.cli.common import EXIT_OK, EXIT_USAGE, add_command, error_line, progress

COMMAND = "pytest-dojo predict-kernels"


class InputError(ValueError):
    """A malformed input row or an unusable device choice: one line for the user."""


def register(commands: Any) -> None:
    parser = add_command(
        commands, "predict-kernels", run, summary="predict GPU kernel latencies of a kernel-format CSV", doc=__doc__
    )
    parser.add_argument("input", metavar="IN.csv", help="rows with OPName and shape columns (.csv or .csv.gz)")
    parser.add_argument("--out", required=True, metavar="OUT.csv", help="where to write the rows with Predicted (ms)")
    device = parser.add_mutually_exclusive_group(required=True)
    device.add_argument("--chip", metavar="NAME", help="a preset name (or a preset .toml file)")
    device.add_argument("--device", metavar="FILE.json", help="a measured device record (devices/*.json format)")
    parser.add_argument(
        "--precision", default="fp32", choices=("fp32", "tf32", "bf16"), help="precision policy. Default: fp32"
    )


def _open_text(path: Path) -> TextIO:
    if path.suffix == ".gz":
        return gzip.open(path, "rt", newline="")
    return path.open(newline="")


def _device(arguments: argparse.Namespace) -> Any:
    from hwmodel.errors import HwModelError

    try:
        if arguments.device is not None:
            if arguments.precision != "fp32":
                raise InputError("a device record gives FP32 rates only: use --precision fp32 or --chip")
            from dojo_validation.kernels.devices import kernel_device_from_file

            return kernel_device_from_file(Path(arguments.device))
        from hwmodel.ops.kernels.from_chip import kernel_device_from_chip
        from hwmodel.spec.precision import PRECISIONS
        from hwmodel.spec.presets import preset_by_name_or_file

        chip = preset_by_name_or_file(arguments.chip, Path.cwd()).chip
        return kernel_device_from_chip(chip, PRECISIONS[arguments.precision])
    except HwModelError as error:
        raise InputError(str(error)) from None


def _shape_values(row: dict[str, str], label: str, columns: Sequence[str]) -> list[float]:
    values = []
    for column in columns:
        text = (row.get(column) or "").strip()
        try:
            value = float(text)
        except ValueError:
            raise InputError(f"{label}: {column} must be a number, got {text!r}") from None
        if not (value >= 0 if column == "Padding" else value > 0) or value != value:
            raise InputError(f"{label}: {column} must be {'>= 0' if column == 'Padding' else '> 0'}, got {text}")
        values.append(value)
    return values


def predict_rows(rows: list[dict[str, str]], device: Any) -> tuple[list[str], Counter[str]]:
    """``Predicted`` (ms, as text; empty for an unknown op) per row, and the unknown ops' counts."""
    import numpy as np

    from hwmodel.ops.kernels.dispatch import REQUIRED_COLUMNS, predict_seconds
    from hwmodel.ops.kernels.parameters import load_parameters

    unknown: Counter[str] = Counter()
    by_op: dict[str, list[tuple[int, list[float]]]] = {}
    for index, row in enumerate(rows):
        op = (row.get("OPName") or "").strip()
        if op not in REQUIRED_COLUMNS:
            unknown[op or "(empty)"] += 1
            continue
        label = f"line {index + 2} ({op})"
        by_op.setdefault(op, []).append((index, _shape_values(row, label, REQUIRED_COLUMNS[op])))
    predicted = [""] * len(rows)
    parameters = load_parameters()
    for op, entries in by_op.items():
        matrix = np.array([values for _, values in entries], dtype=np.float64)
        shapes = {column: matrix[:, i] for i, column in enumerate(REQUIRED_COLUMNS[op])}
        seconds = predict_seconds(op, shapes, device, parameters)
        for (index, _), value in zip(entries, seconds, strict=True):
            predicted[index] = repr(float(value) * 1e3)
    return predicted, unknown


def predict_file(source: Path, target: Path, device: Any) -> tuple[int, Counter[str]]:
    """Write ``source`` 's rows with ``Predicted`` to ``target``; (rows predicted, unknown ops)."""
    try:
        with _open_text(source) as handle:
            reader = csv.DictReader(handle)
            columns = list(reader.fieldnames or [])
            rows = list(reader)
    except (OSError, UnicodeDecodeError, csv.Error) as error:
        raise InputError(f"{source}: {error}") from None
    if "OPName" not in columns:
        raise InputError(f"{source}: no OPName column (got {', '.join(columns) or 'no header'})")
    predicted, unknown = predict_rows(rows, device)
    out_columns = [*(c for c in columns if c != "Predicted"), "Predicted"]
    with target.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, out_columns, extrasaction="ignore", lineterminator="\n")
        writer.writeheader()
        for row, value in zip(rows, predicted, strict=True):
            writer.writerow({**row, "Predicted": value})
    return len(rows) - sum(unknown.values()), unknown


def run(arguments: argparse.Namespace) -> int:
    try:
        device = _device(arguments)
        count, unknown = predict_file(Path(arguments.input), Path(arguments.out), device)
    except InputError as error:
        error_line(COMMAND, error)
        return EXIT_USAGE
    progress(f"{COMMAND}: predicted {count} rows on {device.name} ({arguments.precision}) -> {arguments.out}")
    if unknown:
        listed = ", ".join(f"{op} ({n})" for op, n in sorted(unknown.items()))
        progress(f"{COMMAND}: {sum(unknown.values())} rows with an unknown OPName left without a prediction: {listed}")
    return EXIT_OK

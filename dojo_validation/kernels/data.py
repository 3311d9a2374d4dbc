"""The measured GPU kernel latencies this project ships, and how they are read.

The files under ``dojo_validation/data/gpu_kernels`` are the public NeuSight single-operator
measurements (PyTorch eager, IEEE FP32; latencies in ms), reduced to the columns the kernel models
read: ``OPName``, ``Latency``, ``Device``, the shape columns, ``Kernel Count`` and ``Split``. Their
README says where they come from; :func:`compact` rebuilds them from the original files::

    python -m dojo_validation.kernels.data SOURCE_DIR

A :class:`KernelRows` is one op class's rows as numpy arrays (shape columns as float64, so the
models can be evaluated on them without conversion).
"""

from __future__ import annotations

import csv
import gzip
import io
import json
import shutil
import sys
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

import numpy as np
from numpy.typing import NDArray

DATA_DIR = Path(__file__).resolve().parent.parent / "data" / "gpu_kernels"
"""Where the shipped kernel files, device records and licence lie."""

SHAPE_COLUMNS = {
    "matmul": ("B", "M", "N", "K"),
    "conv": ("B", "Input_Channel", "Output_Channel", "Kernel_Szie", "Input_Size", "Stride", "Padding"),
    "vector": ("B", "H"),
}
"""Shape columns per file family, named as the measurement files name them."""

KEPT_COLUMNS = ("OPName", "Latency", "Device", "Kernel Count", "Split")

TRAIN_FILES = {
    "bmm": "bmm",
    "linear": "linear",
    "conv": "conv",
    **{op: op for op in ("add", "mul", "div", "pow", "addu", "mulu", "divu", "powu", "relu", "tanh", "gelu")},
    "ln": "ln",
    "softmax": "softmax",
}
"""File stem of each op's train-shape rows."""

TEST_FILES = ("test_bmm", "test_linear", "test_elem", "test_ln", "test_softmax")
"""Files with test-shape rows (``test_vec`` repeats ``test_elem``, ``test_ln`` and ``test_softmax``)."""

ELEMENTWISE_OPS = ("add", "mul", "div", "pow", "addu", "mulu", "divu", "powu", "relu", "tanh", "gelu")


def family(op_name: str) -> str:
    """The shape-column family of an ``OPName``."""
    if op_name in ("bmm", "linear"):
        return "matmul"
    if op_name == "conv":
        return "conv"
    return "vector"


@dataclass(frozen=True)
class KernelRows:
    """Rows of one file family: ``shapes[column]`` and the per-row fields as numpy arrays."""

    op: NDArray[np.str_]
    device: NDArray[np.str_]
    split: NDArray[np.str_]
    latency_s: NDArray[np.float64]
    kernel_count: NDArray[np.float64]
    shapes: Mapping[str, NDArray[np.float64]]

    def __len__(self) -> int:
        return len(self.latency_s)

    def select(self, mask: NDArray[np.bool_]) -> KernelRows:
        return KernelRows(
            op=self.op[mask],
            device=self.device[mask],
            split=self.split[mask],
            latency_s=self.latency_s[mask],
            kernel_count=self.kernel_count[mask],
            shapes={name: column[mask] for name, column in self.shapes.items()},
        )


def _read_csv(path: Path) -> list[dict[str, str]]:
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", newline="") as handle:
        return list(csv.DictReader(handle))


def rows_from_records(records: Sequence[Mapping[str, str]], columns: Sequence[str]) -> KernelRows:
    """Arrays from CSV records (every shape column must parse as a number)."""
    return KernelRows(
        op=np.array([r["OPName"] for r in records], dtype=str),
        device=np.array([r["Device"] for r in records], dtype=str),
        split=np.array([r["Split"] for r in records], dtype=str),
        latency_s=np.array([float(r["Latency"]) * 1e-3 for r in records]),
        kernel_count=np.array([float(r.get("Kernel Count") or 1) for r in records]),
        shapes={name: np.array([float(r[name]) for r in records]) for name in columns},
    )


def load(stems: Iterable[str], data_dir: Path = DATA_DIR) -> dict[str, KernelRows]:
    """Rows of the given file stems, grouped by family (``matmul``, ``conv``, ``vector``)."""
    grouped: dict[str, list[dict[str, str]]] = {}
    for stem in stems:
        for record in _read_csv(data_dir / f"{stem}.csv.gz"):
            grouped.setdefault(family(record["OPName"]), []).append(record)
    return {name: rows_from_records(records, SHAPE_COLUMNS[name]) for name, records in grouped.items()}


def load_all(data_dir: Path = DATA_DIR) -> dict[str, KernelRows]:
    """Every shipped row (train and test shapes), grouped by family."""
    return load([*sorted(set(TRAIN_FILES.values())), *TEST_FILES], data_dir)


def device_records(data_dir: Path = DATA_DIR) -> dict[str, dict[str, float]]:
    """The measured devices' records (``devices/*.json``), keyed by their ``Device`` name."""
    records = {}
    for path in sorted((data_dir / "devices").glob("*.json")):
        record = json.loads(path.read_text())
        records[str(record["Device"])] = record
    return records


def compact(source: Path, destination: Path = DATA_DIR) -> list[Path]:
    """Write the reduced copies of ``source``'s kernel files, NVIDIA device records and licence."""
    written = []
    (destination / "devices").mkdir(parents=True, exist_ok=True)
    for stem in (*sorted(set(TRAIN_FILES.values())), *TEST_FILES):
        records = _read_csv(source / "kernels" / f"{stem}.csv.gz")
        columns = [*KEPT_COLUMNS[:3], *SHAPE_COLUMNS[family(records[0]["OPName"])], *KEPT_COLUMNS[3:]]
        target = destination / f"{stem}.csv.gz"
        with gzip.GzipFile(target, "wb", compresslevel=9, mtime=0) as raw, _text(raw) as handle:
            writer = csv.DictWriter(handle, columns, extrasaction="ignore", lineterminator="\n")
            writer.writeheader()
            writer.writerows(records)
        written.append(target)
    for path in sorted((source / "devices").glob("*.json")):
        if "AMD" not in path.name:
            written.append(Path(shutil.copy(path, destination / "devices" / path.name)))
    written.append(Path(shutil.copy(source / "LICENSE.NeuSight", destination / "LICENSE.NeuSight")))
    return written


def _text(raw: gzip.GzipFile) -> TextIO:
    return io.TextIOWrapper(raw, encoding="utf-8", newline="")


def main(argv: Sequence[str] | None = None) -> int:
    arguments = list(sys.argv[1:] if argv is None else argv)
    if len(arguments) != 1:
        print("usage: python -m dojo_validation.kernels.data SOURCE_DIR", file=sys.stderr)
        return 2
    for path in compact(Path(arguments[0])):
        print(path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

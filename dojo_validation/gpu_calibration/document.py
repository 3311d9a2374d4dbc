"""The calibration file: one JSON document, kernels in the shipped measurements' row format.

``kernels`` holds one record per timed kernel with the columns of ``dojo_validation/data/gpu_kernels``
(``OPName``, ``Latency`` in ms, ``Device``, the shape columns, ``Kernel Count``, ``Split``) plus
``Median`` (ms); ``device`` the GPU's properties in the device records' names (``Device``,
``Num_Sm``, ``L2Cache`` in MB, ``Dev_Mem`` in GB) with its compute capability and the library
versions; ``steps`` the whole training steps (network, size, batch, precision, step times in
seconds); ``skipped`` what could not run (a shape too large for the GPU's memory, a failed step),
each with its reason. Numbers are SI except where the shipped format says ms.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from dojo_validation.kernels import data

FORMAT = "pytest-dojo/gpu-calibration/1"


class CalibrationFileError(ValueError):
    """A calibration file that cannot be read: one line for the user."""


def kernel_record(
    op: str, shape: Mapping[str, int], split: str, device: str, latency_ms: float, median_ms: float
) -> dict[str, Any]:
    """One row of ``kernels``, in the shipped files' columns."""
    return {
        "OPName": op,
        "Latency": latency_ms,
        "Median": median_ms,
        "Device": device,
        **shape,
        "Kernel Count": "",
        "Split": split,
    }


def new_document(*, device: Mapping[str, Any], command: str, timing: str, measured_utc: str) -> dict[str, Any]:
    return {
        "format": FORMAT,
        "command": command,
        "measured_utc": measured_utc,
        "timing": timing,
        "device": dict(device),
        "kernels": [],
        "steps": [],
        "skipped": [],
    }


def write(path: Path, document: Mapping[str, Any]) -> None:
    """Write ``document`` whole (a temporary file renamed, so a reader never sees half of it)."""
    temporary = path.with_name(f".{path.name}.tmp")
    temporary.write_text(json.dumps(document, indent=1) + "\n", encoding="utf-8")
    temporary.replace(path)


def read(path: Path) -> dict[str, Any]:
    """A calibration document; anything else is a :class:`CalibrationFileError`."""
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except OSError as error:
        raise CalibrationFileError(f"cannot read {path}: {error.strerror}") from None
    except ValueError as error:
        raise CalibrationFileError(f"{path} is not JSON: {error}") from None
    if not isinstance(document, dict) or document.get("format") != FORMAT:
        raise CalibrationFileError(
            f"{path} is not a GPU calibration file ({FORMAT}); write one with calibrate-gpu measure"
        )
    if not document.get("kernels"):
        raise CalibrationFileError(f"{path} holds no kernel rows")
    return document


def kernel_rows(records: Sequence[Mapping[str, Any]]) -> dict[str, data.KernelRows]:
    """The records as :class:`~dojo_validation.kernels.data.KernelRows` by family, as the shipped
    files load; a record without its shape columns is a :class:`CalibrationFileError`."""
    grouped: dict[str, list[dict[str, str]]] = {}
    for number, record in enumerate(records, start=1):
        op = str(record.get("OPName", ""))
        if op not in data.TRAIN_FILES:
            raise CalibrationFileError(f"kernel row {number}: unknown OPName {op!r}")
        columns = data.SHAPE_COLUMNS[data.family(op)]
        missing = [name for name in (*columns, "Latency", "Split") if name not in record]
        if missing:
            raise CalibrationFileError(f"kernel row {number} ({op}): missing {', '.join(missing)}")
        grouped.setdefault(data.family(op), []).append({key: str(value) for key, value in record.items()})
    try:
        return {name: data.rows_from_records(rows, data.SHAPE_COLUMNS[name]) for name, rows in grouped.items()}
    except ValueError as error:
        raise CalibrationFileError(f"a kernel row does not parse: {error}") from None

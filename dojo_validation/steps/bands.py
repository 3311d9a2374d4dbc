"""The per-device error bands a simulated step's report states (:mod:`hwmodel.step.confidence`).

``pytest-dojo validate steps --write-bands`` predicts every label and records, per GPU preset and
label kind (``train``, ``inf``, ``fusion`` for the compiled inference labels, or a 4-GPU plan),
how many labels there are and their median and largest |error|, in
``hwmodel/step/step_bands.json``. The file is written by that command only.
"""

from __future__ import annotations

import datetime
import json
import statistics
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from dojo_validation.steps.predict import PRECISION, StepPrediction
from hwmodel.step.confidence import BANDS_FILE


def bands(predictions: Sequence[StepPrediction]) -> dict[str, dict[str, dict[str, float | int]]]:
    """Preset -> kind -> ``{labels, median, worst}`` (fractions), sorted by name."""
    grouped: dict[tuple[str, str], list[float]] = {}
    for prediction in predictions:
        key = (prediction.label.preset, prediction.label.group)
        grouped.setdefault(key, []).append(abs(prediction.error))
    result: dict[str, dict[str, dict[str, float | int]]] = {}
    for (preset, kind), errors in sorted(grouped.items()):
        result.setdefault(preset, {})[kind] = {
            "labels": len(errors),
            "median": round(statistics.median(errors), 4),
            "worst": round(max(errors), 4),
        }
    return result


def write_bands(predictions: Sequence[StepPrediction], path: Path = BANDS_FILE) -> Path:
    """Write :func:`bands` with what they are and how they were made."""
    document: dict[str, Any] = {
        "what": f"|predicted / measured - 1| of the measured whole steps per preset and kind, at {PRECISION}",
        "command": "pytest-dojo validate steps --write-bands",
        "date": datetime.datetime.now(datetime.UTC).date().isoformat(),
        "devices": bands(predictions),
    }
    path.write_text(json.dumps(document, indent=1) + "\n", encoding="utf-8")
    return path

"""How far a simulated step may be off, from the validation of the chip it runs on.

* A GPU preset with measured whole steps (``pytest-dojo validate steps``): the median and largest
  |error| of that device's labels of the step's kind (training, inference, or the compiled
  inference labels for a compiled step), as ``validate steps --write-bands`` records them in
  :data:`BANDS_FILE` (never edited by hand).
* A GPU preset without step labels: the kernel models' leave-one-device-out error per op class
  (``hwmodel/ops/kernels/lodo_errors.json``): how far they miss on a GPU they were not fitted on.
* A D1 (no D1 kernel or step was ever measured): the same leave-one-device-out errors, as a proxy
  of how far the model misses on a chip it was not fitted on, and labelled so.
* A chip costed by an efficiency row (the host): not in the step validation; no band.

Every measured figure is IEEE FP32: a ``bf16`` or ``tf32`` step says its precision is not
validated. A compiled step says which validation backs its fusion (the ``torch.compile`` labels).
"""

from __future__ import annotations

import json
import statistics
from functools import cache
from pathlib import Path
from typing import Any

from hwmodel.ops.cost_model import lodo_errors, on_nodes
from hwmodel.spec.chip import ChipSpec
from hwmodel.step.sections import Confidence

BANDS_FILE = Path(__file__).with_name("step_bands.json")
"""Per GPU preset and label kind, the whole-step errors of ``pytest-dojo validate steps``."""
COMPILED_KIND = "fusion"
"""The kind of the labels measured under ``torch.compile``."""


@cache
def step_bands(path: Path = BANDS_FILE) -> dict[str, Any]:
    """The recorded bands: ``devices`` (preset -> kind -> ``{labels, median, worst}``) and how
    they were made; no devices where the file was not written yet (the kernel bands apply)."""
    if not path.exists():
        return {"devices": {}}
    document: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return document


def _precision_notes(compute_dtype: str, tf32: bool) -> tuple[str, ...]:
    if tf32:
        return ("all measured data is FP32: TF32 matmuls and convolutions are not validated",)
    if compute_dtype != "float32":
        return (f"all measured data is FP32: {compute_dtype} compute is not validated",)
    return ()


def _compiled_note(devices: dict[str, Any]) -> str:
    backing = [(preset, kinds[COMPILED_KIND]) for preset, kinds in devices.items() if COMPILED_KIND in kinds]
    if not backing:
        return "compiled execution: no compiled step validated"
    text = ", ".join(
        f"{preset} inference ({entry['labels']} labels, median {entry['median']:.1%}, worst {entry['worst']:.1%})"
        for preset, entry in backing
    )
    return f"compiled execution validated on the torch.compile labels of {text}"


@cache
def step_confidence(chip: ChipSpec, compute_dtype: str, tf32: bool, execution: str, kind: str) -> Confidence:
    """The band of a step of ``kind`` (``train`` or ``inf``) on ``chip`` (see the module docstring)."""
    notes = _precision_notes(compute_dtype, tf32 and chip.has_tf32_matrix)
    if chip.op_cost_model == "efficiency":
        return Confidence(band=None, source="none", basis=f"{chip.name}: not in the step validation", notes=notes)
    devices: dict[str, Any] = step_bands()["devices"]
    if execution == "compiled":
        notes = (*notes, _compiled_note(devices))
    measured = devices.get(chip.name)
    if measured and not on_nodes(chip):
        chosen = COMPILED_KIND if execution == "compiled" and COMPILED_KIND in measured else kind
        entries = [measured[chosen]] if chosen in measured else list(measured.values())
        worst = max(entry["worst"] for entry in entries)
        median = statistics.median(entry["median"] for entry in entries)
        labels = sum(entry["labels"] for entry in entries)
        what = chosen if chosen in measured else "+".join(sorted(measured))
        basis = f"{chip.name} {what}: {labels} measured steps, median {median:.1%}, worst {worst:.1%}"
        return Confidence(band=worst, median=median, source="step validation", basis=basis, notes=notes)
    errors = {str(name): float(value) for name, value in lodo_errors()["class_mean_error"].items()}
    worst_class = max(errors, key=errors.__getitem__)
    median = statistics.median(errors.values())
    basis = (
        f"kernel models' mean error per op class on GPUs left out of the fit: median {median:.1%}, "
        f"worst {errors[worst_class]:.1%} ({worst_class})"
    )
    if on_nodes(chip):
        source = "GPU leave-one-device-out proxy"
        notes = (f"no {chip.name} kernel or step was measured: the band is a proxy", *notes)
    else:
        source = "kernel leave-one-device-out"
        notes = (f"no measured {chip.name} step: kernel-level band", *notes)
    return Confidence(band=errors[worst_class], median=median, source=source, basis=basis, notes=notes)

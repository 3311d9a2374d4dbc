"""Re-fit the kernel models on one GPU's calibration file; validate on the rows it was not fitted on.

The device is a preset (``--chip``: its SMs, rates, memory bandwidth and caches, as the kernel
models read them at FP32); the file's rows are that GPU's. The parameters are fitted as ``pytest-dojo
validate kernels`` fits them (:func:`dojo_validation.kernels.fit.fit`, group by group, on the
``train-shapes`` rows), starting from the shipped ones. The validation table scores the
``test-shapes`` rows, which the fit never saw, with the shipped parameters, the re-fitted ones and
a plain roofline; the measured whole steps are predicted with both parameter sets.

Written: ``NAME.kernel-parameters.json`` (the parameters with where they came from, in the format of
``hwmodel/ops/kernels/parameters.json``) and ``NAME.toml``, the preset ``--chip`` names renamed to
``NAME`` with ``kernel_parameters_file`` pointing at them, for ``--dojo-chip=NAME.toml``.
"""

from __future__ import annotations

import dataclasses
import json
import re
import tomllib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

from dojo_validation.gpu_calibration.document import kernel_rows
from dojo_validation.gpu_calibration.shapes import TEST, TRAIN
from dojo_validation.kernels import data, fit, lodo
from hwmodel.ops.kernels.device import KernelDevice
from hwmodel.ops.kernels.parameters import PARAMETER_NAMES, KernelParameters, load_parameters
from hwmodel.spec.presets import Preset

Progress = Callable[[str], None]


@dataclass(frozen=True, kw_only=True)
class ClassScore:
    """Mean |predicted / measured - 1| of one op class on the held-out rows."""

    op_class: str
    rows: int
    shipped: float
    fitted: float
    roofline: float


def relabelled(rows: Mapping[str, data.KernelRows], device: str) -> dict[str, data.KernelRows]:
    """``rows`` as rows of ``device`` (the preset's kernel device stands for the measured GPU)."""
    return {name: dataclasses.replace(item, device=np.full(len(item), device)) for name, item in rows.items()}


def fit_rows(
    rows: Mapping[str, data.KernelRows],
    device: KernelDevice,
    *,
    per_pair: int | None,
    iterations: int,
    progress: Progress,
) -> KernelParameters:
    """The parameters re-fitted on ``rows``' train shapes, from the shipped ones."""
    return fit.fit(
        rows,
        {device.name: device},
        per_pair=per_pair,
        iterations=iterations,
        start=load_parameters(),
        progress=progress,
    )


def scores(rows: Mapping[str, data.KernelRows], device: KernelDevice, fitted: KernelParameters) -> list[ClassScore]:
    """Per op class, the held-out rows' mean error with the shipped and the re-fitted parameters."""
    result = []
    for name, ops in lodo.CLASSES.items():
        family = data.family(ops[0])
        if family not in rows:
            continue
        shipped, roofline = lodo.score(rows[family], ops, device, load_parameters(), TEST)
        refit, _ = lodo.score(rows[family], ops, device, fitted, TEST)
        if len(refit):
            result.append(
                ClassScore(
                    op_class=name,
                    rows=len(refit),
                    shipped=float(shipped.mean()),
                    fitted=float(refit.mean()),
                    roofline=float(roofline.mean()),
                )
            )
    return result


def preset_text(preset: Preset, chip: str) -> str:
    """The data file of ``preset``: the file ``chip`` names, or the shipped file that defines it."""
    if chip.endswith(".toml"):
        return Path(chip).read_text(encoding="utf-8")
    directory = resources.files("hwmodel.spec").joinpath("presets")
    for entry in sorted(directory.iterdir(), key=lambda item: item.name):
        if entry.name.endswith(".toml"):
            text = entry.read_text(encoding="utf-8")
            if tomllib.loads(text).get("chip", {}).get("name") == preset.chip.name:
                return text
    raise FileNotFoundError(f"no preset file defines chip {preset.chip.name!r}")


def calibrated_preset(text: str, old: str, new: str, parameters_file: str, source: str) -> str:
    """``text`` (a preset file) renamed from ``old`` to ``new``, without aliases, with its kernel
    parameters read from ``parameters_file``."""
    renamed, count = re.subn(rf'^name = "{re.escape(old)}"$', f'name = "{new}"', text, count=1, flags=re.MULTILINE)
    if count != 1:
        raise ValueError(f"the preset file has no line name = {old!r}")
    renamed = re.sub(r"^aliases = \[.*\]\n", "", renamed, flags=re.MULTILINE)
    line = f"kernel_parameters_file = {{ value = {json.dumps(parameters_file)}, source = {json.dumps(source)} }}\n"
    position = renamed.index(f'name = "{new}"\n') + len(f'name = "{new}"\n')
    return renamed[:position] + line + renamed[position:]


def parameters_document(
    fitted: KernelParameters, provenance: Mapping[str, Any], scored: Sequence[ClassScore]
) -> dict[str, Any]:
    """The parameters file: the format of the shipped ``parameters.json``, with the held-out errors."""
    return {
        "parameters": {name: getattr(fitted, name) for name in PARAMETER_NAMES},
        "provenance": dict(provenance),
        "held_out_class_mean_error": {item.op_class: item.fitted for item in scored},
    }


def provenance(
    document: Mapping[str, Any], source: Path, chip: str, rows: Mapping[str, data.KernelRows], per_pair: int | None
) -> dict[str, Any]:
    device = document.get("device", {})
    train_rows = sum(int(np.sum(item.split == TRAIN)) for item in rows.values())
    return {
        "data": str(source),
        "device": device.get("Device"),
        "measured_utc": document.get("measured_utc"),
        "measured_with": f"torch {device.get('torch')}, CUDA {device.get('cuda')}",
        "timing": document.get("timing"),
        "rows": f"{train_rows} train-shape rows (at most {per_pair} per op), held out: the test-shape rows",
        "device_figures": f"preset {chip} at FP32",
        "objective": "mean |predicted / measured - 1| per op, averaged over the ops",
        "command": f"pytest-dojo calibrate-gpu fit {source.name} --chip {chip}",
        "date": datetime.now(UTC).strftime("%Y-%m-%d"),
        "units": "SI: seconds, fractions, FLOP per byte, joules per FLOP per nm",
    }


def score_lines(scored: Sequence[ClassScore]) -> list[str]:
    """The validation table of the held-out kernel rows."""
    from pytest_dojo.cli.common import text_table

    columns = ("class", "held-out rows", "shipped parameters", "re-fitted", "roofline")
    rows = [
        (item.op_class, str(item.rows), f"{item.shipped:.1%}", f"{item.fitted:.1%}", f"{item.roofline:.1%}")
        for item in scored
    ]
    return text_table(columns, rows)


def step_lines(steps: Sequence[Mapping[str, Any]], shipped: Preset, fitted: Preset) -> list[str]:
    """Each measured whole step against the preset with the shipped and the re-fitted parameters."""
    from hwmodel import System, parse_mesh, simulate
    from hwmodel.spec.precision import FP32
    from pytest_dojo.cli.common import text_table

    rows = []
    for step in steps:
        workload = _captured(step)
        measured = float(step["median_step_s"])
        cells = [f"{step['network']} {step['size']} b{step['batch_size']}", f"{measured * 1e3:.2f}"]
        for preset in (shipped, fitted):
            system = System(chip=preset.chip, fabric=preset.fabric, mesh=parse_mesh("1x1"))
            predicted = simulate(workload, system, precision=FP32).step_time_s
            cells += [f"{predicted * 1e3:.2f}", f"{predicted / measured - 1:+.1%}"]
        rows.append(cells)
    if not rows:
        return []
    columns = ("step (FP32)", "measured ms", "shipped ms", "err", "re-fitted ms", "err")
    return text_table(columns, rows)


def _captured(step: Mapping[str, Any]) -> Any:
    """The captured workload of a measured step: a suite network, or a Hugging Face model's forward
    and backward as the step labels capture it."""
    from dojo_validation import host

    if step.get("size") != "transformers":
        return host.capture(str(step["network"]), str(step["size"]), int(step["batch_size"]))
    import torch

    from dojo_validation.steps.build import build_model, measured_loss
    from pytest_dojo.capture import capture_train_step

    network = build_model(str(step["network"]), "train")
    input_ids = torch.ones(int(step["batch_size"]), int(step["seqlen"]), dtype=torch.int64, device="meta")
    return capture_train_step(
        network,
        (input_ids,),
        targets=input_ids,
        loss_fn=measured_loss,
        name=str(step["network"]),
        mode="forward_backward",
    )


def calibrate(
    source: Path,
    document: Mapping[str, Any],
    chip: str,
    name: str,
    out_dir: Path,
    *,
    per_pair: int | None = 400,
    iterations: int = 150,
    progress: Progress,
    say: Callable[[str], None],
) -> tuple[Path, Path]:
    """Fit, write the parameters file and the preset, print the validation tables; the two paths."""
    from hwmodel.ops.kernels.from_chip import kernel_device_from_chip
    from hwmodel.spec.precision import FP32
    from hwmodel.spec.presets import preset_by_name_or_file, register_preset_file

    preset = preset_by_name_or_file(chip, Path.cwd())
    device = kernel_device_from_chip(preset.chip, FP32)
    rows = relabelled(kernel_rows(document["kernels"]), device.name)
    progress(f"fitting the kernel models on {document.get('device', {}).get('Device')} ({source.name}), as {chip}")
    fitted = fit_rows(rows, device, per_pair=per_pair, iterations=iterations, progress=progress)
    scored = scores(rows, device, fitted)
    out_dir.mkdir(parents=True, exist_ok=True)
    parameters_path = out_dir / f"{name}.kernel-parameters.json"
    details = provenance(document, source, chip, rows, per_pair)
    parameters_path.write_text(
        json.dumps(parameters_document(fitted, details, scored), indent=2) + "\n", encoding="utf-8"
    )
    source_line = (
        f"fitted on {details['device']} kernels measured {details['measured_utc']} ({source.name}) by calibrate-gpu fit"
    )
    preset_path = out_dir / f"{name}.toml"
    preset_path.write_text(
        calibrated_preset(preset_text(preset, chip), preset.chip.name, name, parameters_path.name, source_line),
        encoding="utf-8",
    )
    say(f"{details['device']} as {chip}: held-out kernel rows (test shapes), mean |predicted / measured - 1|")
    for line in score_lines(scored):
        say(line)
    for line in step_lines(document.get("steps", []), preset, register_preset_file(preset_path.resolve())):
        say(line)
    say(f"wrote {parameters_path} and {preset_path} (use --dojo-chip={preset_path})")
    return parameters_path, preset_path

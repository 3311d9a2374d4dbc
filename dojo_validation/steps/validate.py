"""``pytest-dojo validate steps``: every measured transformer step against its GPU preset.

Builds and captures each labelled model as it was measured (Hugging Face ``transformers``, the
``[validation]`` extra), predicts it with the device's preset at ``fp32`` and prints the table:
measured and predicted milliseconds, the error, the op class the error comes from (from the
per-layer labels), NeuSight's published error on the same label, this roofline's error and
NeuSight's roofline baseline's; then the median and worst error per device and group, and the
targets. Progress goes to stderr. Nothing is fitted on these labels.

``--memory`` prints instead which attempted configurations fitted each GPU's memory, against the
memory model (:mod:`dojo_validation.steps.memory_fit`).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from dojo_validation.steps.bands import write_bands
from dojo_validation.steps.build import ValidationSetupError, capture_label, transformers_module
from dojo_validation.steps.labels import StepLabel, load_labels, published_errors, published_for
from dojo_validation.steps.memory_fit import attempted_steps, format_outcomes, memory_outcomes
from dojo_validation.steps.predict import StepPrediction, predict_label
from dojo_validation.steps.table import format_summaries, format_table, row, summaries, target_lines

NOTES = (
    "error = predicted / measured - 1; NeuSight: its published |error| on the label; roofline: "
    "max(FLOPs / FP32 peak, bytes / bandwidth) per op, no launch; top error class: predicted minus "
    "measured ms of the class farthest off (per-layer labels; unattributed: step time no node explains)"
)


def select(
    labels: Sequence[StepLabel], devices: Sequence[str], groups: Sequence[str], models: Sequence[str]
) -> list[StepLabel]:
    """The labels whose device (name or short name), group and model match the filters given."""

    def matches(label: StepLabel) -> bool:
        device_ok = not devices or any(d.lower() in (label.device.lower(), label.short_device.lower()) for d in devices)
        return device_ok and (not groups or label.group in groups) and (not models or label.model in models)

    return [label for label in labels if matches(label)]


def predict_all(labels: Sequence[StepLabel], with_layers: bool = True, progress: bool = True) -> list[StepPrediction]:
    """Every label's prediction, in order; one progress line per label on stderr."""
    table = published_errors()
    predictions = []
    for index, label in enumerate(labels, 1):
        start = time.perf_counter()
        prediction = predict_label(label, published_for(label, table), with_layers=with_layers)
        predictions.append(prediction)
        if progress:
            print(
                f"[{index}/{len(labels)}] {label.name} on {label.short_device}: measured {label.measured_ms:,.1f} ms,"
                f" predicted {prediction.predicted_ms:,.1f} ms ({prediction.error:+.1%}),"
                f" {time.perf_counter() - start:.1f} s",
                file=sys.stderr,
                flush=True,
            )
    return predictions


def report(predictions: Sequence[StepPrediction]) -> str:
    """The table, the summaries and the targets, as printed."""
    parts = [
        format_table([row(p) for p in predictions]),
        "",
        format_summaries(summaries(predictions)),
        "",
        *target_lines(predictions),
        "",
        NOTES,
    ]
    return "\n".join(parts)


def as_json(predictions: Sequence[StepPrediction]) -> list[dict[str, object]]:
    """The predictions as plain data (``--json``)."""
    return [
        {
            "device": p.label.device,
            "label": p.label.name,
            "group": p.label.group,
            "measured_ms": p.label.measured_ms,
            "predicted_ms": p.predicted_ms,
            "error": p.error,
            "roofline_ms": p.roofline_ms,
            "forward_ms": p.forward_ms,
            "backward_ms": p.backward_ms,
            "neusight_error": p.published.neusight,
            "delta_ms_by_class": None if p.attribution is None else dict(p.attribution.delta_ms),
        }
        for p in predictions
    ]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", action="append", default=[], help="a device (A100-80, V100, ...); repeatable")
    parser.add_argument(
        "--group", action="append", default=[], help="train, inf, fusion, dp4, tp4 or pp4_1; repeatable"
    )
    parser.add_argument("--model", action="append", default=[], help="bert_large, gpt2_large, ...; repeatable")
    parser.add_argument("--no-layers", action="store_true", help="skip the per-layer attribution")
    parser.add_argument("--json", type=Path, help="also write the predictions to this JSON file")
    parser.add_argument(
        "--write-bands", action="store_true", help="record each device's error band (hwmodel/step/step_bands.json)"
    )
    parser.add_argument(
        "--memory", action="store_true", help="which attempted steps fitted each GPU's memory, against the model"
    )
    arguments = parser.parse_args(argv)
    if arguments.write_bands and (arguments.device or arguments.group or arguments.model):
        print(
            "pytest-dojo validate steps: --write-bands needs every label (no --device, --group or --model)",
            file=sys.stderr,
        )
        return 2
    filters = (arguments.device, arguments.group, arguments.model)
    every = load_labels()
    labels = select(every, *filters)
    if not labels:
        print("no label matches the filters given", file=sys.stderr)
        return 2
    try:
        transformers_module()
    except ValidationSetupError as error:
        print(f"pytest-dojo validate steps: {error}", file=sys.stderr)
        return 2
    if arguments.memory:  # every label tells what ran; the filters choose the attempted steps shown
        steps = attempted_steps(every)
        chosen = set(select([label for label, _ in steps], *filters))
        shown = [step for step in steps if step[0] in chosen]
        if not shown:
            print("no attempted single-GPU step matches the filters given", file=sys.stderr)
            return 2
        print(format_outcomes(memory_outcomes(shown, capture_label, progress=True)))
        return 0
    predictions = predict_all(labels, with_layers=not arguments.no_layers)
    print(report(predictions))
    if arguments.json is not None:
        arguments.json.write_text(json.dumps(as_json(predictions), indent=1) + "\n")
    if arguments.write_bands:
        print(f"wrote {write_bands(predictions)}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""The validation table, its summaries per device and group, and the targets.

Targets: single-GPU training labels median |error| <= 8% and worst <= 20%; inference labels median
<= 10%; each 4-GPU run within 20%; each compiled (``fusion``) inference label within 15%.
"""

from __future__ import annotations

import statistics
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from dojo_validation.steps.predict import StepPrediction

TRAIN_MEDIAN = 0.08
TRAIN_WORST = 0.20
INFERENCE_MEDIAN = 0.10
DISTRIBUTED_WORST = 0.20
COMPILED_WORST = 0.15

HEADER = (
    "label",
    "device",
    "mode",
    "measured ms",
    "predicted ms",
    "error",
    "top error class (ms)",
    "NeuSight",
    "roofline",
    "NeuSight roofline",
)


def _percent(value: float | None, signed: bool = True) -> str:
    if value is None:
        return "-"
    return f"{value:+.1%}" if signed else f"{value:.1%}"


def row(prediction: StepPrediction) -> tuple[str, ...]:
    """One label's cells (see :data:`HEADER`)."""
    label = prediction.label
    top = "-"
    if prediction.attribution is not None:
        name, delta = prediction.attribution.top
        top = f"{name} {delta:+.1f}"
    return (
        f"{label.model} s{label.seqlen} b{label.batch}",
        label.short_device,
        label.group,
        f"{label.measured_ms:,.1f}",
        f"{prediction.predicted_ms:,.1f}",
        _percent(prediction.error),
        top,
        _percent(prediction.published.neusight, signed=False),
        _percent(prediction.roofline_error),
        _percent(prediction.published.roofline, signed=False),
    )


def format_table(rows: Sequence[Sequence[str]], header: Sequence[str] = HEADER) -> str:
    """Plain-text columns: the first three left-aligned, the rest right-aligned."""
    widths = [max(len(str(cells[i])) for cells in [header, *rows]) for i in range(len(header))]

    def line(cells: Sequence[str]) -> str:
        parts = [
            str(c).ljust(w) if i < 3 else str(c).rjust(w) for i, (c, w) in enumerate(zip(cells, widths, strict=True))
        ]
        return "  ".join(parts).rstrip()

    rule = "  ".join("-" * width for width in widths)
    return "\n".join([line(header), rule, *(line(cells) for cells in rows)])


@dataclass(frozen=True)
class Summary:
    """Median and worst |error| of a set of labels, with NeuSight's published figures on them."""

    name: str
    count: int
    median: float
    worst: float
    neusight_median: float | None
    neusight_worst: float | None


def summarize(name: str, predictions: Iterable[StepPrediction]) -> Summary:
    """The :class:`Summary` of ``predictions`` (at least one)."""
    chosen = list(predictions)
    errors = [abs(p.error) for p in chosen]
    published = [p.published.neusight for p in chosen if p.published.neusight is not None]
    return Summary(
        name=name,
        count=len(chosen),
        median=statistics.median(errors),
        worst=max(errors),
        neusight_median=statistics.median(published) if published else None,
        neusight_worst=max(published) if published else None,
    )


def summaries(predictions: Sequence[StepPrediction]) -> list[Summary]:
    """Per device and group, then per group over devices (``train``, ``inf``, each 4-GPU plan)."""
    keys = sorted({(p.label.short_device, p.label.group) for p in predictions})
    result = [
        summarize(
            f"{device} {group}", (p for p in predictions if (p.label.short_device, p.label.group) == (device, group))
        )
        for device, group in keys
    ]
    for group in sorted({p.label.group for p in predictions}):
        result.append(summarize(f"all {group}", (p for p in predictions if p.label.group == group)))
    return result


def format_summaries(items: Sequence[Summary]) -> str:
    header = ("labels", "n", "median |error|", "worst", "NeuSight median", "NeuSight worst")
    rows = [
        (
            item.name,
            str(item.count),
            f"{item.median:.1%}",
            f"{item.worst:.1%}",
            _percent(item.neusight_median, signed=False),
            _percent(item.neusight_worst, signed=False),
        )
        for item in items
    ]
    return format_table(rows, header)


def target_lines(predictions: Sequence[StepPrediction]) -> list[str]:
    """One line per target: the figure, the target and whether it is met."""
    lines = []
    train = [p for p in predictions if p.label.group == "train"]
    inference = [p for p in predictions if p.label.group == "inf"]
    if train:
        summary = summarize("train", train)
        lines.append(_target("single-GPU training, median |error|", summary.median, TRAIN_MEDIAN))
        lines.append(_target("single-GPU training, worst |error|", summary.worst, TRAIN_WORST))
    if inference:
        lines.append(_target("inference, median |error|", summarize("inf", inference).median, INFERENCE_MEDIAN))
    for p in predictions:
        if p.label.distributed:
            lines.append(_target(f"4 GPUs {p.label.parallel}, |error|", abs(p.error), DISTRIBUTED_WORST))
        elif p.label.execution == "compiled":
            what = f"compiled {p.label.model} s{p.label.seqlen} b{p.label.batch}, |error|"
            lines.append(_target(what, abs(p.error), COMPILED_WORST))
    return lines


def _target(what: str, value: float, target: float) -> str:
    verdict = "met" if value <= target else "NOT met"
    return f"{what}: {value:.1%} (target <= {target:.0%}): {verdict}"

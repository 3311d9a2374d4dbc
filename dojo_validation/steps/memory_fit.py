"""Which measured configurations fitted their GPU's memory, against the memory model.

NeuSight's label script (``scripts/asplos/run_label_nvidia.py`` in its repository) runs the same
configurations on every NVIDIA GPU (:data:`ATTEMPTED`), and its ``measure_e2e`` returns nothing
when CUDA runs out of memory, so such a step leaves no label. Where a GPU has single-GPU labels of a
mode, every attempted configuration of that mode without a label is read as one that did not fit.
A GPU without labels of a mode was not run in that mode (P100, T4 and P4 have no training label,
not even BERT-large at batch 2, which needs 6 GiB).

The memory model's answer is the step's working set at ``fp32`` (weights, gradients, optimizer
state, buffers and the activation peak, :func:`hwmodel.step.memory.held_bytes`) against the preset's
memory. It leaves out what the runtime keeps for itself (the CUDA context, cuBLAS workspaces) and
the caching allocator's rounding, so a step close to the capacity may not fit where the model says
it does; the reverse, a step the model rejects that ran, would be a model error.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

from dojo_validation.steps.labels import StepLabel
from hwmodel import Workload, get_preset
from hwmodel.spec.precision import parse_precision
from hwmodel.step.memory import held_bytes

ATTEMPTED: dict[str, tuple[tuple[str, int, int], ...]] = {
    "inf": (
        ("bert_large", 512, 8),
        ("bert_large", 512, 16),
        ("gpt2_large", 1024, 4),
        ("gpt2_large", 1024, 8),
        ("gpt3_xl", 2048, 2),
        ("gpt3_xl", 2048, 8),
        ("opt_13", 2048, 2),
        ("opt_13", 2048, 8),
        ("gpt3_27", 2048, 2),
        ("gpt3_27", 2048, 8),
    ),
    "train": (
        ("bert_large", 512, 2),
        ("bert_large", 512, 8),
        ("gpt2_large", 1024, 1),
        ("gpt2_large", 1024, 4),
        ("gpt3_xl", 2048, 1),
        ("gpt3_xl", 2048, 2),
        ("opt_13", 2048, 1),
        ("opt_13", 2048, 2),
        ("gpt3_27", 2048, 1),
        ("gpt3_27", 2048, 2),
    ),
}
"""``(model, sequence, batch)`` per mode, as NeuSight's label script runs them on every NVIDIA GPU
(its Switch Transformers runs left out, as the labels are)."""

NEAR_CAPACITY = 0.8
"""A step the model fits but that did not run needs at least this fraction of the GPU's memory
(the runtime's own reservations and the allocator's rounding; the slow test holds it)."""


@dataclass(frozen=True, kw_only=True)
class MemoryOutcome:
    """One attempted configuration on one GPU: whether it ran, and what the model says it needs."""

    label: StepLabel
    ran: bool
    needed_bytes: float
    capacity_bytes: float

    @property
    def fits(self) -> bool:
        """The memory model's answer: the working set within the GPU's memory."""
        return self.needed_bytes <= self.capacity_bytes

    @property
    def share(self) -> float:
        """The working set as a fraction of the GPU's memory."""
        return self.needed_bytes / self.capacity_bytes


def attempted_steps(labels: Iterable[StepLabel]) -> list[tuple[StepLabel, bool]]:
    """Every attempted configuration on each GPU with single-GPU labels of its mode, as a label
    (the measured times of a configuration that did not run are NaN) and whether it ran."""
    single = [label for label in labels if label.parallel == "single"]
    ran = {(label.device, label.mode, label.model, label.seqlen, label.batch): label for label in single}
    layers = {label.model: label.num_layers for label in single}
    steps = []
    for device, mode in sorted({(label.device, label.mode) for label in single}):
        for model, seqlen, batch in ATTEMPTED[mode]:
            label = ran.get((device, mode, model, seqlen, batch))
            if label is None:
                nan = math.nan
                label = StepLabel(
                    device=device,
                    model=model,
                    mode=mode,
                    seqlen=seqlen,
                    batch=batch,
                    parallel="single",
                    num_layers=layers[model],
                    measured_ms=nan,
                    forward_ms=nan,
                    backward_ms=nan,
                )
                steps.append((label, False))
            else:
                steps.append((label, True))
    return steps


def memory_outcomes(
    steps: Sequence[tuple[StepLabel, bool]], capture: Callable[[StepLabel], Workload], progress: bool = False
) -> list[MemoryOutcome]:
    """Each attempted step (:func:`attempted_steps`) with its working set at ``fp32`` on its GPU
    (with ``progress``, a line per step on standard error)."""
    precision = parse_precision("fp32")
    outcomes = []
    for index, (label, ran) in enumerate(steps, 1):
        chip = get_preset(label.preset).chip
        needed = sum(held_bytes(capture(label), chip, precision).values())
        capacity = chip.local_memory_bytes
        outcomes.append(MemoryOutcome(label=label, ran=ran, needed_bytes=needed, capacity_bytes=capacity))
        if progress:
            where = f"{label.name} on {label.short_device}"
            print(f"[{index}/{len(steps)}] {where}: {needed / 2**30:.1f} GiB", file=sys.stderr)
    return outcomes


def format_outcomes(outcomes: Sequence[MemoryOutcome]) -> str:
    """The table: per attempted step, whether it ran and the model's working set, then the tally."""
    lines = [
        f"{'step':<24}{'device':<10}{'ran':<6}{'needs GiB':>10}{'of GiB':>8}{'share':>7}  model",
        "-" * 72,
    ]
    for outcome in outcomes:
        label = outcome.label
        verdict = "fits" if outcome.fits else "does not fit"
        lines.append(
            f"{f'{label.model} {label.mode} b{label.batch}':<24}{label.short_device:<10}"
            f"{'yes' if outcome.ran else 'no':<6}{outcome.needed_bytes / 2**30:>10.1f}"
            f"{outcome.capacity_bytes / 2**30:>8.0f}{outcome.share:>7.0%}  {verdict}"
        )
    agree = sum(outcome.ran == outcome.fits for outcome in outcomes)
    rejected = [o for o in outcomes if o.ran and not o.fits]
    missed = [o for o in outcomes if not o.ran and o.fits]
    near = f" (at {min(o.share for o in missed):.0%} to {max(o.share for o in missed):.0%} of memory)" if missed else ""
    lines += [
        "",
        f"the memory model agrees on {agree} of {len(outcomes)} attempted steps; "
        f"it rejects {len(rejected)} that ran; it fits {len(missed)} that did not run{near}",
    ]
    return "\n".join(lines)

"""Which op class an end-to-end error comes from, from the per-layer labels.

A per-layer label times every torch.fx node of the model traced with one transformer layer
(embeddings, one layer, the head), each node alone on the GPU, forward and backward. The measured
step is then about ``outer nodes + num_layers x layer nodes``, class by class; the prediction's
ops are put in the same classes (:func:`captured_classes`), and the class whose predicted time is
farthest from its measured time is the one the error comes from. What no node's time explains
(``measured step - sum of the classes``) is its own entry, ``unattributed``.

Classes: ``linear`` (the layers' projections), ``vocab`` (the vocabulary projection), ``attention``
(the score and context matrix products), ``softmax``, ``dropout``, ``layernorm``, ``embedding``,
``elementwise`` (everything else: masks, scaling, activations, residual adds, copies), ``loss``
(cross-entropy: not in the per-layer labels) and ``accumulation`` (adding each step's gradients to
the ones already there: the labels never zero them).

Two things about how the per-layer labels were measured, and how they are read:

* A node that launches no kernel (a view, ``size``, ``getitem``) still reads 8-13 us (the timing
  floor of an empty pair of CUDA events): nodes whose forward is under :data:`NO_KERNEL_MS` with
  no backward are left out.
* Each node's backward calls its ``grad_fn`` from Python with grad mode on, where PyTorch takes the
  double-differentiable dropout backward, ``grad * (mask.type_as(grad) * scale)`` (three kernels,
  25 bytes an FP32 element), instead of the one ``native_dropout_backward`` kernel (9 bytes) that
  ``loss.backward()`` runs: dropout's measured backward is scaled by :data:`DROPOUT_BACKWARD_SCALE`
  (the ratio of the bytes; the per-layer labels stream both at the same bandwidth).
"""

from __future__ import annotations

import csv
import gzip
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from hwmodel import Workload
from hwmodel.ops.classes.base import packet_name
from hwmodel.step.workload import ROOT_MODULE

CLASSES = (
    "linear",
    "vocab",
    "attention",
    "softmax",
    "dropout",
    "layernorm",
    "embedding",
    "elementwise",
    "loss",
    "accumulation",
)
UNATTRIBUTED = "unattributed"

NO_KERNEL_MS = 0.0135
"""Forward time (ms) under which a node without backward launched no kernel (timing floor 8-13 us)."""

DROPOUT_BACKWARD_SCALE = 9.0 / 25.0
"""``native_dropout_backward`` (read gradient 4 B and mask 1 B, write 4 B an element) over the
grad-mode path the per-layer labels timed (``type_as`` 1 + 4, ``mul`` by the scale 4 + 4, ``mul``
4 + 4 + 4)."""

_LAYER = re.compile(r"\.(h|layer|layers)\.0(\.|$)")
_VOCAB = ("lm_head", "predictions.decoder", "predictions_decoder")
_EMBEDDING = re.compile(r"embed|(^|\.)(wte|wpe)$")
_LAYERNORM = re.compile(r"layer_?norm|(^|\.)ln_(\d+|f)$", re.IGNORECASE)


def _fx_class(op: str, target: str, name: str) -> str:
    """The class of one torch.fx node (see the module docstring)."""
    text = f"{target} {name}".lower()
    if "dropout" in text or target.endswith(".drop"):
        return "dropout"
    if any(part in text for part in _VOCAB):
        return "vocab"
    if _LAYERNORM.search(target):
        return "layernorm"
    if _EMBEDDING.search(target) or "function embedding" in target:
        return "embedding"
    if "softmax" in text:
        return "softmax"
    if re.search(r"\b(matmul|bmm|baddbmm)\b", target):
        return "attention"
    if op == "call_module" or "addmm" in target:
        return "linear"
    return "elementwise"


@dataclass(frozen=True)
class MeasuredClasses:
    """A per-layer label read as a whole step: milliseconds per class, forward and backward."""

    forward_ms: dict[str, float]
    backward_ms: dict[str, float]

    def total_ms(self, name: str) -> float:
        return self.forward_ms.get(name, 0.0) + self.backward_ms.get(name, 0.0)

    @property
    def step_ms(self) -> float:
        return sum(self.total_ms(name) for name in CLASSES)


def measured_classes(path: Path, num_layers: int) -> MeasuredClasses:
    """Per class, the measured step's milliseconds from the per-layer label at ``path``: the outer
    nodes once, the layer's nodes ``num_layers`` times."""
    with gzip.open(path, "rt", newline="") as handle:
        rows = list(csv.DictReader(handle))
    in_layer = [bool(_LAYER.search(row["target"])) for row in rows]
    first = in_layer.index(True) if True in in_layer else len(rows)
    last = len(rows) - 1 - in_layer[::-1].index(True) if True in in_layer else -1
    forward: dict[str, float] = {}
    backward: dict[str, float] = {}
    for index, row in enumerate(rows):
        forward_ms, backward_ms, accumulate_ms = (float(row[k]) for k in ("fw_latency", "bw_latency", "acc_latency"))
        if forward_ms < NO_KERNEL_MS and backward_ms == 0.0 and accumulate_ms == 0.0:
            continue
        times = num_layers if first <= index <= last else 1
        name = _fx_class(row["op"], row["target"], row["Name"])
        if name == "dropout":
            backward_ms *= DROPOUT_BACKWARD_SCALE
        forward[name] = forward.get(name, 0.0) + forward_ms * times
        backward[name] = backward.get(name, 0.0) + backward_ms * times
        backward["accumulation"] = backward.get("accumulation", 0.0) + accumulate_ms * times
    return MeasuredClasses(forward_ms=forward, backward_ms=backward)


def captured_classes(workload: Workload) -> tuple[str, ...]:
    """The class of each captured op (see the module docstring): by the module it ran in, its
    name, and for dropout by the mask it reads (ATen's CPU dropout multiplies by a ``bernoulli_``
    tensor; the backward's multiply runs outside the dropout module)."""
    masks: set[int] = set()
    classes = []
    for op in workload.ops:
        packet = packet_name(op.name)
        module = op.module.lower()
        if packet == "bernoulli_":
            masks.update(op.output_ids)
        if packet.startswith("native_dropout") or masks.intersection(op.input_ids) or packet == "bernoulli_":
            classes.append("dropout")
        elif op.module == ROOT_MODULE:
            classes.append("loss")
        elif any(part in module for part in _VOCAB):
            classes.append("vocab")
        elif packet.startswith("native_layer_norm"):
            classes.append("layernorm")
        elif _EMBEDDING.search(module):
            classes.append("embedding")
        elif packet.startswith("_softmax"):
            classes.append("softmax")
        elif packet in ("bmm", "baddbmm") or "attention" in packet:
            classes.append("attention")
        elif packet in ("mm", "addmm", "linear"):
            classes.append("linear")
        else:
            classes.append("elementwise")
    return tuple(classes)


def sum_by_class(classes: Iterable[str], values_ms: Iterable[float]) -> dict[str, float]:
    """``values_ms`` summed per class."""
    totals: dict[str, float] = {}
    for name, value in zip(classes, values_ms, strict=True):
        totals[name] = totals.get(name, 0.0) + value
    return totals


@dataclass(frozen=True)
class Attribution:
    """Per class, predicted minus measured milliseconds, and the largest of them."""

    delta_ms: dict[str, float]

    @property
    def top(self) -> tuple[str, float]:
        """The class (or ``unattributed``) whose |delta| is largest, and its delta."""
        name = max(sorted(self.delta_ms), key=lambda key: abs(self.delta_ms[key]))
        return name, self.delta_ms[name]


def attribute(predicted_ms: Mapping[str, float], measured: MeasuredClasses, step_ms: float) -> Attribution:
    """Per class ``predicted - measured``; ``unattributed`` is the measured step's time that no
    node explains, with the sign of an error (a positive value: the step took less than its nodes)."""
    delta = {name: predicted_ms.get(name, 0.0) - measured.total_ms(name) for name in CLASSES}
    delta[UNATTRIBUTED] = measured.step_ms - step_ms
    return Attribution(delta_ms=delta)

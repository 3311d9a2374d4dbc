"""The measured steps (``dojo_validation/data/gpu_steps/end_to_end.json``) and where each ran.

A label is one measured step: a model config, training (forward, untimed loss, backward; no
optimizer step) or inference (a no-grad forward pass), a sequence length and batch, and the GPU
or 4-GPU plan it ran on. Only NVIDIA labels are used, and not the Switch Transformers ones (their
tokens are routed by data, which a capture on fake tensors cannot follow). The ``fusion`` labels
(inference under ``torch.compile``) are predicted in compiled execution (:mod:`hwmodel.ops.fusion`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hwmodel import Plan

DATA_DIR = Path(__file__).resolve().parent.parent / "data" / "gpu_steps"
LABELS_FILE = DATA_DIR / "end_to_end.json"
PUBLISHED_FILE = DATA_DIR / "published_errors.json"

PRESETS = {
    "NVIDIA_A100_80GB_PCIe": "a100-pcie-80gb",
    "NVIDIA_A100-PCIE-40GB": "a100-pcie-40gb",
    "NVIDIA_A100-SXM4-40GB": "a100-sxm4-40gb",
    "Tesla_V100-PCIE-32GB": "v100-pcie-32gb",
    "Tesla_P100-PCIE-16GB": "p100-pcie-16gb",
    "Tesla_T4": "t4",
    "Tesla_P4": "p4",
}
"""The preset of each measured device."""

SHORT_NAMES = {
    "NVIDIA_A100_80GB_PCIe": "A100-80",
    "NVIDIA_A100-PCIE-40GB": "A100-40",
    "NVIDIA_A100-SXM4-40GB": "4xA100-SXM",
    "Tesla_V100-PCIE-32GB": "V100",
    "Tesla_P100-PCIE-16GB": "P100",
    "Tesla_T4": "T4",
    "Tesla_P4": "P4",
}

PLANS = {
    "dp4": Plan(data_parallel=4),
    "tp4": Plan(data_parallel=1, tensor_parallel=4),
    "pp4_1": Plan(data_parallel=1, pipeline_parallel=4, micro_batches=1),
}
"""The 4-GPU runs as plans on a ``1x4`` mesh: data, tensor and pipeline parallel (one micro-batch)."""

COMPILED = "fusion"
"""The ``parallel`` of the labels measured under ``torch.compile`` (one GPU, inference)."""
USED_PARALLEL = ("single", COMPILED, *PLANS)
UNUSED_MODELS = ("switchxl4",)


@dataclass(frozen=True, kw_only=True)
class StepLabel:
    """One measured step; times in milliseconds."""

    device: str
    model: str
    mode: str
    seqlen: int
    batch: int
    parallel: str
    num_layers: int
    measured_ms: float
    forward_ms: float
    backward_ms: float

    @property
    def name(self) -> str:
        """``gpt2_large train s1024 b4`` (and the plan for a 4-GPU run)."""
        suffix = "" if self.parallel == "single" else f" {self.parallel}"
        return f"{self.model} {self.mode} s{self.seqlen} b{self.batch}{suffix}"

    @property
    def preset(self) -> str:
        return PRESETS[self.device]

    @property
    def short_device(self) -> str:
        return SHORT_NAMES[self.device]

    @property
    def distributed(self) -> bool:
        return self.parallel in PLANS

    @property
    def execution(self) -> str:
        """``compiled`` for a label measured under ``torch.compile``, else ``eager``."""
        return "compiled" if self.parallel == COMPILED else "eager"

    @property
    def group(self) -> str:
        """What the targets pool: ``train``, ``inf``, ``fusion`` (compiled inference) or the 4-GPU plan."""
        return self.parallel if self.parallel != "single" else self.mode

    @property
    def mesh(self) -> str:
        return "1x4" if self.distributed else "1x1"

    @property
    def plan(self) -> Plan | None:
        return PLANS.get(self.parallel)

    @property
    def replica_batches(self) -> tuple[int, ...]:
        """The per-replica batches its plan asks the capture for (the global batch over ``dp``)."""
        plan = self.plan
        return (self.batch // plan.data_parallel,) if plan is not None else (self.batch,)


def load_labels(path: Path = LABELS_FILE) -> tuple[StepLabel, ...]:
    """Every usable label of ``path``, in file order (see the module docstring)."""
    records: list[dict[str, Any]] = json.loads(path.read_text())
    return tuple(
        _label(record)
        for record in records
        if record["device"] in PRESETS and record["parallel"] in USED_PARALLEL and record["model"] not in UNUSED_MODELS
    )


def _label(record: dict[str, Any]) -> StepLabel:
    return StepLabel(
        device=str(record["device"]),
        model=str(record["model"]),
        mode=str(record["mode"]),
        seqlen=int(record["seqlen"]),
        batch=int(record["batch"]),
        parallel=str(record["parallel"]),
        num_layers=int(record["num_layer"] or 0),
        measured_ms=float(record["e2e_latency"]),
        forward_ms=float(record["fw_latency"]),
        backward_ms=float(record["bwall_latency"]),
    )


@dataclass(frozen=True)
class Published:
    """NeuSight's published absolute error on a label and its roofline baseline's (fractions)."""

    neusight: float | None
    roofline: float | None


def published_errors(path: Path = PUBLISHED_FILE) -> dict[tuple[str, str, str, int, str], Published]:
    """Published figures keyed by (device, model, mode, batch, parallel)."""
    document = json.loads(path.read_text())
    table: dict[tuple[str, str, str, int, str], Published] = {}
    for row in document["labels"]:
        key = (row["device"], row["model"], row["mode"], int(row["batch"]), row["parallel"])
        roofline = row.get("roofline_error_pct")
        table[key] = Published(
            neusight=float(row["neusight_error_pct"]) / 100.0,
            roofline=None if roofline is None else float(roofline) / 100.0,
        )
    return table


def published_for(label: StepLabel, table: dict[tuple[str, str, str, int, str], Published]) -> Published:
    """The published figures on ``label`` (None where the paper gives none)."""
    return table.get((label.device, label.model, label.mode, label.batch, label.parallel), Published(None, None))


def model_config(model: str) -> dict[str, Any]:
    """The model config the label was measured with (``models/<model>.json``)."""
    config: dict[str, Any] = json.loads((DATA_DIR / "models" / f"{model}.json").read_text())
    return config


def layer_file(label: StepLabel) -> Path | None:
    """The per-layer label of ``label``'s model, mode, sequence and batch on its device, if any."""
    if label.parallel != "single":
        return None
    path = DATA_DIR / "layers" / label.device / f"{label.model}-{label.mode}-{label.seqlen}-{label.batch}.csv.gz"
    return path if path.exists() else None

"""Each labelled model built and captured as it was measured.

``AutoConfig.for_model(model_type, **config)`` from the label's config, then ``from_config(config,
attn_implementation="eager")`` under ``torch.device("meta")`` (no weights are made or downloaded):
BERT as ``AutoModelForPreTraining`` for training and ``AutoModelForSequenceClassification`` for
inference, GPT-2, GPT-3 and OPT as ``AutoModelForCausalLM``; ``model.train()`` for training (dropout
on) and ``model.eval()`` for inference, as measured. The input is ``ones(batch, seqlen, int64)``.

* training labels: ``mode="forward_backward"`` with the measured loss,
  ``cross_entropy(logits.view(-1, vocab), input_ids.view(-1))`` on ``logits`` (BERT: on
  ``prediction_logits``), no optimizer;
* inference labels: ``mode="inference"`` (a no-grad forward pass);
* the 4-GPU runs: a whole training step with the default AdamW, at each per-replica batch the
  plan asks for.

Captures are kept per (model, mode, batch, sequence, optimizer step), so labels that share a
step on several devices capture it once.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any

from dojo_validation.steps.labels import StepLabel, model_config
from hwmodel import Workload

REQUIREMENT = "transformers"
"""What the ``[validation]`` extra installs (``pip install -c constraints.txt -e ".[validation]"``)."""

_CAPTURES: dict[tuple[str, str, int, int, bool], Workload] = {}


class ValidationSetupError(RuntimeError):
    """What the validation needs is missing (one line that says how to get it)."""


def transformers_module() -> Any:
    """The ``transformers`` package, or one line that says how to install it."""
    try:
        return importlib.import_module("transformers")
    except ImportError:
        raise ValidationSetupError(
            'the step validation builds Hugging Face transformers: pip install -c constraints.txt -e ".[validation]"'
        ) from None


def build_model(model: str, mode: str, num_layers: int | None = None) -> Any:
    """``model``'s network as measured in ``mode`` (``train`` or ``inf``), on the meta device;
    ``num_layers`` overrides the config's layer count."""
    import torch

    transformers = transformers_module()
    config_data = dict(model_config(model))
    model_type = config_data.pop("model_type")
    config_data.pop("architectures", None)
    config = transformers.AutoConfig.for_model(model_type, **config_data)
    if num_layers is not None:
        config.num_hidden_layers = num_layers
    if model_type == "bert":
        kind = "AutoModelForPreTraining" if mode == "train" else "AutoModelForSequenceClassification"
    else:
        kind = "AutoModelForCausalLM"
    with torch.device("meta"):
        network = getattr(transformers, kind).from_config(config, attn_implementation="eager")
    return network.train(mode == "train")


def measured_loss(outputs: Any, input_ids: Any) -> Any:
    """The labels' loss: cross-entropy of the logits (BERT: ``prediction_logits``) on the inputs."""
    import torch

    logits = outputs["prediction_logits"] if "prediction_logits" in outputs else outputs["logits"]
    return torch.nn.functional.cross_entropy(logits.view(-1, logits.shape[-1]), input_ids.view(-1))


def capture_label(label: StepLabel, batch: int | None = None) -> Workload:
    """The step ``label`` measured, at ``batch`` samples (default: the label's batch)."""
    batch = label.batch if batch is None else batch
    key = (label.model, label.mode, batch, label.seqlen, label.distributed)
    if key not in _CAPTURES:
        _CAPTURES[key] = _capture(label, batch)
    return _CAPTURES[key]


def _capture(label: StepLabel, batch: int) -> Workload:
    import torch

    from pytest_dojo.capture import capture_train_step

    network = build_model(label.model, label.mode)
    input_ids = torch.ones(batch, label.seqlen, dtype=torch.int64, device="meta")
    loss: Callable[..., Any] = measured_loss
    if label.mode == "inf":
        return capture_train_step(network, (input_ids,), name=label.model, mode="inference")
    if label.distributed:  # a whole training step, the default AdamW
        return capture_train_step(network, (input_ids,), targets=input_ids, loss_fn=loss, name=label.model)
    return capture_train_step(
        network, (input_ids,), targets=input_ids, loss_fn=loss, name=label.model, mode="forward_backward"
    )


def clear_captures() -> None:
    """Forget the kept captures."""
    _CAPTURES.clear()

"""Capture a PyTorch training step as a :class:`hwmodel.Workload`: the only package that imports torch.

* :mod:`~pytest_dojo.capture.train_step`: the step under ``FakeTensorMode`` (inputs, loss,
  optimizer, errors);
* :mod:`~pytest_dojo.capture.recorder`: the ``TorchDispatchMode`` that records each aten op;
* :mod:`~pytest_dojo.capture.formulas`: FLOPs, bytes and the host's GEMMs of one op;
* :mod:`~pytest_dojo.capture.shapes`: what a device kernel model needs of one op (implicit GEMMs,
  rows of row-wise ops, ops that move no data);
* :mod:`~pytest_dojo.capture.storage`: storages, for dependencies, liveness and memory;
* :mod:`~pytest_dojo.capture.keys`: the capture caches' key.

The plugin imports this package only when a test captures a step.
"""

from __future__ import annotations

from pytest_dojo.capture.keys import capture_key
from pytest_dojo.capture.storage import dtype_name
from pytest_dojo.capture.train_step import (
    capture_train_step,
    check_model,
    default_loss,
    default_optimizer,
    leading_batch,
)

__all__ = [
    "capture_key",
    "capture_train_step",
    "check_model",
    "default_loss",
    "default_optimizer",
    "dtype_name",
    "leading_batch",
]

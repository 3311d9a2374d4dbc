"""A training step to simulate, captured lazily at whatever per-replica batch a plan asks for.

:class:`CapturedStep` is the plugin's :class:`hwmodel.WorkloadSource`: the hardware model asks it
for the workload of one replica at ``batch_size`` samples, and it captures the step at that size
once (torch is imported only then) and keeps it for the rest of the run.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from hwmodel import Workload


class CapturedStep:
    """The step of ``model`` on one global batch of ``example_inputs``; captures per batch size.

    ``intra_op_threads``: torch's thread count during the capture (ATen's CPU kernel choices, and
    so the recorded GEMMs, depend on it); None keeps the current one.
    """

    def __init__(
        self,
        model: Any,
        example_inputs: Any,
        *,
        targets: Any = None,
        loss_fn: Callable[..., Any] | None = None,
        optimizer: Callable[..., Any] | None = None,
        global_batch: int | None = None,
        name: str | None = None,
        intra_op_threads: int | None = None,
    ) -> None:
        from pytest_dojo import capture

        self.model = model
        self.example_inputs = example_inputs
        self.targets = targets
        self.loss_fn = loss_fn
        self.optimizer = optimizer
        self.name = name or type(model).__name__
        self.intra_op_threads = intra_op_threads
        self._global_batch = global_batch or capture.leading_batch(example_inputs)
        self._workloads: dict[int, Workload] = {}
        self.capture_s = 0.0

    @property
    def global_batch(self) -> int:
        """Samples in one global step."""
        return self._global_batch

    def workload(self, batch_size: int) -> Workload:
        """The step of one replica at ``batch_size`` samples (captured on first use)."""
        cached = self._workloads.get(batch_size)
        if cached is not None:
            return cached
        from pytest_dojo import capture

        start = time.perf_counter()
        workload = capture.capture_train_step(
            self.model,
            self.example_inputs,
            targets=self.targets,
            loss_fn=self.loss_fn,
            optimizer=self.optimizer,
            batch_size=batch_size if batch_size != self._global_batch else None,
            name=self.name,
            intra_op_threads=self.intra_op_threads,
        )
        self.capture_s += time.perf_counter() - start
        self._workloads[batch_size] = workload
        return workload


def step_key(model: Any, example_inputs: Any, targets: Any, loss_fn: Any, optimizer: Any, name: str | None) -> Any:
    """A hashable key for the capture cache: same network structure, shapes, loss and optimizer."""
    from pytest_dojo import capture

    return capture.structural_key(model, example_inputs, targets, loss_fn, optimizer, name)

"""A training step to simulate, captured lazily at whatever per-replica batch a plan asks for.

:class:`CapturedStep` is the plugin's :class:`hwmodel.WorkloadSource`: the hardware model asks it
for the workload of one replica at ``batch_size`` samples, and it captures the step at that size
once (torch is imported only then) and keeps it for the rest of the run.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, TypedDict, Unpack

if TYPE_CHECKING:
    from hwmodel import Workload


class StepArguments(TypedDict, total=False):
    """What defines a training step besides the model and its inputs: the keyword arguments that
    ``dojo.train_step``, ``dojo.capture`` and ``dojo_wallclock.train_step`` share.

    ``targets`` go to ``loss_fn(outputs, targets)`` (default: the sum of the outputs' means);
    ``optimizer`` is a factory taking the parameters (default: AdamW); ``name`` names the network in
    reports (default: the model's class name).
    """

    targets: Any
    loss_fn: Callable[..., Any] | None
    optimizer: Callable[..., Any] | None
    name: str | None


def check_step_arguments(where: str, arguments: Mapping[str, Any]) -> None:
    """A keyword that is not a :class:`StepArguments` key raises ``TypeError``, as a misspelt
    keyword argument does."""
    unknown = sorted(set(arguments) - set(StepArguments.__annotations__))
    if unknown:
        raise TypeError(f"{where}() got an unexpected keyword argument {unknown[0]!r}")


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
        global_batch: int | None = None,
        intra_op_threads: int | None = None,
        **step: Unpack[StepArguments],
    ) -> None:
        from pytest_dojo import capture

        check_step_arguments("CapturedStep", step)
        self.model = model
        self.example_inputs = example_inputs
        self.targets = step.get("targets")
        self.loss_fn = step.get("loss_fn")
        self.optimizer = step.get("optimizer")
        self.name = step.get("name") or type(model).__name__
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


def step_key(model: Any, example_inputs: Any, **step: Unpack[StepArguments]) -> Any:
    """A hashable key for the capture cache: same network structure, shapes, loss and optimizer."""
    from pytest_dojo import capture

    return capture.structural_key(
        model, example_inputs, step.get("targets"), step.get("loss_fn"), step.get("optimizer"), step.get("name")
    )

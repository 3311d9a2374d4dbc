"""Measured on this machine: the real training step of the ``small`` networks, and capture memory.

Wall-clock figures depend on the machine and its load: compare them only within one asv machine
name (pytest-dojo asv-record fixes it), and read medians, not single samples.
"""

from __future__ import annotations

from typing import Any, ClassVar

from . import _project


class HostTrainStep:
    """One real training step (forward, loss, backward, AdamW) of a ``small`` network on the CPU.

    ``setup`` builds the network and its batch and runs one step first, so the optimizer's state
    exists and the timed step is a steady-state one, as the captured step is.
    """

    params: ClassVar[list[str]] = list(_project.NETWORKS)
    param_names = ("network",)
    number = 1
    repeat = (3, 10, 20.0)
    warmup_time = 0.0
    timeout = 300.0
    version = "1"

    def setup(self, network: str) -> None:
        spec = _project.suite_network(network)
        import torch

        torch.manual_seed(0)
        self.spec = spec
        self.model = spec.build("small")
        self.inputs, self.targets = spec.make_batch("small", _project.SMALL_BATCH, "cpu")
        self.optimizer = torch.optim.AdamW(self.model.parameters(), lr=1e-3, foreach=True)
        self._step()

    def _step(self) -> None:
        self.optimizer.zero_grad(set_to_none=True)
        loss = self.spec.loss(self.model(**self.inputs), self.targets)
        loss.backward()
        self.optimizer.step()

    def time_train_step(self, network: str) -> None:
        self._step()


class CapturePeakMemory:
    """Peak resident memory of the process that captures one full-size step (fake tensors, no storage).

    asv's ``peakmem_`` is the process's maximum RSS, so it includes torch itself (a few hundred MB):
    read changes, not the level.
    """

    params: ClassVar[list[str]] = list(_project.NETWORKS)
    param_names = ("network",)
    timeout = 300.0
    version = "1"

    def setup(self, network: str) -> None:
        self.capture = _project.capture_module()
        self.spec, self.model, self.inputs, self.targets = _project.full_step_inputs(
            network, _project.FULL_BATCH_PER_CHIP
        )

    def peakmem_capture_full_step(self, network: str) -> Any:
        return self.capture.capture_train_step(
            self.model, self.inputs, targets=self.targets, loss_fn=self.spec.loss, name=network
        )

"""The ``dojo`` fixture: simulate a test's training step on the configured mesh."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from hwmodel import ChipSpec, HwModelError, Mesh, Plan, Report, System, simulate
from pytest_dojo.errors import CaptureError
from pytest_dojo.session import DOJO_SESSION_KEY, DojoSession
from pytest_dojo.steps import CapturedStep, step_key


class Dojo:
    """The simulator bound to the run's chip and mesh (``--dojo-chip``, ``--dojo-mesh``)."""

    def __init__(self, session: DojoSession) -> None:
        self._session = session

    @property
    def system(self) -> System:
        """Chips, fabric and mesh under simulation."""
        return self._session.system

    @property
    def mesh(self) -> Mesh:
        """The mesh under simulation."""
        return self._session.system.mesh

    @property
    def chip(self) -> ChipSpec:
        """The chip preset under simulation."""
        return self._session.system.chip

    def capture(
        self,
        model: Any,
        example_inputs: Any,
        *,
        targets: Any = None,
        loss_fn: Callable[..., Any] | None = None,
        optimizer: Callable[..., Any] | None = None,
        name: str | None = None,
    ) -> CapturedStep:
        """The (cached) captured step of ``model`` on one global batch ``example_inputs``."""
        key = step_key(model, example_inputs, targets, loss_fn, optimizer, name)
        step = self._session.captures.get(key)
        if step is None:
            step = CapturedStep(model, example_inputs, targets=targets, loss_fn=loss_fn, optimizer=optimizer, name=name)
            self._session.captures[key] = step
        return step

    def train_step(
        self,
        model: Any,
        example_inputs: Any,
        *,
        targets: Any = None,
        loss_fn: Callable[..., Any] | None = None,
        optimizer: Callable[..., Any] | None = None,
        plan: Plan | None = None,
        name: str | None = None,
    ) -> Report:
        """Capture ``model``'s training step on one global batch and simulate it on the mesh.

        ``example_inputs``: a tensor, tuple or dict (passed as ``model(x)``, ``model(*x)``,
        ``model(**x)``), real or on the meta device. ``loss_fn(outputs, targets)`` defaults to the
        sum of the means of the outputs; ``optimizer`` is a factory taking the parameters
        (default AdamW). The report is also kept for the run's summary.
        """
        try:
            step = self.capture(
                model, example_inputs, targets=targets, loss_fn=loss_fn, optimizer=optimizer, name=name
            )
            report = simulate(step, self.system, plan=plan)
        except (CaptureError, HwModelError) as error:
            pytest.fail(str(error), pytrace=False)
        self._session.add_result(step.name, report, step.capture_s)
        return report


@pytest.fixture(scope="session")
def dojo(pytestconfig: pytest.Config) -> Dojo:
    """Simulator of the configured chip and mesh; ``dojo.train_step(model, inputs)`` returns a Report."""
    return Dojo(pytestconfig.stash[DOJO_SESSION_KEY])

"""The ``dojo`` fixture: simulate a test's training step on the configured mesh."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from hwmodel import MIXED_BF16, ChipSpec, HwModelError, Mesh, Plan, Report, System, simulate
from hwmodel.host import HOST_CHIP_NAME
from hwmodel.plan import data_parallel
from hwmodel.precision import Precision
from hwmodel.simulate import StepOptions, evaluate
from pytest_dojo.errors import CaptureError
from pytest_dojo.report_dir import StepArtifacts, replica_ops
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
            # The host chip is this CPU with its calibration's intra-op threads (its compute units):
            # capture with them, so that ATen's kernel choices match the ones the rates belong to.
            chip = self.system.chip
            threads = chip.compute_units if chip.name == HOST_CHIP_NAME else None
            step = CapturedStep(
                model,
                example_inputs,
                targets=targets,
                loss_fn=loss_fn,
                optimizer=optimizer,
                name=name,
                intra_op_threads=threads,
            )
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
        plan: Plan | str | None = None,
        name: str | None = None,
    ) -> Report:
        """Capture ``model``'s training step on one global batch and simulate it on the mesh.

        ``example_inputs``: a tensor, tuple or dict (passed as ``model(x)``, ``model(*x)``,
        ``model(**x)``), real or on the meta device. ``loss_fn(outputs, targets)`` defaults to the
        sum of the means of the outputs; ``optimizer`` is a factory taking the parameters
        (default AdamW). The report is also kept for the run's summary.
        """
        try:
            step = self.capture(model, example_inputs, targets=targets, loss_fn=loss_fn, optimizer=optimizer, name=name)
            report = simulate(step, self.system, plan=plan, precision=self._session.options.precision)
        except (CaptureError, HwModelError) as error:
            message = str(error)
        else:
            result = self._session.add_result(step.name, report, step.capture_s)
            if self._session.options.report_dir is not None:
                self._session.artifacts[result.key] = step_artifacts(
                    step, self.system, plan, report, self._session.options.precision
                )
            return report
        pytest.fail(message, pytrace=False)


def step_artifacts(
    step: CapturedStep, system: System, plan: Plan | str | None, report: Report, precision: Precision = MIXED_BF16
) -> StepArtifacts:
    """Timeline and per-op points of a simulated step, for ``--dojo-report-dir``.

    Known for an explicit plan or the default one; ``plan="auto"`` keeps only the report's plots.
    """
    if isinstance(plan, str):
        return StepArtifacts()
    chosen = plan or data_parallel(system.mesh)
    detailed = evaluate(step, system, chosen, StepOptions(precision=precision), keep_timeline=True)
    batch = report.global_batch // (chosen.data_parallel * chosen.micro_batches)
    ops = replica_ops(step.workload(batch), system, precision) if batch >= 1 else None
    return StepArtifacts(
        timeline=detailed.timeline,
        ops=ops,
        batch_per_replica=batch,
        link_utilization=detailed.report.link_utilization,
    )


@pytest.fixture(scope="session")
def dojo(pytestconfig: pytest.Config) -> Dojo:
    """Simulator of the configured chip and mesh; ``dojo.train_step(model, inputs)`` returns a Report."""
    return Dojo(pytestconfig.stash[DOJO_SESSION_KEY])

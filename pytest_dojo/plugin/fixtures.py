"""The ``dojo`` fixture: simulate a test's training step on the configured mesh.

The hardware model and the capture are imported when a test first calls :meth:`Dojo.train_step`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pytest

from pytest_dojo.errors import CaptureError
from pytest_dojo.plugin.session import DOJO_SESSION_KEY, DojoSession

if TYPE_CHECKING:
    from typing import Unpack

    from hwmodel import ChipSpec, Mesh, Plan, Precision, Report, System
    from pytest_dojo.plugin.report_dir import StepArtifacts
    from pytest_dojo.plugin.steps import CapturedStep, StepArguments


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

    def capture(self, model: Any, example_inputs: Any, **step: Unpack[StepArguments]) -> CapturedStep:
        """The (cached) captured step of ``model`` on one global batch ``example_inputs``
        (keyword arguments: :class:`~pytest_dojo.plugin.steps.StepArguments`)."""
        from pytest_dojo.plugin.steps import CapturedStep, check_step_arguments, step_key

        check_step_arguments("capture", step)
        # A chip measured on this machine (host) names its calibration's intra-op threads: capture
        # with them, so that ATen's kernel choices match the ones the rates belong to.
        threads = self.system.chip.measured_threads
        key = step_key(model, example_inputs, intra_op_threads=threads, **step)
        captured = self._session.captures.get(key)
        if captured is None:
            cache = self._session.capture_cache
            captured = CapturedStep(model, example_inputs, intra_op_threads=threads, cache=cache, key=key, **step)
            self._session.captures[key] = captured
        return captured

    def train_step(
        self,
        model: Any,
        example_inputs: Any,
        *,
        plan: Plan | str | None = None,
        execution: str | None = None,
        **step: Unpack[StepArguments],
    ) -> Report:
        """Capture ``model``'s training step on one global batch and simulate it on the mesh.

        ``example_inputs``: a tensor, tuple or dict (passed as ``model(x)``, ``model(*x)``,
        ``model(**x)``), real or on the meta device. ``loss_fn(outputs, targets)`` defaults to the
        sum of the means of the outputs; ``optimizer`` is a factory taking the parameters
        (default AdamW); ``name`` names the network in reports. ``plan``: a :class:`hwmodel.Plan`,
        ``"auto"`` (search) or None (data parallel). ``execution``: ``"eager"`` or ``"compiled"``
        (default: ``--dojo-execution``, else the chip preset's). The report is also kept for the
        run's summary.
        """

        from hwmodel import HwModelError, simulate
        from hwmodel.ops.fusion import check_execution

        options = self._session.options
        try:
            mode = check_execution(execution or options.execution)
            captured = self.capture(model, example_inputs, **step)
            report = simulate(captured, self.system, plan=plan, precision=options.precision, execution=mode)
        except (CaptureError, HwModelError) as error:
            message = str(error)
        else:
            result = self._session.add_result(captured.name, report, captured.capture_s)
            if self._session.options.report_dir is not None:
                self._session.artifacts[result.key] = step_artifacts(
                    captured, self.system, plan, report, options.precision, mode
                )
            return report
        pytest.fail(message, pytrace=False)


def step_artifacts(
    step: CapturedStep,
    system: System,
    plan: Plan | str | None,
    report: Report,
    precision: Precision,
    execution: str | None = None,
) -> StepArtifacts:
    """Timeline and per-op points of a simulated step, for ``--dojo-report-dir``.

    Known for an explicit plan or the default one; ``plan="auto"`` keeps only the report's plots.
    """
    from hwmodel import StepOptions, evaluate
    from hwmodel.search.plans import data_parallel
    from pytest_dojo.plugin.report_dir import StepArtifacts, replica_ops

    if isinstance(plan, str):
        return StepArtifacts()
    chosen = plan or data_parallel(system.mesh)
    detailed = evaluate(step, system, chosen, StepOptions(precision=precision, execution=execution), keep_timeline=True)
    # The simulated micro-batch: the largest one where the batch does not split evenly.
    batch = -(-report.global_batch // (chosen.data_parallel * chosen.micro_batches))
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

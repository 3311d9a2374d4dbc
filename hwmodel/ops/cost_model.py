"""Which model costs a chip's ops, and what a report says about it.

A chip names its model (:attr:`~hwmodel.spec.chip.ChipSpec.op_cost_model`):

* ``"kernels"``: the kernel models in hardware terms (:mod:`hwmodel.ops.kernel_costs` on a GPU,
  :mod:`hwmodel.ops.node_costs` on a chip of nodes with their own SRAM, a D1), fitted on measured
  GPU kernels; their uncertainty is the leave-one-device-out mean error per op class that
  ``pytest-dojo validate kernels --write-parameters`` records in
  ``hwmodel/ops/kernels/lodo_errors.json`` (for a D1, a GPU-derived proxy, and labelled so);
* ``"efficiency"``: the roofline of :mod:`hwmodel.ops.cost` scaled by the chip's measured
  efficiency row (and its measured GEMM rates): the ``host``.

An efficiency table given explicitly (``simulate(..., efficiency=table)``) costs any chip with that
table on the roofline, and the report names it.

Kernel-model costs are kept per (workload, chip, precision, tensor-parallel shares) in the
workload cache (:data:`hwmodel.step.derived.WORKLOAD_CACHE`): a plan search costs the same
workload on the same chip for every plan it ranks.
"""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Any

from hwmodel.ops.arrays import workload_arrays
from hwmodel.ops.classes.registry import op_classes
from hwmodel.ops.cost import OpCosts, op_costs
from hwmodel.ops.efficiency import EfficiencyTable, efficiency_for
from hwmodel.ops.fusion import check_execution, fused_costs, workload_fusion
from hwmodel.ops.kernel_costs import fallback_op_count, gpu_op_costs, kernel_arrays, work_scale
from hwmodel.ops.kernels.parameters import PARAMETERS_FILE, KernelParameters, load_parameters
from hwmodel.ops.node_costs import node_op_costs
from hwmodel.spec.chip import ChipSpec
from hwmodel.spec.precision import Precision
from hwmodel.step.derived import WORKLOAD_CACHE
from hwmodel.step.sections import OpCostModel
from hwmodel.step.workload import Workload

LODO_ERRORS_FILE = PARAMETERS_FILE.with_name("lodo_errors.json")
"""Per op class, the GPU kernel models' leave-one-device-out mean error, written beside the
parameters by ``pytest-dojo validate kernels --write-parameters``."""


def chip_table(chip: ChipSpec, given: EfficiencyTable | None) -> EfficiencyTable | None:
    """The efficiency table that costs ``chip``'s ops: ``given``, else the chip's row when its
    model is ``"efficiency"``; None when the kernel models cost them."""
    if given is not None:
        return given
    if chip.op_cost_model == "efficiency" and chip.efficiency_row is not None:
        return efficiency_for(chip.efficiency_row)
    return None


def step_op_costs(
    workload: Workload,
    chip: ChipSpec,
    precision: Precision,
    table: EfficiencyTable | None,
    matrix_share: float = 1.0,
    optimizer_share: float = 1.0,
    *,
    execution: str = "eager",
) -> OpCosts:
    """Per-op costs of ``workload`` on one ``chip``: the roofline with ``table`` when one applies
    (:func:`chip_table`), else the kernel models. ``matrix_share`` is the share of each matrix op
    one chip of a tensor-parallel group runs, ``optimizer_share`` its share of the optimizer;
    ``execution="compiled"`` fuses pointwise chains and reductions (:mod:`hwmodel.ops.fusion`)."""
    if table is not None:
        scale = work_scale(workload_arrays(workload), matrix_share, optimizer_share)
        costs = op_costs(workload, chip, table, precision, scale)
    else:
        costs = kernel_op_costs(workload, chip, precision, matrix_share, optimizer_share)
    if check_execution(execution) == "eager":
        return costs
    arrays = workload_arrays(workload)
    return fused_costs(costs, workload_fusion(workload), arrays.bytes_read + arrays.bytes_written)


def kernel_op_costs(
    workload: Workload,
    chip: ChipSpec,
    precision: Precision,
    matrix_share: float = 1.0,
    optimizer_share: float = 1.0,
) -> OpCosts:
    """Per-op costs from the kernel models, cached per (workload, chip, precision, shares); the
    arrays returned are read-only."""
    key = ("kernel_costs", op_classes().version, chip, precision, matrix_share, optimizer_share)
    return WORKLOAD_CACHE.get(
        workload, key, lambda: _kernel_op_costs(workload, chip, precision, matrix_share, optimizer_share)
    )


def _kernel_op_costs(
    workload: Workload, chip: ChipSpec, precision: Precision, matrix_share: float, optimizer_share: float
) -> OpCosts:
    arrays = workload_arrays(workload)
    kernels = kernel_arrays(workload)
    parameters = chip_parameters(chip)
    model = node_op_costs if on_nodes(chip) else gpu_op_costs
    costs = model(arrays, kernels, chip, precision, parameters, matrix_share, optimizer_share)
    for values in (costs.compute_s, costs.memory_s, costs.overhead_s, costs.time_s, costs.flops):
        values.flags.writeable = False
    return costs


def chip_parameters(chip: ChipSpec) -> KernelParameters:
    """The kernel models' parameters for ``chip``: its own file where it names one (fitted on its
    kernels), else the shipped ones."""
    if chip.kernel_parameters_file is None:
        return load_parameters()
    return load_parameters(Path(chip.kernel_parameters_file))


def on_nodes(chip: ChipSpec) -> bool:
    """True for a chip whose local memory is SRAM spread over its compute units (a D1): its kernels
    are node tiles with a barrier per op, not CTAs launched over SMs."""
    return chip.local_memory_kind == "sram"


@cache
def lodo_errors(path: Path = LODO_ERRORS_FILE) -> dict[str, Any]:
    """The recorded leave-one-device-out errors: ``class_mean_error`` (op class -> fraction) and
    the ``devices`` the kernel models were fitted on."""
    document: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return document


@cache
def own_parameters_account(path: str) -> tuple[str, tuple[tuple[str, float], ...]]:
    """What a chip's own parameters file (``pytest-dojo calibrate-gpu fit``) says of itself: the
    report's description and the held-out error per op class."""
    document = json.loads(Path(path).read_text(encoding="utf-8"))
    device = document.get("provenance", {}).get("device") or "?"
    errors = document.get("held_out_class_mean_error", {})
    description = f"gpu kernel models, fitted on {device} kernels ({Path(path).name})"
    return description, tuple((str(name), float(value)) for name, value in errors.items())


def _short_device(name: str) -> str:
    return name.removeprefix("Tesla ").removeprefix("NVIDIA ")


def cost_model_section(
    chip: ChipSpec, table: EfficiencyTable | None, workload: Workload, execution: str = "eager"
) -> OpCostModel:
    """The report's account of how ``chip``'s ops were costed (``table``: :func:`chip_table`) and
    run (``execution``), kept per workload, chip, table and execution."""
    key = ("op_cost_model", op_classes().version, chip, table, execution)
    return WORKLOAD_CACHE.get(workload, key, lambda: _cost_model_section(chip, table, workload, execution))


def _cost_model_section(
    chip: ChipSpec, table: EfficiencyTable | None, workload: Workload, execution: str
) -> OpCostModel:
    fused_groups = workload_fusion(workload).groups if execution == "compiled" else 0
    if table is not None:
        given = chip.op_cost_model != "efficiency" or table.chip != chip.efficiency_row
        label = f"efficiency table {table.chip!r} (given)" if given else f"{table.chip} efficiency row"
        calibration = table.calibration or None
        return OpCostModel(
            model="efficiency",
            description=label,
            calibration=calibration,
            execution=execution,
            fused_groups=fused_groups,
        )
    errors = lodo_errors()
    devices = ", ".join(_short_device(name) for name in errors["devices"])
    class_errors = tuple((str(name), float(value)) for name, value in errors["class_mean_error"].items())
    if on_nodes(chip):
        description = f"{chip.name} hardware-term model ({chip.compute_units} nodes, node SRAM, a barrier per op)"
        uncertainty = "GPU leave-one-device-out proxy"
    elif chip.kernel_parameters_file is not None:
        description, class_errors = own_parameters_account(chip.kernel_parameters_file)
        uncertainty = "held-out shapes' mean error on that GPU"
    else:
        description = f"gpu kernel models, fitted on NeuSight kernels of {devices}"
        uncertainty = "leave-one-device-out mean error"
    return OpCostModel(
        model="kernels",
        description=description,
        uncertainty=uncertainty,
        class_errors=class_errors,
        fallback_ops=fallback_op_count(workload),
        execution=execution,
        fused_groups=fused_groups,
    )

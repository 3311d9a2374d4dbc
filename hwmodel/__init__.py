"""The hardware model of pytest-dojo: chips, meshes, links, collectives, op costs and the simulator.

Pure Python and numpy: this package never imports torch, pytest or the plugin. Workloads come in as
plain data (:class:`Workload`), reports go out as plain data (:class:`Report`).

Subpackages, one concept per module; no module imports its own package's ``__init__`` and the
import graph between modules has no cycle (``tests/test_layers.py``):

* :mod:`hwmodel.spec`: chips, fabrics, meshes, precisions, systems; the presets as cited data files.
* :mod:`hwmodel.ops`: op classes, FLOP formulas, GEMM rates, efficiencies and their fit, op costs.
* :mod:`hwmodel.collectives`: routes, link loads, collective algorithms, the prices a plan pays.
* :mod:`hwmodel.step`: the workload, memory, timeline and report, and the simulation of one step
  (resolve, op times, placement, schedule, report).
* :mod:`hwmodel.search`: parallel plans and the search for the fastest that fits (``plan="auto"``).
* :mod:`hwmodel.studies`: what-if knobs, sensitivity, scaling, ingest.
"""

from __future__ import annotations

from hwmodel.collectives.algorithms import ChipGroup, CollectiveCost, collective
from hwmodel.collectives.linkloads import LinkLoads, link_loads
from hwmodel.errors import (
    HwModelError,
    MemoryCapacityError,
    PlanError,
    SpecError,
    TopologyError,
    WorkloadError,
)
from hwmodel.search.auto import simulate
from hwmodel.search.plans import Plan
from hwmodel.search.ranking import search_plans
from hwmodel.spec.chip import ChipSpec
from hwmodel.spec.fabric import FabricSpec
from hwmodel.spec.mesh import Mesh, parse_mesh
from hwmodel.spec.precision import MIXED_BF16, Precision
from hwmodel.spec.presets import get_preset, make_system, preset_names
from hwmodel.spec.system import System
from hwmodel.step.report import Report
from hwmodel.step.simulate import StepOptions, evaluate
from hwmodel.step.trace import chrome_trace, step_trace, validate_chrome_trace
from hwmodel.step.workload import OpRecord, ParameterRecord, TensorRecord, Workload, WorkloadSource

__all__ = [
    "MIXED_BF16",
    "ChipGroup",
    "ChipSpec",
    "CollectiveCost",
    "FabricSpec",
    "HwModelError",
    "LinkLoads",
    "MemoryCapacityError",
    "Mesh",
    "OpRecord",
    "ParameterRecord",
    "Plan",
    "PlanError",
    "Precision",
    "Report",
    "SpecError",
    "StepOptions",
    "System",
    "TensorRecord",
    "TopologyError",
    "Workload",
    "WorkloadError",
    "WorkloadSource",
    "chrome_trace",
    "collective",
    "evaluate",
    "get_preset",
    "link_loads",
    "make_system",
    "parse_mesh",
    "preset_names",
    "search_plans",
    "simulate",
    "step_trace",
    "validate_chrome_trace",
]

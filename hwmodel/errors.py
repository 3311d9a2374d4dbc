"""The hardware model's exceptions: one base class, one leaf per kind of user mistake.

Every message is one line that names the field, the value and the rule, so the plugin can show it
as-is (pytest ``UsageError`` or a failed test) without a traceback.
"""

from __future__ import annotations


class HwModelError(ValueError):
    """Base class of every error the hardware model raises on bad input; never raised directly."""


class SpecError(HwModelError):
    """A chip, fabric or mesh specification is malformed (a negative rate, an unknown preset...)."""


class TopologyError(HwModelError):
    """A mesh or group of chips that the topology cannot hold (zero rows, a group off the mesh...)."""


class WorkloadError(HwModelError):
    """A captured workload that is malformed, or a serialized one from another schema version."""


class PlanError(HwModelError):
    """A parallel plan that does not apply (degrees that do not multiply to the chips used...)."""


class MemoryCapacityError(HwModelError):
    """A plan whose working set fits neither the chip's local memory nor its backing memory."""

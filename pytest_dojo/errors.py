"""The plugin's exceptions.

User mistakes surface as one line: options become ``pytest.UsageError``, a step that cannot be
captured fails its test with :class:`CaptureError`'s message and no traceback.
"""

from __future__ import annotations


class DojoError(Exception):
    """Base class of the plugin's errors; never raised directly."""


class CaptureError(DojoError):
    """A training step that cannot be captured (a data-dependent op, a model that raised...)."""

"""Python's cyclic garbage collector paused while many long-lived, acyclic objects are made.

A plan search makes hundreds of thousands of records, arrays and reports (a derived workload alone
is thousands of records), and a capture as many short-lived objects (fake tensors, their metadata,
cache entries); none of them is cyclic garbage, and the collector's passes over them and over
everything alive beside them (a captured model, torch's caches) took a fifth of a cold ExaPOD
search's evaluation and a tenth of a two-batch HydraNet capture. Reference counting still frees
what is dropped. Paused during a capture, the collector also cannot free a tensor in the middle of
a step, where a freed reference could change whether autograd steals a gradient or copies it: the
recorded ops do not depend on when the collector runs.
"""

from __future__ import annotations

import contextlib
import gc
from collections.abc import Iterator


@contextlib.contextmanager
def collector_paused() -> Iterator[None]:
    """Python's cyclic garbage collector off for the duration (on again after, if it was on)."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()

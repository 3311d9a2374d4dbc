"""Process-wide torch settings held for the duration of a capture, and restored after."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator

import torch

QUIET_LOGGERS = ("torch._subclasses.fake_tensor",)
"""Loggers that print internal tracebacks for an op that fails under fake tensors; the failure
itself reaches the user once, as the capture error's message."""


@contextlib.contextmanager
def quiet_torch_logs() -> Iterator[None]:
    """Silence :data:`QUIET_LOGGERS` for the duration; their levels are restored after."""
    loggers = [logging.getLogger(name) for name in QUIET_LOGGERS]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.CRITICAL + 1)
    try:
        yield
    finally:
        for logger, level in zip(loggers, levels, strict=True):
            logger.setLevel(level)


@contextlib.contextmanager
def torch_threads(count: int | None) -> Iterator[None]:
    """torch's intra-op thread count set to ``count`` (unchanged for None), restored after."""
    if count is None:
        yield
        return
    previous = torch.get_num_threads()
    torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(previous)

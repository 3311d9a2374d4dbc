"""Shared test configuration (the pytester plugin is enabled in pyproject's addopts).

torch and the capture module are imported here, before any in-process ``pytester`` run:
pytester restores ``sys.modules`` after each inner run, and a torch first imported inside one
would be dropped and imported a second time by the next, which crashes the interpreter.
"""

from __future__ import annotations

import torch  # noqa: F401

import pytest_dojo.capture  # noqa: F401

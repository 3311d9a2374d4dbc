"""Shared test configuration (the pytester plugin is enabled in pyproject's addopts).

torch, the capture module and torch._dynamo (which the first ``FakeTensorMode()`` imports) are
imported here, before any in-process ``pytester`` run: pytester restores ``sys.modules`` after each
inner run, and a torch module first imported inside one would be dropped and imported a second time
by the next, which crashes the interpreter (torch) or registers an op library twice (torch._dynamo).
"""

from __future__ import annotations

import torch
import torch._dynamo  # noqa: F401

import pytest_dojo.capture  # noqa: F401

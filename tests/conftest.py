"""Shared test configuration (the pytester plugin is enabled in pyproject's addopts).

One tiny step is captured here, before any in-process ``pytester`` run: pytester restores
``sys.modules`` after each inner run, and a torch module first imported inside one (torch itself,
or torch._dynamo, which the first ``FakeTensorMode()`` imports) would be dropped and imported again
by the next run, which crashes the interpreter or registers an op library twice.

Hypothesis draws new examples on every run, so a developer's runs keep exploring; CI sets
``DOJO_HYPOTHESIS_PROFILE=ci``, which derandomizes the draws, so a clean checkout tests the same
examples every time and its result does not depend on chance.
"""

from __future__ import annotations

import os

import torch
from hypothesis import settings

from pytest_dojo.capture import capture_train_step

settings.register_profile("ci", derandomize=True)
settings.load_profile(os.environ.get("DOJO_HYPOTHESIS_PROFILE", "default"))

capture_train_step(torch.nn.Linear(4, 2), torch.randn(5, 4))

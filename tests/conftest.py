"""Shared test configuration (the pytester plugin is enabled in pyproject's addopts).

One tiny step is captured here, before any in-process ``pytester`` run: pytester restores
``sys.modules`` after each inner run, and a torch module first imported inside one (torch itself,
or torch._dynamo, which the first ``FakeTensorMode()`` imports) would be dropped and imported again
by the next run, which crashes the interpreter or registers an op library twice.
"""

from __future__ import annotations

import torch

from pytest_dojo.capture import capture_train_step

capture_train_step(torch.nn.Linear(4, 2), torch.randn(5, 4))

"""pytest-dojo: simulated and measured training throughput of PyTorch networks, as a pytest plugin.

* :mod:`pytest_dojo.capture`: a PyTorch training step as a :class:`hwmodel.Workload` (the only
  package that touches torch internals);
* :mod:`pytest_dojo.plugin`: the pytest plugin (entry point ``dojo = "pytest_dojo.plugin"``), which
  imports torch and :mod:`hwmodel` only once a test uses it;
* :mod:`pytest_dojo.cli`: the ``pytest-dojo`` command;
* :mod:`pytest_dojo.hostbench`: microbenchmarks of this machine for the ``host`` preset
  (``python -m pytest_dojo.hostbench``);
* :mod:`pytest_dojo.errors`: the exceptions.
"""

from __future__ import annotations

__version__ = "0.1.0"

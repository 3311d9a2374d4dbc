"""pytest-dojo: simulated and measured training throughput of PyTorch networks, as a pytest plugin.

The hooks are in :mod:`pytest_dojo.plugin`; torch is imported only by :mod:`pytest_dojo.capture`.
"""

from __future__ import annotations

__version__ = "0.1.0"

"""``python -m pytest_dojo.cli``: the same as the ``pytest-dojo`` command."""

from __future__ import annotations

import sys

from pytest_dojo.cli import main

sys.exit(main())

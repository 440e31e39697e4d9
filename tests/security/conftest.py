"""Security tests: what the operator must never do (leak a secret, trust an unknown certificate).

The end-to-end fixtures (`org`, `harness`) are the ones of tests/e2e/harness_fixtures.py.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "e2e"))

from harness_fixtures import harness, org  # noqa: F401 - fixtures, found by pytest through this import

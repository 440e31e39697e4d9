"""Security tests: what the operator must never do (leak a secret, trust an unknown certificate).

The end-to-end fixtures (`org`, `harness`) are built on tests/e2e/harness.py (a conftest is not
importable by name); `cluster` and `namespace` come from tests/conftest.py.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "e2e"))

from harness import Harness, running_harness


@pytest.fixture
def org() -> dict[str, Any]:
    from orgs import small_org

    return small_org()


@pytest.fixture
def harness(cluster, namespace, org, tmp_path, request) -> Iterator[Harness]:
    with running_harness(cluster, namespace, org, tmp_path, request) as h:
        yield h

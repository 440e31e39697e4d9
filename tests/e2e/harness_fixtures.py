"""The end-to-end fixtures (`org`: the small organisation, `harness`) for test folders beside e2e/,
whose conftest imports them (a conftest is not importable by name); `cluster` and `namespace` come
from tests/conftest.py."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from harness import Harness, running_harness


@pytest.fixture
def org() -> dict[str, Any]:
    from orgs import small_org

    return small_org()


@pytest.fixture
def harness(cluster, namespace, org, tmp_path, request) -> Iterator[Harness]:
    with running_harness(cluster, namespace, org, tmp_path, request) as h:
        yield h

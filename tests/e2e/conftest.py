"""End-to-end fixtures: the real API server (session fixture), the Azure sandbox (per test), and the
operator as its own process (`synapse-scim run`), talking to both through the real SDKs."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from harness import Harness, running_harness


@pytest.fixture
def org(request) -> dict[str, Any]:
    """The seed organisation; parametrize it indirectly with a number to add a group "Everyone" that big."""
    from orgs import small_org, with_big_group

    seed = small_org()
    size = getattr(request, "param", None)
    return with_big_group(seed, "Everyone", size) if size else seed


@pytest.fixture
def harness(cluster, namespace, org, tmp_path, request) -> Iterator[Harness]:
    with running_harness(cluster, namespace, org, tmp_path, request) as h:
        yield h

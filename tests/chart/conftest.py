"""Fixtures of the chart tests (the session `cluster` and per-test `namespace` come from tests/conftest.py)."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator

import pytest
from kubernetes import client


@pytest.fixture
def make_namespace(cluster) -> Iterator[Callable[[], str]]:
    """More fresh namespaces for one test (watchNamespaces needs several), deleted afterwards."""
    created: list[str] = []

    def make() -> str:
        name = f"t-{uuid.uuid4().hex[:10]}"
        with cluster.api_client() as api:
            client.CoreV1Api(api).create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=name)))
        created.append(name)
        return name

    yield make
    with cluster.api_client() as api:
        core = client.CoreV1Api(api)
        for name in created:
            # Without a controller-manager the namespace stays Terminating; its name is never reused.
            core.delete_namespace(name)

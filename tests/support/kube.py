"""Small Kubernetes helpers shared by the fixtures and the cluster tests."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from kubernetes import client
from kubernetes.client.exceptions import ApiException


@contextmanager
def new_namespace(cluster: Any, prefix: str = "t") -> Iterator[str]:
    """A fresh namespace `<prefix>-<random>`, deleted on the way out. Without a controller-manager it
    stays Terminating; its name is never reused."""
    name = f"{prefix}-{uuid.uuid4().hex[:10]}"
    with cluster.api_client() as api:
        core = client.CoreV1Api(api)
        core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=name)))
        try:
            yield name
        finally:
            try:
                core.delete_namespace(name)
            except ApiException as exc:
                if exc.status != 404:  # a test that deleted it, with a controller-manager that removed it
                    raise


def gone(read: Callable[[], Any]) -> bool:
    """True when `read()` answers 404."""
    try:
        read()
    except ApiException as exc:
        return exc.status == 404
    return False

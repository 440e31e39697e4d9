"""Fixtures shared by every test layer.

- `cluster` (session): a real etcd + kube-apiserver started once per test session, with the project's
  CRDs installed. Set SYNAPSE_SCIM_EXISTING_CLUSTER=1 to run the same suite against the cluster that
  KUBECONFIG points at (kind, k3d, ...) instead.
- `namespace` (function): a fresh namespace per test.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator

import pytest
from kubernetes import client

from synapse_scim_sandbox.devcluster import ControlPlane, ExistingCluster


def _use_existing() -> bool:
    return os.environ.get("SYNAPSE_SCIM_EXISTING_CLUSTER", "").lower() in ("1", "true", "yes")


@pytest.fixture(scope="session")
def cluster() -> Iterator[ControlPlane | ExistingCluster]:
    if _use_existing():
        kubeconfig = os.environ.get("KUBECONFIG") or os.path.expanduser("~/.kube/config")
        with ExistingCluster(kubeconfig) as existing:
            yield existing
        return
    with ControlPlane() as cp:
        yield cp


@pytest.fixture
def namespace(cluster: ControlPlane | ExistingCluster) -> Iterator[str]:
    name = f"t-{uuid.uuid4().hex[:10]}"
    with cluster.api_client() as api:
        core = client.CoreV1Api(api)
        core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=name)))
        try:
            yield name
        finally:
            # Without a controller-manager the namespace stays Terminating; its name is never reused.
            core.delete_namespace(name)


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item, call):
    """Keep each phase's report on the item, so fixtures can tell whether the test failed."""
    rep = yield
    setattr(item, "rep_" + rep.when, rep)
    return rep

"""Every fixture that more than one test folder uses, defined once (tests/conftest.py loads this module
as a pytest plugin). A folder's conftest may still override one by name (tests/cli's `sb`).

Kubernetes (whatever asks for `kube_tools`, directly or through `cluster` or `helm`, is marked
`cluster` by tests/conftest.py):
- `kube_tools` (session): kube-apiserver, etcd, kubectl and helm as hack/build-tools.sh built them.
- `cluster` (session): a real etcd + kube-apiserver started once per test session, with the project's
  CRDs installed. Set SYNAPSE_SCIM_EXISTING_CLUSTER=1 to run the same suite against the cluster that
  KUBECONFIG points at (kind, k3d, ...) instead.
- `namespace`: a fresh namespace per test; `make_namespace`: more of them for one test.
- `objects` (session): a CustomObjectsApi on the cluster.
- `helm` (session): the cached helm (support.chart.Helm), for tests that render the chart.

The Azure sandbox:
- `sb`: the sandbox (asyncio, in this test's loop) seeded with examples/sandbox/org.yaml, 3 role
  assignments per Synapse page.
- `directory`: the operator's Directory adapter on it, signed in as the operator's app.

End to end:
- `org`: the seed (support.orgs.small_org); parametrize it indirectly with a number to add a group
  "Everyone" that big. `harness`: a sandbox seeded with `org` and a Harness on it.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client

from support import sandbox as sandbox_support
from support.chart import Helm
from support.harness import Harness, running_harness
from support.kube import new_namespace
from support.orgs import small_org, with_big_group
from synapse_scim.adapters.directory import Directory
from synapse_scim_sandbox import Sandbox
from synapse_scim_sandbox.devcluster import ControlPlane, ExistingCluster, Tools, find_tools

# -- Kubernetes ---------------------------------------------------------------------------------


def _use_existing() -> bool:
    return os.environ.get("SYNAPSE_SCIM_EXISTING_CLUSTER", "").lower() in ("1", "true", "yes")


@pytest.fixture(scope="session")
def kube_tools() -> Tools:
    """The Kubernetes tools (SYNAPSE_SCIM_TOOLS, KUBEBUILDER_ASSETS, else built by hack/build-tools.sh)."""
    return find_tools()


@pytest.fixture(scope="session")
def cluster(kube_tools: Tools) -> Iterator[ControlPlane | ExistingCluster]:
    if _use_existing():
        kubeconfig = os.environ.get("KUBECONFIG") or os.path.expanduser("~/.kube/config")
        with ExistingCluster(kubeconfig, tools=kube_tools) as existing:
            yield existing
        return
    with ControlPlane(tools=kube_tools) as cp:
        yield cp


@pytest.fixture
def namespace(cluster: ControlPlane | ExistingCluster) -> Iterator[str]:
    with new_namespace(cluster) as name:
        yield name


@pytest.fixture
def make_namespace(cluster: ControlPlane | ExistingCluster) -> Iterator[Callable[[], str]]:
    """More fresh namespaces for one test (watchNamespaces needs several), deleted afterwards."""
    with ExitStack() as stack:
        yield lambda: stack.enter_context(new_namespace(cluster))


@pytest.fixture(scope="session")
def objects(cluster: ControlPlane | ExistingCluster) -> Iterator[client.CustomObjectsApi]:
    with cluster.api_client() as api:
        yield client.CustomObjectsApi(api)


@pytest.fixture(scope="session")
def helm(kube_tools: Tools, tmp_path_factory: pytest.TempPathFactory) -> Helm:
    assert kube_tools.helm is not None, "helm is not available; run `make tools`"
    return Helm(kube_tools.helm, tmp_path_factory.mktemp("helm-home"))


# -- the Azure sandbox --------------------------------------------------------------------------


@pytest.fixture
async def sb(tmp_path: Path) -> AsyncIterator[Sandbox]:
    async with Sandbox(seed=sandbox_support.ORG, cert_dir=tmp_path, page_size=3) as sandbox:
        yield sandbox


@pytest.fixture
async def directory(sb: Sandbox) -> AsyncIterator[Directory]:
    credential = sandbox_support.operator_credential(sb)
    found = sandbox_support.directory(sb, credential)
    yield found
    await found.close()
    await credential.close()


# -- end to end ---------------------------------------------------------------------------------


@pytest.fixture
def org(request: pytest.FixtureRequest) -> dict[str, Any]:
    seed = small_org()
    size = getattr(request, "param", None)
    return with_big_group(seed, "Everyone", size) if size else seed


@pytest.fixture
def harness(cluster: Any, namespace: str, org: dict[str, Any], tmp_path: Path, request: Any) -> Iterator[Harness]:
    with running_harness(cluster, namespace, org, tmp_path, request) as h:
        yield h


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    """Keep each phase's report on the item, so fixtures can tell whether the test failed."""
    rep = yield
    setattr(item, "rep_" + rep.when, rep)
    return rep

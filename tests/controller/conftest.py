"""The controller's orchestration in process, against the real HTTPS sandbox (`sb`, support.fixtures):
the operator's own adapters with the real Azure SDKs, built by Connections as the operator builds them.
No cluster: these tests are never marked `cluster`."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from typing import Any

import kopf
import pytest
from kopf._core.engines import posting  # kopf's own event queue: see the fixture `events`

from support.controller import SECRET, FakeKube, workspace_spec
from support.sandbox import OPERATOR
from synapse_scim.adapters.connections import Clients, Connections
from synapse_scim.adapters.credentials import CredentialError, SecretReader
from synapse_scim.controller.registry import Registry
from synapse_scim.controller.settings import Settings
from synapse_scim.controller.tenant import Tenants
from synapse_scim_sandbox import Sandbox


@pytest.fixture
def trust_sandbox(sb: Sandbox, monkeypatch: pytest.MonkeyPatch) -> None:
    """The operator trusts the sandbox's CA the way it is told to in a cluster (its one setting)."""
    monkeypatch.setenv("SYNAPSE_SCIM_AZURE_CA_BUNDLE", str(sb.ca_path))


@pytest.fixture
def ns() -> str:
    """The namespace the objects live in (per test, so metrics' labels never mix between tests)."""
    return f"team-{uuid.uuid4().hex[:8]}"


def secret_reader(sb: Sandbox, namespace: str) -> SecretReader:
    """What Kube.read_secret answers for the one Secret workspace_spec names: the operator app's secret."""

    async def read_secret(ns: str, name: str, key: str) -> bytes:
        if (ns, name, key) != (namespace, SECRET, "clientSecret"):
            raise CredentialError("SecretNotFound", f"Secret {ns}/{name} does not exist")
        return (sb.client(OPERATOR).secret or "").encode()

    return read_secret


@pytest.fixture
async def clients(sb: Sandbox, ns: str, trust_sandbox: None) -> AsyncIterator[Clients]:
    """The workspace "analytics"'s Directory and Workspace adapters, as Connections builds them."""
    connections = Connections(secret_reader(sb, ns))
    yield await connections.get(ns, "analytics", workspace_spec(sb))
    await connections.close()


@pytest.fixture
async def events() -> AsyncIterator[asyncio.Queue[posting.K8sEvent]]:
    """kopf.event outside a running operator raises LookupError: it reads the operator's settings and
    the per-object event queue from context variables that kopf's reactor sets (kopf._core.engines.
    posting). Set the same three, as the operator would have them, and hand over the queue its event
    poster drains, so a test can read what was posted (pytest-asyncio runs the test in this context)."""
    queue: asyncio.Queue[posting.K8sEvent] = asyncio.Queue()
    tokens = [
        (posting.settings_var, posting.settings_var.set(kopf.OperatorSettings())),
        (posting.event_queue_var, posting.event_queue_var.set(queue)),
        (posting.event_queue_loop_var, posting.event_queue_loop_var.set(asyncio.get_running_loop())),
    ]
    yield queue
    for var, token in reversed(tokens):
        var.reset(token)


@pytest.fixture
def settings() -> Settings:
    """The operator's settings in `memo` (a test module may override this fixture)."""
    return Settings(directory_poll_interval=3600.0)  # the tenant watch never polls by itself here


@pytest.fixture
async def memo(sb: Sandbox, ns: str, trust_sandbox: None, settings: Settings) -> Any:
    """What the operator's startup handler puts in its memo, with FakeKube for Kube."""
    kube = FakeKube()
    kube.secrets[(ns, SECRET)] = {"clientSecret": (sb.client(OPERATOR).secret or "").encode()}
    memo = kopf.Memo()
    memo.settings = settings
    memo.kube = kube
    memo.connections = Connections(kube.read_secret, memo.settings.write_concurrency)
    memo.registry = Registry()
    memo.tenants = Tenants(memo.settings.directory_poll_interval)
    yield memo
    await memo.tenants.close()
    await memo.connections.close()

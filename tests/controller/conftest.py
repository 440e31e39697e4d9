"""The controller's orchestration in process, against the real HTTPS sandbox (`sb`, support.fixtures):
the operator's own adapters with the real Azure SDKs, built by Connections as the operator builds them.
No cluster: these tests are never marked `cluster`."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import pytest

from support.controller import SECRET, workspace_spec
from support.sandbox import OPERATOR
from synapse_scim.adapters.connections import Clients, Connections
from synapse_scim.adapters.credentials import CredentialError, SecretReader
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

"""The operator's own adapters (directory.py, workspace.py) against the HTTPS sandbox, built exactly
as connections.py builds them (real SDKs, the sandbox CA as the only trust anchor)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from azure.identity.aio import ClientSecretCredential

from synapse_scim.adapters.credentials import Cloud
from synapse_scim.adapters.directory import Directory, graph_client
from synapse_scim_sandbox import Sandbox

ORG = Path(__file__).resolve().parents[2] / "examples" / "sandbox" / "org.yaml"


@pytest.fixture
async def sb(tmp_path: Path) -> AsyncIterator[Sandbox]:
    async with Sandbox(seed=ORG, cert_dir=tmp_path, page_size=3) as sandbox:
        yield sandbox


@pytest.fixture
async def directory(sb: Sandbox) -> AsyncIterator[Directory]:
    app = sb.client("synapse-scim-operator")
    credential = ClientSecretCredential(
        sb.tenant_id, app.client_id, app.secret or "", authority=sb.authority_host, connection_verify=str(sb.ca_path)
    )
    cloud = Cloud.from_spec({"authorityHost": sb.authority_host, "graphEndpoint": sb.graph_url.rsplit("/v1.0", 1)[0]})
    found = Directory(graph_client(credential, cloud, verify=str(sb.ca_path)))
    yield found
    await found.close()
    await credential.close()

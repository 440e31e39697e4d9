"""Fixtures for the sandbox tests: a running Sandbox per test (`sb`, from support.fixtures) and clients
built with the real SDKs, trusting the sandbox CA explicitly (connection_verify / an httpx client with
an SSL context)."""

from __future__ import annotations

import ssl
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from azure.identity.aio import ClientSecretCredential
from azure.synapse.accesscontrol.aio import AccessControlClient
from kiota_authentication_azure.azure_identity_authentication_provider import AzureIdentityAuthenticationProvider
from msgraph import GraphRequestAdapter, GraphServiceClient
from msgraph_core import GraphClientFactory

# Re-exported: the tests of this folder import them from here, with the helpers below.
from support.sandbox import OPERATOR as OPERATOR
from support.sandbox import ORG as ORG
from synapse_scim_sandbox import AdminClient, Sandbox

GRAPH_SCOPE = "https://graph.microsoft.com/.default"
SYNAPSE_SCOPE = "https://dev.azuresynapse.net/.default"


_HTTP_CLIENTS: list[httpx.AsyncClient] = []


@pytest.fixture(autouse=True)
async def _close_graph_http_clients() -> AsyncIterator[None]:
    """httpx clients made by graph_client() are closed after each test (after the sandbox stopped)."""
    yield
    while _HTTP_CLIENTS:
        await close_graph_http_client(_HTTP_CLIENTS.pop())


async def close_graph_http_client(client: httpx.AsyncClient) -> None:
    """msgraph_core's AsyncGraphTransport does not forward aclose() to the transport it wraps, so closing
    the client alone leaves its pooled connections open: close the wrapped transport as well."""
    inner = getattr(client._transport, "transport", None)
    await client.aclose()
    if inner is not None:
        await inner.aclose()


@pytest.fixture
def admin(sb: Sandbox) -> AdminClient:
    return AdminClient(sb.admin_url, sb.ca_path)


def secret_credential(sb: Sandbox, client: str = OPERATOR, secret: str | None = None) -> ClientSecretCredential:
    app = sb.client(client)
    return ClientSecretCredential(
        sb.tenant_id,
        app.client_id,
        secret or app.secret or "",
        authority=sb.authority_host,
        connection_verify=str(sb.ca_path),
    )


def graph_client(
    sb: Sandbox, credential: Any, scopes: list[str] | None = None, base_url: str | None = None
) -> GraphServiceClient:
    """msgraph client with an httpx client that trusts exactly the sandbox CA."""
    client = httpx.AsyncClient(verify=ssl.create_default_context(cafile=str(sb.ca_path)), timeout=30)
    _HTTP_CLIENTS.append(client)
    http = GraphClientFactory.create_with_default_middleware(client=client)
    provider = AzureIdentityAuthenticationProvider(credential, scopes=scopes or [GRAPH_SCOPE])
    adapter = GraphRequestAdapter(provider, client=http)
    adapter.base_url = base_url or sb.graph_url
    return GraphServiceClient(request_adapter=adapter)


def synapse_client(sb: Sandbox, credential: Any, workspace: str = "analytics", **kwargs: Any) -> AccessControlClient:
    return AccessControlClient(
        credential, sb.workspace_endpoint(workspace), connection_verify=str(sb.ca_path), **kwargs
    )


def raw(pipeline_response: Any, deserialized: Any, headers: Any) -> Any:
    """`cls=` hook: the SDK result plus the raw response."""
    return deserialized, pipeline_response.http_response, headers

"""The token endpoint through azure-identity (sync = MSAL, and aio): client secret, certificate,
workload identity token file, DefaultAzureCredential from the environment, AADSTS errors, audiences
and lifetimes. Sync credentials run in a worker thread (the sandbox shares the test's event loop)."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest
from azure.core.exceptions import ClientAuthenticationError
from azure.identity import CertificateCredential as SyncCertificateCredential
from azure.identity import ClientSecretCredential as SyncClientSecretCredential
from azure.identity import DefaultAzureCredential
from azure.identity import WorkloadIdentityCredential as SyncWorkloadIdentityCredential
from azure.identity.aio import CertificateCredential, WorkloadIdentityCredential

from synapse_scim_sandbox import AdminClient, Sandbox
from synapse_scim_sandbox.apps import ClientCertificate

from .conftest import GRAPH_SCOPE, OPERATOR, ORG, SYNAPSE_SCOPE, graph_client, secret_credential, synapse_client


async def test_async_client_secret(sb: Sandbox, admin: AdminClient) -> None:
    async with secret_credential(sb) as cred:
        token = await cred.get_token(SYNAPSE_SCOPE)
        again = await cred.get_token(SYNAPSE_SCOPE)
        graph = await cred.get_token(GRAPH_SCOPE)
    assert token.token == again.token != graph.token
    assert 3500 < token.expires_on - time.time() <= 3600
    info = sb.state.tokens.tokens[token.token]
    assert info.audience == "https://dev.azuresynapse.net"
    assert info.object_id == sb.client(OPERATOR).object_id
    assert (await admin.counters())["login.token.200"] == 2


async def test_sync_client_secret_discovers_openid_configuration(sb: Sandbox, admin: AdminClient) -> None:
    app = sb.client(OPERATOR)
    with SyncClientSecretCredential(
        sb.tenant_id,
        app.client_id,
        app.secret,
        authority=sb.authority_host,
        connection_verify=str(sb.ca_path),
        disable_instance_discovery=True,
    ) as cred:
        token = await asyncio.to_thread(cred.get_token, GRAPH_SCOPE)
    assert sb.state.tokens.tokens[token.token].audience == "https://graph.microsoft.com"
    counters = await admin.counters()
    assert counters["login.openidConfiguration.200"] == 1 and counters["login.token.200"] == 1
    log = await admin.request_log(service="login", operation="token")
    assert log[0]["path"] == f"/{sb.tenant_id}/oauth2/v2.0/token"


@pytest.mark.parametrize("sync", [False, True])
async def test_wrong_secret_is_an_aadsts_401(sb: Sandbox, admin: AdminClient, sync: bool) -> None:
    app = sb.client(OPERATOR)
    if sync:
        with SyncClientSecretCredential(
            sb.tenant_id,
            app.client_id,
            "wrong",
            authority=sb.authority_host,
            connection_verify=str(sb.ca_path),
            disable_instance_discovery=True,
        ) as cred:
            with pytest.raises(ClientAuthenticationError, match="AADSTS7000215"):
                await asyncio.to_thread(cred.get_token, SYNAPSE_SCOPE)
    else:
        async with secret_credential(sb, secret="wrong") as acred:
            with pytest.raises(ClientAuthenticationError, match="AADSTS7000215: Invalid client secret"):
                await acred.get_token(SYNAPSE_SCOPE)
    assert (await admin.counters())["login.token.401"] == 1


async def test_unknown_client_tenant_and_resource(sb: Sandbox) -> None:
    from azure.identity.aio import ClientSecretCredential

    kw = {"authority": sb.authority_host, "connection_verify": str(sb.ca_path)}
    async with ClientSecretCredential(sb.tenant_id, "00000000-0000-0000-0000-00000000beef", "x", **kw) as cred:
        with pytest.raises(ClientAuthenticationError, match="AADSTS700016"):
            await cred.get_token(SYNAPSE_SCOPE)
    app = sb.client(OPERATOR)
    async with ClientSecretCredential("other.onmicrosoft.com", app.client_id, app.secret, **kw) as cred:
        with pytest.raises(ClientAuthenticationError, match="AADSTS90002"):
            await cred.get_token(SYNAPSE_SCOPE)
    async with secret_credential(sb) as cred:
        with pytest.raises(ClientAuthenticationError, match="AADSTS500011"):
            await cred.get_token("https://vault.azure.net/.default")
        token = await cred.get_token(SYNAPSE_SCOPE)  # the tenant domain works as well as the id
        assert token.token


async def test_certificate_credential_async_and_sync(sb: Sandbox) -> None:
    app = sb.client(OPERATOR)
    assert app.certificate_path is not None and app.certificate_path.exists()
    async with CertificateCredential(
        sb.tenant_id,
        app.client_id,
        str(app.certificate_path),
        authority=sb.authority_host,
        connection_verify=str(sb.ca_path),
    ) as cred:
        token = await cred.get_token(GRAPH_SCOPE)
        client = graph_client(sb, cred)
        group = await client.groups.by_group_id(sb.state.directory.groups_named("Analysts")[0].id).get()
        assert group.display_name == "Analysts"
    with SyncCertificateCredential(
        sb.tenant_id,
        app.client_id,
        str(app.certificate_path),
        authority=sb.authority_host,
        connection_verify=str(sb.ca_path),
        disable_instance_discovery=True,
    ) as sync:
        sync_token = await asyncio.to_thread(sync.get_token, SYNAPSE_SCOPE)
    assert {sb.state.tokens.tokens[t].audience for t in (token.token, sync_token.token)} == {
        "https://graph.microsoft.com",
        "https://dev.azuresynapse.net",
    }


async def test_certificate_that_is_not_registered_is_rejected(sb: Sandbox, tmp_path: Path) -> None:
    other = ClientCertificate.generate("intruder")
    pem = tmp_path / "intruder.pem"
    pem.write_bytes(other.key_pem + other.pem)
    app = sb.client(OPERATOR)
    async with CertificateCredential(
        sb.tenant_id, app.client_id, str(pem), authority=sb.authority_host, connection_verify=str(sb.ca_path)
    ) as cred:
        with pytest.raises(ClientAuthenticationError, match="AADSTS700027"):
            await cred.get_token(GRAPH_SCOPE)


async def test_workload_identity_token_file(sb: Sandbox, tmp_path: Path) -> None:
    app = sb.client(OPERATOR)
    assert app.federated_token_file is not None
    kw = {"authority": sb.authority_host, "connection_verify": str(sb.ca_path)}
    async with WorkloadIdentityCredential(
        tenant_id=sb.tenant_id, client_id=app.client_id, token_file_path=str(app.federated_token_file), **kw
    ) as cred:
        token = await cred.get_token(SYNAPSE_SCOPE)
    with SyncWorkloadIdentityCredential(
        tenant_id=sb.tenant_id, client_id=app.client_id, token_file_path=str(app.federated_token_file), **kw
    ) as sync:
        assert (await asyncio.to_thread(sync.get_token, GRAPH_SCOPE)).token != token.token
    forged = tmp_path / "forged-token"
    forged.write_text("eyJhbGciOiJub25lIn0.eyJzdWIiOiJ4In0.x")
    async with WorkloadIdentityCredential(
        tenant_id=sb.tenant_id, client_id=app.client_id, token_file_path=str(forged), **kw
    ) as cred:
        with pytest.raises(ClientAuthenticationError, match="AADSTS700213"):
            await cred.get_token(SYNAPSE_SCOPE)


async def test_default_azure_credential_from_env(sb: Sandbox, monkeypatch: pytest.MonkeyPatch) -> None:
    for key, value in sb.env().items():
        monkeypatch.setenv(key, value)
    with DefaultAzureCredential(disable_instance_discovery=True) as cred:
        token = await asyncio.to_thread(cred.get_token, SYNAPSE_SCOPE)
    assert sb.state.tokens.tokens[token.token].client_id == sb.client(OPERATOR).client_id


async def test_tokens_carry_audience_graph_and_synapse_reject_the_other(sb: Sandbox) -> None:
    from azure.synapse.accesscontrol.aio import AccessControlClient
    from msgraph.generated.models.o_data_errors.o_data_error import ODataError

    async with secret_credential(sb) as cred:
        client = graph_client(sb, cred, scopes=[SYNAPSE_SCOPE])  # a Synapse token sent to Graph
        with pytest.raises(ODataError) as info:
            await client.groups.get()
        assert info.value.response_status_code == 401
        assert info.value.error.code == "InvalidAuthenticationToken"
        assert "audience" in info.value.error.message
        async with AccessControlClient(
            cred, sb.workspace_endpoint("analytics"), connection_verify=str(sb.ca_path), credential_scopes=[GRAPH_SCOPE]
        ) as ac:
            with pytest.raises(ClientAuthenticationError) as err:
                await ac.role_definitions.list_scopes()
            assert err.value.status_code == 401 and err.value.error.code == "AuthenticationFailed"


async def test_token_lifetime_is_configurable(tmp_path: Path) -> None:
    async with Sandbox(seed=ORG, cert_dir=tmp_path, token_lifetime=600) as sb:
        async with secret_credential(sb) as cred:
            token = await cred.get_token(SYNAPSE_SCOPE)
            assert 590 < token.expires_on - time.time() <= 600
            async with synapse_client(sb, cred) as ac:
                await AdminClient(sb.admin_url, sb.ca_path).set_token_lifetime(1200)
                async with secret_credential(sb) as other:
                    fresh = await other.get_token(GRAPH_SCOPE)
                assert 1190 < fresh.expires_on - time.time() <= 1200
                assert len(await ac.role_definitions.list_scopes()) == 6

"""The admin API and its clients: directory and workspace changes by name or id, access levels, token
lifetime and expiry, reset; SandboxThread with the sync SDKs and SyncAdminClient."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest
from azure.core.exceptions import ClientAuthenticationError, HttpResponseError
from azure.identity import CertificateCredential, ClientSecretCredential
from azure.synapse.accesscontrol import AccessControlClient

from synapse_scim_sandbox import AdminClient, AdminError, Sandbox, SandboxThread, SeedError

from .conftest import OPERATOR, ORG, SYNAPSE_SCOPE, graph_client, secret_credential, synapse_client


async def test_directory_changes(sb: Sandbox, admin: AdminClient) -> None:
    d = sb.state.directory
    user = await admin.add_user("zoe@contoso.com", "Zoe Zimmer")
    assert d.user("zoe@contoso.com").display_name == "Zoe Zimmer" and user["accountEnabled"] is True
    group = await admin.add_group("Interns", ["zoe@contoso.com", "Analysts"])
    assert [d.get(m).display_name for m in d.groups[group["id"]].members] == ["Zoe Zimmer", "Analysts"]
    sp = await admin.add_service_principal("reporting-bot")
    assert (await admin.add_member("Interns", "reporting-bot"))["changed"] is True
    assert (await admin.add_member(group["id"], sp["id"]))["changed"] is False
    assert (await admin.remove_member("Interns", "Analysts"))["changed"] is True
    assert (await admin.disable_user("zoe@contoso.com"))["accountEnabled"] is False
    assert (await admin.enable_user(user["id"]))["accountEnabled"] is True
    await admin.rename_group("Interns", "Vendors")
    assert d.groups[group["id"]].display_name == "Vendors"
    async with secret_credential(sb) as cred:
        members = await graph_client(sb, cred).groups.by_group_id(group["id"]).transitive_members.get()
    assert {m.display_name for m in members.value} == {"Zoe Zimmer", "reporting-bot"}
    await admin.delete_user("zoe@contoso.com")
    assert list(d.groups[group["id"]].members) == [sp["id"]]
    await admin.delete_group("Vendors")
    assert group["id"] not in d.groups


async def test_errors_name_the_problem(admin: AdminClient) -> None:
    with pytest.raises(AdminError) as info:
        await admin.add_member("No Such Group", "alice@contoso.com")
    assert info.value.status == 404 and "No Such Group" in info.value.message
    await admin.add_service_principal("Analysts")
    with pytest.raises(AdminError) as info:
        await admin.add_member("Spark Team", "Analysts")  # a group and a service principal share the name
    assert info.value.status == 400 and "ambiguous" in info.value.message
    with pytest.raises(AdminError) as info:
        await admin.add_user("alice@contoso.com")
    assert info.value.status == 409


async def test_manual_assignments(sb: Sandbox, admin: AdminClient) -> None:
    seeded = await admin.list_assignments("analytics")
    assert len(seeded) == 2 and all(a["createdBy"] is None for a in seeded)
    grant = await admin.add_assignment(
        "analytics", "Synapse User", "Analysts", "workspaces/analytics/bigDataPools/sparkpool"
    )
    assert grant["principalType"] == "Group" and grant["roleDefinitionId"] == "2a385764-43e8-416c-9825-7b18d05a2c4b"
    with pytest.raises(AdminError) as info:
        await admin.add_assignment(
            "analytics", "Synapse User", "Analysts", "workspaces/analytics/bigDataPools/sparkpool"
        )
    assert info.value.status == 409 and info.value.code == "RoleAssignmentAlreadyExists"
    with pytest.raises(AdminError) as info:
        await admin.add_assignment(
            "analytics", "Synapse Artifact User", "Analysts", "workspaces/analytics/bigDataPools/sparkpool"
        )
    assert info.value.status == 400
    async with secret_credential(sb) as cred, synapse_client(sb, cred) as ac:
        await ac.role_assignments.create_role_assignment(
            "by-sdk",
            "2a385764-43e8-416c-9825-7b18d05a2c4b",
            sb.state.directory.user("bob@contoso.com").id,
            "workspaces/analytics",
        )
    listed = {a["id"]: a for a in await admin.list_assignments("analytics")}
    assert listed["by-sdk"]["createdBy"] == sb.client(OPERATOR).client_id
    await admin.delete_assignment("analytics", grant["id"])
    assert grant["id"] not in {a["id"] for a in await admin.list_assignments("analytics")}


async def test_token_expiry_lifetime_and_clock(sb: Sandbox, admin: AdminClient) -> None:
    async with secret_credential(sb) as cred:
        first = await cred.get_token(SYNAPSE_SCOPE)
        assert (await admin.expire_tokens(OPERATOR))["expired"] == 1
        assert sb.state.tokens.tokens[first.token].expires_at < time.time()
        await admin.set_token_lifetime(120)
    async with secret_credential(sb) as cred:
        token = await cred.get_token(SYNAPSE_SCOPE)
    assert 110 < token.expires_on - time.time() <= 120
    assert (await admin.advance_clock(60))["offset"] == 60
    with pytest.raises(AdminError):
        await admin.set_token_lifetime(0)


async def test_reset_restores_the_seed(sb: Sandbox, admin: AdminClient) -> None:
    await admin.delete_group("Analysts")
    await admin.add_assignment("analytics", "Synapse User", "bob@contoso.com")
    await admin.inject_fault({"service": "graph", "status": 500})
    await admin.reset()
    assert sb.state.directory.groups_named("Analysts")
    assert len(await admin.list_assignments("analytics")) == 2
    assert await admin.faults() == [] and await admin.counters() == {}
    info = await admin.info()
    assert info["graph_url"] == sb.graph_url and info["state"]["groups"] == 6
    assert info["clients"][0]["name"] == OPERATOR


def test_admin_client_with_asyncio_run_and_sync_client(tmp_path: Path) -> None:
    with SandboxThread(seed=ORG, cert_dir=tmp_path) as sb:
        admin = AdminClient(sb.admin_url, sb.ca_path)
        assert asyncio.run(admin.add_member("Analysts", "bob@contoso.com"))["changed"] is True
        sync = sb.admin
        assert sync.remove_member("Analysts", "bob@contoso.com")["changed"] is True
        assert sync.counters() == {}
        assert sb.call(lambda state, name: len(state.directory.groups_named(name)), "Analysts") == 1
        with pytest.raises(AdminError):
            sync.delete_group("nope")


def test_sandbox_thread_with_sync_sdks(tmp_path: Path) -> None:
    with SandboxThread(seed=ORG, cert_dir=tmp_path, page_size=1) as sb:
        app = sb.client(OPERATOR)
        cert = CertificateCredential(
            sb.tenant_id,
            app.client_id,
            str(app.certificate_path),
            authority=sb.authority_host,
            connection_verify=str(sb.ca_path),
            disable_instance_discovery=True,
        )
        with (
            cert,
            AccessControlClient(cert, sb.workspace_endpoint("analytics"), connection_verify=str(sb.ca_path)) as client,
        ):

            def cls(pipeline_response, deserialized, headers):  # type: ignore[no-untyped-def]
                return deserialized, headers

            tok, ids = None, []
            while True:
                page, headers = client.role_assignments.list_role_assignments(continuation_token_parameter=tok, cls=cls)
                ids += [a.id for a in page.value]
                tok = headers["x-ms-continuation"]
                if not tok:
                    break
            assert len(ids) == 2
            sb.admin.expire_tokens()
            with pytest.raises(ClientAuthenticationError):
                client.role_definitions.list_scopes()
        wrong = ClientSecretCredential(
            sb.tenant_id,
            app.client_id,
            "nope",
            authority=sb.authority_host,
            connection_verify=str(sb.ca_path),
            disable_instance_discovery=True,
        )
        with (
            wrong,
            AccessControlClient(wrong, sb.workspace_endpoint("analytics"), connection_verify=str(sb.ca_path)) as client,
            pytest.raises(ClientAuthenticationError, match="AADSTS7000215"),
        ):
            client.role_definitions.list_scopes()
        sb.admin.set_access("analytics", OPERATOR, "none")
        secret = ClientSecretCredential(
            sb.tenant_id,
            app.client_id,
            app.secret,
            authority=sb.authority_host,
            connection_verify=str(sb.ca_path),
            disable_instance_discovery=True,
        )
        with (
            secret,
            AccessControlClient(
                secret, sb.workspace_endpoint("analytics"), connection_verify=str(sb.ca_path)
            ) as client,
            pytest.raises(HttpResponseError) as e,
        ):
            client.role_definitions.list_scopes()
        assert e.value.status_code == 403
    with pytest.raises(RuntimeError):
        sb.authority_host  # noqa: B018 - stopped: no endpoints any more


def test_bad_seed_fails_before_starting(tmp_path: Path) -> None:
    with pytest.raises(SeedError):
        SandboxThread(seed={"users": [{"upn": "no-at-sign"}]}, cert_dir=tmp_path)

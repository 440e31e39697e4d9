"""Synapse access control through azure-synapse-accesscontrol (aio and sync): role definitions, scopes,
role assignments (create, 409, 400s, get, 404, delete 204, filtered lists paged with x-ms-continuation),
checkAccess, authorization (403), 401 on expiry, retries after 429 / 5xx, timeouts and resets."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from azure.core.exceptions import (
    ClientAuthenticationError,
    HttpResponseError,
    ResourceExistsError,
    ResourceNotFoundError,
    ServiceRequestError,
    ServiceResponseError,
)
from azure.identity import ClientSecretCredential as SyncClientSecretCredential
from azure.synapse.accesscontrol import AccessControlClient as SyncAccessControlClient
from azure.synapse.accesscontrol.models import RequiredAction, SubjectInfo

from synapse_scim_sandbox import AdminClient, Sandbox, synthetic_org
from synapse_scim_sandbox.tls import client_context

from .conftest import OPERATOR, SYNAPSE_SCOPE, raw, secret_credential, synapse_client

ADMIN_ROLE = "6e4bf58a-b8e1-4cc3-bbf9-d73143322b78"
CONTRIBUTOR = "7572bffe-f453-4b66-912a-46cc5ef38fda"
ARTIFACT_USER = "53faaa0e-40b6-40c8-a2ff-e38f2d388875"
WS = "workspaces/analytics"


@pytest.fixture
async def ac(sb: Sandbox) -> AsyncIterator[Any]:
    async with secret_credential(sb) as cred, synapse_client(sb, cred) as client:
        yield client


def uid(sb: Sandbox, upn: str) -> str:
    return sb.state.directory.user(upn).id


async def list_all(ac: Any, **filters: Any) -> tuple[list[Any], list[str]]:
    items, tokens, tok = [], [], None
    for _ in range(1000):
        page, _, headers = await ac.role_assignments.list_role_assignments(
            continuation_token_parameter=tok, cls=raw, **filters
        )
        assert page.count == len(page.value)
        items += page.value
        tok = headers["x-ms-continuation"]
        tokens.append(tok)
        if not tok:
            return items, tokens
    raise AssertionError("paging did not end")


async def test_role_definitions_and_scopes(ac: Any) -> None:
    roles = await ac.role_definitions.list_role_definitions()
    assert len(roles) == 11 and all(r.is_built_in and r.availability_status == "Available" for r in roles)
    admin = next(r for r in roles if r.name == "Synapse Administrator")
    assert (
        admin.id == ADMIN_ROLE
        and "Microsoft.Synapse/workspaces/roleAssignments/write" in admin.permissions[0].data_actions
    )
    assert await ac.role_definitions.list_role_definitions(is_built_in=False) == []
    pool_roles = await ac.role_definitions.list_role_definitions(scope=f"{WS}/bigDataPools/sparkpool")
    assert {r.name for r in pool_roles} == {
        "Synapse Administrator",
        "Synapse Contributor",
        "Synapse Compute Operator",
        "Synapse User",
    }
    one = await ac.role_definitions.get_role_definition_by_id(CONTRIBUTOR)
    assert one.name == "Synapse Contributor"
    with pytest.raises(ResourceNotFoundError):
        await ac.role_definitions.get_role_definition_by_id(str(uuid.uuid4()))
    scopes = await ac.role_definitions.list_scopes()
    assert scopes[0] == "workspaces/{workspaceName}" and len(scopes) == 6


async def test_create_get_delete(sb: Sandbox, ac: Any) -> None:
    alice = uid(sb, "alice@contoso.com")
    created = await ac.role_assignments.create_role_assignment("my-id-1", CONTRIBUTOR, alice, WS, principal_type="User")
    assert (created.id, created.role_definition_id, created.principal_id, created.scope, created.principal_type) == (
        "my-id-1",
        CONTRIBUTOR,
        alice,
        WS,
        "User",
    )
    bare = await ac.role_assignments.create_role_assignment(
        str(uuid.uuid4()), CONTRIBUTOR, alice, f"{WS}/bigDataPools/sparkpool"
    )
    assert bare.principal_type == "User"  # not sent: the service takes it from the directory
    got = await ac.role_assignments.get_role_assignment_by_id("my-id-1")
    assert got.principal_id == alice
    _, response, _ = await ac.role_assignments.delete_role_assignment_by_id("my-id-1", cls=raw)
    assert response.status_code == 204 and response.body() == b""
    with pytest.raises(ResourceNotFoundError) as info:
        await ac.role_assignments.get_role_assignment_by_id("my-id-1")
    assert info.value.status_code == 404 and info.value.error.code == "RoleAssignmentNotFound"
    await ac.role_assignments.delete_role_assignment_by_id("my-id-1")  # deleting again is a no-op 204


async def test_duplicate_is_409(sb: Sandbox, ac: Any) -> None:
    bob = uid(sb, "bob@contoso.com")
    await ac.role_assignments.create_role_assignment(str(uuid.uuid4()), CONTRIBUTOR, bob, WS)
    with pytest.raises(ResourceExistsError) as info:
        await ac.role_assignments.create_role_assignment(str(uuid.uuid4()), CONTRIBUTOR, bob, WS)
    assert info.value.status_code == 409 and info.value.error.code == "RoleAssignmentAlreadyExists"
    assert f"principalId '{bob}'" in info.value.message
    heidi = uid(sb, "heidi@contoso.com")  # the seeded manual grant counts as well
    with pytest.raises(ResourceExistsError):
        await ac.role_assignments.create_role_assignment(str(uuid.uuid4()), ADMIN_ROLE, heidi, WS)


@pytest.mark.parametrize(
    ("role", "scope", "code"),
    [
        (str(uuid.UUID(int=7)), WS, "RoleDefinitionNotFound"),
        (CONTRIBUTOR, "workspace/analytics", "InvalidScope"),
        (CONTRIBUTOR, "workspaces/analytics/bigDataPools", "InvalidScope"),
        (CONTRIBUTOR, "workspaces/analytics/sqlPools/x", "InvalidScope"),
        (CONTRIBUTOR, "workspaces/other", "InvalidScope"),
        (CONTRIBUTOR, f"{WS}/bigDataPools/missing", "InvalidScope"),
        (ARTIFACT_USER, f"{WS}/bigDataPools/sparkpool", "RoleNotApplicableAtScope"),
        ("Synapse User", WS, "InvalidRoleDefinitionId"),
    ],
)
async def test_bad_requests_are_400(sb: Sandbox, ac: Any, role: str, scope: str, code: str) -> None:
    with pytest.raises(HttpResponseError) as info:
        await ac.role_assignments.create_role_assignment(str(uuid.uuid4()), role, uid(sb, "bob@contoso.com"), scope)
    assert info.value.status_code == 400 and info.value.error.code == code


async def test_list_filters_are_exact(sb: Sandbox, ac: Any) -> None:
    alice, bob = uid(sb, "alice@contoso.com"), uid(sb, "bob@contoso.com")
    for principal, scope in ((alice, WS), (alice, f"{WS}/bigDataPools/sparkpool"), (bob, WS)):
        await ac.role_assignments.create_role_assignment(str(uuid.uuid4()), CONTRIBUTOR, principal, scope)
    items, _ = await list_all(ac, principal_id=alice)
    assert {a.scope for a in items} == {WS, f"{WS}/bigDataPools/sparkpool"}
    items, _ = await list_all(ac, scope=WS, role_id=CONTRIBUTOR)
    assert {a.principal_id for a in items} == {alice, bob}
    items, _ = await list_all(ac, principal_id=alice.upper(), role_id=CONTRIBUTOR, scope=WS)
    assert len(items) == 1
    items, _ = await list_all(ac)
    assert len(items) == 5  # 2 seeded + 3


async def test_paging_past_several_pages(tmp_path: Path) -> None:
    seed = synthetic_org(users=60, groups=10, service_principals=4, assignments=230)
    async with Sandbox(seed=seed, cert_dir=tmp_path, page_size=25) as sb:
        async with secret_credential(sb) as cred, synapse_client(sb, cred, "synthetic") as ac:
            items, tokens = await list_all(ac)
            assert len(items) == 230 and len({a.id for a in items}) == 230 and len(tokens) == 10
            assert tokens[-1] == "" and all(tokens[:-1])
            store = sb.state.workspaces["synthetic"].assignments
            assert [a.id for a in items] == [a.id for a in store]
            role = items[0].role_definition_id
            filtered, _ = await list_all(ac, role_id=role)
            assert filtered and {a.role_definition_id for a in filtered} == {role}
            assert len(filtered) == sum(1 for a in store if a.role_id == role)
            # an empty x-ms-continuation header (as the Azure CLI sends) means "from the start"
            page, _, headers = await ac.role_assignments.list_role_assignments(continuation_token_parameter="", cls=raw)
            assert [a.id for a in page.value] == [a.id for a in items[:25]] and headers["x-ms-continuation"]
            log = await sb.admin.request_log(service="synapse", operation="listRoleAssignments")
            assert log[1]["headers"]["x-ms-continuation"] == tokens[0]
            with pytest.raises(HttpResponseError) as info:
                await ac.role_assignments.list_role_assignments(continuation_token_parameter="garbage!")
            assert info.value.status_code == 400


async def test_check_access(sb: Sandbox, ac: Any) -> None:
    heidi, erin = uid(sb, "heidi@contoso.com"), uid(sb, "erin@contoso.com")
    actions = [RequiredAction(id="Microsoft.Synapse/workspaces/roleAssignments/write", is_data_action=True)]
    result, response, _ = await ac.role_assignments.check_principal_access(
        SubjectInfo(principal_id=heidi), actions, f"{WS}/bigDataPools/sparkpool", cls=raw
    )
    assert result.access_decisions is None  # the SDK model expects lowercase; the service answers AccessDecisions
    body = json.loads(response.text())
    assert body["AccessDecisions"][0]["accessDecision"] == "Allowed"
    assert body["AccessDecisions"][0]["roleAssignment"]["principalId"] == heidi
    _, response, _ = await ac.role_assignments.check_principal_access(
        SubjectInfo(principal_id=erin), actions, WS, cls=raw
    )
    assert json.loads(response.text())["AccessDecisions"][0]["accessDecision"] == "NotAllowed"


async def test_expired_token_is_401(ac: Any, admin: AdminClient) -> None:
    await ac.role_definitions.list_scopes()
    await admin.expire_tokens()
    with pytest.raises(ClientAuthenticationError) as info:
        await ac.role_definitions.list_scopes()
    assert info.value.status_code == 401 and info.value.error.code == "AuthenticationFailed"


async def test_authorization_levels(sb: Sandbox, ac: Any, admin: AdminClient) -> None:
    erin = uid(sb, "erin@contoso.com")
    await admin.set_access("analytics", OPERATOR, "reader")
    assert len(await ac.role_definitions.list_scopes()) == 6
    with pytest.raises(HttpResponseError) as info:
        await ac.role_assignments.create_role_assignment(str(uuid.uuid4()), CONTRIBUTOR, erin, WS)
    operator = sb.client(OPERATOR).object_id
    assert info.value.status_code == 403 and info.value.error.code == "Unauthorized"
    assert info.value.error.message == (
        f"The principal '{operator}' does not have the required Synapse RBAC permission to perform this action. "
        "Required permission: Action: Microsoft.Synapse/workspaces/roleAssignments/write, "
        "Scope: workspaces/analytics/*."
    )
    await admin.set_access("analytics", OPERATOR, "rbac")  # decided by the operator's own role assignments
    with pytest.raises(HttpResponseError):
        await ac.role_definitions.list_scopes()
    await admin.add_assignment("analytics", "Synapse Administrator", OPERATOR)
    await ac.role_assignments.create_role_assignment(str(uuid.uuid4()), CONTRIBUTOR, erin, WS)
    await admin.set_access("analytics", OPERATOR, "none")
    with pytest.raises(HttpResponseError) as info:
        await ac.role_definitions.list_scopes()
    assert info.value.status_code == 403


async def test_retry_after_429_on_create(sb: Sandbox, ac: Any, admin: AdminClient) -> None:
    await admin.inject_fault(
        {"service": "synapse", "operation": "createRoleAssignment", "status": 429, "retry_after": 1, "count": 1}
    )
    created = await ac.role_assignments.create_role_assignment(
        "after-429", CONTRIBUTOR, uid(sb, "erin@contoso.com"), WS
    )
    assert created.id == "after-429"
    log = await admin.request_log(service="synapse", operation="createRoleAssignment")
    assert [e["status"] for e in log] == [429, 200]
    assert log[1]["time"] - log[0]["time"] >= 0.9


async def test_5xx_retried_and_surfaced(sb: Sandbox, ac: Any, admin: AdminClient) -> None:
    await admin.inject_fault({"service": "synapse", "operation": "listRoleAssignments", "kinds": ["500"], "count": 1})
    await admin.inject_fault(
        {"service": "synapse", "operation": "listRoleAssignments", "status": 503, "retry_after": 0, "count": 1}
    )
    async with secret_credential(sb) as cred, synapse_client(sb, cred, retry_backoff_factor=0.01) as quick:
        page = await quick.role_assignments.list_role_assignments()
    assert page.count == 2
    counters = await admin.counters()
    assert counters["synapse.listRoleAssignments.500"] == 1 and counters["synapse.listRoleAssignments.503"] == 1
    await admin.inject_fault({"service": "synapse", "operation": "getRoleDefinition", "status": 503, "count": 1})
    async with secret_credential(sb) as cred, synapse_client(sb, cred, retry_total=0) as no_retry:
        with pytest.raises(HttpResponseError) as info:
            await no_retry.role_definitions.get_role_definition_by_id(CONTRIBUTOR)
    assert info.value.status_code == 503 and info.value.error.code == "ServiceUnavailable"


async def test_timeout_and_reset(sb: Sandbox, admin: AdminClient) -> None:
    await admin.inject_fault(
        {"service": "synapse", "operation": "listScopes", "kind": "timeout", "hold": 30, "count": 1}
    )
    # aiohttp itself resends once when a kept-alive connection is reset, so reset twice to surface it
    await admin.inject_fault({"service": "synapse", "operation": "getRoleAssignment", "kind": "reset", "count": 2})
    async with secret_credential(sb) as cred:
        async with synapse_client(sb, cred, retry_total=0, read_timeout=0.3) as ac:
            with pytest.raises((ServiceResponseError, ServiceRequestError)):
                await ac.role_definitions.list_scopes()
            with pytest.raises((ServiceResponseError, ServiceRequestError)):
                await ac.role_assignments.get_role_assignment_by_id("x")
        await admin.inject_fault({"service": "synapse", "operation": "getRoleAssignment", "kind": "reset", "count": 1})
        async with synapse_client(sb, cred) as ac:  # with retries the SDK gets through
            with pytest.raises(ResourceNotFoundError):
                await ac.role_assignments.get_role_assignment_by_id("x")
    # the held request is logged once the server notices that the client hung up
    assert len(await admin.wait_for_requests("synapse", "listScopes", status="timeout", timeout=10)) == 1
    counters = await admin.counters()
    assert counters["synapse.getRoleAssignment.reset"] == 3 and counters["synapse.getRoleAssignment.404"] == 1
    assert counters["synapse.listScopes.timeout"] == 1


async def test_missing_api_version_and_bearer_token(sb: Sandbox) -> None:
    async with secret_credential(sb) as cred:
        token = (await cred.get_token(SYNAPSE_SCOPE)).token
    url = sb.workspace_endpoint("analytics") + "/roleAssignments"
    ssl_ctx = client_context(sb.ca_path)
    async with aiohttp.ClientSession() as http:
        async with http.get(url, headers={"Authorization": f"Bearer {token}"}, ssl=ssl_ctx) as r:
            assert r.status == 400 and (await r.json())["error"]["code"] == "MissingApiVersionParameter"
        async with http.get(
            url + "?api-version=2019-06-01-preview", headers={"Authorization": f"Bearer {token}"}, ssl=ssl_ctx
        ) as r:
            assert r.status == 400 and (await r.json())["error"]["code"] == "UnsupportedApiVersion"
        async with http.get(url + "?api-version=2020-12-01", ssl=ssl_ctx) as r:
            assert r.status == 401 and (await r.json())["error"]["code"] == "AuthenticationFailed"
            assert r.headers["WWW-Authenticate"].startswith("Bearer ")
        async with http.get(
            url + "?api-version=2020-12-01", headers={"Authorization": f"Bearer {token}"}, ssl=ssl_ctx
        ) as r:
            assert r.status == 200 and r.headers["Content-Type"] == "application/json; charset=utf-8"


async def test_sync_client(sb: Sandbox) -> None:
    app = sb.client(OPERATOR)

    def run() -> list[str]:
        cred = SyncClientSecretCredential(
            sb.tenant_id,
            app.client_id,
            app.secret,
            authority=sb.authority_host,
            connection_verify=str(sb.ca_path),
            disable_instance_discovery=True,
        )
        with (
            cred,
            SyncAccessControlClient(
                cred, sb.workspace_endpoint("analytics"), connection_verify=str(sb.ca_path)
            ) as client,
        ):
            alice = sb.state.directory.user("alice@contoso.com").id
            client.role_assignments.create_role_assignment("sync-1", CONTRIBUTOR, alice, WS)
            assert client.role_assignments.get_role_assignment_by_id("sync-1").principal_id == alice
            ids = [a.id for a in client.role_assignments.list_role_assignments(principal_id=alice).value]
            client.role_assignments.delete_role_assignment_by_id("sync-1")
            return ids

    assert await asyncio.to_thread(run) == ["sync-1"]

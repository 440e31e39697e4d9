"""Conformance of the Synapse emulator with behaviour recorded from the real service.

Each test names the recording it follows: the az CLI recording `test_access_control.yaml` (azure-cli,
2022-06, api-version 2020-08-01-preview) and the azure-sdk-for-js recording `recording_should_list_roles`
(2022-12, api-version 2020-12-01). The SDK is used where it can express the request; raw HTTPS where
it cannot (another api-version, response headers).
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest

from synapse_scim_sandbox import Sandbox
from synapse_scim_sandbox.tls import client_context

from .conftest import SYNAPSE_SCOPE, secret_credential, synapse_client

CONTRIBUTOR = "7572bffe-f453-4b66-912a-46cc5ef38fda"
WS = "workspaces/analytics"
POOL = f"{WS}/bigDataPools/sparkpool"
POOL2 = f"{WS}/bigDataPools/sparkpool2"  # its name starts with POOL's: a string-prefix match would be wrong

NBSP, ZWSP = "\u00a0", "\u200b"
#: GET /roleDefinitions of the real service (both recordings carry the same text, U+00A0 and U+200B included).
DESCRIPTIONS = {
    "6e4bf58a-b8e1-4cc3-bbf9-d73143322b78": "Full Synapse access to serverless SQL pools, Apache Spark pools and "
    f"Integration runtimes.{NBSP} Includes create, read, update and delete access to all published code artifacts."
    f"{NBSP} Includes Compute Operator, Linked Data Manager, and Credential User permissions on the workspace system "
    f"identity credential.{NBSP} Includes granting access.{NBSP} Azure permissions are required to create, delete, "
    f"or manage compute resources.{ZWSP}",
    "dd665582-e433-40ca-b183-1b1b33e73375": "Creation and management of managed private endpoints, linked services, "
    f"and credentials.{ZWSP}",
    "7572bffe-f453-4b66-912a-46cc5ef38fda": "Full Synapse access to serverless SQL pools, Apache Spark pools, "
    f"Integration runtimes.{NBSP} Includes create, read, update, and delete access to all published code artifacts "
    f"and their outputs, including credentials and linked services.{NBSP} Includes compute operator permissions. "
    f"Does not include permission to use credentials and run pipelines. Does not include granting access.{ZWSP}",
    "05930f57-09a3-4c0d-9fa9-6d1eb91c178b": "Create, read, update, and delete access to published code artifacts "
    "and their outputs. Does not include permission to run code or pipelines, or to grant access."
    f"{NBSP}{ZWSP}",
    "53faaa0e-40b6-40c8-a2ff-e38f2d388875": "Read access to published code artifacts and their outputs. Can create "
    f"new artifacts but cannot publish changes or run code without additional permissions.{ZWSP}",
    "e3844cc7-4670-42cb-9349-9bdac1ee7881": f"Submit Spark jobs and notebooks and view logs.{NBSP} Includes "
    "canceling Spark jobs submitted by any user. Requires additional credential use permissions on the workspace "
    f"system identity to run pipelines, view pipeline runs and outputs.{ZWSP}",
    "5eb298b4-692c-4241-9cf0-f58a3b42bb25": "Runtime and configuration-time use of secrets within credentials and "
    "linked services in activities like pipeline runs. To run pipelines, this role is required, scoped to the "
    f"workspace system identity.{ZWSP}",
    "2a385764-43e8-416c-9825-7b18d05a2c4b": "List and view details of SQL pools, Apache Spark pools, Integration "
    f"runtimes, and published linked services and credentials.{NBSP} Does not include other published code "
    f"artifacts.{NBSP} Can create new artifacts but cannot run or publish without additional permissions."
    f"{NBSP}{NBSP}{NBSP}{ZWSP}",
    "c3a6d2f1-a26f-4810-9b0f-591308d5cbf1": f"Full Synapse access to Apache Spark Pools.{NBSP} Create, read, "
    "update, and delete access to published Spark job definitions, notebooks, and their outputs, and to libraries, "
    f"linked services and credentials.{NBSP} Includes read access to all other published code artifacts. Does not "
    f"include permission to use credentials and run pipelines. Does not include granting access.{ZWSP}",
    "7af0c69a-a548-47d6-aea3-d00e69bd83aa": f"Full Synapse access to serverless SQL pools.{NBSP} Create, read, "
    f"update, and delete access to published SQL scripts, credentials and linked services.{NBSP} Includes read "
    f"access to all other published code artifacts.{NBSP} Does not include permission to use credentials and run "
    "pipelines. Does not include granting access.",
    "8f9b2195-5b12-4a7c-af30-8f1f46197650": "Grants read access to published code, including logs and outputs for "
    "notebooks and pipelines. Includes ability to list and view details of serverless SQL pools, Apache Spark "
    "pools, Data Explorer pools, and Integration runtimes.",
}


@pytest.fixture
async def ac(sb: Sandbox) -> AsyncIterator[Any]:
    async with secret_credential(sb) as cred, synapse_client(sb, cred) as client:
        yield client


class Raw:
    """Plain HTTPS to the workspace endpoint with the operator's bearer token and the sandbox CA."""

    def __init__(self, sb: Sandbox, http: aiohttp.ClientSession, token: str) -> None:
        self.base = sb.workspace_endpoint("analytics")
        self.http = http
        self.kwargs = {"headers": {"Authorization": f"Bearer {token}"}, "ssl": client_context(sb.ca_path)}

    async def call(
        self, method: str, path: str, version: str, body: Any = None, **params: str
    ) -> tuple[int, Any, Any, bytes]:
        """(status, parsed JSON body or None, headers, raw body)"""
        async with self.http.request(
            method, self.base + path, params={"api-version": version, **params}, json=body, **self.kwargs
        ) as r:
            raw = await r.read()
            return r.status, (await r.json(content_type=None)) if raw else None, r.headers, raw


@pytest.fixture
async def http(sb: Sandbox) -> AsyncIterator[Raw]:
    async with secret_credential(sb) as cred:
        token = (await cred.get_token(SYNAPSE_SCOPE)).token
    async with aiohttp.ClientSession() as session:
        yield Raw(sb, session, token)


async def list_all(ac: Any, **filters: Any) -> list[Any]:
    def keep(_: Any, page: Any, headers: Any) -> Any:
        return page, headers

    items, token = [], None
    for _ in range(100):
        page, headers = await ac.role_assignments.list_role_assignments(
            continuation_token_parameter=token, cls=keep, **filters
        )
        items += page.value
        token = headers["x-ms-continuation"]
        if not token:
            return items
    raise AssertionError("paging did not end")


async def test_create_without_principal_type_is_given_the_type_from_the_directory(sb: Sandbox, ac: Any) -> None:
    """The az CLI recording: a PUT without principalType answers principalType ServicePrincipal, and GET and
    list return it as well."""
    d = sb.state.directory
    principals = {
        d.user("alice@contoso.com").id: "User",
        d.groups_named("Data Engineers")[0].id: "Group",
        d.sps_named("etl-pipeline")[0].id: "ServicePrincipal",
    }
    for principal, expected in principals.items():
        aid = str(uuid.uuid4())
        created = await ac.role_assignments.create_role_assignment(aid, CONTRIBUTOR, principal, WS)
        assert created.principal_type == expected
        assert (await ac.role_assignments.get_role_assignment_by_id(aid)).principal_type == expected
        listed = await list_all(ac, principal_id=principal, role_id=CONTRIBUTOR)
        assert [(a.id, a.principal_type) for a in listed] == [(aid, expected)]


async def test_scope_filter_also_returns_the_enclosing_scopes(sb: Sandbox, ac: Any) -> None:
    """The az CLI recording: `scope=workspaces/ws/bigDataPools/test` lists the assignment at `workspaces/ws`
    next to the one at the pool. Scopes nest by whole path segments."""
    sb.state.workspaces["analytics"].items["bigDataPools"].add("sparkpool2")  # the seed has one pool
    d = sb.state.directory
    alice, bob, carol = (d.user(f"{n}@contoso.com").id for n in ("alice", "bob", "carol"))
    heidi = d.user("heidi@contoso.com").id  # seeded: Synapse Administrator at the workspace
    for principal, scope in ((alice, WS), (bob, POOL), (carol, POOL2)):
        await ac.role_assignments.create_role_assignment(str(uuid.uuid4()), CONTRIBUTOR, principal, scope)

    def pairs(items: list[Any]) -> set[tuple[str, str]]:
        return {(a.principal_id, a.scope) for a in items}

    assert pairs(await list_all(ac, scope=POOL, role_id=CONTRIBUTOR)) == {(alice, WS), (bob, POOL)}
    assert pairs(await list_all(ac, scope=POOL2, role_id=CONTRIBUTOR)) == {(alice, WS), (carol, POOL2)}
    assert pairs(await list_all(ac, scope=POOL)) == {(alice, WS), (bob, POOL), (heidi, WS)}
    # narrower scopes are not enclosing ones
    assert pairs(await list_all(ac, scope=WS, role_id=CONTRIBUTOR)) == {(alice, WS)}


async def test_api_version_2020_08_01_preview_is_served_with_the_same_shapes(http: Raw, sb: Sandbox) -> None:
    """The az CLI recording sends api-version=2020-08-01-preview to the same paths (/rbacScopes,
    /roleDefinitions, /roleAssignments) and gets the same shapes as with 2020-12-01."""
    old, new = "2020-08-01-preview", "2020-12-01"
    for path in ("/rbacScopes", "/roleDefinitions", f"/roleDefinitions/{CONTRIBUTOR}", "/roleAssignments"):
        status, body, _, _ = await http.call("GET", path, old)
        assert status == 200, (path, body)
        assert body == (await http.call("GET", path, new))[1]
    bob = sb.state.directory.user("bob@contoso.com").id
    request = {"roleId": CONTRIBUTOR, "principalId": bob, "scope": WS}
    status, created, _, _ = await http.call("PUT", "/roleAssignments/old-api-1", old, request)
    assert status == 200
    assert created == {
        "id": "old-api-1",
        "roleDefinitionId": CONTRIBUTOR,
        "principalId": bob,
        "scope": WS,
        "principalType": "User",
    }
    assert (await http.call("GET", "/roleAssignments/old-api-1", old))[:2] == (200, created)
    status, page, headers, _ = await http.call("GET", "/roleAssignments", old, principalId=bob)
    assert (status, page) == (200, {"count": 1, "value": [created]}) and headers["x-ms-continuation"] == ""
    check = {"subject": {"principalId": bob}, "actions": [{"id": "Microsoft.Synapse/workspaces/read"}], "scope": WS}
    status, decisions, _, _ = await http.call("POST", "/checkAccessSynapseRbac", old, check)
    assert status == 200 and decisions["AccessDecisions"][0]["accessDecision"] == "Allowed"
    assert (await http.call("DELETE", "/roleAssignments/old-api-1", old))[0] == 204
    assert (await http.call("GET", "/roleAssignments/old-api-1", old))[0] == 404
    # versions the service never had, or no longer serves, still fail
    for version in ("2020-02-01-preview", "2020-08-01", "2021-06-01", "2020-08-01-PREVIEWX"):
        status, error, _, _ = await http.call("GET", "/roleAssignments", version)
        assert (status, error["error"]["code"]) == (400, "UnsupportedApiVersion"), version


async def test_role_definitions_carry_the_service_descriptions(ac: Any) -> None:
    """The descriptions of the built-in roles are the service's own text, invisible characters included."""
    roles = await ac.role_definitions.list_role_definitions()
    assert {r.id: r.description for r in roles} == DESCRIPTIONS
    one = await ac.role_definitions.get_role_definition_by_id(CONTRIBUTOR)
    assert one.description == DESCRIPTIONS[CONTRIBUTOR]


async def test_delete_answers_204_with_content_length_zero(http: Raw, sb: Sandbox) -> None:
    """The az CLI recording: DELETE answers 204 No Content with `content-length: 0` and an empty body
    (for an id that exists and, as before, for one that does not)."""
    alice = sb.state.directory.user("alice@contoso.com").id
    request = {"roleId": CONTRIBUTOR, "principalId": alice, "scope": WS}
    assert (await http.call("PUT", "/roleAssignments/to-delete", "2020-12-01", request))[0] == 200
    for aid in ("to-delete", "never-existed"):
        status, _, headers, raw = await http.call("DELETE", f"/roleAssignments/{aid}", "2020-12-01")
        assert (status, headers.get("Content-Length"), raw) == (204, "0", b""), aid

"""Every Synapse response the SDK receives, validated against the official swagger (the referee):
the schema of the operation's documented status code, or its `default` (ErrorContract, resolved
through common/v1/types.json into common-types' ErrorResponse)."""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit
from urllib.request import url2pathname

import jsonschema
import pytest
from azure.core.exceptions import HttpResponseError
from azure.synapse.accesscontrol.models import RequiredAction, SubjectInfo
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT4

from synapse_scim_sandbox import AdminClient, Sandbox

from .conftest import OPERATOR, raw, secret_credential, synapse_client

SPEC = Path(__file__).parent / "swagger" / "specification"
STABLE = SPEC / "synapse" / "data-plane" / "Microsoft.Synapse" / "stable" / "2020-12-01"
FILES = ("roleAssignments.json", "roleDefinitions.json", "checkAccessSynapseRbac.json")
CONTRIBUTOR = "7572bffe-f453-4b66-912a-46cc5ef38fda"


def _retrieve(uri: str) -> Resource[Any]:
    path = Path(url2pathname(urlsplit(uri).path))
    return Resource.from_contents(json.loads(path.read_text()), default_specification=DRAFT4)


REGISTRY: Registry[Any] = Registry(retrieve=_retrieve)
FORMATS = jsonschema.Draft4Validator.FORMAT_CHECKER


@FORMATS.checks("uuid", raises=ValueError)
def _is_uuid(value: object) -> bool:
    return not isinstance(value, str) or (len(value) == 36 and bool(uuid.UUID(value)))


def _operations() -> dict[str, tuple[str, str, str, dict[str, Any]]]:
    """operationId -> (file uri, path, method, responses)."""
    out = {}
    for name in FILES:
        doc = json.loads((STABLE / name).read_text())
        for path, methods in doc["paths"].items():
            for method, op in methods.items():
                out[op["operationId"]] = ((STABLE / name).as_uri(), path, method, op["responses"])
    return out


OPERATIONS = _operations()


def validate(operation_id: str, status: int, body: str) -> str:
    """Validate `body` against the swagger response for `status`; returns the response key used."""
    uri, path, method, responses = OPERATIONS[operation_id]
    key = str(status) if str(status) in responses else "default"
    spec = responses[key]
    if "schema" not in spec:
        assert body == "", f"{operation_id} {status}: the swagger documents no body"
        return key
    pointer = "/paths/" + path.replace("~", "~0").replace("/", "~1") + f"/{method}/responses/{key}/schema"
    validator = jsonschema.Draft4Validator({"$ref": f"{uri}#{pointer}"}, registry=REGISTRY, format_checker=FORMATS)
    validator.validate(json.loads(body))
    return key


def test_the_referee_rejects_wrong_shapes() -> None:
    with pytest.raises(jsonschema.ValidationError):
        validate("RoleAssignments_ListRoleAssignments", 200, '{"count": "two", "value": []}')
    with pytest.raises(jsonschema.ValidationError):  # the ErrorContract -> ErrorResponse chain is followed
        validate("RoleAssignments_GetRoleAssignmentById", 404, '{"error": {"code": 404}}')
    with pytest.raises(jsonschema.ValidationError):
        validate("RoleAssignments_GetRoleAssignmentById", 200, '{"id": "x", "principalId": "not-a-guid"}')
    with pytest.raises(jsonschema.ValidationError):
        validate("RoleDefinitions_ListRoleDefinitions", 200, '{"value": []}')  # a bare array is required


async def test_every_operation_and_error_validates_against_the_swagger(sb: Sandbox, admin: AdminClient) -> None:
    seen: list[tuple[str, int, str]] = []

    async def ok(operation_id: str, coro: Any) -> Any:
        result, response, headers = await coro
        seen.append((operation_id, response.status_code, validate(operation_id, response.status_code, response.text())))
        return result, headers

    async def fails(operation_id: str, coro: Any, status: int) -> None:
        with pytest.raises(HttpResponseError) as info:
            await coro
        response = info.value.response
        assert response.status_code == status
        seen.append((operation_id, status, validate(operation_id, status, response.text())))

    alice = sb.state.directory.user("alice@contoso.com").id
    async with secret_credential(sb) as cred, synapse_client(sb, cred, retry_total=0) as ac:
        ra, rd = ac.role_assignments, ac.role_definitions
        await ok(
            "RoleAssignments_CreateRoleAssignment",
            ra.create_role_assignment("sw-1", CONTRIBUTOR, alice, "workspaces/analytics", cls=raw),
        )
        await ok(
            "RoleAssignments_CreateRoleAssignment",
            ra.create_role_assignment(
                "sw-2",
                CONTRIBUTOR,
                alice,
                "workspaces/analytics/bigDataPools/sparkpool",
                principal_type="User",
                cls=raw,
            ),
        )
        tok = None
        while True:  # page size 3 in the fixture: several pages
            _, headers = await ok(
                "RoleAssignments_ListRoleAssignments",
                ra.list_role_assignments(continuation_token_parameter=tok, cls=raw),
            )
            assert isinstance(headers["x-ms-continuation"], str)
            tok = headers["x-ms-continuation"]
            if not tok:
                break
        await ok("RoleAssignments_ListRoleAssignments", ra.list_role_assignments(principal_id=alice, cls=raw))
        await ok("RoleAssignments_GetRoleAssignmentById", ra.get_role_assignment_by_id("sw-1", cls=raw))
        await ok("RoleAssignments_DeleteRoleAssignmentById", ra.delete_role_assignment_by_id("sw-1", cls=raw))
        await ok(
            "RoleAssignments_CheckPrincipalAccess",
            ra.check_principal_access(
                SubjectInfo(principal_id=alice, group_ids=[sb.state.directory.groups_named("Analysts")[0].id]),
                [RequiredAction(id="Microsoft.Synapse/workspaces/read", is_data_action=True)],
                "workspaces/analytics",
                cls=raw,
            ),
        )
        await ok("RoleDefinitions_ListRoleDefinitions", rd.list_role_definitions(cls=raw))
        await ok(
            "RoleDefinitions_ListRoleDefinitions",
            rd.list_role_definitions(is_built_in=True, scope="workspaces/analytics", cls=raw),
        )
        await ok("RoleDefinitions_GetRoleDefinitionById", rd.get_role_definition_by_id(CONTRIBUTOR, cls=raw))
        await ok("RoleDefinitions_ListScopes", rd.list_scopes(cls=raw))

        await fails("RoleAssignments_GetRoleAssignmentById", ra.get_role_assignment_by_id("sw-1"), 404)
        pool = "workspaces/analytics/bigDataPools/sparkpool"
        await fails(
            "RoleAssignments_CreateRoleAssignment", ra.create_role_assignment("sw-3", CONTRIBUTOR, alice, pool), 409
        )
        await fails(
            "RoleAssignments_CreateRoleAssignment",
            ra.create_role_assignment("sw-4", CONTRIBUTOR, alice, "workspaces/nope"),
            400,
        )
        await fails("RoleDefinitions_GetRoleDefinitionById", rd.get_role_definition_by_id(str(uuid.uuid4())), 404)
        await fails(
            "RoleAssignments_ListRoleAssignments", ra.list_role_assignments(continuation_token_parameter="bogus"), 400
        )
        await admin.inject_fault({"service": "synapse", "operation": "listScopes", "status": 429, "count": 1})
        await fails("RoleDefinitions_ListScopes", rd.list_scopes(), 429)
        await admin.inject_fault({"service": "synapse", "operation": "getRoleDefinition", "status": 500, "count": 1})
        await fails("RoleDefinitions_GetRoleDefinitionById", rd.get_role_definition_by_id(CONTRIBUTOR), 500)
        await admin.set_access("analytics", OPERATOR, "reader")
        await fails("RoleAssignments_DeleteRoleAssignmentById", ra.delete_role_assignment_by_id("sw-2"), 403)
        await admin.expire_tokens()
        await fails(
            "RoleAssignments_CheckPrincipalAccess",
            ra.check_principal_access(SubjectInfo(principal_id=alice), [], "workspaces/analytics"),
            401,
        )

    covered = {op for op, status, key in seen if key != "default"}
    assert covered == set(OPERATIONS), set(OPERATIONS) - covered
    assert {status for _, status, key in seen if key == "default"} == {400, 401, 403, 404, 409, 429, 500}
    assert ("RoleAssignments_DeleteRoleAssignmentById", 204, "204") in seen

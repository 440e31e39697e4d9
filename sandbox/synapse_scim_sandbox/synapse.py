"""Synapse access control data plane, api-version 2020-12-01 (and 2020-08-01-preview, which has the same
paths and shapes), one workspace per path prefix.

The workspace endpoint is `https://127.0.0.1:{port}/{workspaceName}`; the SDK appends the operation
path to it (`/{workspaceName}/roleAssignments?...`). Operations (name: method path):
- listRoleAssignments `GET /roleAssignments` (exact roleId / principalId filters; the scope filter also
  matches the scopes enclosing it; `x-ms-continuation` request and response headers, empty = start /
  last page);
- createRoleAssignment `PUT /roleAssignments/{id}` (200; a body without principalType gets the principal's
  type from the directory; 409 RoleAssignmentAlreadyExists for an existing role+principal+scope; 400 for an
  unknown role, a malformed scope or a role not valid at the scope);
- getRoleAssignment `GET /roleAssignments/{id}` (404 RoleAssignmentNotFound);
- deleteRoleAssignment `DELETE /roleAssignments/{id}` (204, empty body, `Content-Length: 0`; also for an
  unknown id);
- listRoleDefinitions `GET /roleDefinitions` (bare array; isBuiltIn, scope), getRoleDefinition
  `GET /roleDefinitions/{id}`, listScopes `GET /rbacScopes` (bare array of scope templates);
- checkAccess `POST /checkAccessSynapseRbac` (answers `AccessDecisions` with a capital A, as the real
  service and the swagger do; the Python SDK model expects `accessDecisions` and reads None).

Errors use the swagger's ErrorContract `{"error": {"code", "message"}}`. A missing api-version is a
400 `MissingApiVersionParameter`, any other version a 400 `UnsupportedApiVersion`, a missing, unknown,
expired or wrong-audience bearer token a 401 `AuthenticationFailed`, a caller without the right
Synapse RBAC permission a 403 `Unauthorized` with the real message.
"""

from __future__ import annotations

import base64
import binascii
import uuid
from collections.abc import Mapping
from typing import Any

from aiohttp import web

from .apps import SYNAPSE_AUDIENCE
from .service import Call, Route, Service, ServiceError, json_response
from .state import AssignmentError, is_guid
from .workspaces import (
    DELETE_ASSIGNMENT_ACTION,
    READ_ACTION,
    SCOPE_TEMPLATES,
    TEMPLATE_BY_KIND,
    WRITE_ASSIGNMENT_ACTION,
    ScopeError,
    Workspace,
    parse_scope,
)

API_VERSION = "2020-12-01"
#: Every api-version served, all with the same paths and shapes. The service still answers the preview
#: that azure-synapse-accesscontrol 0.5 and the az CLI of 2022 send (az CLI recording, 2022-07).
API_VERSIONS = (API_VERSION, "2020-08-01-preview")


def encode_continuation(seq: int) -> str:
    return base64.urlsafe_b64encode(f"ra:{seq}".encode()).decode().rstrip("=")


def decode_continuation(text: str) -> int:
    try:
        raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)).decode()
        if raw.startswith("ra:"):
            return int(raw[3:])
    except (ValueError, binascii.Error, UnicodeDecodeError):
        pass
    raise ServiceError(400, "InvalidContinuationToken", f"The continuation token '{text}' is not valid.")


class SynapseService(Service):
    name = "synapse"

    async def route(self, request: web.Request, segments: list[str]) -> Route:
        if len(segments) < 2:
            raise ServiceError(404, "NotFound", f"The requested resource '{request.path}' was not found.")
        ws, rest = segments[0], [s.lower() for s in segments[1:]]
        params = {"workspace": ws}
        method = request.method
        q = request.query
        if rest == ["roleassignments"]:
            self._method(method, "GET")
            params |= {k: q[k].lower() if k != "scope" else q[k] for k in ("roleId", "principalId", "scope") if k in q}
            return Route("listRoleAssignments", self.list_assignments, params)
        if len(rest) == 2 and rest[0] == "roleassignments":
            params["roleAssignmentId"] = segments[2]
            if method == "PUT":
                body = await self._json(request)
                if isinstance(body, dict):
                    params |= {k: str(body[k]) for k in ("roleId", "principalId", "scope") if k in body}
                return Route("createRoleAssignment", self.create_assignment, params, body)
            if method == "GET":
                return Route("getRoleAssignment", self.get_assignment, params)
            if method == "DELETE":
                return Route("deleteRoleAssignment", self.delete_assignment, params)
            self._method(method, "GET, PUT, DELETE")
        if rest == ["roledefinitions"]:
            self._method(method, "GET")
            return Route("listRoleDefinitions", self.list_role_definitions, params)
        if len(rest) == 2 and rest[0] == "roledefinitions":
            self._method(method, "GET")
            return Route("getRoleDefinition", self.get_role_definition, params | {"roleId": segments[2].lower()})
        if rest == ["rbacscopes"]:
            self._method(method, "GET")
            return Route("listScopes", self.list_scopes, params)
        if rest == ["checkaccesssynapserbac"]:
            self._method(method, "POST")
            return Route("checkAccess", self.check_access, params, await self._json(request))
        raise ServiceError(404, "NotFound", f"The requested resource '{request.path}' was not found.")

    @staticmethod
    def _method(method: str, allowed: str) -> None:
        if method not in allowed.split(", "):
            raise ServiceError(
                405,
                "MethodNotAllowed",
                f"The requested resource does not support http method '{method}'.",
                {"Allow": allowed},
            )

    @staticmethod
    async def _json(request: web.Request) -> Any:
        try:
            return await request.json() if await request.read() else None
        except ValueError:
            return ValueError

    def error(
        self, request: web.Request, status: int, code: str, message: str, headers: Mapping[str, str] | None = None
    ) -> web.Response:
        h = {"x-ms-request-id": str(uuid.uuid4()), **(headers or {})}
        return json_response({"error": {"code": code, "message": message}}, status=status, headers=h)

    def ok(self, body: Any) -> web.Response:
        return json_response(body, headers={"x-ms-request-id": str(uuid.uuid4())})

    # ------------------------------------------------------------------ common checks
    def begin(self, call: Call, action: str, scope: str | None = None) -> Workspace:
        """api-version, bearer token, workspace and the caller's permission, in that order."""
        version = call.query.get("api-version")
        if version is None:
            raise ServiceError(
                400,
                "MissingApiVersionParameter",
                "The api-version query parameter (?api-version=) is required for all requests.",
            )
        if version not in API_VERSIONS:
            raise ServiceError(
                400,
                "UnsupportedApiVersion",
                f"The HTTP resource that matches the request URI does "
                f"not support the API version '{version}'. Supported: "
                f"{', '.join(API_VERSIONS)}.",
            )
        token, reason = self.bearer(call.request, SYNAPSE_AUDIENCE)
        if token is None:
            message = {
                "missing": "Authentication failed: the request has no bearer token.",
                "malformed": "Authentication failed: the Authorization header is not a bearer token.",
                "unknown": "Token Authentication failed - the token is not valid.",
                "expired": "Token Authentication failed - IDX10223: Lifetime validation failed. The token is expired.",
                "audience": "Token Authentication failed - IDX10214: Audience validation failed. Audiences do not "
                f"match '{SYNAPSE_AUDIENCE}'.",
            }[reason or "unknown"]
            raise ServiceError(
                401,
                "AuthenticationFailed",
                message,
                {
                    "WWW-Authenticate": f'Bearer authorization_uri="https://login.microsoftonline.com/'
                    f'{self.state.tenant_id}", error="invalid_token"'
                },
            )
        call.token = token
        ws = self.state.workspaces.get(call.params["workspace"])
        if ws is None:
            raise ServiceError(404, "WorkspaceNotFound", f"Workspace '{call.params['workspace']}' does not exist.")
        level = ws.level(token.client_id)
        allowed = level == "admin" or (level == "reader" and action == READ_ACTION)
        if level == "rbac":
            principals = {token.object_id} | self.state.member_of(token.object_id)
            allowed = ws.role_allows(principals, action, scope or ws.scope) is not None
        if not allowed:
            raise ServiceError(
                403,
                "Unauthorized",
                f"The principal '{token.object_id}' does not have the required "
                f"Synapse RBAC permission to perform this action. Required "
                f"permission: Action: {action}, Scope: {ws.scope}/*.",
            )
        return ws

    # ------------------------------------------------------------------ role assignments
    async def list_assignments(self, call: Call) -> web.Response:
        ws = self.begin(call, READ_ACTION)
        q = call.query
        header = call.request.headers.get("x-ms-continuation", "")
        after = decode_continuation(header) if header else 0
        items, nxt = ws.assignments.page(
            role_id=q.get("roleId"),
            principal_id=q.get("principalId"),
            scope=q.get("scope"),
            after=after,
            limit=self.state.settings.page_size,
        )
        response = self.ok({"count": len(items), "value": [a.to_json() for a in items]})
        response.headers["x-ms-continuation"] = encode_continuation(nxt) if nxt is not None else ""
        return response

    async def create_assignment(self, call: Call) -> web.Response:
        body = call.body
        scope = body.get("scope") if isinstance(body, dict) and isinstance(body.get("scope"), str) else None
        ws = self.begin(call, WRITE_ASSIGNMENT_ACTION, scope if scope and scope.startswith("workspaces/") else None)
        if not isinstance(body, dict):
            raise ServiceError(
                400, "InvalidRequestBody", "The request body must be a JSON object with roleId, principalId and scope."
            )
        missing = [k for k in ("roleId", "principalId", "scope") if not isinstance(body.get(k), str) or not body[k]]
        if missing:
            raise ServiceError(400, "InvalidRequestBody", f"The request body is missing: {', '.join(missing)}.")
        ptype = body.get("principalType")
        try:
            a = self.state.create_assignment(
                ws,
                call.params["roleAssignmentId"],
                body["roleId"],
                body["principalId"],
                body["scope"],
                ptype if isinstance(ptype, str) else None,
                call.token.client_id if call.token else None,
            )
        except AssignmentError as e:
            raise ServiceError(e.status, e.code, e.message) from None
        return self.ok(a.to_json())

    async def get_assignment(self, call: Call) -> web.Response:
        ws = self.begin(call, READ_ACTION)
        a = ws.assignments.get(call.params["roleAssignmentId"])
        if a is None:
            raise ServiceError(404, "RoleAssignmentNotFound", "RoleAssignmentNotFound")
        return self.ok(a.to_json())

    async def delete_assignment(self, call: Call) -> web.Response:
        ws = self.begin(call, DELETE_ASSIGNMENT_ACTION)
        a = ws.assignments.get(call.params["roleAssignmentId"])
        scope = call.query.get("scope")
        if a is not None and (scope is None or scope == a.scope):
            ws.assignments.remove(a.id)
        return web.Response(status=204, headers={"x-ms-request-id": str(uuid.uuid4())})

    async def on_response_prepare(self, request: web.Request, response: web.StreamResponse) -> None:
        # The real service sends `Content-Length: 0` with its 204s. aiohttp removes that header from every
        # 204 while it prepares the response (RFC 9110 forbids it), so it can only be put back here.
        if response.status == 204:
            response.headers["Content-Length"] = "0"

    # ------------------------------------------------------------------ role definitions, scopes
    async def list_role_definitions(self, call: Call) -> web.Response:
        ws = self.begin(call, READ_ACTION)
        roles = list(ws.roles.all)
        built_in = call.query.get("isBuiltIn")
        if built_in is not None:
            if built_in.lower() not in ("true", "false"):
                raise ServiceError(
                    400, "InvalidQueryParameter", f"'isBuiltIn' must be true or false, not '{built_in}'."
                )
            roles = roles if built_in.lower() == "true" else []
        scope = call.query.get("scope")
        if scope is not None:
            try:
                _, kind, _ = parse_scope(scope)
            except ScopeError as e:
                raise ServiceError(400, "InvalidScope", str(e)) from None
            roles = [r for r in roles if TEMPLATE_BY_KIND[kind] in r.scopes]
        return self.ok([r.to_json() for r in roles])

    async def get_role_definition(self, call: Call) -> web.Response:
        ws = self.begin(call, READ_ACTION)
        role = ws.roles.get(call.params["roleId"])
        if role is None:
            raise ServiceError(
                404, "RoleDefinitionNotFound", f"Role definition '{call.params['roleId']}' was not found."
            )
        return self.ok(role.to_json())

    async def list_scopes(self, call: Call) -> web.Response:
        self.begin(call, READ_ACTION)
        return self.ok(list(SCOPE_TEMPLATES))

    async def check_access(self, call: Call) -> web.Response:
        ws = self.begin(call, READ_ACTION)
        body = call.body
        subject = body.get("subject") if isinstance(body, dict) else None
        actions = body.get("actions") if isinstance(body, dict) else None
        scope = body.get("scope") if isinstance(body, dict) else None
        if (
            not isinstance(subject, dict)
            or not isinstance(subject.get("principalId"), str)
            or not is_guid(subject["principalId"])
            or not isinstance(actions, list)
            or not isinstance(scope, str)
        ):
            raise ServiceError(
                400, "InvalidRequestBody", "The request needs subject.principalId (a GUID), actions and scope."
            )
        try:
            ws.check_scope(scope)
        except ScopeError as e:
            raise ServiceError(400, "InvalidScope", str(e)) from None
        principals = {subject["principalId"].lower()} | {
            g.lower() for g in subject.get("groupIds") or () if isinstance(g, str)
        }
        decisions = []
        for action in actions:
            if not isinstance(action, dict) or not isinstance(action.get("id"), str):
                raise ServiceError(400, "InvalidRequestBody", "Each action needs an 'id' and 'isDataAction'.")
            grant = ws.role_allows(principals, action["id"], scope)
            decision: dict[str, Any] = {
                "accessDecision": "Allowed" if grant else "NotAllowed",
                "actionId": action["id"],
            }
            if grant is not None:
                decision["roleAssignment"] = grant.to_json()
            decisions.append(decision)
        return self.ok({"AccessDecisions": decisions})

"""The admin API (`{admin_url}` = `https://127.0.0.1:{login_port}/_sandbox`) and its clients.

JSON over HTTPS, no authentication, never subject to latency or faults, not counted. Users, groups
and service principals may be named by id, userPrincipalName, displayName or appId.

| Method and path                                  | Body / query                                  |
|--------------------------------------------------|-----------------------------------------------|
| GET  /info                                       | endpoints, tenant, clients, counts            |
| POST /reset                                      | restore the seed; clear faults, counters, log |
| POST /users                                      | {userPrincipalName, displayName?, id?, accountEnabled?, mail?} |
| PATCH /users/{user}                              | {mail?, userPrincipalName?} (mail "" clears it) |
| DELETE /users/{user}                             |                                               |
| POST /users/{user}/disable, /users/{user}/enable |                                               |
| POST /groups                                     | {displayName, id?, members?: [ref]}           |
| PATCH /groups/{group}                            | {displayName}                                 |
| DELETE /groups/{group}                           |                                               |
| POST /groups/{group}/members                     | {member}                                      |
| DELETE /groups/{group}/members/{member}          |                                               |
| POST /servicePrincipals                          | {displayName, appId?, id?, accountEnabled?}   |
| DELETE /servicePrincipals/{sp}                   |                                               |
| POST /servicePrincipals/{sp}/disable, .../enable |                                               |
| GET  /workspaces/{ws}/assignments                | every assignment, with createdBy              |
| POST /workspaces/{ws}/assignments                | {role, principal, scope?, id?, principalType?} (a manual grant) |
| DELETE /workspaces/{ws}/assignments/{id}         |                                               |
| PUT  /workspaces/{ws}/access                     | {client, level: admin|reader|none|rbac}       |
| POST /faults, GET /faults, DELETE /faults[/{id}] | a fault rule (see faults.py); DELETE /faults  |
|                                                  | also removes the throttling model             |
| PUT  /throttle, GET /throttle, DELETE /throttle  | {service: graph, rate, burst}: a token bucket |
|                                                  | per client (see faults.py)                    |
| GET  /counters, DELETE /counters                 | counters; DELETE also clears the request log  |
| GET  /requests?service=&operation=&status=&since= | the request log; with count=N&timeout=S waits |
|                                                  | until N entries match (long poll)             |
| PUT  /latency                                    | {graph?, synapse?, login?} seconds            |
| PUT  /token-lifetime                             | {seconds}                                     |
| POST /tokens/expire                              | {client?}: issued tokens expire now           |
| POST /clock/advance                              | {seconds}: the sandbox clock moves forward    |
| POST /directory/compact                          | {status?: 410|400, code?}: forget the delta   |
|                                                  | change logs; older tokens then get 410        |
|                                                  | SyncStateNotFound or 400 syncStateNotFound    |
"""

from __future__ import annotations

import asyncio
import http.client
import json
import ssl
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, urlencode, urlsplit

import aiohttp
from aiohttp import web

from .directory import EXPIRED_400, EXPIRED_410, GROUP, SERVICE_PRINCIPAL, USER, Directory, DirectoryError
from .faults import FaultRuleError
from .state import AssignmentError, State, is_guid, stable_id
from .tls import client_context
from .workspaces import ACCESS_LEVELS

if TYPE_CHECKING:
    from .server import Sandbox

PREFIX = "/_sandbox"
AdminHandler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class AdminError(Exception):
    """An admin API call that failed; `status` and `code` come from the sandbox's answer."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status, self.code, self.message = status, code, message


# ============================================================================ server side
def admin_routes(sandbox: Sandbox) -> list[web.RouteDef]:
    def state_of() -> State:
        return sandbox.state

    def wrap(fn: Callable[[web.Request], Any]) -> AdminHandler:
        async def handler(request: web.Request) -> web.StreamResponse:
            try:
                result = fn(request)
                if asyncio.iscoroutine(result):
                    result = await result
            except (DirectoryError, AssignmentError) as e:
                return _error(e.status, e.code, str(e))
            except KeyError as e:
                return _error(400, "BadRequest", f"missing field {e}")
            except (FaultRuleError, ValueError, TypeError) as e:
                return _error(400, "BadRequest", str(e))
            if isinstance(result, web.StreamResponse):
                return result
            return web.json_response(result)

        return handler

    async def body(request: web.Request) -> dict[str, Any]:
        if not request.can_read_body:
            return {}
        data = await request.json()
        if not isinstance(data, dict):
            raise ValueError("the request body must be a JSON object")
        return data

    def directory() -> Directory:
        return state_of().directory

    def user_json(u: Any) -> dict[str, Any]:
        return {
            "id": u.id,
            "userPrincipalName": u.user_principal_name,
            "displayName": u.display_name,
            "accountEnabled": u.account_enabled,
            "mail": u.mail,
        }

    def group_json(g: Any) -> dict[str, Any]:
        return {"id": g.id, "displayName": g.display_name, "members": list(g.members)}

    async def info(request: web.Request) -> Any:
        return sandbox.info()

    async def reset(request: web.Request) -> Any:
        sandbox.reset()
        return {"reset": True}

    async def add_user(request: web.Request) -> Any:
        b = await body(request)
        upn = b["userPrincipalName"]
        user = directory().add_user(
            b.get("id") or stable_id("user", upn),
            upn,
            b.get("displayName") or upn.split("@")[0],
            account_enabled=bool(b.get("accountEnabled", True)),
            mail=b.get("mail") or None,
        )
        return user_json(user)

    async def update_user(request: web.Request) -> Any:
        b = await body(request)
        user = directory().resolve(request.match_info["ref"], (USER,))
        for key in ("mail", "userPrincipalName"):
            if b.get(key) is not None and not isinstance(b[key], str):
                raise ValueError(f"{key} must be a string")
        return user_json(
            directory().update_user(user.id, mail=b.get("mail"), user_principal_name=b.get("userPrincipalName"))
        )

    async def delete_user(request: web.Request) -> Any:
        user = directory().resolve(request.match_info["ref"], (USER,))
        return user_json(directory().delete_user(user.id))

    def set_enabled(enabled: bool) -> Callable[[web.Request], Any]:
        async def fn(request: web.Request) -> Any:
            user = directory().resolve(request.match_info["ref"], (USER,))
            return user_json(directory().set_account_enabled(user.id, enabled))

        return fn

    async def add_group(request: web.Request) -> Any:
        b = await body(request)
        name = b["displayName"]
        d = directory()
        gid = b.get("id") or stable_id("group", name)
        if d.get(gid) is not None and not b.get("id"):
            gid = stable_id("group", f"{name}#{len(d.groups)}")
        group = d.add_group(gid, name, description=b.get("description"))
        for ref in b.get("members") or ():
            d.add_member(group.id, d.resolve(ref).id)
        return group_json(group)

    async def rename_group(request: web.Request) -> Any:
        b = await body(request)
        group = directory().resolve(request.match_info["ref"], (GROUP,))
        return group_json(directory().rename_group(group.id, b["displayName"]))

    async def delete_group(request: web.Request) -> Any:
        group = directory().resolve(request.match_info["ref"], (GROUP,))
        return group_json(directory().delete_group(group.id))

    async def add_member(request: web.Request) -> Any:
        b = await body(request)
        d = directory()
        group = d.resolve(request.match_info["ref"], (GROUP,))
        member = d.resolve(b["member"])
        return {"group": group.id, "member": member.id, "changed": d.add_member(group.id, member.id)}

    async def remove_member(request: web.Request) -> Any:
        d = directory()
        group = d.resolve(request.match_info["ref"], (GROUP,))
        ref = request.match_info["member"]
        member_id = ref.lower() if is_guid(ref) else d.resolve(ref).id
        return {"group": group.id, "member": member_id, "changed": d.remove_member(group.id, member_id)}

    def sp_json(sp: Any) -> dict[str, Any]:
        return {"id": sp.id, "appId": sp.app_id, "displayName": sp.display_name, "accountEnabled": sp.account_enabled}

    async def add_sp(request: web.Request) -> Any:
        b = await body(request)
        name = b["displayName"]
        sp = directory().add_service_principal(
            b.get("id") or stable_id("servicePrincipal", name),
            b.get("appId") or stable_id("app", name),
            name,
            account_enabled=bool(b.get("accountEnabled", True)),
        )
        return sp_json(sp)

    async def delete_sp(request: web.Request) -> Any:
        sp = directory().resolve(request.match_info["ref"], (SERVICE_PRINCIPAL,))
        return sp_json(directory().delete_service_principal(sp.id))

    def set_sp_enabled(enabled: bool) -> Callable[[web.Request], Any]:
        async def fn(request: web.Request) -> Any:
            sp = directory().resolve(request.match_info["ref"], (SERVICE_PRINCIPAL,))
            return sp_json(directory().set_sp_account_enabled(sp.id, enabled))

        return fn

    def assignment_json(a: Any) -> dict[str, Any]:
        return a.to_json() | {"createdBy": a.created_by}

    async def list_assignments(request: web.Request) -> Any:
        ws = state_of().workspace(request.match_info["ws"])
        return [assignment_json(a) for a in ws.assignments]

    async def add_assignment(request: web.Request) -> Any:
        b = await body(request)
        a = state_of().grant(
            request.match_info["ws"], b["role"], b["principal"], b.get("scope"), b.get("id"), b.get("principalType")
        )
        return assignment_json(a)

    async def delete_assignment(request: web.Request) -> Any:
        ws = state_of().workspace(request.match_info["ws"])
        a = ws.assignments.remove(request.match_info["id"])
        if a is None:
            raise DirectoryError(f"no role assignment {request.match_info['id']}", status=404, code="NotFound")
        return assignment_json(a)

    async def set_access(request: web.Request) -> Any:
        b = await body(request)
        state = state_of()
        ws = state.workspace(request.match_info["ws"])
        level = b["level"]
        if level not in ACCESS_LEVELS:
            raise ValueError(f"level must be one of {', '.join(ACCESS_LEVELS)}")
        client = b.get("client")
        if client in (None, "default"):
            ws.default_access = level
            return {"workspace": ws.name, "default": level}
        app = state.app(client) or next((a for a in state.apps.values() if a.name == client), None)
        if app is None:
            raise DirectoryError(f"no app registration {client!r}", status=404, code="NotFound")
        ws.access[app.client_id] = level
        return {"workspace": ws.name, "client": app.client_id, "level": level}

    async def add_fault(request: web.Request) -> Any:
        rule = dict(await body(request))
        match = dict(rule.get("match") or {})
        d = directory()
        for key, kinds in (
            ("group", (GROUP,)),
            ("user", (USER,)),
            ("servicePrincipal", (SERVICE_PRINCIPAL,)),
            ("principalId", (USER, GROUP, SERVICE_PRINCIPAL)),
        ):
            if key in match and not is_guid(str(match[key])):
                match[key] = d.resolve(str(match[key]), kinds).id
        if match:
            rule["match"] = match
        return sandbox.faults.add(rule).to_json()

    async def list_faults(request: web.Request) -> Any:
        return [r.to_json() for r in sandbox.faults.rules]

    async def clear_faults(request: web.Request) -> Any:
        sandbox.faults.clear()
        return {"cleared": True}

    async def remove_fault(request: web.Request) -> Any:
        return {"removed": sandbox.faults.remove(request.match_info["id"])}

    async def counters(request: web.Request) -> Any:
        return dict(sandbox.faults.counters)

    async def reset_counters(request: web.Request) -> Any:
        sandbox.faults.reset_counters()
        return {"reset": True}

    async def requests(request: web.Request) -> Any:
        q = request.query
        filters = {
            "service": q.get("service"),
            "operation": q.get("operation"),
            "status": q.get("status"),
            "since": int(q.get("since", 0)),
        }
        if "count" in q:  # long poll: wait until at least `count` entries match
            return await sandbox.faults.wait_for(int(q["count"]), float(q.get("timeout", 30)), **filters)
        return sandbox.faults.requests(**filters)

    async def set_latency(request: web.Request) -> Any:
        sandbox.faults.set_latency({k: float(v) for k, v in (await body(request)).items()})
        return dict(sandbox.faults.latency)

    async def set_token_lifetime(request: web.Request) -> Any:
        seconds = float((await body(request))["seconds"])
        if seconds <= 0:
            raise ValueError("seconds must be positive")
        state_of().settings.token_lifetime = seconds
        return {"seconds": seconds}

    async def expire_tokens(request: web.Request) -> Any:
        b = await body(request)
        state = state_of()
        client = b.get("client")
        if client is not None:
            app = state.app(client) or next((a for a in state.apps.values() if a.name == client), None)
            if app is None:
                raise DirectoryError(f"no app registration {client!r}", status=404, code="NotFound")
            client = app.client_id
        return {"expired": state.tokens.expire(state.clock.now(), client)}

    async def advance_clock(request: web.Request) -> Any:
        state = state_of()
        state.clock.advance(float((await body(request))["seconds"]))
        return {"offset": state.clock.offset}

    async def compact(request: web.Request) -> Any:
        b = await body(request)
        status = int(b.get("status", 410))
        if status not in (400, 410):
            raise ValueError("status must be 410 (Gone) or 400 (how Graph answers an expired delta link)")
        _, code, message = EXPIRED_410 if status == 410 else EXPIRED_400
        directory().compact((status, str(b.get("code") or code), message))
        return {"seq": directory().changes.seq, "status": status, "code": directory().expired_answer[1]}

    async def set_throttle(request: web.Request) -> Any:
        b = await body(request)
        return sandbox.faults.set_throttle(str(b.get("service", "graph")), b["rate"], b["burst"]).to_json()

    async def get_throttle(request: web.Request) -> Any:
        return {service: t.to_json() for service, t in sandbox.faults.throttles.items()}

    async def clear_throttle(request: web.Request) -> Any:
        sandbox.faults.throttles.clear()
        return {"cleared": True}

    p = PREFIX
    return [
        web.get(f"{p}/info", wrap(info)),
        web.post(f"{p}/reset", wrap(reset)),
        web.post(f"{p}/users", wrap(add_user)),
        web.patch(f"{p}/users/{{ref}}", wrap(update_user)),
        web.delete(f"{p}/users/{{ref}}", wrap(delete_user)),
        web.post(f"{p}/users/{{ref}}/disable", wrap(set_enabled(False))),
        web.post(f"{p}/users/{{ref}}/enable", wrap(set_enabled(True))),
        web.post(f"{p}/groups", wrap(add_group)),
        web.patch(f"{p}/groups/{{ref}}", wrap(rename_group)),
        web.delete(f"{p}/groups/{{ref}}", wrap(delete_group)),
        web.post(f"{p}/groups/{{ref}}/members", wrap(add_member)),
        web.delete(f"{p}/groups/{{ref}}/members/{{member}}", wrap(remove_member)),
        web.post(f"{p}/servicePrincipals", wrap(add_sp)),
        web.delete(f"{p}/servicePrincipals/{{ref}}", wrap(delete_sp)),
        web.post(f"{p}/servicePrincipals/{{ref}}/disable", wrap(set_sp_enabled(False))),
        web.post(f"{p}/servicePrincipals/{{ref}}/enable", wrap(set_sp_enabled(True))),
        web.get(f"{p}/workspaces/{{ws}}/assignments", wrap(list_assignments)),
        web.post(f"{p}/workspaces/{{ws}}/assignments", wrap(add_assignment)),
        web.delete(f"{p}/workspaces/{{ws}}/assignments/{{id}}", wrap(delete_assignment)),
        web.put(f"{p}/workspaces/{{ws}}/access", wrap(set_access)),
        web.post(f"{p}/faults", wrap(add_fault)),
        web.get(f"{p}/faults", wrap(list_faults)),
        web.delete(f"{p}/faults", wrap(clear_faults)),
        web.delete(f"{p}/faults/{{id}}", wrap(remove_fault)),
        web.get(f"{p}/counters", wrap(counters)),
        web.delete(f"{p}/counters", wrap(reset_counters)),
        web.get(f"{p}/requests", wrap(requests)),
        web.put(f"{p}/latency", wrap(set_latency)),
        web.put(f"{p}/token-lifetime", wrap(set_token_lifetime)),
        web.post(f"{p}/tokens/expire", wrap(expire_tokens)),
        web.post(f"{p}/clock/advance", wrap(advance_clock)),
        web.post(f"{p}/directory/compact", wrap(compact)),
        web.put(f"{p}/throttle", wrap(set_throttle)),
        web.get(f"{p}/throttle", wrap(get_throttle)),
        web.delete(f"{p}/throttle", wrap(clear_throttle)),
    ]


def _error(status: int, code: str, message: str) -> web.Response:
    return web.json_response({"error": {"code": code, "message": message}}, status=status)


# ============================================================================ clients
def _q(ref: str) -> str:
    return quote(ref, safe="")


class _AdminCalls:
    """Every admin operation, written once; `_call` is async in AdminClient and sync in SyncAdminClient
    (the methods return whatever `_call` returns: a coroutine or the result)."""

    def _call(self, method: str, path: str, body: Mapping[str, Any] | None = None) -> Any:
        raise NotImplementedError

    def info(self) -> Any:
        return self._call("GET", "/info")

    def reset(self) -> Any:
        """Restore the seeded directory and workspaces; clear faults, counters and the request log."""
        return self._call("POST", "/reset")

    def add_user(
        self,
        user_principal_name: str,
        display_name: str | None = None,
        *,
        id: str | None = None,
        account_enabled: bool = True,
        mail: str | None = None,
    ) -> Any:
        return self._call(
            "POST",
            "/users",
            {
                "userPrincipalName": user_principal_name,
                "displayName": display_name,
                "id": id,
                "accountEnabled": account_enabled,
                "mail": mail,
            },
        )

    def update_user(self, user: str, *, mail: str | None = None, user_principal_name: str | None = None) -> Any:
        """Change a user's mail (\"\" clears it) and/or userPrincipalName (users/delta reports each)."""
        return self._call("PATCH", f"/users/{_q(user)}", {"mail": mail, "userPrincipalName": user_principal_name})

    def delete_user(self, user: str) -> Any:
        return self._call("DELETE", f"/users/{_q(user)}")

    def disable_user(self, user: str) -> Any:
        return self._call("POST", f"/users/{_q(user)}/disable")

    def enable_user(self, user: str) -> Any:
        return self._call("POST", f"/users/{_q(user)}/enable")

    def add_group(self, display_name: str, members: list[str] | None = None, *, id: str | None = None) -> Any:
        return self._call("POST", "/groups", {"displayName": display_name, "id": id, "members": members or []})

    def rename_group(self, group: str, display_name: str) -> Any:
        return self._call("PATCH", f"/groups/{_q(group)}", {"displayName": display_name})

    def delete_group(self, group: str) -> Any:
        return self._call("DELETE", f"/groups/{_q(group)}")

    def add_member(self, group: str, member_id: str) -> Any:
        return self._call("POST", f"/groups/{_q(group)}/members", {"member": member_id})

    def remove_member(self, group: str, member_id: str) -> Any:
        return self._call("DELETE", f"/groups/{_q(group)}/members/{_q(member_id)}")

    def add_service_principal(
        self, display_name: str, *, app_id: str | None = None, id: str | None = None, account_enabled: bool = True
    ) -> Any:
        return self._call(
            "POST",
            "/servicePrincipals",
            {"displayName": display_name, "appId": app_id, "id": id, "accountEnabled": account_enabled},
        )

    def delete_service_principal(self, sp: str) -> Any:
        """`sp`: id, appId or display name."""
        return self._call("DELETE", f"/servicePrincipals/{_q(sp)}")

    def disable_service_principal(self, sp: str) -> Any:
        return self._call("POST", f"/servicePrincipals/{_q(sp)}/disable")

    def enable_service_principal(self, sp: str) -> Any:
        return self._call("POST", f"/servicePrincipals/{_q(sp)}/enable")

    def add_assignment(
        self,
        workspace: str,
        role_name_or_id: str,
        principal_id: str,
        scope: str | None = None,
        id: str | None = None,
        principal_type: str | None = None,
    ) -> Any:
        """A manual grant (not made by the operator); scope defaults to the workspace."""
        return self._call(
            "POST",
            f"/workspaces/{_q(workspace)}/assignments",
            {
                "role": role_name_or_id,
                "principal": principal_id,
                "scope": scope,
                "id": id,
                "principalType": principal_type,
            },
        )

    def delete_assignment(self, workspace: str, id: str) -> Any:
        return self._call("DELETE", f"/workspaces/{_q(workspace)}/assignments/{_q(id)}")

    def list_assignments(self, workspace: str) -> Any:
        return self._call("GET", f"/workspaces/{_q(workspace)}/assignments")

    def set_access(self, workspace: str, client: str, level: str) -> Any:
        """What `client` (app name or client id, or "default") may do in the workspace:
        admin | reader | none | rbac."""
        return self._call("PUT", f"/workspaces/{_q(workspace)}/access", {"client": client, "level": level})

    def inject_fault(self, rule: Mapping[str, Any]) -> Any:
        """Add a fault rule (see synapse_scim_sandbox.faults); returns the rule with its "id"."""
        return self._call("POST", "/faults", rule)

    def faults(self) -> Any:
        return self._call("GET", "/faults")

    def remove_fault(self, rule_id: str) -> Any:
        return self._call("DELETE", f"/faults/{_q(rule_id)}")

    def clear_faults(self) -> Any:
        return self._call("DELETE", "/faults")

    def counters(self) -> Any:
        """{"service.operation.status": n}"""
        return self._call("GET", "/counters")

    def reset_counters(self) -> Any:
        return self._call("DELETE", "/counters")

    def request_log(
        self, service: str | None = None, operation: str | None = None, since: int = 0, status: int | str | None = None
    ) -> Any:
        """Logged requests (newest last): time, service, operation, method, path, status, client_id, params,
        fault, rule, duration_ms, headers (retry-attempt, x-ms-continuation, ...), seq."""
        query = urlencode(
            {
                k: v
                for k, v in (("service", service), ("operation", operation), ("since", since), ("status", status))
                if v
            }
        )
        return self._call("GET", "/requests" + (f"?{query}" if query else ""))

    def wait_for_requests(
        self,
        service: str | None = None,
        operation: str | None = None,
        *,
        status: int | str | None = None,
        count: int = 1,
        since: int = 0,
        timeout: float = 30.0,
    ) -> Any:
        """Wait (server side, no polling) until at least `count` logged requests match; returns them
        (fewer if `timeout` ran out)."""
        query = urlencode(
            {
                k: v
                for k, v in (
                    ("service", service),
                    ("operation", operation),
                    ("since", since),
                    ("status", status),
                    ("count", count),
                    ("timeout", timeout),
                )
                if v
            }
        )
        return self._call("GET", f"/requests?{query}")

    def set_latency(self, latency: Mapping[str, float] | None = None, **per_service: float) -> Any:
        """Seconds added to every request of a service: set_latency(graph=0.05) or set_latency({...})."""
        return self._call("PUT", "/latency", {**(latency or {}), **per_service})

    def set_token_lifetime(self, seconds: float) -> Any:
        return self._call("PUT", "/token-lifetime", {"seconds": seconds})

    def expire_tokens(self, client: str | None = None) -> Any:
        """Every token issued so far (to one client, or all) is expired from now on."""
        return self._call("POST", "/tokens/expire", {"client": client})

    def advance_clock(self, seconds: float) -> Any:
        """Move the sandbox clock (token expiry) forward without sleeping."""
        return self._call("POST", "/clock/advance", {"seconds": seconds})

    def compact_change_log(self, status: int = 410, code: str | None = None) -> Any:
        """Forget the delta change logs: tokens issued before now are answered `status` (410, or 400
        `syncStateNotFound` as Graph answers an expired link; `code` overrides the error code)."""
        return self._call("POST", "/directory/compact", {"status": status, "code": code})

    def set_throttle(self, rate: float, burst: float, service: str = "graph") -> Any:
        """The throttling model: `burst` requests per client at once, refilled at `rate` per second;
        a request beyond it gets 429 with Retry-After (inside a JSON batch too)."""
        return self._call("PUT", "/throttle", {"service": service, "rate": rate, "burst": burst})

    def clear_throttle(self) -> Any:
        return self._call("DELETE", "/throttle")


def _raise_for(status: int, text: str) -> None:
    try:
        err = json.loads(text).get("error", {})
    except (ValueError, AttributeError):
        err = {}
    if not isinstance(err, dict):  # an OAuth-shaped error, e.g. the login service's 404 for an unknown path
        err = {"code": str(err)}
    raise AdminError(status, err.get("code", "Error"), err.get("message", text))


class AdminClient(_AdminCalls):
    """Async admin client: `await AdminClient(sb.admin_url, sb.ca_path).add_member("Analysts", "bob@...")`.

    Each call opens its own connection, so one instance works from any event loop (and from
    `asyncio.run`). For code without an event loop use SyncAdminClient."""

    def __init__(self, admin_url: str, ca_path: str | Path) -> None:
        self.admin_url = admin_url.rstrip("/")
        self._ssl = client_context(ca_path)

    async def _call(self, method: str, path: str, body: Mapping[str, Any] | None = None) -> Any:
        async with (
            aiohttp.ClientSession() as session,
            session.request(method, self.admin_url + path, json=body, ssl=self._ssl) as response,
        ):
            text = await response.text()
            if response.status >= 400:
                _raise_for(response.status, text)
            return json.loads(text) if text else None


class SyncAdminClient(_AdminCalls):
    """Blocking admin client (http.client). Do not call it from the event loop that runs the sandbox
    (that loop could not answer); use it with SandboxThread, the CLI, or from another thread."""

    def __init__(self, admin_url: str, ca_path: str | Path, timeout: float = 30.0) -> None:
        parts = urlsplit(admin_url.rstrip("/"))
        self.host, self.port, self.prefix = parts.hostname or "127.0.0.1", parts.port or 443, parts.path
        self.timeout = timeout
        self._ssl: ssl.SSLContext = client_context(ca_path)

    def _call(self, method: str, path: str, body: Mapping[str, Any] | None = None) -> Any:
        conn = http.client.HTTPSConnection(self.host, self.port, timeout=self.timeout, context=self._ssl)
        try:
            payload = json.dumps(body).encode() if body is not None else None
            headers = {"Content-Type": "application/json"} if payload is not None else {}
            conn.request(method, self.prefix + path, body=payload, headers=headers)
            response = conn.getresponse()
            text = response.read().decode()
        finally:
            conn.close()
        if response.status >= 400:
            _raise_for(response.status, text)
        return json.loads(text) if text else None

"""Microsoft Graph v1.0, the directory part the operator reads.

Operations (name: path):
- getGroup `GET /v1.0/groups/{id}` ($select, `$expand=members`: the first 20, id and type);
  listGroups `GET /v1.0/groups` ($filter, $select, $top, $count);
- members / transitiveMembers `GET /v1.0/groups/{id}/members|transitiveMembers[/microsoft.graph.user|
  group|servicePrincipal]` (polymorphic `@odata.type`; default page 100, `$top` 1..999; `$filter` and
  `$count` need `ConsistencyLevel: eventual`, as on the real service);
- getUser `GET /v1.0/users/{id or userPrincipalName}`; listUsers `GET /v1.0/users` (`$filter` on any
  user property; `userPrincipalName eq`, `mail eq` and `startswith(userPrincipalName,'…')` alone are
  answered from indexes, without case, as Graph compares them);
- getServicePrincipal `GET /v1.0/servicePrincipals/{id}` or `/servicePrincipals(appId='...')`;
  listServicePrincipals `GET /v1.0/servicePrincipals` ($filter on appId, displayName, ...);
- getDirectoryObject `GET /v1.0/directoryObjects/{id}`; getByIds `POST /v1.0/directoryObjects/getByIds`;
- groupsDelta `GET /v1.0/groups/delta`, `delta()` or `microsoft.graph.delta`.
- usersDelta `GET /v1.0/users/delta` (same spellings): users created, changed or deleted (`@removed`).
- servicePrincipalsDelta `GET /v1.0/servicePrincipals/delta` (same spellings): service principals
  created, changed (accountEnabled) or deleted (`@removed`).
- batch `POST /v1.0/$batch`: JSON batching of up to 20 GET requests. The responses come in a shuffled
  order (Graph says they may come in any order: match them by id); each inner request is served,
  throttled and faulted as if sent alone, so an inner 429 with `Retry-After` sits in a 200 batch.

Throttling: with a model set (`PUT /_sandbox/throttle`, see faults.py), each client has a token bucket;
a request (each inner request of a batch, not the batch itself) that finds it empty is answered 429
`TooManyRequests` with `Retry-After` (whole seconds until the bucket has a token again).

Paging: `@odata.nextLink` with an opaque `$skiptoken`, absolute on the sandbox's own host. Member
lists page over an immutable snapshot taken by the first page, so one listing is consistent.

Delta: the initial round returns every group with its members in `members@delta` (groups with more
than `delta_member_chunk` members continue on the next page, the same group id repeated), then a
`@odata.deltaLink`. A delta link returns only groups changed since it was issued: changed properties,
`members@delta` with added members plain and removed ones carrying `@removed: {"reason": "deleted"}`,
and deleted groups as `{"id": ..., "@removed": {"reason": "changed"}}` (soft delete, as Graph does).
Groups without member changes carry no `members@delta`. `$select` and `$filter=id eq '...'` are kept
in the tokens, and only changes of the `$select`ed properties are reported (a rename only with
`displayName`, membership only with `members`, an account change only with `accountEnabled`; creations
and deletions always); `$deltatoken=latest` returns just a delta link for changes from now on. `$top`
is refused on every delta (Graph does not support it; `Prefer: odata.maxpagesize` sets the page size).
A token older than a change-log compaction (a delta link or a nextLink of a round under way) answers
410 `SyncStateNotFound`, or 400 `syncStateNotFound` (how Graph answers an expired link) when the
compaction asked for that form.

`$orderby`, `$skip` and other `$expand`s answer 400 (not emulated). Default properties follow v1.0:
users return businessPhones, displayName, givenName, jobTitle, mail, mobilePhone, officeLocation,
preferredLanguage, surname, userPrincipalName and id; `accountEnabled` only when `$select`-ed.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import itertools
import json
import math
import random
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any
from urllib.parse import quote

from aiohttp import web
from aiohttp.test_utils import make_mocked_request

from .apps import GRAPH_AUDIENCE
from .directory import GROUP, SERVICE_PRINCIPAL, USER, ChangeLog, DirectoryError, Group, OrderedIds
from .faults import Fault
from .graph_delta import full_page, incremental_page
from .graph_objects import (
    ALL_PROPS,
    CASTS,
    CONTENT_TYPE,
    GETTERS,
    ODATA_TYPE,
    RenderCache,
    all_values,
    decode_token,
    encode_token,
    plan,
    project,
)
from .odata import Filter, FilterError, parse_filter
from .service import BATCHED_HEADER, Call, Route, Service, ServiceError, dumps, json_response, request_id

#: Graph application permissions that allow each family of operations.
READ_GROUPS = ("GroupMember.Read.All", "Group.Read.All", "Directory.Read.All")
READ_USERS = ("User.Read.All", "Directory.Read.All")
READ_SPS = ("Application.Read.All", "Directory.Read.All")
READ_ANY = ("Directory.Read.All", "User.Read.All", "Group.Read.All", "GroupMember.Read.All", "Application.Read.All")


class GraphService(Service):
    name = "graph"
    SNAPSHOTS = 512

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._snapshots: OrderedDict[int, tuple[str, ...]] = OrderedDict()
        self._snapshot_ids = itertools.count(1)
        self._rendered = RenderCache()
        self._shuffle = random.Random()

    # ------------------------------------------------------------------ throttling and faults
    def client_of(self, request: web.Request) -> str:
        """The app a request comes from (its bearer token's client), for the throttling model."""
        _, _, value = request.headers.get("Authorization", "").partition(" ")
        token = self.state.tokens.tokens.get(value.strip())
        return token.client_id if token is not None else "anonymous"

    async def run(self, route: Route, call: Call, request: web.Request) -> web.StreamResponse:
        if route.operation != "batch":  # a batch is not throttled as such: each request in it is
            wait = self.faults.throttled(self.name, self.client_of(request))
            if wait is not None:
                return self.error(
                    request,
                    429,
                    "TooManyRequests",
                    self.fault_message(429),
                    {"Retry-After": str(max(1, math.ceil(wait)))},  # whole seconds: kiota parses only integers
                )
        return await super().run(route, call, request)

    async def apply_fault(
        self, request: web.Request, route: Route, call: Call, fault: Fault
    ) -> tuple[web.StreamResponse, str | None]:
        if fault.kind != "omit":
            return await super().apply_fault(request, route, call, fault)
        response = await self.run(route, call, request)
        if isinstance(response, web.Response) and response.status == 200 and response.body:
            assert isinstance(response.body, bytes)
            data = json.loads(response.body)
            for obj in (data, *(data.get("value") or ())) if isinstance(data, dict) else ():
                if isinstance(obj, dict):
                    for name in fault.rule.omit:
                        obj.pop(name, None)
            response.body = dumps(data)
        return response, None

    # ------------------------------------------------------------------ routing
    async def route(self, request: web.Request, segments: list[str]) -> Route:
        route = self._route(request, segments)
        q = request.query
        for option in ("$orderby", "$skip", "$search"):
            if option in q and not (option == "$search" and route.operation.startswith("list")):
                raise ServiceError(400, "Request_UnsupportedQuery", f"{option} is not supported here by the sandbox.")
        if "$expand" in q and not (route.operation == "getGroup" and q["$expand"].strip().lower() == "members"):
            raise ServiceError(
                400, "Request_UnsupportedQuery", "The sandbox supports only $expand=members on GET /groups/{id}."
            )
        if "$top" in q and route.operation.endswith("Delta"):
            raise ServiceError(
                400,
                "Request_UnsupportedQuery",
                "$top is not supported with delta; use the header Prefer: odata.maxpagesize={n}.",
            )
        return route

    def _route(self, request: web.Request, segments: list[str]) -> Route:
        if not segments or segments[0].lower() != "v1.0":
            raise ServiceError(400, "BadRequest", f"Invalid version: {segments[0] if segments else ''}")
        s = segments[1:]
        low = [x.lower() for x in s]
        method = request.method
        if not s:
            raise ServiceError(400, "BadRequest", "Resource not found for the segment ''.")
        head = low[0]
        if head == "$batch" and len(s) == 1:
            if method != "POST":
                raise ServiceError(405, "Request_BadRequest", "$batch takes POST.")
            return Route("batch", self.batch)
        if head == "groups":
            if len(s) == 1:
                return self._get(method, Route("listGroups", self.list_groups))
            if low[1] in ("delta", "delta()", "microsoft.graph.delta", "microsoft.graph.delta()") and len(s) == 2:
                return self._get(method, Route("groupsDelta", self.groups_delta))
            params = {"group": s[1].lower()}
            if len(s) == 2:
                return self._get(method, Route("getGroup", self.get_group, params))
            if low[2] in ("members", "transitivemembers") and len(s) <= 5:
                op = "members" if low[2] == "members" else "transitiveMembers"
                tail = low[3:]
                if tail and tail[-1] == "$count":
                    params["count"] = "1"
                    tail = tail[:-1]
                if tail:
                    if len(tail) > 1 or tail[0] not in CASTS:
                        raise ServiceError(400, "BadRequest", f"Resource not found for the segment '{s[3]}'.")
                    params["cast"] = CASTS[tail[0]]
                return self._get(method, Route(op, self.list_members, params))
            raise ServiceError(400, "BadRequest", f"Resource not found for the segment '{s[2]}'.")
        if head == "users":
            if len(s) == 1:
                return self._get(method, Route("listUsers", self.list_users))
            if low[1] in ("delta", "delta()", "microsoft.graph.delta", "microsoft.graph.delta()") and len(s) == 2:
                return self._get(method, Route("usersDelta", self.users_delta))
            if len(s) == 2:
                return self._get(method, Route("getUser", self.get_user, {"user": s[1].lower()}))
            raise ServiceError(400, "BadRequest", f"Resource not found for the segment '{s[2]}'.")
        if head.startswith("serviceprincipals(") and len(s) == 1:
            key = s[0][s[0].index("(") + 1 : -1] if s[0].endswith(")") else ""
            name, _, value = key.partition("=")
            if name.strip().lower() != "appid" or len(value) < 2 or value[0] != "'" or value[-1] != "'":
                raise ServiceError(400, "BadRequest", f"Bad alternate key in segment '{s[0]}'.")
            return self._get(
                method, Route("getServicePrincipal", self.get_service_principal, {"appId": value[1:-1].lower()})
            )
        if head == "serviceprincipals":
            if len(s) == 1:
                return self._get(method, Route("listServicePrincipals", self.list_service_principals))
            if low[1] in ("delta", "delta()", "microsoft.graph.delta", "microsoft.graph.delta()") and len(s) == 2:
                return self._get(method, Route("servicePrincipalsDelta", self.service_principals_delta))
            if len(s) == 2:
                return self._get(
                    method, Route("getServicePrincipal", self.get_service_principal, {"servicePrincipal": s[1].lower()})
                )
        if head == "directoryobjects" and len(s) == 2:
            if low[1] in ("getbyids", "microsoft.graph.getbyids"):
                if method != "POST":
                    raise ServiceError(405, "Request_BadRequest", "The HTTP method is not allowed.")
                return Route("getByIds", self.get_by_ids)
            return self._get(method, Route("getDirectoryObject", self.get_directory_object, {"object": s[1].lower()}))
        raise ServiceError(400, "BadRequest", f"Resource not found for the segment '{s[0]}'.")

    @staticmethod
    def _get(method: str, route: Route) -> Route:
        if method != "GET":
            raise ServiceError(
                405,
                "Request_BadRequest",
                f"The HTTP method '{method}' is not allowed on this resource in the sandbox (it is read-only).",
            )
        return route

    # ------------------------------------------------------------------ errors
    def error(
        self, request: web.Request, status: int, code: str, message: str, headers: Mapping[str, str] | None = None
    ) -> web.Response:
        rid = request_id(request)
        crid = request.headers.get("client-request-id", rid)
        h = {"request-id": rid, "client-request-id": crid, **(headers or {})}
        body = {
            "error": {
                "code": code,
                "message": message,
                "innerError": {
                    "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S"),
                    "request-id": rid,
                    "client-request-id": crid,
                },
            }
        }
        return json_response(body, status=status, content_type=CONTENT_TYPE, headers=h)

    def default_error_code(self, status: int) -> str:
        return {
            429: "TooManyRequests",
            500: "generalException",
            502: "badGateway",
            503: "serviceNotAvailable",
            504: "gatewayTimeout",
        }.get(status, "UnknownError")

    def fault_message(self, status: int) -> str:
        if status == 429:
            return "Too many requests from Identifier:sandbox under category:throttling. Please try again later."
        return super().fault_message(status)

    def ok(self, call: Call, body: Any, value: bytes | None = None) -> web.Response:
        """A 200 answer; `value`, if given, is the already serialised "value" array appended to `body`."""
        rid = request_id(call.request)
        headers = {
            "request-id": rid,
            "client-request-id": call.request.headers.get("client-request-id", rid),
            "OData-Version": "4.0",
        }
        response = json_response(body, content_type=CONTENT_TYPE, headers=headers)
        if value is not None:
            head = dumps(body)
            response.body = (head[:-1] + b',"value":' if len(head) > 2 else b'{"value":') + value + b"}"
        return response

    def authorize(self, call: Call, permissions: tuple[str, ...]) -> None:
        token, reason = self.bearer(call.request, GRAPH_AUDIENCE)
        if token is None:
            message = {
                "missing": "Access token is empty.",
                "malformed": "Access token validation failure. Invalid authorization header.",
                "unknown": "Access token validation failure. Invalid signature.",
                "expired": "Lifetime validation failed, the token is expired.",
                "audience": "Access token validation failure. Invalid audience.",
            }[reason or "unknown"]
            raise ServiceError(
                401,
                "InvalidAuthenticationToken",
                message,
                {
                    "WWW-Authenticate": 'Bearer realm="", authorization_uri="https://login.microsoftonline.com/common/'
                    'oauth2/authorize", client_id="00000003-0000-0000-c000-000000000000"'
                },
            )
        call.token = token
        if not set(token.roles) & set(permissions):
            raise ServiceError(403, "Authorization_RequestDenied", "Insufficient privileges to complete the operation.")

    @staticmethod
    def not_found(object_id: str) -> ServiceError:
        return ServiceError(
            404,
            "Request_ResourceNotFound",
            f"Resource '{object_id}' does not exist or one of its queried reference-property objects are not present.",
        )

    # ------------------------------------------------------------------ query options
    def select(self, call: Call, allowed: Iterable[str], extra: Iterable[str] = ()) -> list[str] | None:
        raw = call.query.get("$select")
        if raw is None:
            return None
        allowed_map = {a.casefold(): a for a in itertools.chain(allowed, extra)}
        out = []
        for name in (p.strip() for p in raw.split(",")):
            if not name:
                continue
            canonical = allowed_map.get(name.casefold())
            if canonical is None:
                raise ServiceError(
                    400,
                    "Request_BadRequest",
                    f"Parsing OData Select and Expand failed: Could not "
                    f"find a property named '{name}' on type "
                    "'microsoft.graph.directoryObject'.",
                )
            out.append(canonical)
        return out

    def top(self, call: Call) -> int:
        raw = call.query.get("$top")
        prefer = call.request.headers.get("Prefer", "")
        if raw is None and "odata.maxpagesize=" in prefer:
            raw = prefer.split("odata.maxpagesize=", 1)[1].split(",")[0].split(";")[0].strip()
        if raw is None:
            return self.state.settings.graph_page_size
        maximum = self.state.settings.graph_max_page_size
        if not raw.isdigit() or not 1 <= int(raw) <= maximum:
            raise ServiceError(
                400,
                "Request_UnsupportedQuery",
                f"Invalid page size specified: '{raw}'. Must be between 1 and {maximum} inclusive.",
            )
        return int(raw)

    def filter(self, call: Call, allowed: Iterable[str], *, advanced: bool = False) -> Filter | None:
        raw = call.query.get("$filter")
        if raw is None:
            return None
        if advanced and not self.eventual(call):
            raise ServiceError(
                400,
                "Request_UnsupportedQuery",
                "The specified filter to the reference property "
                "query is currently not supported without "
                "ConsistencyLevel: eventual.",
            )
        try:
            return parse_filter(raw, list(allowed))
        except FilterError as e:
            raise ServiceError(400, "Request_UnsupportedQuery", str(e)) from None

    @staticmethod
    def eventual(call: Call) -> bool:
        return call.request.headers.get("ConsistencyLevel", "").lower() == "eventual"

    def count_requested(self, call: Call) -> bool:
        raw = call.query.get("$count")
        if raw is None or raw.lower() == "false":
            return False
        if not self.eventual(call):
            raise ServiceError(
                400, "Request_BadRequest", "$count is not currently supported without ConsistencyLevel: eventual."
            )
        return True

    def link(self, call: Call, path: str, **replace: str) -> str:
        params = [(k, v) for k, v in call.query.items() if k not in ("$skiptoken", "$deltatoken")]
        params += [(k, v) for k, v in replace.items()]
        safe = ",'()$:@="
        query = "&".join(f"{k}={quote(v, safe=safe)}" for k, v in params)
        return f"{call.base_url}/v1.0/{path}" + (f"?{query}" if query else "")

    # ------------------------------------------------------------------ single objects
    def _group(self, group_id: str) -> Group:
        group = self.state.directory.groups.get(group_id)
        if group is None:
            raise self.not_found(group_id)
        return group

    async def get_group(self, call: Call) -> web.Response:
        self.authorize(call, READ_GROUPS)
        group = self._group(call.params["group"])
        body = {"@odata.context": f"{call.base_url}/v1.0/$metadata#groups/$entity"}
        body |= project(group, plan(self.select(call, GETTERS[GROUP], extra=("members",)), (GROUP,)), False)
        if "$expand" in call.query:  # like Graph: at most 20 members, id and type only
            d = self.state.directory
            body["members"] = [
                {"@odata.type": ODATA_TYPE[o.kind], "id": o.id}
                for m in d.direct_members(group.id)[:20]
                if (o := d.get(m)) is not None
            ]
        return self.ok(call, body)

    async def get_user(self, call: Call) -> web.Response:
        self.authorize(call, READ_USERS)
        user = self.state.directory.user(call.params["user"])
        if user is None:
            raise self.not_found(call.params["user"])
        call.params["user"] = user.id
        body = {"@odata.context": f"{call.base_url}/v1.0/$metadata#users/$entity"}
        body |= project(user, plan(self.select(call, GETTERS[USER]), (USER,)), False)
        return self.ok(call, body)

    async def get_service_principal(self, call: Call) -> web.Response:
        self.authorize(call, READ_SPS)
        d = self.state.directory
        if "appId" in call.params:
            sp = d.sp_by_app_id(call.params["appId"])
            ref = call.params["appId"]
        else:
            ref = call.params["servicePrincipal"]
            sp = d.service_principals.get(ref)
        if sp is None:
            raise self.not_found(ref)
        body = {"@odata.context": f"{call.base_url}/v1.0/$metadata#servicePrincipals/$entity"}
        body |= project(sp, plan(self.select(call, GETTERS[SERVICE_PRINCIPAL]), (SERVICE_PRINCIPAL,)), False)
        return self.ok(call, body)

    async def get_directory_object(self, call: Call) -> web.Response:
        self.authorize(call, READ_ANY)
        obj = self.state.directory.get(call.params["object"])
        if obj is None:
            raise self.not_found(call.params["object"])
        body = {"@odata.context": f"{call.base_url}/v1.0/$metadata#directoryObjects/$entity"}
        body |= project(obj, plan(self.select(call, ALL_PROPS), (obj.kind,)), True)
        return self.ok(call, body)

    async def get_by_ids(self, call: Call) -> web.Response:
        self.authorize(call, READ_ANY)
        try:
            body = await call.request.json()
        except ValueError:
            raise ServiceError(400, "Request_BadRequest", "The request body is not valid JSON.") from None
        ids = body.get("ids") if isinstance(body, dict) else None
        if not isinstance(ids, list) or not all(isinstance(i, str) for i in ids) or len(ids) > 1000:
            raise ServiceError(400, "Request_BadRequest", "'ids' must be a list of at most 1000 object ids.")
        types = {t.removeprefix("microsoft.graph.").casefold() for t in body.get("types") or ()}
        p = plan(self.select(call, ALL_PROPS), (USER, GROUP, SERVICE_PRINCIPAL))
        out = []
        for oid in ids:
            obj = self.state.directory.get(oid)
            if obj is not None and (not types or obj.kind.casefold() in types):
                out.append(project(obj, p, True))
        return self.ok(call, {"@odata.context": f"{call.base_url}/v1.0/$metadata#directoryObjects", "value": out})

    # ------------------------------------------------------------------ collections of one kind
    async def list_groups(self, call: Call) -> web.Response:
        self.authorize(call, READ_GROUPS)
        d = self.state.directory
        return self._list_kind(
            call,
            "groups",
            GROUP,
            d.group_order,
            d.groups,
            {
                "displayName": lambda v: [g.id for g in d.groups_named(str(v))],
                "id": lambda v: [str(v).lower()] if str(v).lower() in d.groups else [],
            },
        )

    async def list_users(self, call: Call) -> web.Response:
        self.authorize(call, READ_USERS)
        d = self.state.directory
        return self._list_kind(
            call,
            "users",
            USER,
            d.user_order,
            d.users,
            {
                "userPrincipalName": lambda v: [u.id] if (u := d.user_by_upn(str(v))) else [],
                "mail": lambda v: [u.id for u in d.users_by_mail(str(v))],
                "id": lambda v: [str(v).lower()] if str(v).lower() in d.users else [],
            },
            {"userPrincipalName": lambda v: [u.id for u in d.users_with_upn_prefix(v)]},
        )

    async def list_service_principals(self, call: Call) -> web.Response:
        self.authorize(call, READ_SPS)
        d = self.state.directory
        return self._list_kind(
            call,
            "servicePrincipals",
            SERVICE_PRINCIPAL,
            d.sp_order,
            d.service_principals,
            {
                "appId": lambda v: [s.id] if (s := d.sp_by_app_id(str(v))) else [],
                "displayName": lambda v: [s.id for s in d.sps_named(str(v))],
                "id": lambda v: [str(v).lower()] if str(v).lower() in d.service_principals else [],
            },
        )

    def _list_kind(
        self,
        call: Call,
        path: str,
        kind: str,
        order: OrderedIds,
        objects: Mapping[str, Any],
        indexes: Mapping[str, Callable[[Any], list[str]]],
        prefixes: Mapping[str, Callable[[str], list[str]]] | None = None,
    ) -> web.Response:
        select = self.select(call, GETTERS[kind])
        flt = self.filter(call, GETTERS[kind])
        top = self.top(call)
        if "$search" in call.query:
            raise ServiceError(400, "Request_UnsupportedQuery", "$search is not supported by the sandbox.")
        want_count = self.count_requested(call)
        after = int(decode_token(call.query["$skiptoken"]).get("a", 0)) if "$skiptoken" in call.query else 0
        p = plan(select, (kind,))

        def candidates() -> Iterator[tuple[int, Any]]:
            ids: set[str] | None = None
            if flt is not None and flt.lookup is not None and flt.lookup[0] in indexes:
                ids = {i for v in flt.lookup[1] for i in indexes[flt.lookup[0]](v)}
            elif flt is not None and flt.prefix is not None and flt.prefix[0] in (prefixes or {}):
                ids = set((prefixes or {})[flt.prefix[0]](flt.prefix[1]))
            if ids is not None:
                objs = sorted((objects[i] for i in ids), key=lambda o: o.ordinal)
                yield from ((o.ordinal, o) for o in objs if o.ordinal > after)
            else:
                yield from ((o, objects[i]) for o, i in order.after(after))

        items, last, more = [], after, False
        for ordinal, obj in candidates():
            if flt is not None and not flt.predicate(all_values(obj)):
                continue
            if len(items) == top:
                more = True
                break
            items.append(project(obj, p, False))
            last = ordinal
        body: dict[str, Any] = {"@odata.context": f"{call.base_url}/v1.0/$metadata#{path}"}
        if want_count:
            body["@odata.count"] = sum(1 for _, o in candidates() if flt is None or flt.predicate(all_values(o)))
        if more:
            body["@odata.nextLink"] = self.link(call, path, **{"$skiptoken": encode_token({"a": last})})
        body["value"] = items
        return self.ok(call, body)

    # ------------------------------------------------------------------ members
    def _snapshot(self, ids: tuple[str, ...]) -> int:
        sid = next(self._snapshot_ids)
        self._snapshots[sid] = ids
        while len(self._snapshots) > self.SNAPSHOTS:
            self._snapshots.popitem(last=False)
        return sid

    async def list_members(self, call: Call) -> web.Response:
        self.authorize(call, READ_GROUPS)
        d = self.state.directory
        gid = call.params["group"]
        self._group(gid)
        select = self.select(call, ALL_PROPS)
        flt = self.filter(call, ALL_PROPS, advanced=True)
        top = self.top(call)
        want_count = self.count_requested(call)
        cast = call.params.get("cast")
        token = decode_token(call.query["$skiptoken"]) if "$skiptoken" in call.query else None
        ids = self._snapshots.get(int(token.get("s", 0))) if token else None
        if ids is None:
            ids = d.direct_members(gid) if call.operation == "members" else d.transitive_members(gid)
            if cast is not None or flt is not None:
                ids = tuple(
                    i
                    for i in ids
                    if (o := d.get(i)) is not None
                    and (cast is None or o.kind == cast)
                    and (flt is None or flt.predicate(all_values(o)))
                )
        if call.params.get("count"):
            if not self.eventual(call):
                raise ServiceError(
                    400, "Request_BadRequest", "$count is not currently supported without ConsistencyLevel: eventual."
                )
            response = self.ok(call, None)
            response.body = str(len(ids)).encode()
            response.headers["Content-Type"] = "text/plain; charset=utf-8"
            return response
        offset = int(token.get("o", 0)) if token else 0
        p = plan(select, (USER, GROUP, SERVICE_PRINCIPAL))
        objects = [o for i in ids[offset : offset + top] if (o := d.get(i)) is not None]
        body: dict[str, Any] = {"@odata.context": f"{call.base_url}/v1.0/$metadata#directoryObjects"}
        if want_count:
            body["@odata.count"] = len(ids)
        if offset + top < len(ids):
            sid = (
                int(token["s"])
                if token and "s" in token and int(token["s"]) in self._snapshots
                else self._snapshot(ids)
            )
            segs = "/".join(quote(x, safe="") for x in call.segments[1:])
            body["@odata.nextLink"] = self.link(
                call, segs, **{"$skiptoken": encode_token({"s": sid, "o": offset + top})}
            )
        return self.ok(call, body, self._rendered.render(objects, p, select, d.revision))

    # ------------------------------------------------------------------ JSON batching
    async def batch(self, call: Call) -> web.Response:
        """`POST /v1.0/$batch`: up to 20 GET requests in one round trip, each served as if sent alone
        (auth, faults and the request log apply to each; counters count only the batch itself, since
        that is the one round trip the client made). Inner requests run concurrently, as in Graph."""
        try:
            body = await call.request.json()
        except ValueError:
            raise ServiceError(400, "BadRequest", "The request body is not valid JSON.") from None
        requests = body.get("requests") if isinstance(body, dict) else None
        if not isinstance(requests, list) or not 1 <= len(requests) <= 20:
            raise ServiceError(400, "BadRequest", "'requests' must hold 1 to 20 requests.")
        for r in requests:
            if (
                not isinstance(r, dict)
                or not isinstance(r.get("url"), str)
                or not r["url"].startswith("/")
                or str(r.get("method", "")).upper() != "GET"
                or "id" not in r
            ):
                raise ServiceError(
                    400,
                    "BadRequest",
                    "each batched request needs an id, method GET and a url relative to the version (/groups/...).",
                )

        async def one(r: dict[str, Any]) -> dict[str, Any]:
            # A request object of its own (the batch's body is read, so it cannot be cloned).
            inner = make_mocked_request(
                "GET",
                f"/v1.0{r['url']}",
                app=call.request.app,
                headers={**call.request.headers, BATCHED_HEADER: str(r["id"])},
            )
            response = await self.handle(inner)
            assert isinstance(response, web.Response)
            text = response.text or ""
            try:
                payload: Any = json.loads(text) if text else None
            except ValueError:
                payload = text
            return {
                "id": str(r["id"]),
                "status": response.status,
                "headers": {k: v for k, v in response.headers.items() if k.lower() in ("retry-after", "content-type")},
                "body": payload,
            }

        responses = list(await asyncio.gather(*(one(r) for r in requests)))
        self._shuffle.shuffle(responses)  # Graph: "responses might appear in a different order"
        return self.ok(call, {"responses": responses})

    # ------------------------------------------------------------------ delta
    def delta_page_size(self, call: Call) -> int:
        """`Prefer: odata.maxpagesize`, else the default page size ($top is refused on delta)."""
        return self.top(call)

    def expired(self) -> ServiceError:
        status, code, message = self.state.directory.expired_answer
        return ServiceError(status, code, message)

    async def users_delta(self, call: Call) -> web.Response:
        """`users/delta`: an initial round of every user, then users created, changed (a selected
        property) or deleted (`@removed`) since a token; `$deltatoken=latest` gives just a link."""
        self.authorize(call, READ_USERS)
        d = self.state.directory
        return self._objects_delta(call, "users", USER, d.user_changes, d.user_delta, d.users, d.user_order)

    async def service_principals_delta(self, call: Call) -> web.Response:
        """`servicePrincipals/delta`, as `users/delta`."""
        self.authorize(call, READ_SPS)
        d = self.state.directory
        return self._objects_delta(
            call, "servicePrincipals", SERVICE_PRINCIPAL, d.sp_changes, d.sp_delta, d.service_principals, d.sp_order
        )

    def _objects_delta(
        self,
        call: Call,
        path: str,
        kind: str,
        log: ChangeLog,
        changed: Callable[[int, int, list[str] | None], list[tuple[str, bool]]],
        objects: Mapping[str, Any],
        order: OrderedIds,
    ) -> web.Response:
        q = call.query
        size = self.delta_page_size(call)
        if "$skiptoken" in q:
            tok = decode_token(q["$skiptoken"])
        elif q.get("$deltatoken") == "latest":
            tok = {"m": "inc", "s": log.seq, "u": log.seq, "sel": self.select(call, GETTERS[kind]), "o": 0}
        elif "$deltatoken" in q:
            base = decode_token(q["$deltatoken"])
            tok = {"m": "inc", "s": int(base.get("u", 0)), "u": log.seq, "sel": base.get("sel"), "o": 0}
        else:
            tok = {"m": "full", "u": log.seq, "sel": self.select(call, GETTERS[kind]), "o": 0}
        p = plan(tok.get("sel"), (kind,))
        offset = int(tok.get("o", 0))
        if tok["m"] == "full":
            changes = [(oid, False) for _, oid in order.after(0)]
        else:
            try:
                changes = changed(int(tok["s"]), int(tok["u"]), tok.get("sel"))
            except DirectoryError:
                raise self.expired() from None
        value: list[dict[str, Any]] = []
        for oid, deleted in changes[offset : offset + size]:
            obj = objects.get(oid)
            if deleted or obj is None:
                value.append({"id": oid, "@removed": {"reason": "changed"}})
            else:
                value.append(project(obj, p, False))
        body: dict[str, Any] = {"@odata.context": f"{call.base_url}/v1.0/$metadata#{path}"}
        if offset + size < len(changes):
            body["@odata.nextLink"] = (
                f"{call.base_url}/v1.0/{path}/delta?$skiptoken={encode_token(tok | {'o': offset + size})}"
            )
        else:
            final = encode_token({"u": tok["u"], "sel": tok.get("sel")})
            body["@odata.deltaLink"] = f"{call.base_url}/v1.0/{path}/delta?$deltatoken={final}"
        body["value"] = value
        return self.ok(call, body)

    async def groups_delta(self, call: Call) -> web.Response:
        self.authorize(call, READ_GROUPS)
        d = self.state.directory
        q = call.query
        if "$skiptoken" in q:
            tok = decode_token(q["$skiptoken"])
        elif q.get("$deltatoken") == "latest":  # no initial round: just a link for changes from now on
            link = encode_token(
                {"u": d.changes.seq, "sel": self.select(call, GETTERS[GROUP], extra=("members",)), "ids": None}
            )
            return self.ok(
                call,
                {
                    "@odata.context": f"{call.base_url}/v1.0/$metadata#groups",
                    "@odata.deltaLink": f"{call.base_url}/v1.0/groups/delta?$deltatoken={link}",
                    "value": [],
                },
            )
        elif "$deltatoken" in q:
            base = decode_token(q["$deltatoken"])
            tok = {
                "m": "inc",
                "s": int(base.get("u", 0)),
                "u": d.changes.seq,
                "sel": base.get("sel"),
                "ids": base.get("ids"),
                "o": 0,
            }
        else:
            select = self.select(call, GETTERS[GROUP], extra=("members",))
            flt = self.filter(call, ("id",))
            ids = None
            if flt is not None:
                if flt.lookup is None or flt.lookup[0] != "id":
                    raise ServiceError(
                        400,
                        "Request_UnsupportedQuery",
                        "Delta supports only $filter=id eq '...' (or 'or'-ed / 'in' lists of ids).",
                    )
                ids = sorted({str(v).lower() for v in flt.lookup[1]})
            tok = {"m": "full", "u": d.changes.seq, "sel": select, "ids": ids, "a": 0, "mo": 0}
        select = tok.get("sel")
        with_members = select is None or "members" in select
        p = plan([s for s in select if s != "members"] if select is not None else None, (GROUP,))
        only = set(tok["ids"]) if tok.get("ids") is not None else None
        size = self.delta_page_size(call)
        if tok.get("m") == "full":
            value, nxt = full_page(d, self.state.settings.delta_member_chunk, tok, p, with_members, only, size)
        else:
            try:
                value, nxt = incremental_page(d, tok, p, with_members, only, size)
            except DirectoryError:
                raise self.expired() from None
        body: dict[str, Any] = {"@odata.context": f"{call.base_url}/v1.0/$metadata#groups"}
        if nxt is not None:
            body["@odata.nextLink"] = f"{call.base_url}/v1.0/groups/delta?$skiptoken={encode_token(nxt)}"
        else:
            final = encode_token({"u": tok["u"], "sel": select, "ids": tok.get("ids")})
            body["@odata.deltaLink"] = f"{call.base_url}/v1.0/groups/delta?$deltatoken={final}"
        body["value"] = value
        return self.ok(call, body)

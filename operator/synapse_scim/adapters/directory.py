"""Microsoft Graph adapter (msgraph-sdk, async): subjects, transitive members, directory changes.

Errors are sorted into two kinds, because the planner treats them differently: a *definitive* answer
(the group does not exist, the name matches two groups) and a *transient* one (throttled, 5xx,
timeout, auth). Neither ever becomes a revocation; both are shown in status with their reason.

An account counts as enabled only when Graph says so: `accountEnabled` is returned only on `$select`,
and Graph leaves it out of some directoryObject collections even then, so a member without it is read
explicitly (JSON batches of `GET /users/{id}` and `/servicePrincipals/{id}`), and a member whose state
stays unknown fails the read instead of being granted. The same holds for the users a principal lookup
of a pushed SCIM user finds (`find_accounts`).
"""

from __future__ import annotations

import asyncio
import json
import re
import ssl
from collections.abc import AsyncIterator, Collection
from dataclasses import dataclass, field
from typing import Any, NamedTuple
from urllib.parse import quote, urlparse

import httpx
from azure.core.credentials_async import AsyncTokenCredential
from azure.core.exceptions import ClientAuthenticationError
from kiota_abstractions.base_request_configuration import RequestConfiguration
from kiota_abstractions.method import Method
from kiota_abstractions.request_information import RequestInformation
from kiota_authentication_azure.azure_identity_authentication_provider import AzureIdentityAuthenticationProvider
from msgraph.generated.groups.groups_request_builder import GroupsRequestBuilder
from msgraph.generated.groups.item.group_item_request_builder import GroupItemRequestBuilder
from msgraph.generated.groups.item.transitive_members.transitive_members_request_builder import (
    TransitiveMembersRequestBuilder,
)
from msgraph.generated.models.o_data_errors.main_error import MainError
from msgraph.generated.models.o_data_errors.o_data_error import ODataError
from msgraph.generated.service_principals.item.service_principal_item_request_builder import (
    ServicePrincipalItemRequestBuilder,
)
from msgraph.generated.service_principals.service_principals_request_builder import ServicePrincipalsRequestBuilder
from msgraph.generated.users.item.user_item_request_builder import UserItemRequestBuilder
from msgraph.graph_request_adapter import GraphRequestAdapter
from msgraph.graph_service_client import GraphServiceClient
from msgraph_core import GraphClientFactory

from synapse_scim.adapters.credentials import Cloud
from synapse_scim.adapters.principal_lookups import lookup_keys
from synapse_scim.core.errors import ReasonedError, first_line, retry_after_header, untrusted_certificate
from synapse_scim.core.matching import Account, Lookup, LookupAttribute
from synapse_scim.core.model import Principal, PrincipalType
from synapse_scim.core.reasons import Reason
from synapse_scim.metrics import graph_request_hook, graph_response_hook

MEMBER_FIELDS = ["id", "displayName", "userPrincipalName", "accountEnabled", "appId"]
PAGE_SIZE = 999  # Graph's maximum for member lists: fewer round trips for big groups
BATCH_LIMIT = 20  # requests per Graph JSON batch
LOOKUP_BATCHES = 4  # lookup batches in flight at once (find_accounts)
# What a lookup reads of each user it finds: accountEnabled only comes when asked for.
LOOKUP_SELECT = "id,displayName,userPrincipalName,mail,accountEnabled"
# Results asked for per lookup: two already make the answer ambiguous (core/matching.py), so no
# nextLink is followed; the first page is returned whole, so the verdict can name a few of them.
LOOKUP_TOP = 5
# Error codes with which Graph says a delta link expired, besides 410 Gone: a 400 syncStateNotFound
# after the link's lifetime (7 days for directory objects), and resyncRequired.
EXPIRED_DELTA_CODES = frozenset({"syncstatenotfound", "resyncrequired"})
_ERRORS: dict[str, Any] = {"XXX": ODataError}
_GUID = re.compile(r"^[0-9a-fA-F]{8}-([0-9a-fA-F]{4}-){3}[0-9a-fA-F]{12}$")


class DirectoryError(ReasonedError):
    """`reason` is a CamelCase condition reason; `definitive` says whether retrying could change it."""

    def __init__(self, reason: Reason, message: str, *, definitive: bool, retry_after: float | None = None) -> None:
        super().__init__(reason, message, retry_after=retry_after)  # seconds Graph asked to wait
        self.definitive = definitive


@dataclass(frozen=True)
class Expansion:
    """The enabled principals a group grants to, and every group seen on the way (for change tracking)."""

    principals: tuple[Principal, ...]
    groups: frozenset[str]
    disabled_ids: frozenset[str] = frozenset()  # members left out because their account is disabled

    @property
    def disabled(self) -> int:
        return len(self.disabled_ids)

    @property
    def members(self) -> frozenset[str]:
        """Every non-group member id, disabled ones included (what a user change can touch)."""
        return frozenset(p.id for p in self.principals) | self.disabled_ids


@dataclass
class DeltaResult:
    changed_groups: set[str] = field(default_factory=set)  # object ids (users or service principals in their rounds)
    names: dict[str, str] = field(default_factory=dict)  # new displayName of renamed or new groups
    link: str | None = None
    # users/delta only: every principal lookup whose answer the reported users may change (their id, UPN,
    # guest prefix and mail as reported; a removed user by its id): see principal_lookups.lookup_keys.
    lookup_keys: frozenset[Lookup] = frozenset()


class DeltaLinks(NamedTuple):
    """The delta links of one tenant's three rounds (None: take one from now on)."""

    groups: str | None
    users: str | None
    service_principals: str | None


class Deltas(NamedTuple):
    """What one batched delta round found: group, user and service principal changes."""

    groups: DeltaResult
    users: DeltaResult
    service_principals: DeltaResult

    @property
    def links(self) -> DeltaLinks:
        return DeltaLinks(self.groups.link, self.users.link, self.service_principals.link)


def delta_expired(status: int, code: str | None) -> bool:
    """Whether Graph's answer to a delta request says its link (or nextLink) expired: 410 Gone, or a
    4xx with syncStateNotFound / resyncRequired. Every form means: take a new link, read afresh."""
    return status == 410 or (400 <= status < 500 and (code or "").casefold() in EXPIRED_DELTA_CODES)


def _retry_after(headers: Any) -> float | None:
    """Retry-After of one batched response: its headers are a plain JSON object, in any case."""
    if not isinstance(headers, dict):
        return None
    values = [str(v) for k, v in headers.items() if str(k).lower() == "retry-after"]
    return retry_after_header({"Retry-After": values[0]}) if values else None


def graph_client(
    credential: AsyncTokenCredential, cloud: Cloud, verify: str | None = None, timeout: float = 60.0
) -> GraphServiceClient:
    """A GraphServiceClient for the cloud's Graph endpoint; the token goes to that host only."""
    context = ssl.create_default_context(cafile=verify) if verify else ssl.create_default_context()
    http = GraphClientFactory.create_with_default_middleware(
        client=httpx.AsyncClient(
            verify=context,
            timeout=timeout,
            event_hooks={"request": [graph_request_hook], "response": [graph_response_hook]},
        )
    )
    auth = AzureIdentityAuthenticationProvider(
        credential, scopes=[cloud.graph_scope], allowed_hosts=[urlparse(cloud.graph_endpoint).hostname or ""]
    )
    adapter = GraphRequestAdapter(auth, client=http)
    # Set explicitly: httpx's base_url would give `/v1.0//groups` (see the wire-protocol notes).
    adapter.base_url = f"{cloud.graph_endpoint}/v1.0"
    return GraphServiceClient(request_adapter=adapter)


def _odata_quote(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


# What each delta round selects: Graph tracks only the selected properties, so group membership
# changes are seen only with `members` selected, and account changes only with `accountEnabled`.
_DELTA_SELECT = {
    "groups": "id,displayName,members",
    "users": "id,accountEnabled,userPrincipalName,mail",  # the last two for the principal lookups
    "servicePrincipals": "id,accountEnabled",
}
_RESOURCES = tuple(_DELTA_SELECT)  # in the order of DeltaLinks and Deltas


def _latest(resource: str) -> str:
    """A first delta round of `resource` that returns only a link (no listing of every object)."""
    return f"/{resource}/delta?$select={_DELTA_SELECT[resource]}&$deltatoken=latest"


def _status_error(status: int, error: dict[str, Any], what: str, retry_after: float | None = None) -> DirectoryError:
    """A batched response's failure, sorted as `directory_error` sorts an ODataError."""
    odata = ODataError()
    odata.response_status_code = status
    main = MainError()
    main.code = str(error.get("code") or "")
    main.message = str(error.get("message") or "")
    odata.error = main
    found = directory_error(odata, what)
    if retry_after is None:
        return found
    return DirectoryError(found.reason, found.message, definitive=found.definitive, retry_after=retry_after)


def _expired(what: str) -> DirectoryError:
    return DirectoryError(
        Reason.DELTA_EXPIRED, f"{what}: Graph no longer knows the delta link: resync", definitive=False
    )


def directory_error(exc: Exception, what: str) -> DirectoryError:
    """Any failure of a Graph read as a DirectoryError with its reason (definitive or worth a retry)."""
    if (untrusted := untrusted_certificate(exc, f"reading {what}")) is not None:
        return DirectoryError(untrusted.reason, untrusted.message, definitive=False)
    if isinstance(exc, ODataError):
        status = exc.response_status_code or 0
        code = exc.error.code if exc.error else ""
        message = exc.error.message if exc.error and exc.error.message else str(exc)
        if status == 404:
            return DirectoryError(Reason.SUBJECT_NOT_FOUND, f"{what} does not exist in the directory", definitive=True)
        if status == 401:
            return DirectoryError(
                Reason.DIRECTORY_ACCESS_DENIED,
                f"Graph refused the operator's token reading {what} ({status} {code}): the operator signs in "
                "again and retries; if it persists, check the credential and that the GroupMember.Read.All, "
                "User.Read.All and Application.Read.All application permissions have admin consent",
                definitive=False,
            )
        if status == 403:
            return DirectoryError(
                Reason.DIRECTORY_ACCESS_DENIED,
                f"Graph refused to read {what} ({status} {code}): grant the operator's identity the "
                "GroupMember.Read.All, User.Read.All and Application.Read.All application permissions",
                definitive=False,
            )
        return DirectoryError(
            Reason.DIRECTORY_READ_FAILED,
            f"reading {what} failed: {status} {code} {message}",
            definitive=False,
            # What Graph asked for after the SDK's own retries (429, 503): the sync's retry waits as long.
            retry_after=retry_after_header(exc.response_headers),
        )
    if isinstance(exc, ClientAuthenticationError):
        first = first_line(str(exc)) or type(exc).__name__
        if "AADSTS500011" in first:  # no such resource: the token was asked for a wrong Graph endpoint
            first += ": check spec.cloud.graphEndpoint"
        return DirectoryError(
            Reason.AUTHENTICATION_FAILED, f"reading {what}: cannot get a Graph token: {first}", definitive=False
        )
    if isinstance(exc, httpx.TransportError):
        return DirectoryError(
            Reason.DIRECTORY_READ_FAILED,
            f"reading {what} failed: {type(exc).__name__}: "
            f"{first_line(str(exc))}: check spec.cloud.graphEndpoint and that the operator can "
            "reach it",
            definitive=False,
        )
    return DirectoryError(
        Reason.DIRECTORY_READ_FAILED, f"reading {what} failed: {type(exc).__name__}: {exc}", definitive=False
    )


def _unknown_state(what: str) -> DirectoryError:
    return DirectoryError(
        Reason.DIRECTORY_READ_FAILED,
        f"Graph did not say whether {what} is enabled (no accountEnabled, even when asked for it): it gets no "
        "role until Graph does; check that the operator's identity has User.Read.All and Application.Read.All",
        definitive=False,
    )


# A member's kind -> where its account state is read explicitly.
_ACCOUNT_PATHS = {"#microsoft.graph.user": "users", "#microsoft.graph.servicePrincipal": "servicePrincipals"}


def principal_from_json(obj: dict[str, Any]) -> Principal | None:
    """A member object (raw Graph JSON) as a Principal; None for kinds that cannot hold Synapse roles."""
    kind = obj.get("@odata.type", "")
    if kind == "#microsoft.graph.user":
        return Principal(
            id=str(obj["id"]),
            type=PrincipalType.USER,
            display=obj.get("userPrincipalName") or obj.get("displayName") or "",
        )
    if kind == "#microsoft.graph.servicePrincipal":
        return Principal(
            id=str(obj["id"]),
            type=PrincipalType.SERVICE_PRINCIPAL,
            display=obj.get("displayName") or obj.get("appId") or "",
        )
    if kind == "#microsoft.graph.group":
        return Principal(id=str(obj["id"]), type=PrincipalType.GROUP, display=obj.get("displayName") or "")
    return None


class Directory:
    """Reads subjects and memberships from one tenant's Graph."""

    def __init__(self, client: GraphServiceClient) -> None:
        self.client = client

    async def close(self) -> None:
        http = getattr(self.client.request_adapter, "_http_client", None)
        if http is None:
            return
        # msgraph_core's AsyncGraphTransport has no aclose(): its inner pool must be closed itself.
        inner = getattr(getattr(http, "_transport", None), "transport", None)
        await http.aclose()
        if inner is not None:
            await inner.aclose()

    async def resolve(self, kind: str, *, name: str | None = None, id: str | None = None) -> Principal:
        """A subject of a binding as a directory object; DirectoryError when it does not resolve, or is
        a user or service principal whose account is disabled (or whose state Graph left out)."""
        principal, enabled = await self.look_up(kind, name=name, id=id)
        if principal.type is not PrincipalType.GROUP:
            self._refuse_disabled(enabled, _what(kind, name, id))
        return principal

    async def look_up(
        self, kind: str, *, name: str | None = None, id: str | None = None
    ) -> tuple[Principal, bool | None]:
        """The object and its accountEnabled (None for a group, or when Graph left it out), not judged:
        `explain` shows the grants a disabled account still holds."""
        what = _what(kind, name, id)
        try:
            if kind == "Group":
                return await self._resolve_group(name, id, what), None
            if kind == "User":
                return await self._resolve_user(name or id or "", what)
            if kind == "ServicePrincipal":
                return await self._resolve_service_principal(name, id, what)
        except DirectoryError:
            raise
        except Exception as exc:  # every transport or service failure is one kind of answer
            raise directory_error(exc, what) from exc
        raise DirectoryError(Reason.SUBJECT_KIND_UNKNOWN, f"unknown subject kind {kind!r}", definitive=True)

    async def _send(self, info: RequestInformation) -> bytes | None:
        raw: bytes | None = await self.client.request_adapter.send_primitive_async(info, "bytes", _ERRORS)
        return raw

    async def get_json(self, info: RequestInformation) -> dict[str, Any]:
        """One Graph request answered as raw JSON (no SDK models: see `pages`); errors raise ODataError."""
        raw = await self._send(info)
        found: dict[str, Any] = json.loads(raw or b"{}")
        return found

    async def _resolve_group(self, name: str | None, id: str | None, what: str) -> Principal:
        if id:
            by_id = GroupItemRequestBuilder.GroupItemRequestBuilderGetQueryParameters(select=["id", "displayName"])
            group = await self.get_json(
                self.client.groups.by_group_id(id).to_get_request_information(
                    request_configuration=RequestConfiguration(query_parameters=by_id)
                )
            )
            return Principal(id=str(group["id"]), type=PrincipalType.GROUP, display=group.get("displayName") or "")
        query = GroupsRequestBuilder.GroupsRequestBuilderGetQueryParameters(
            filter=f"displayName eq {_odata_quote(name or '')}", select=["id", "displayName"], top=2
        )
        page = await self.get_json(
            self.client.groups.to_get_request_information(
                request_configuration=RequestConfiguration(query_parameters=query)
            )
        )
        found = self._exactly_one(page.get("value") or [], what, "Group")
        return Principal(id=str(found["id"]), type=PrincipalType.GROUP, display=found.get("displayName") or "")

    async def _resolve_user(self, key: str, what: str) -> tuple[Principal, bool | None]:
        # accountEnabled is not among Graph's default user properties: without $select it is None.
        query = UserItemRequestBuilder.UserItemRequestBuilderGetQueryParameters(
            select=["id", "displayName", "userPrincipalName", "accountEnabled"]
        )
        user = await self.get_json(
            self.client.users.by_user_id(key).to_get_request_information(
                request_configuration=RequestConfiguration(query_parameters=query)
            )
        )
        principal = Principal(id=str(user["id"]), type=PrincipalType.USER, display=user.get("userPrincipalName") or key)
        return principal, _account_state(user)

    @staticmethod
    def _refuse_disabled(enabled: Any, what: str) -> None:
        """A subject named directly gets a role only if Graph says its account is enabled."""
        if enabled is False:
            raise DirectoryError(
                Reason.SUBJECT_DISABLED, f"{what} is disabled in the directory: it gets no role", definitive=True
            )
        if enabled is not True:
            raise _unknown_state(what)

    async def _resolve_service_principal(
        self, name: str | None, id: str | None, what: str
    ) -> tuple[Principal, bool | None]:
        if id:
            by_id = ServicePrincipalItemRequestBuilder.ServicePrincipalItemRequestBuilderGetQueryParameters(
                select=["id", "displayName", "appId", "accountEnabled"]
            )
            sp = await self.get_json(
                self.client.service_principals.by_service_principal_id(id).to_get_request_information(
                    request_configuration=RequestConfiguration(query_parameters=by_id)
                )
            )
        else:
            field_name = "appId" if _GUID.match(name or "") else "displayName"
            query = ServicePrincipalsRequestBuilder.ServicePrincipalsRequestBuilderGetQueryParameters(
                filter=f"{field_name} eq {_odata_quote(name or '')}",
                select=["id", "displayName", "appId", "accountEnabled"],
                top=2,
            )
            page = await self.get_json(
                self.client.service_principals.to_get_request_information(
                    request_configuration=RequestConfiguration(query_parameters=query)
                )
            )
            sp = self._exactly_one(page.get("value") or [], what, "ServicePrincipal")
        principal = Principal(
            id=str(sp["id"]),
            type=PrincipalType.SERVICE_PRINCIPAL,
            display=sp.get("displayName") or sp.get("appId") or "",
        )
        return principal, _account_state(sp)

    @staticmethod
    def _exactly_one(found: list[dict[str, Any]], what: str, kind: str) -> dict[str, Any]:
        if not found:
            raise DirectoryError(Reason.SUBJECT_NOT_FOUND, f"{what} does not exist in the directory", definitive=True)
        if len(found) > 1:
            raise DirectoryError(
                Reason.SUBJECT_AMBIGUOUS,
                f"{what} matches more than one {kind}: name it by id instead",
                definitive=True,
            )
        return found[0]

    async def expand(self, group: Principal) -> Expansion:
        """Every enabled user and service principal in the group, nested groups included (cycles are
        Graph's problem: transitiveMembers lists each member once). A member Graph listed without
        `accountEnabled` is read again explicitly; one whose state stays unknown fails the read."""
        principals: dict[str, Principal] = {}
        groups = {group.id}
        disabled: set[str] = set()
        unknown: dict[str, dict[str, Any]] = {}
        what = f"members of group {group.display!r}"
        try:
            async for obj in self._transitive_members(group.id):
                kind = obj.get("@odata.type", "")
                if kind == "#microsoft.graph.group":
                    groups.add(str(obj["id"]))
                    continue
                enabled = obj.get("accountEnabled")
                if enabled is False:
                    disabled.add(str(obj["id"]))
                elif enabled is True:
                    if (principal := principal_from_json(obj)) is not None:
                        principals[principal.id] = principal
                elif kind in _ACCOUNT_PATHS:
                    unknown[str(obj["id"])] = obj
        except Exception as exc:
            raise directory_error(exc, what) from exc
        states = await self.accounts_enabled(
            {oid: _ACCOUNT_PATHS[o["@odata.type"]] for oid, o in unknown.items()}, what
        )
        for oid, obj in unknown.items():
            if states.get(oid) is True:
                if (principal := principal_from_json(obj)) is not None:
                    principals[principal.id] = principal
            else:  # disabled, or deleted since it was listed: left out either way
                disabled.add(oid)
        return Expansion(
            principals=tuple(principals.values()), groups=frozenset(groups), disabled_ids=frozenset(disabled)
        )

    async def accounts_enabled(self, accounts: dict[str, str], what: str) -> dict[str, bool | None]:
        """`accountEnabled` of each account (id -> "users" | "servicePrincipals"), read explicitly in JSON
        batches; None for an account that no longer exists. Raises DirectoryError when Graph does not
        say (never guessed as enabled) or a read fails (with Graph's Retry-After, when throttled)."""
        found: dict[str, bool | None] = {}
        items = list(accounts.items())
        for start in range(0, len(items), BATCH_LIMIT):
            chunk = items[start : start + BATCH_LIMIT]
            answers = await self._batch(
                {oid: f"/{path}/{oid}?$select=id,accountEnabled" for oid, path in chunk}, f"accounts among the {what}"
            )
            for oid, path in chunk:
                account = f"{'user' if path == 'users' else 'service principal'} {oid} ({what})"
                status, headers, body = answers[oid]
                if status == 404:
                    found[oid] = None
                    continue
                if status >= 400:
                    raise _status_error(status, body.get("error") or {}, account, _retry_after(headers))
                enabled = body.get("accountEnabled")
                if not isinstance(enabled, bool):
                    raise _unknown_state(account)
                found[oid] = enabled
        return found

    async def find_accounts(self, looks: Collection[Lookup]) -> dict[Lookup, tuple[Account, ...]]:
        """The users each lookup finds (core/matching.py says what they mean): one Graph GET per lookup,
        in JSON batches of BATCH_LIMIT, at most LOOKUP_BATCHES of them in flight. An id Graph does not
        know finds nothing; so does a filter that matches nobody.

        Raises DirectoryError when any lookup fails (with the longest Retry-After Graph gave, when
        throttled; no batch starts after a failure) or a user comes back without `accountEnabled`
        (never taken as enabled on a guess): a failed lookup must never read as "no such account"."""
        todo = list(dict.fromkeys(looks))
        chunks = [todo[i : i + BATCH_LIMIT] for i in range(0, len(todo), BATCH_LIMIT)]
        found: dict[Lookup, tuple[Account, ...]] = {}
        failures: list[DirectoryError] = []

        async def worker() -> None:
            while chunks and not failures:
                chunk = chunks.pop(0)
                try:
                    found.update(await self._find_chunk(chunk))
                except DirectoryError as exc:
                    failures.append(exc)

        await asyncio.gather(*(worker() for _ in range(min(LOOKUP_BATCHES, len(chunks)))))
        if failures:
            raise _combined(failures)
        return found

    async def _find_chunk(self, chunk: list[Lookup]) -> dict[Lookup, tuple[Account, ...]]:
        """One batch of lookups (at most BATCH_LIMIT), each answered or the batch's failures combined."""
        urls = {str(i): _lookup_url(look) for i, look in enumerate(chunk)}
        answers = await self._batch(urls, f"{len(chunk)} user lookup(s) ($batch)")
        found: dict[Lookup, tuple[Account, ...]] = {}
        failures: list[DirectoryError] = []
        for rid, look in zip(urls, chunk, strict=True):
            what = f"the users with {look[0]} {look[1]!r}"
            status, headers, body = answers[rid]
            if status == 404 and look[0] == LookupAttribute.ID:
                found[look] = ()
                continue
            if status >= 400:
                failures.append(_status_error(status, body.get("error") or {}, what, _retry_after(headers)))
                continue
            users = [body] if look[0] == LookupAttribute.ID else list(body.get("value") or ())
            found[look] = tuple(_account(user, what) for user in users)
        if failures:
            raise _combined(failures)
        return found

    async def _batch(self, urls: dict[str, str], what: str) -> dict[str, tuple[int, Any, dict[str, Any]]]:
        """GET requests (id -> url relative to the version) in one Graph JSON batch: each answer as
        (status, headers, body), by id (Graph answers in any order)."""
        base = str(self.client.request_adapter.base_url)
        info = RequestInformation(Method.POST)
        info.url = f"{base}/$batch"
        info.headers.try_add("Content-Type", "application/json")
        info.headers.try_add("Accept", "application/json")
        info.content = json.dumps(
            {"requests": [{"id": rid, "method": "GET", "url": url} for rid, url in urls.items()]}
        ).encode()
        try:
            answer = await self.get_json(info)
        except Exception as exc:
            raise directory_error(exc, what) from exc
        out: dict[str, tuple[int, Any, dict[str, Any]]] = {}
        for r in answer.get("responses") or ():
            body = r.get("body")
            out[str(r.get("id"))] = (
                int(r.get("status") or 0),
                r.get("headers"),
                body if isinstance(body, dict) else {},
            )
        missing = set(urls) - set(out)
        if missing:
            raise DirectoryError(
                Reason.DIRECTORY_READ_FAILED,
                f"{what}: {', '.join(sorted(missing))} missing from the $batch answer",
                definitive=False,
            )
        return out

    async def pages(self, info: RequestInformation) -> AsyncIterator[dict[str, Any]]:
        """Raw JSON pages, following @odata.nextLink.

        Member lists are read as JSON, not as SDK models: the SDK's model deserialisation costs about
        8 ms of CPU per directory object, which for a large tenant is minutes of CPU per full sync.
        Auth, retries (Retry-After) and metrics still come from the SDK's request adapter."""
        while True:
            raw = await self._send(info)
            page = json.loads(raw or b"{}")
            yield page
            link = page.get("@odata.nextLink")
            if not link:
                return
            info = self.client.groups.with_url(link).to_get_request_information()

    async def _transitive_members(self, group_id: str) -> AsyncIterator[dict[str, Any]]:
        query = TransitiveMembersRequestBuilder.TransitiveMembersRequestBuilderGetQueryParameters(
            select=MEMBER_FIELDS, top=PAGE_SIZE
        )
        info = self.client.groups.by_group_id(group_id).transitive_members.to_get_request_information(
            request_configuration=RequestConfiguration(query_parameters=query)
        )
        async for page in self.pages(info):
            for obj in page.get("value") or ():
                yield obj

    async def delta(self, link: str | None) -> DeltaResult:
        """Groups whose membership, name or existence changed since `link`; a new link to ask again.

        With no link, only a link is taken (`$deltatoken=latest`: one round trip, no initial listing
        of every group): the caller reads what it needs fresh, and asks for changes from then on.
        A link Graph no longer knows (410, or a 4xx syncStateNotFound / resyncRequired, on any page)
        raises DirectoryError reason DeltaExpired.
        """
        return await self._delta("groups", link)

    async def user_delta(self, link: str | None) -> DeltaResult:
        """Users created, disabled, enabled, renamed (userPrincipalName), given another mail, or deleted
        since `link` (`changed_groups` holds user ids; `lookup_keys` the principal lookups they concern).

        Group delta does not report a disabled account: this is how a leaver's access goes at once."""
        return await self._delta("users", link)

    async def service_principal_delta(self, link: str | None) -> DeltaResult:
        """Service principals created, disabled, enabled or deleted since `link` (ids in `changed_groups`)."""
        return await self._delta("servicePrincipals", link)

    async def deltas(self, links: DeltaLinks) -> Deltas:
        """`delta`, `user_delta` and `service_principal_delta` in one round trip (Graph JSON batching).

        A quiet tenant then costs one request per poll interval, whatever it watches. Further pages of
        a big change are read one by one, as `delta` would. Any failed round fails them all (no link
        moves): an expired link raises DeltaExpired first; a throttled round carries the Retry-After
        Graph put on the inner response (the batch itself answers 200)."""
        asks = dict(zip(_RESOURCES, links, strict=True))
        base = str(self.client.request_adapter.base_url)
        answers = await self._batch(
            {resource: self._relative(base, resource, link) for resource, link in asks.items()},
            "directory changes ($batch of groups/delta, users/delta and servicePrincipals/delta)",
        )
        failures: list[DirectoryError] = []
        for resource in asks:
            status, headers, page = answers[resource]
            what = f"{resource} changes ({resource}/delta)"
            if delta_expired(status, (page.get("error") or {}).get("code")):
                raise _expired(what)
            if status >= 400:
                failures.append(_status_error(status, page.get("error") or {}, what, _retry_after(headers)))
        if failures:
            waits = [f.retry_after for f in failures if f.retry_after is not None]
            first = failures[0]
            raise DirectoryError(
                first.reason,
                "; ".join(f.message for f in failures),
                definitive=first.definitive,
                retry_after=max(waits) if waits else None,
            )
        results = []
        for resource, link in asks.items():
            result = self._collect(DeltaResult(), answers[resource][2], resource)
            if result.link is None and (more := answers[resource][2].get("@odata.nextLink")):
                await self._more_pages(result, self.client.groups.with_url(more).to_get_request_information(), resource)
            if not link:
                result.changed_groups.clear()
                result.names.clear()
                result.lookup_keys = frozenset()
            results.append(result)
        return Deltas(*results)

    async def _more_pages(self, result: DeltaResult, info: RequestInformation, resource: str) -> None:
        """Collect every page from `info` on; an expired nextLink (any form) raises DeltaExpired."""
        what = f"{resource} changes ({resource}/delta)"
        try:
            async for page in self.pages(info):
                self._collect(result, page, resource)
        except ODataError as exc:
            if delta_expired(exc.response_status_code or 0, exc.error.code if exc.error else None):
                raise _expired(what) from exc
            raise directory_error(exc, what) from exc
        except Exception as exc:
            raise directory_error(exc, what) from exc

    @staticmethod
    def _relative(base: str, resource: str, link: str | None) -> str:
        """A batched request's url is relative to the version (`/groups/delta?...`)."""
        if not link:
            return _latest(resource)
        path = link.split("/v1.0", 1)[1] if "/v1.0" in link else link.removeprefix(base)
        return path if path.startswith("/") else f"/{path}"

    @staticmethod
    def _collect(result: DeltaResult, page: dict[str, Any], resource: str) -> DeltaResult:
        keys: set[Lookup] = set()
        for obj in page.get("value") or ():
            oid = str(obj.get("id", ""))
            result.changed_groups.add(oid)
            if "displayName" in obj:
                result.names[oid] = obj["displayName"] or ""
            if resource == "users":
                keys |= lookup_keys(obj)
        if keys:
            result.lookup_keys |= keys
        result.link = page.get("@odata.deltaLink") or result.link
        return result

    async def _delta(self, resource: str, link: str | None) -> DeltaResult:
        result = DeltaResult()
        url = link or f"{self.client.request_adapter.base_url}{_latest(resource)}"
        await self._more_pages(result, self.client.groups.delta.with_url(url).to_get_request_information(), resource)
        if not link:
            result.changed_groups.clear()
            result.names.clear()
            result.lookup_keys = frozenset()
        return result


def _lookup_url(look: Lookup) -> str:
    """The batched GET of one lookup, relative to the version. Values are URL-encoded whole, so that
    `#` (a guest's `#EXT#`), `&`, `+` and spaces reach Graph as written; Graph compares them without case."""
    attribute, value = LookupAttribute(look[0]), look[1]  # a plain string equal to one works alike
    if attribute is LookupAttribute.ID:
        return f"/users/{quote(value, safe='')}?$select={LOOKUP_SELECT}"
    if attribute is LookupAttribute.USER_PRINCIPAL_NAME:
        condition = f"userPrincipalName eq {_odata_quote(value)}"
    elif attribute is LookupAttribute.GUEST_PREFIX:
        condition = f"startswith(userPrincipalName,{_odata_quote(value)})"
    else:  # LookupAttribute.MAIL
        condition = f"mail eq {_odata_quote(value)}"
    return f"/users?$filter={quote(condition, safe='')}&$select={LOOKUP_SELECT}&$top={LOOKUP_TOP}"


def _account(user: dict[str, Any], what: str) -> Account:
    """A user a lookup found; its accountEnabled must be a boolean (never guessed)."""
    oid = str(user.get("id") or "")
    enabled = user.get("accountEnabled")
    if not oid or not isinstance(enabled, bool):
        raise _unknown_state(f"user {oid or '(no id)'} among {what}")
    upn = str(user.get("userPrincipalName") or "")
    return Account(
        Principal(id=oid, type=PrincipalType.USER, display=upn or str(user.get("displayName") or oid)),
        enabled,
        upn,
        str(user.get("mail") or ""),
    )


def _combined(failures: list[DirectoryError]) -> DirectoryError:
    """Several failed reads as one: the first one's reason, every message, the longest Retry-After."""
    if len(failures) == 1:
        return failures[0]
    first = failures[0]
    waits = [f.retry_after for f in failures if f.retry_after is not None]
    more = f" (and {len(failures) - 1} more failed lookup(s))"
    return DirectoryError(
        first.reason, first.message + more, definitive=first.definitive, retry_after=max(waits) if waits else None
    )


def _what(kind: str, name: str | None, id: str | None) -> str:
    return f"{kind} {name or id!r}" if name else f"{kind} with id {id!r}"


def _account_state(obj: dict[str, Any]) -> bool | None:
    enabled = obj.get("accountEnabled")
    return enabled if isinstance(enabled, bool) else None

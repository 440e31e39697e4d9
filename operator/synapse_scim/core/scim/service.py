"""One SCIM operation of one provider against its store: what the HTTP adapter calls. It decides
everything (status, body, what changed for the audit) and does no I/O itself but the store's.

Writes read, apply and write back with the version they read; when another write came in between
(errors.VersionConflict) the request is applied again to a fresh read, up to WRITE_ATTEMPTS times: two
concurrent PATCHes of one group both land. The writes of one object that one service (one replica) takes
in at once are queued, one at a time: an identity provider's burst (50 PATCHes of a few groups at once)
would otherwise exhaust the attempts and be answered 409; only other replicas' writes can conflict."""

from __future__ import annotations

import asyncio
import builtins
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

from scim2_models import (
    ConflictException,
    InvalidFilterException,
    InvalidValueException,
    NotFoundException,
    SCIMException,
)

from synapse_scim.core.scim import resources
from synapse_scim.core.scim.errors import VersionConflict, check_not_abandoned
from synapse_scim.core.scim.filters import FILTER_HELP, compile_filter
from synapse_scim.core.scim.paging import MAX_PAGE_SIZE, list_response, page
from synapse_scim.core.scim.patch import patch_group, patch_user
from synapse_scim.core.scim.resources import GroupResource, Kind, UserResource
from synapse_scim.core.scim.store import Record, ScimStore

WRITE_ATTEMPTS = 8
MAX_UNKNOWN_SHOWN = 5


@dataclass(frozen=True)
class Change:
    """What a write did, for the audit line (never a secret: no password, no token)."""

    operation: str  # create, replace, patch, delete
    kind: Kind
    id: str
    name: str  # userName or displayName
    detail: str = ""  # e.g. "members +3 -1", "active=false"


@dataclass(frozen=True)
class Answer:
    status: int
    body: dict[str, Any] | None = None
    change: Change | None = None


def _name(kind: Kind, attributes: dict[str, Any]) -> str:
    value = attributes.get(resources.UNIQUE[kind])
    return value if isinstance(value, str) else ""


def _not_found(kind: Kind, resource_id: str) -> NotFoundException:
    return NotFoundException(detail=f"{kind.value} {resource_id!r} not found")


class ScimService:
    def __init__(self, store: ScimStore, *, max_page_size: int = MAX_PAGE_SIZE) -> None:
        self.store = store
        self.max_page_size = max_page_size
        # (kind, id) -> (the lock of its writes, how many hold or wait for it): dropped when unused.
        self.locks: dict[tuple[Kind, str], tuple[asyncio.Lock, int]] = {}

    @asynccontextmanager
    async def _writing(self, kind: Kind, resource_id: str) -> AsyncIterator[None]:
        """This service's writes of one object, one at a time."""
        key = (kind, resource_id)
        lock, users = self.locks.get(key) or (asyncio.Lock(), 0)
        self.locks[key] = (lock, users + 1)
        try:
            async with lock:
                check_not_abandoned()  # queued behind a slow write past the client's timeout: not started
                yield
        finally:
            lock, users = self.locks[key]
            if users <= 1:
                del self.locks[key]
            else:
                self.locks[key] = (lock, users - 1)

    # -- reading -------------------------------------------------------------------------------------

    def _meta(self, record: Record, base_url: str) -> dict[str, Any]:
        return {
            "resourceType": record.kind.value,
            "created": record.created,
            "lastModified": record.last_modified,
            "version": f'W/"{record.version}"',
            "location": f"{base_url}/{record.kind.endpoint}/{record.id}",
        }

    async def _members(self, record: Record, base_url: str) -> list[dict[str, Any]]:
        out = []
        for member in record.members:
            user = await self.store.get(Kind.USER, member)
            entry: dict[str, Any] = {"value": member, "$ref": f"{base_url}/Users/{member}", "type": "User"}
            if user is not None:
                attributes = user.attributes
                display = attributes.get("displayName") or attributes.get("userName")
                if isinstance(display, str):
                    entry["display"] = display
            out.append(entry)
        return out

    async def _body(self, record: Record, base_url: str, parameters: Any = None) -> dict[str, Any]:
        members = None
        if record.kind is Kind.GROUP and resources.wants_members(parameters):
            members = await self._members(record, base_url)
        return resources.dump(
            record.kind,
            record.attributes,
            resource_id=record.id,
            meta=self._meta(record, base_url),
            members=members,
            parameters=parameters,
        )

    async def _get(self, kind: Kind, resource_id: str) -> Record:
        record = await self.store.get(kind, resource_id)
        if record is None:
            raise _not_found(kind, resource_id)
        return record

    async def get(
        self, kind: Kind, resource_id: str, base_url: str, *, attributes: str | None = None, excluded: str | None = None
    ) -> Answer:
        parameters = resources.response_parameters(kind, attributes, excluded)
        return Answer(200, await self._body(await self._get(kind, resource_id), base_url, parameters))

    async def list(
        self,
        kind: Kind,
        base_url: str,
        *,
        filter: str | None = None,
        start_index: str | None = None,
        count: str | None = None,
        attributes: str | None = None,
        excluded: str | None = None,
    ) -> Answer:
        wanted = page(start_index, count, self.max_page_size)
        parameters = resources.response_parameters(kind, attributes, excluded)
        matched = await self._matched(kind, filter)
        start, stop = wanted.window(len(matched))
        bodies = [await self._body(record, base_url, parameters) for record in matched[start:stop]]
        return Answer(200, list_response(len(matched), wanted.start_index, bodies))

    async def _matched(self, kind: Kind, filter: str | None) -> builtins.list[Record]:
        """The resources of `kind` the filter selects, in the stable order of the store (by id)."""
        if filter is None or not filter.strip():
            if filter is not None:
                raise InvalidFilterException(detail=f"the filter is empty: leave it out to list all, or {FILTER_HELP}")
            return await self.store.scan(kind)
        compiled = compile_filter(kind, filter)
        if compiled.lookup is not None:
            candidates = await self.store.lookup(kind, compiled.lookup.attribute, compiled.lookup.key)
        else:
            candidates = await self.store.scan(kind)
        return [
            record
            for record in candidates
            if compiled.matches(resources.load(kind, record.attributes, record.id), frozenset(record.members))
        ]

    async def search_all(
        self,
        base_url: str,
        *,
        filter: str | None = None,
        start_index: str | None = None,
        count: str | None = None,
        attributes: str | None = None,
        excluded: str | None = None,
    ) -> Answer:
        """A search of every resource type at once (POST /.search at the root, RFC 7644 §3.4.3): users,
        then groups, each in its stable order, paged as one list.

        An attribute a resource type does not have is left out for that type (a filter on it matches
        none of that type, as an unassigned attribute); a filter that is invalid for every type is 400."""
        wanted = page(start_index, count, self.max_page_size)
        matched: builtins.list[Record] = []
        parameters: dict[Kind, Any] = {}
        refusals: list[InvalidFilterException] = []
        for kind in Kind:
            parameters[kind] = resources.response_parameters(
                kind,
                resources.known_attributes(kind, attributes, keep_one=True),
                resources.known_attributes(kind, excluded),
            )
            try:
                matched.extend(await self._matched(kind, filter))
            except InvalidFilterException as exc:
                refusals.append(exc)
        if len(refusals) == len(Kind):
            raise refusals[0]
        start, stop = wanted.window(len(matched))
        bodies = [await self._body(record, base_url, parameters[record.kind]) for record in matched[start:stop]]
        return Answer(200, list_response(len(matched), wanted.start_index, bodies))

    # -- writing -------------------------------------------------------------------------------------

    async def _check_members(self, ids: frozenset[str]) -> None:
        """Members must be users of this provider: otherwise 400, nothing applied (docs/scim.md)."""
        if not ids:
            return
        missing = await self.store.missing_users(ids)
        if missing:
            shown = ", ".join(sorted(missing)[:MAX_UNKNOWN_SHOWN])
            more = f" and {len(missing) - MAX_UNKNOWN_SHOWN} more" if len(missing) > MAX_UNKNOWN_SHOWN else ""
            raise InvalidValueException(
                detail=f"members that are no user of this provider: {shown}{more}; nothing was changed: "
                "create the users first (POST /Users) and name them by the ids this endpoint returned"
            )

    async def create(self, kind: Kind, body: Any, base_url: str) -> Answer:
        resource, members = resources.parse(kind, body)
        await self._check_members(frozenset(members))
        attributes = resources.stored(resource)
        record = await self.store.create(kind, attributes, tuple(members))
        detail = f"members +{len(members)}" if members else ""
        change = Change("create", kind, record.id, _name(kind, attributes), detail)
        return Answer(201, await self._body(record, base_url), change)

    async def replace(self, kind: Kind, resource_id: str, body: Any, base_url: str) -> Answer:
        resource, members = resources.parse(kind, body, replacement=True)
        if isinstance(body, dict):
            sent_id = next((v for k, v in body.items() if k.lower() == "id"), None)
            if sent_id is not None and sent_id != resource_id:
                raise InvalidValueException(detail=f"the body's id {sent_id!r} is not the resource's {resource_id!r}")
        await self._check_members(frozenset(members))
        async with self._writing(kind, resource_id):
            return await self._replace(kind, resource_id, resource, members, base_url)

    async def _replace(
        self,
        kind: Kind,
        resource_id: str,
        resource: UserResource | GroupResource,
        members: builtins.list[str],
        base_url: str,
    ) -> Answer:
        attributes = resources.stored(resource)
        for _ in range(WRITE_ATTEMPTS):
            check_not_abandoned()  # no attempt on a fresher version once the client was answered
            record = await self._get(kind, resource_id)
            try:
                new = await self.store.update(
                    record, attributes, tuple(members) if kind is Kind.GROUP else None, expected_version=record.version
                )
            except VersionConflict:
                continue
            detail = ""
            if kind is Kind.GROUP:
                added, removed = set(members) - set(record.members), set(record.members) - set(members)
                detail = f"members +{len(added)} -{len(removed)}"
            return Answer(
                200,
                await self._body(new, base_url),
                Change("replace", kind, resource_id, _name(kind, attributes), detail),
            )
        raise ConflictException(detail="the resource kept changing while this request was applied; retry")

    async def patch(self, kind: Kind, resource_id: str, body: Any, base_url: str) -> Answer:
        async with self._writing(kind, resource_id):
            return await self._patch(kind, resource_id, body, base_url)

    async def _patch(self, kind: Kind, resource_id: str, body: Any, base_url: str) -> Answer:
        for _ in range(WRITE_ATTEMPTS):
            check_not_abandoned()  # no attempt on a fresher version once the client was answered
            record = await self._get(kind, resource_id)
            resource = resources.load(kind, record.attributes, record.id)
            members: tuple[str, ...] | None = None
            if kind is Kind.GROUP:
                assert isinstance(resource, GroupResource)
                result = patch_group(resource, list(record.members), body)
                await self._check_members(result.added)
                patched: UserResource | GroupResource = result.group
                changed, members = result.changed, tuple(result.members)
                detail = f"members +{len(result.added)} -{len(result.removed)}"
            else:
                assert isinstance(resource, UserResource)
                patched, changed = patch_user(resource, body)
                detail = "" if patched.active is None else f"active={str(patched.active).lower()}"
            attributes = resources.stored(patched)
            if patched.id != record.id:
                raise InvalidValueException(detail="id cannot be changed")
            if not changed:
                new = record
            else:
                try:
                    new = await self.store.update(record, attributes, members, expected_version=record.version)
                except VersionConflict:
                    continue
            change = Change("patch", kind, resource_id, _name(kind, attributes), detail) if changed else None
            if kind is Kind.GROUP:
                return Answer(204, None, change)
            return Answer(200, await self._body(new, base_url), change)
        raise ConflictException(detail="the resource kept changing while this request was applied; retry")

    async def delete(self, kind: Kind, resource_id: str) -> Answer:
        record = await self._get(kind, resource_id)
        await self.store.delete(kind, resource_id)
        return Answer(204, None, Change("delete", kind, resource_id, _name(kind, record.attributes)))


__all__ = ["Answer", "Change", "SCIMException", "ScimService"]

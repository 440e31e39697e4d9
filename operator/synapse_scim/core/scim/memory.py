"""The in-memory store: the reference implementation of store.ScimStore (tests, and the behaviour the
Kubernetes store must match). Indexes by id, by folded userName/externalId/displayName, and member ->
groups."""

from __future__ import annotations

import uuid
from collections import defaultdict
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from scim2_models import NotFoundException

from synapse_scim.core.scim.errors import VersionConflict, already_taken
from synapse_scim.core.scim.resources import UNIQUE, Kind, index_keys, unique_key
from synapse_scim.core.scim.store import Record


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class MemoryStore:
    def __init__(self, new_id: Callable[[], str] = lambda: str(uuid.uuid4()), clock: Callable[[], str] = _now) -> None:
        self._records: dict[Kind, dict[str, Record]] = {Kind.USER: {}, Kind.GROUP: {}}
        self._index: dict[tuple[Kind, str, str], set[str]] = defaultdict(set)
        self._groups_of: dict[str, set[str]] = defaultdict(set)
        self._version = 0
        self._new_id = new_id
        self._clock = clock

    def _next_version(self) -> str:
        self._version += 1
        return str(self._version)

    def _put(self, record: Record) -> None:
        self._records[record.kind][record.id] = record
        self._index[(record.kind, "id", record.id)].add(record.id)
        for attribute, key in index_keys(record.kind, record.attributes).items():
            self._index[(record.kind, attribute, key)].add(record.id)
        for member in record.members:
            self._groups_of[member].add(record.id)

    def _drop(self, record: Record) -> None:
        del self._records[record.kind][record.id]
        self._index[(record.kind, "id", record.id)].discard(record.id)
        for attribute, key in index_keys(record.kind, record.attributes).items():
            self._index[(record.kind, attribute, key)].discard(record.id)
        for member in record.members:
            self._groups_of[member].discard(record.id)

    def _check_unique(self, kind: Kind, attributes: dict[str, Any], own_id: str | None) -> None:
        key = unique_key(kind, attributes)
        if key is None:
            return
        holders = self._index.get((kind, UNIQUE[kind], key), set()) - {own_id}
        if holders:
            raise already_taken(UNIQUE[kind], attributes[UNIQUE[kind]])

    async def get(self, kind: Kind, resource_id: str) -> Record | None:
        return self._records[kind].get(resource_id)

    async def lookup(self, kind: Kind, attribute: str, key: str) -> list[Record]:
        ids = sorted(self._index.get((kind, attribute, key), set()))
        return [self._records[kind][each] for each in ids]

    async def scan(self, kind: Kind) -> list[Record]:
        return [self._records[kind][each] for each in sorted(self._records[kind])]

    async def count(self, kind: Kind) -> int:
        return len(self._records[kind])

    async def missing_users(self, ids: frozenset[str]) -> frozenset[str]:
        return frozenset(each for each in ids if each not in self._records[Kind.USER])

    async def create(self, kind: Kind, attributes: dict[str, Any], members: tuple[str, ...] = ()) -> Record:
        self._check_unique(kind, attributes, None)
        now = self._clock()
        record = Record.of(kind, self._new_id(), attributes, self._next_version(), now, now, tuple(members))
        self._put(record)
        return record

    async def update(
        self, record: Record, attributes: dict[str, Any], members: tuple[str, ...] | None, *, expected_version: str
    ) -> Record:
        current = self._records[record.kind].get(record.id)
        if current is None:
            raise NotFoundException(detail=f"{record.kind.value} {record.id} not found")
        if current.version != expected_version:
            raise VersionConflict(record.id)
        self._check_unique(record.kind, attributes, record.id)
        new = Record.of(
            record.kind,
            record.id,
            attributes,
            self._next_version(),
            current.created,
            self._clock(),
            current.members if members is None else tuple(members),
        )
        self._drop(current)
        self._put(new)
        return new

    async def delete(self, kind: Kind, resource_id: str) -> None:
        current = self._records[kind].get(resource_id)
        if current is None:
            raise NotFoundException(detail=f"{kind.value} {resource_id} not found")
        self._drop(current)
        if kind is Kind.USER:
            for group_id in sorted(self._groups_of.pop(resource_id, set())):
                group = self._records[Kind.GROUP][group_id]
                self._drop(group)
                members = tuple(each for each in group.members if each != resource_id)
                self._put(
                    Record(
                        Kind.GROUP,
                        group.id,
                        group.encoded,
                        self._next_version(),
                        group.created,
                        self._clock(),
                        members,
                    )
                )

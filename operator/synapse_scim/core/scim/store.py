"""Where a provider's users and groups are kept: the interface the service uses, whatever holds them (the
in-memory store in memory.py; the Kubernetes API in adapters/scim). docs/scim.md has the design."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Protocol

from synapse_scim.core.scim.resources import Kind


def encode(attributes: dict[str, Any]) -> bytes:
    """Attributes as a record keeps them: compact JSON."""
    return json.dumps(attributes, ensure_ascii=False, separators=(",", ":")).encode()


@dataclass(frozen=True, slots=True)
class Record:
    """One stored resource: its attributes (resources.stored(): no id, meta, members or password), a
    version that changes with every write, and a group's member ids (ordered).

    The attributes are kept encoded: every replica holds every user of every provider, and 50,000
    users as parsed JSON cost ~3.5 KB each against ~0.5 KB as bytes (docs/scim.md, "Memory"). Each
    read of `attributes` decodes a fresh dict, which the caller may change freely."""

    kind: Kind
    id: str
    encoded: bytes
    version: str
    created: str  # RFC 3339
    last_modified: str
    members: tuple[str, ...] = field(default=())

    @classmethod
    def of(
        cls,
        kind: Kind,
        id: str,
        attributes: dict[str, Any],
        version: str,
        created: str,
        last_modified: str,
        members: tuple[str, ...] = (),
    ) -> Record:
        return cls(kind, id, encode(attributes), version, created, last_modified, members)

    @property
    def attributes(self) -> dict[str, Any]:
        found: dict[str, Any] = json.loads(self.encoded)
        return found


class ScimStore(Protocol):
    """One provider's resources. Every method raises nothing but what it names."""

    async def get(self, kind: Kind, resource_id: str) -> Record | None: ...

    async def lookup(self, kind: Kind, attribute: str, key: str) -> list[Record]:
        """The resources whose `attribute` (id, userName, externalId, displayName) has this key: the exact
        id, or resources.fold() of the value. In id order."""
        ...

    async def scan(self, kind: Kind) -> list[Record]:
        """Every resource of the kind, in id order."""
        ...

    async def count(self, kind: Kind) -> int: ...

    async def missing_users(self, ids: frozenset[str]) -> frozenset[str]:
        """Those of the ids that are no user of this provider."""
        ...

    async def create(self, kind: Kind, attributes: dict[str, Any], members: tuple[str, ...] = ()) -> Record:
        """Store a new resource under a new random UUID. Raises UniquenessException when the unique key
        (userName of users, displayName of groups; resources.unique_key) is taken."""
        ...

    async def update(
        self, record: Record, attributes: dict[str, Any], members: tuple[str, ...] | None, *, expected_version: str
    ) -> Record:
        """Replace a resource's attributes (and a group's members, when not None). Raises
        NotFoundException, errors.VersionConflict (the stored version is not expected_version),
        UniquenessException."""
        ...

    async def delete(self, kind: Kind, resource_id: str) -> None:
        """Delete a resource; a deleted user leaves every group. Raises NotFoundException."""
        ...

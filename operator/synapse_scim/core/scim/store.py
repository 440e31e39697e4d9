"""Where a provider's users and groups are kept: the interface the service uses, whatever holds them (the
in-memory store in memory.py; the Kubernetes API in adapters/scim). docs/scim.md has the design."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

from synapse_scim.core.scim.resources import Kind


@dataclass(frozen=True, slots=True)
class Record:
    """One stored resource: its attributes (resources.stored(): no id, meta, members or password), a
    version that changes with every write, and a group's member ids (ordered)."""

    kind: Kind
    id: str
    attributes: dict[str, Any]
    version: str
    created: str  # RFC 3339
    last_modified: str
    members: tuple[str, ...] = field(default=())


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

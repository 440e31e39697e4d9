"""What a tenant's Graph reads found, kept between syncs: group expansions and group-name lookups.

The tenant watch (controller/tenant.py) keeps it true with Graph delta; a sync's directory reads
serve from it and store into it. A read that raced with an invalidation is used once but not kept
(the epoch).
"""

from __future__ import annotations

from synapse_scim.adapters.directory import Expansion
from synapse_scim.core.model import Principal

SubjectKey = tuple[str, str | None, str | None]  # (kind, name, id)


class DirectoryCache:
    """Group expansions and group-name lookups of one tenant, invalidated by delta."""

    def __init__(self) -> None:
        self.expansions: dict[str, Expansion] = {}
        self.groups: dict[SubjectKey, Principal] = {}
        self.epoch = 0  # bumped by every invalidation: a read started before it is not kept
        self.hits = 0
        self.misses = 0

    def expansion(self, group_id: str) -> Expansion | None:
        found = self.expansions.get(group_id)
        self._count(found is not None)
        return found

    def group(self, key: SubjectKey) -> Principal | None:
        found = self.groups.get(key)
        self._count(found is not None)
        return found

    def _count(self, hit: bool) -> None:
        if hit:
            self.hits += 1
        else:
            self.misses += 1

    def keep_expansion(self, group_id: str, expansion: Expansion, epoch: int) -> None:
        if epoch == self.epoch:
            self.expansions[group_id] = expansion

    def keep_group(self, key: SubjectKey, group: Principal, epoch: int) -> None:
        if epoch == self.epoch:
            self.groups[key] = group

    def invalidate(self, changed: set[str], names: dict[str, str]) -> set[str]:
        """Forget what `changed` groups touch; the ids of every group whose expansion changed with them
        (the changed groups and each cached parent that contains one)."""
        if not changed:
            return set()
        self.epoch += 1
        affected = set(changed)
        for gid, expansion in list(self.expansions.items()):
            if expansion.groups & changed:
                affected.add(gid)
                del self.expansions[gid]
        new_names = {n.casefold() for n in names.values()}
        for key, group in list(self.groups.items()):
            # A renamed group, or a new one with a cached name (the name may now be ambiguous).
            if group.id in changed or (key[1] or "").casefold() in new_names:
                del self.groups[key]
        return affected

    def invalidate_members(self, changed: set[str]) -> set[str]:
        """Forget every expansion that contains a changed (disabled, enabled, deleted) account."""
        changed = {c.lower() for c in changed}
        if not changed:
            return set()
        self.epoch += 1
        affected = {gid for gid, e in self.expansions.items() if not changed.isdisjoint(e.members)}
        for gid in affected:
            del self.expansions[gid]
        return affected

    def clear(self) -> None:
        self.epoch += 1
        self.expansions.clear()
        self.groups.clear()

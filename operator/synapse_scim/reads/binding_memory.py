"""Bindings' states kept between the syncs of one workspace: a binding none of whose inputs changed keeps
the very same ``BindingState`` object, so the planner's index (core/plan_index.py) reuses everything it
made from it, and the sync does not rebuild thousands of wishes that did not change.

A state is reused only when the sync serves the directory from the tenant cache (never on a full read),
the binding's spec, last claims and deletion mark, the workspace and its role definitions are equal to
those it was made from, its subjects are Graph groups (users and service principals are read afresh
every sync: their accountEnabled is not in group delta; pushed groups are resolved every sync), and the
tenant cache still holds the very same lookups and expansions the state was made from. The tenant watch
replaces or drops a cache entry whenever Graph delta reports a change under it, so a member added to a
nested group makes a new object, and the state is made again.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from synapse_scim.adapters.directory import Expansion
from synapse_scim.adapters.directory_cache import DirectoryCache, SubjectKey
from synapse_scim.adapters.workspace import RoleDefinition
from synapse_scim.core.model import BindingKey, BindingState, Principal
from synapse_scim.core.objects import BindingObject
from synapse_scim.reads.bindings import direct_users

Lookups = tuple[tuple[SubjectKey, Principal, Expansion | None], ...]


@dataclass(frozen=True)
class _Made:
    spec: Mapping[str, Any]
    claims: Any  # status.claims as read
    deleting: bool
    workspace: str
    roles: Mapping[str, RoleDefinition]
    lookups: Lookups
    state: BindingState
    groups: frozenset[str]


class BindingMemory:
    """One workspace's bindings' states, and what each was made from."""

    def __init__(self) -> None:
        self._made: dict[BindingKey, _Made] = {}
        self._direct: dict[BindingKey, tuple[BindingState, frozenset[str]]] = {}
        self.reused = 0  # states reused since the memory was created: for tests and benchmarks

    def lookups(
        self, b: BindingObject, entry: Callable[[SubjectKey], tuple[Principal | None, Expansion | None]]
    ) -> Lookups | None:
        """The lookups and expansions ``b``'s state is made from, as ``entry`` gives them (the cache's
        entries now, or those a sync used), or None when it cannot be reused (a subject that is not a
        Graph group, or a lookup or expansion missing)."""
        if b.deleting or b.suspended:
            return ()  # made without directory reads
        found: list[tuple[SubjectKey, Principal, Expansion | None]] = []
        for s in b.spec.get("subjects") or ():
            if s.get("kind") != "Group":
                return None
            key: SubjectKey = ("Group", s.get("name"), s.get("id"))
            group, expansion = entry(key)
            if group is None or (s.get("expand", True) and expansion is None):
                return None
            found.append((key, group, expansion if s.get("expand", True) else None))
        return tuple(found)

    def reuse(
        self, b: BindingObject, workspace: str, roles: Mapping[str, RoleDefinition], cache: DirectoryCache
    ) -> tuple[BindingState, frozenset[str]] | None:
        """The state kept for ``b`` and the groups it expanded through, if nothing it was made from changed."""
        made = self._made.get(b.key)
        if made is None:
            return None
        now = self.lookups(b, functools.partial(_cached, cache))
        if (
            now is None
            or not _same(now, made.lookups)
            or made.deleting != b.deleting
            or made.workspace != workspace
            or made.spec != b.spec
            or made.claims != b.status.get("claims")
            or made.roles != roles
        ):
            return None
        self.reused += 1
        return made.state, made.groups

    def keep(
        self,
        b: BindingObject,
        workspace: str,
        roles: Mapping[str, RoleDefinition],
        used: Lookups | None,
        cache: DirectoryCache,
        state: BindingState,
        groups: frozenset[str],
    ) -> None:
        """Keep a state just made from the lookups and expansions ``used``, if the cache holds those very
        objects now (a read that raced with an invalidation was not kept there: nor is the state)."""
        if used is None or not _same(used, self.lookups(b, functools.partial(_cached, cache))):
            self._made.pop(b.key, None)
            return
        self._made[b.key] = _Made(
            spec=b.spec,
            claims=b.status.get("claims"),
            deleting=b.deleting,
            workspace=workspace,
            roles=dict(roles),
            lookups=used,
            state=state,
            groups=groups,
        )

    def direct_users(self, state: BindingState) -> frozenset[str]:
        """The accounts ``state`` names itself (not through a group), worked out once per state object:
        every sync asks it of every binding."""
        kept = self._direct.get(state.key)
        if kept is not None and kept[0] is state:
            return kept[1]
        ids = direct_users(state)
        self._direct[state.key] = (state, ids)
        return ids

    def forget_others(self, keep: set[BindingKey]) -> None:
        for gone in [k for k in self._made if k not in keep]:
            del self._made[gone]
        for gone in [k for k in self._direct if k not in keep]:
            del self._direct[gone]


def _cached(cache: DirectoryCache, key: SubjectKey) -> tuple[Principal | None, Expansion | None]:
    group = cache.groups.get(key)
    return group, cache.expansions.get(group.id) if group is not None else None


def _same(a: Lookups | None, b: Lookups | None) -> bool:
    if a is None or b is None or len(a) != len(b):
        return False
    return all(x[0] == y[0] and x[1] is y[1] and x[2] is y[2] for x, y in zip(a, b, strict=True))

"""The soak's model of the world, state by state, and its judgement of each deletion the operator made.

The operator learns each part of the world by its own path, with its own lag:

- the bindings' specs from the Kubernetes API, when a sync lists them;
- the directory (group members, disabled accounts) from Graph delta, polled (every second in the soak;
  a poll in flight, or failing, leaves the tenant cache as it was at the last poll that succeeded);
- the pushed users and groups from the SCIM store, as the endpoint wrote them.

So one sync can combine a directory a second or two old with a pushed group changed a moment ago. A
deletion is excused when *some* combination of the three parts, each as it was at some instant of the
race window before it, neither wants the grant nor holds its role; it is a violation when every such
combination wants or holds it. Judging recorded states whole would call a correct deletion a
violation: s16 given Synapse User first through the pushed group Analysts, then through a Graph
nesting made 10 ms before a SCIM PATCH removed s16 from Analysts: the sync that PATCH poked combines
the removal with the directory as the last delta poll saw it (without the nesting), and revokes; the
next poll reports the nesting and s16 is granted again (seen in the replica soak, 2026-12-01).
"""

from __future__ import annotations

import functools
import itertools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any


@dataclass
class Directory:
    """What the soak has made the sandbox's directory (mutable: the soak changes it as it goes)."""

    members: dict[str, set[str]]  # group -> direct members (user UPNs or group names)
    disabled: set[str] = field(default_factory=set)

    @classmethod
    def from_org(cls, org: Mapping[str, Any]) -> Directory:
        return cls(
            {g["displayName"]: {m["group"] if isinstance(m, dict) else m for m in g["members"]} for g in org["groups"]}
        )

    def users_of(self, group: str) -> set[str]:
        return set(self.frozen().users_of(group))

    def frozen(self) -> DirectoryPart:
        return DirectoryPart(frozenset((g, frozenset(m)) for g, m in self.members.items()), frozenset(self.disabled))


@dataclass(frozen=True)
class DirectoryPart:
    """The directory at one instant: what Graph would have told a sync then."""

    members: frozenset[tuple[str, frozenset[str]]]
    disabled: frozenset[str]

    def users_of(self, group: str) -> frozenset[str]:
        """The enabled users a group gives to, nested groups included (cycles allowed)."""
        return self._users.get(group, frozenset())

    @functools.cached_property
    def _users(self) -> dict[str, frozenset[str]]:
        by_group = dict(self.members)
        out = {}
        for group in by_group:
            seen, todo, users = {group}, [group], set()
            while todo:
                for m in by_group[todo.pop()]:
                    if m in by_group:
                        if m not in seen:
                            seen.add(m)
                            todo.append(m)
                    elif m not in self.disabled:
                        users.add(m)
            out[group] = frozenset(users)
        return out


@dataclass(frozen=True)
class BindingsPart:
    """The bindings' Graph subjects at one instant: (role, groups) of each binding that exists."""

    graph: tuple[tuple[str, tuple[str, ...]], ...]


@dataclass(frozen=True)
class PushedPart:
    """What the identity provider had pushed at one instant: per role given through pushed groups, the
    UPNs of the active, matched members of its groups; and the roles held (a binding of theirs names a
    pushed group that is deleted, or the provider is missing: nothing in their pairs may be pruned)."""

    members: frozenset[tuple[str, frozenset[str]]]
    held: frozenset[str]

    @functools.cached_property
    def by_role(self) -> dict[str, frozenset[str]]:
        return dict(self.members)


@dataclass(frozen=True)
class WorldState:
    """The world from just before its change was sent (``sent``) on; ``answered``: when it was answered."""

    sent: float
    answered: float
    bindings: BindingsPart
    directory: DirectoryPart
    pushed: PushedPart

    def wanted(self) -> frozenset[tuple[str, str]]:
        """(role, UPN) of every grant this state wants."""
        return wanted(self.bindings, self.directory, self.pushed)


def wanted(bindings: BindingsPart, directory: DirectoryPart, pushed: PushedPart) -> frozenset[tuple[str, str]]:
    graph = {(role, u) for role, groups in bindings.graph for g in groups for u in directory.users_of(g)}
    given = {(role, u) for role, upns in pushed.members for u in upns if u not in directory.disabled}
    return frozenset(graph | given)


def graph_gives(bindings: BindingsPart, directory: DirectoryPart, role: str, upn: str) -> bool:
    """Whether a binding's Graph group gives ``upn`` ``role``."""
    return any(upn in directory.users_of(g) for r, groups in bindings.graph if r == role for g in groups)


def pushed_gives(directory: DirectoryPart, pushed: PushedPart, role: str, upn: str) -> bool:
    """Whether a pushed group gives ``upn`` ``role`` (an active, matched member whose account is enabled)."""
    return upn in pushed.by_role.get(role, ()) and upn not in directory.disabled


def protects(bindings: BindingsPart, directory: DirectoryPart, pushed: PushedPart, role: str, upn: str) -> bool:
    """Whether a sync that saw these three parts must keep ``upn``'s grant of ``role``."""
    return (
        role in pushed.held or pushed_gives(directory, pushed, role, upn) or graph_gives(bindings, directory, role, upn)
    )


def in_window(states: Sequence[WorldState], start: float, end: float) -> list[WorldState]:
    """Every state that may have been current at some instant of [start, end]: a state counts from just
    before its change was sent until the next change was answered."""
    out = []
    for i, s in enumerate(states):
        until = states[i + 1].answered if i + 1 < len(states) else float("inf")
        if s.sent <= end and until >= start:
            out.append(s)
    return out


def excuse(
    states: Sequence[WorldState], role: str, upn: str, start: float, end: float
) -> tuple[WorldState, WorldState, WorldState] | None:
    """The states whose bindings, directory and pushed groups (in that order) together neither want nor
    hold the grant: a sync may have seen that combination in [start, end], so deleting it then was
    correct. None when every combination protects it: the deletion is a violation."""
    window = in_window(states, start, end)
    distinct = [list({getattr(s, part): s for s in window}.values()) for part in ("bindings", "directory", "pushed")]
    for b, d, p in itertools.product(*distinct):
        if not protects(b.bindings, d.directory, p.pushed, role, upn):
            return b, d, p
    return None


def explain(states: Sequence[WorldState], role: str, upn: str, start: float, end: float) -> list[str]:
    """The window's states, each as which of its parts protect the grant: G (a Graph group of a binding
    gives it), P (a pushed group gives it), H (its role is held), - (none)."""
    out = []
    for s in in_window(states, start, end):
        graph = graph_gives(s.bindings, s.directory, role, upn)
        pushed = pushed_gives(s.directory, s.pushed, role, upn)
        marks = "".join(m for m, on in (("G", graph), ("P", pushed), ("H", role in s.pushed.held)) if on) or "-"
        out.append(f"{s.sent:.2f}/{s.answered:.2f}:{marks}")
    return out

"""Plain data shared by the planner and the adapters. No I/O happens here.

Every type is a frozen, slotted dataclass so that plans are values: two syncs that saw the same
world compare equal, and nothing downstream can quietly mutate what the planner decided.

Identity rules live here too (``Grant`` equality, ``assignment_id``) because the adapters, the
sandbox and the planner must agree on them byte for byte.
"""

from __future__ import annotations

import sys
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import TypeVar

from synapse_scim.core.reasons import Reason

__all__ = [
    "ASSIGNMENT_NAMESPACE",
    "Assignment",
    "BindingKey",
    "BindingReport",
    "BindingState",
    "Create",
    "DeletionPolicy",
    "DesiredGrant",
    "DriftItem",
    "Grant",
    "ManagementPolicy",
    "Plan",
    "PlanSummary",
    "Principal",
    "PrincipalType",
    "Problem",
    "RemovalGuard",
    "WorkspaceInputs",
    "assignment_id",
    "normalize_id",
    "normalize_scope",
    "pair_key",
    "truncated",
]

# NEVER CHANGE THIS VALUE. Assignment ids are uuid5(ASSIGNMENT_NAMESPACE, tuple); the operator
# recognises its own assignments only by recomputing that id. A new namespace would turn every
# assignment it ever made into a "manual grant" that it reports but never removes again, i.e.
# offboarding would silently stop. (Derived once as uuid5(NAMESPACE_URL,
# "https://synapse-scim.io/role-assignment"); the literal is what counts, a test pins it.)
ASSIGNMENT_NAMESPACE = uuid.UUID("4196fcf3-be31-5425-b204-fa9283927a2a")


class PrincipalType(StrEnum):
    """The ``principalType`` Synapse accepts on create (and usually echoes in lists)."""

    USER = "User"
    GROUP = "Group"
    SERVICE_PRINCIPAL = "ServicePrincipal"


class ManagementPolicy(StrEnum):
    ENFORCE = "Enforce"
    OBSERVE = "Observe"


class DeletionPolicy(StrEnum):
    DELETE = "Delete"
    ORPHAN = "Orphan"


def normalize_id(value: str) -> str:
    """Canonical form of a GUID-ish id: Graph and Synapse disagree on case, identity must not."""
    return value.strip().lower()


def normalize_scope(scope: str) -> str:
    """Canonical *comparison* form of a scope path.

    Azure resource names are case-insensitive and the service may echo a scope in a different
    case than it was sent, so comparisons and the ownership hash ignore case. The verbatim
    spelling is still kept on ``Grant.scope`` for the PUT, because nobody has verified that
    Synapse accepts a lowercased ``bigDataPools`` segment.
    """
    return scope.strip().strip("/").lower()


# Memory: a workspace's ~11k assignments and as many wishes name a handful of roles and scopes and each
# principal several times. Every Grant, Assignment and Principal keeps one shared copy of those strings
# (sys.intern: an interned string goes when its last holder does) and one shared (role, scope) pair,
# instead of fresh ones from every JSON page, lower() and strip(). Measured at scenario L:
# bench/results/memory-L-2026-12-01.md.
def _intern(value: str) -> str:
    # sys.intern takes exact str only (a StrEnum member, or a str subclass from an SDK, stays as it is).
    return sys.intern(value) if type(value) is str else value


# The (role, scope) pairs ever seen: few (roles x scopes the bindings and Synapse name), so never pruned.
_PAIRS: dict[tuple[str, str], tuple[str, str]] = {}


def _shared_pair(role_id: str, scope: str) -> tuple[str, str]:
    pair = (role_id, scope)
    return _PAIRS.setdefault(pair, pair)


def pair_key(role_id: str, scope: str) -> tuple[str, str]:
    """The (role, scope) pair a binding claims, in comparison form."""
    return (normalize_id(role_id), normalize_scope(scope))


# --------------------------------------------------------------------------------------------
# Directory side


@dataclass(frozen=True, slots=True)
class Principal:
    """A directory object that can hold a role. ``display`` is the UPN for users, else displayName."""

    id: str
    type: PrincipalType
    display: str

    def __post_init__(self) -> None:
        # Interned: each group expansion makes its members' Principals afresh from Graph's JSON.
        object.__setattr__(self, "id", _intern(normalize_id(self.id)))
        object.__setattr__(self, "type", PrincipalType(self.type))
        object.__setattr__(self, "display", _intern(self.display))


@dataclass(frozen=True, slots=True, order=True)
class BindingKey:
    namespace: str
    name: str

    def __str__(self) -> str:
        return f"{self.namespace}/{self.name}"


# --------------------------------------------------------------------------------------------
# Synapse side


@dataclass(frozen=True, slots=True, eq=False)
class Grant:
    """The (role, principal, scope) tuple that identifies an assignment in Synapse.

    GUIDs are lowercased on construction; the scope keeps its spelling (it is sent as-is) but
    equality and hashing use ``key``, so two spellings of one scope are one grant.
    """

    role_id: str
    principal_id: str
    scope: str
    # Computed once: the planner compares keys of every assignment and wish on every sync.
    key: tuple[str, str, str] = field(init=False, repr=False)
    pair: tuple[str, str] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        role_id, principal_id = _intern(normalize_id(self.role_id)), _intern(normalize_id(self.principal_id))
        scope = _intern(self.scope.strip().strip("/"))
        object.__setattr__(self, "role_id", role_id)
        object.__setattr__(self, "principal_id", principal_id)
        object.__setattr__(self, "scope", scope)
        compared = _intern(normalize_scope(scope))
        object.__setattr__(self, "key", (role_id, principal_id, compared))
        object.__setattr__(self, "pair", _shared_pair(role_id, compared))

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Grant):
            return NotImplemented
        return self.key == other.key

    def __hash__(self) -> int:
        return hash(self.key)

    def __repr__(self) -> str:
        return f"Grant({self.role_id!r}, {self.principal_id!r}, {self.scope!r})"


def assignment_id(grant: Grant) -> str:
    """The role-assignment id the operator uses for ``grant``: uuid5 of its normalised tuple.

    Deterministic ids make creates idempotent and make ownership recognisable with no extra
    state: an assignment whose id equals this value for its own tuple was made by us. Everything
    is lowercased first (``Grant.key``) so a GUID or scope echoed in another case still matches.
    """
    role_id, principal_id, scope = grant.key
    return str(uuid.uuid5(ASSIGNMENT_NAMESPACE, f"{role_id}|{principal_id}|{scope}"))


@dataclass(frozen=True, slots=True)
class Assignment:
    """A role assignment as Synapse lists it. Fields are kept verbatim: ``id`` goes back in DELETE."""

    id: str
    role_id: str
    principal_id: str
    scope: str
    principal_type: str | None = None
    # Derived once (a uuid5 and three normalisations): every plan reads them for every assignment.
    grant: Grant = field(init=False, repr=False, compare=False)
    # Made by the operator: its id is the deterministic id of its own tuple. This says nothing about
    # orphaning; the planner also consults ``orphaned_ids``.
    owned: bool = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        # Verbatim, but shared: every listed page brings its own copies of the same few strings.
        for name in ("role_id", "principal_id", "scope"):
            object.__setattr__(self, name, _intern(getattr(self, name)))
        if self.principal_type is not None:
            object.__setattr__(self, "principal_type", _intern(self.principal_type))
        grant = Grant(self.role_id, self.principal_id, self.scope)
        object.__setattr__(self, "grant", grant)
        object.__setattr__(self, "owned", normalize_id(self.id) == assignment_id(grant))


@dataclass(frozen=True, slots=True)
class DesiredGrant:
    """One grant one binding wants, with what is needed to create and explain it."""

    grant: Grant
    principal: Principal
    role_name: str
    binding: BindingKey
    via: tuple[str, ...] = ()  # group display names the principal came through; () when direct

    def __post_init__(self) -> None:
        object.__setattr__(self, "via", tuple(self.via))

    @property
    def sort_key(self) -> tuple[object, ...]:
        # Total order so that picking "the" representative of a grant never depends on input order.
        return (
            self.grant.key,
            self.grant.scope,
            self.binding,
            self.via,
            self.principal.display,
            str(self.principal.type),
            self.role_name,
        )


# --------------------------------------------------------------------------------------------
# Planner inputs


@dataclass(frozen=True, slots=True)
class Problem:
    """Something that keeps a binding from being Ready, with the reason status shows.

    ``retry_after``: the Retry-After (seconds) of the failure, when the service sent one. It is not
    part of the problem's identity: two syncs that fail alike have equal problems."""

    reason: Reason
    message: str
    subject: str | None = None
    retry_after: float | None = field(default=None, compare=False)


@dataclass(frozen=True, slots=True)
class RemovalGuard:
    """Mass-deletion guard: see ``planner.plan_workspace`` rule 5 for how it trips.

    ``percent_floor``: the percentage limit only applies to syncs removing more than this many
    assignments, so that small workspaces are not held on every single offboarding.
    """

    max_removals: int = 50
    max_percent: int = 20
    percent_floor: int = 5

    def __post_init__(self) -> None:
        for name in ("max_removals", "max_percent", "percent_floor"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ValueError(f"removalGuard.{name}: must be a non-negative integer, got {value!r}")
        if self.max_percent > 100:
            raise ValueError(f"removalGuard.max_percent: must be at most 100, got {self.max_percent!r}")

    @classmethod
    def disabled(cls) -> RemovalGuard:
        """A guard that never trips (tests, and "I know what I am doing" setups)."""
        return cls(max_removals=2**62, max_percent=100)


Pair = tuple[str, str]


def _pairs(value: Iterable[Sequence[str]]) -> frozenset[Pair]:
    return frozenset((str(r), str(s)) for r, s in value)


@dataclass(frozen=True, slots=True, kw_only=True)
class BindingState:
    """What the planner needs to know about one SynapseRoleBinding of the workspace.

    ``complete`` has no default on purpose: an adapter must say whether every directory read
    and role resolution succeeded, and forgetting cannot silently enable pruning.
    """

    key: BindingKey
    complete: bool
    mode: ManagementPolicy = ManagementPolicy.ENFORCE
    suspended: bool = False
    deleting: bool = False
    deletion_policy: DeletionPolicy = DeletionPolicy.DELETE
    # (role_id, scope) pairs the spec manages now; known as soon as the roles resolved.
    claims: frozenset[Pair] = frozenset()
    # Pairs managed at the last successful sync (from status): a role dropped from the spec is pruned.
    previous_claims: frozenset[Pair] = frozenset()
    desired: frozenset[DesiredGrant] = frozenset()
    errors: tuple[Problem, ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "mode", ManagementPolicy(self.mode))
        object.__setattr__(self, "deletion_policy", DeletionPolicy(self.deletion_policy))
        object.__setattr__(self, "claims", _pairs(self.claims))
        object.__setattr__(self, "previous_claims", _pairs(self.previous_claims))
        object.__setattr__(self, "desired", frozenset(self.desired))
        object.__setattr__(self, "errors", tuple(self.errors))

    @property
    def active_enforcer(self) -> bool:
        """Allowed to write: Enforce and not suspended (deleting is handled separately)."""
        return self.mode is ManagementPolicy.ENFORCE and not self.suspended

    @property
    def all_claims(self) -> frozenset[Pair]:
        return self.claims | self.previous_claims


@dataclass(frozen=True, slots=True, kw_only=True)
class WorkspaceInputs:
    """Everything one workspace sync knows, read before anything is written."""

    bindings: tuple[BindingState, ...]
    actual: tuple[Assignment, ...]
    actual_complete: bool
    guard: RemovalGuard = RemovalGuard()
    # Value of annotation synapse-scim.io/approve-removals on the SynapseWorkspace.
    approved_plan_id: str | None = None
    # Ids left behind by bindings deleted with deletionPolicy Orphan: treated as manual from then on.
    orphaned_ids: frozenset[str] = frozenset()
    # Optional role id -> name, used only to print names in drift reports of unexpected items.
    role_names: tuple[tuple[str, str], ...] = ()
    # spec.suspend of the SynapseWorkspace: the plan writes nothing (its reports still tell the drift).
    suspended: bool = False

    def __post_init__(self) -> None:
        object.__setattr__(self, "bindings", tuple(self.bindings))
        object.__setattr__(self, "actual", tuple(self.actual))
        object.__setattr__(self, "orphaned_ids", frozenset(normalize_id(i) for i in self.orphaned_ids))
        names = self.role_names.items() if isinstance(self.role_names, Mapping) else self.role_names
        object.__setattr__(self, "role_names", tuple(sorted((normalize_id(k), v) for k, v in names)))


# --------------------------------------------------------------------------------------------
# Planner outputs


@dataclass(frozen=True, slots=True)
class Create:
    """One assignment to PUT. One per Grant, however many bindings want it."""

    grant: Grant
    principal: Principal
    role_name: str
    bindings: tuple[BindingKey, ...]  # the Enforce, active bindings on whose behalf it is created
    via: tuple[str, ...] = ()

    @property
    def assignment_id(self) -> str:
        return assignment_id(self.grant)

    def assignment(self) -> Assignment:
        """The assignment this create makes, as Synapse would list it (its deterministic id)."""
        g = self.grant
        return Assignment(
            id=assignment_id(g),
            role_id=g.role_id,
            principal_id=g.principal_id,
            scope=g.scope,
            principal_type=str(self.principal_type),
        )

    @property
    def principal_type(self) -> PrincipalType:
        return self.principal.type


@dataclass(frozen=True, slots=True)
class DriftItem:
    """One line of a drift list in status.

    ``managed``: for unexpected items, whether the operator owns the assignment (and so may
    remove it); manual grants are ``False`` and are only ever reported. Missing items are always
    ``True`` (they would be created as the operator's own).
    """

    principal: str  # display name / UPN when known, else the id
    principal_id: str
    role: str  # role name when known, else the id
    role_id: str
    scope: str
    managed: bool


@dataclass(frozen=True, slots=True)
class BindingReport:
    """Drift of one binding. Lists are complete; use ``truncated`` when writing status."""

    desired: int
    in_sync: int  # desired grants that exist, whoever made them
    pending_removal: int  # owned unexpected assignments in its claims that are deleted or held now
    # Assignments in its claims that are manual (or orphaned), wanted or not: a wanted one is in sync
    # too, and stays when no binding wants it any more.
    unmanaged: int
    held: int  # of pending_removal, how many the guard or incomplete reads withheld
    missing: tuple[DriftItem, ...] = ()
    unexpected: tuple[DriftItem, ...] = ()
    problems: tuple[Problem, ...] = ()

    @property
    def missing_count(self) -> int:
        return len(self.missing)

    @property
    def unexpected_count(self) -> int:
        return len(self.unexpected)

    def summary(self) -> dict[str, int]:
        """The ``status.summary`` block, in the CRD's camelCase."""
        return {
            "desired": self.desired,
            "inSync": self.in_sync,
            "missing": self.missing_count,
            "pendingRemoval": self.pending_removal,
            "unmanaged": self.unmanaged,
        }


@dataclass(frozen=True, slots=True)
class Plan:
    """What one sync of one workspace will do, and what it found."""

    creates: tuple[Create, ...] = ()
    deletes: tuple[Assignment, ...] = ()  # to be executed now
    held: tuple[Assignment, ...] = ()  # deletions withheld; see hold_reason
    hold_reason: Reason | None = None  # REMOVALS_HELD or READS_INCOMPLETE
    # Set whenever the guard tripped (held, or approved and executed); a person approves held
    # removals by setting the workspace annotation to exactly this value.
    plan_id: str | None = None
    newly_orphaned: frozenset[str] = frozenset()  # add to orphaned_ids (persist before finalizing)
    # Deleting bindings whose clean-up is complete once this plan's deletes succeeded and
    # newly_orphaned is persisted: their finalizer may go.
    finalizable: frozenset[BindingKey] = frozenset()
    reports: dict[BindingKey, BindingReport] = field(default_factory=dict, hash=False)  # live bindings
    # Deleting bindings whose finalizer has not gone yet: nothing desired; over the pairs they clean up.
    deleting_reports: dict[BindingKey, BindingReport] = field(default_factory=dict, hash=False)
    # Live bindings' previous claims (as written in status.claims) that their status must keep:
    # pairs they no longer claim where managed, undesired assignments still await removal.
    carried_claims: dict[BindingKey, frozenset[tuple[str, str]]] = field(default_factory=dict, hash=False)

    @property
    def is_empty(self) -> bool:
        """Nothing to write and nothing withheld: the workspace matches the bindings."""
        return not (self.creates or self.deletes or self.held or self.newly_orphaned)


@dataclass(frozen=True, slots=True)
class PlanSummary:
    """Counts for a log line."""

    creates: int
    deletes: int
    held: int
    newly_orphaned: int
    hold_reason: Reason | None
    plan_id: str | None

    def __str__(self) -> str:
        text = f"creates={self.creates} deletes={self.deletes} held={self.held}"
        if self.hold_reason:
            text += f" ({self.hold_reason}{f', plan {self.plan_id}' if self.plan_id else ''})"
        elif self.plan_id:
            text += f" (approved plan {self.plan_id})"
        return f"{text} orphaned={self.newly_orphaned}"


T = TypeVar("T")


def truncated(items: Sequence[T], limit: int = 50) -> tuple[tuple[T, ...], bool]:
    """First ``limit`` items and whether any were cut: status objects must stay small (etcd)."""
    if limit < 0:
        raise ValueError(f"limit: must be non-negative, got {limit!r}")
    return tuple(items[:limit]), len(items) > limit

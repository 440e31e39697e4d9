"""Terse builders for planner tests (shared by the example and property tests)."""

from __future__ import annotations

import uuid
from collections.abc import Iterable

from synapse_scim.core.model import (
    Assignment,
    BindingKey,
    BindingState,
    DeletionPolicy,
    DesiredGrant,
    Grant,
    ManagementPolicy,
    Principal,
    PrincipalType,
    Problem,
    RemovalGuard,
    WorkspaceInputs,
    assignment_id,
)

CONTRIBUTOR = "7572bffe-f453-4b66-912a-46cc5ef38fda"
PUBLISHER = "05930f57-09a3-4c0d-9fa9-6d1eb91c178b"
ROLE_NAMES = {CONTRIBUTOR: "Synapse Contributor", PUBLISHER: "Synapse Artifact Publisher"}
WS = "workspaces/ws"
POOL = "workspaces/ws/bigDataPools/p1"

# Any other namespace: an id that is not the deterministic one, i.e. somebody's manual grant.
_MANUAL_NS = uuid.UUID("00000000-0000-0000-0000-000000000001")


def user(n: int) -> Principal:
    return Principal(f"00000000-0000-0000-0000-{n:012d}", PrincipalType.USER, f"user{n}@contoso.com")


def key(name: str, namespace: str = "ns") -> BindingKey:
    return BindingKey(namespace, name)


def want(
    binding: str | BindingKey, role: str, p: Principal, scope: str = WS, via: tuple[str, ...] = ()
) -> DesiredGrant:
    bk = binding if isinstance(binding, BindingKey) else key(binding)
    return DesiredGrant(Grant(role, p.id, scope), p, ROLE_NAMES.get(role, role), bk, via)


def binding(
    name: str,
    wants: Iterable[tuple[str, Principal] | tuple[str, Principal, str]] = (),
    *,
    roles: Iterable[str] = (CONTRIBUTOR,),
    scope: str = WS,
    claims: Iterable[tuple[str, str]] | None = None,
    previous_claims: Iterable[tuple[str, str]] | None = None,
    mode: str = "Enforce",
    suspended: bool = False,
    deleting: bool = False,
    deletion_policy: str = "Delete",
    complete: bool = True,
    errors: Iterable[Problem] = (),
) -> BindingState:
    """A binding; by default it claims (role, scope) for every role and claimed the same last sync."""
    bk = key(name)
    desired = frozenset(want(bk, w[0], w[1], w[2] if len(w) > 2 else scope) for w in wants)  # type: ignore[misc]
    if claims is None:
        claims = {(r, scope) for r in roles} | {dg.grant.pair for dg in desired}
    claims = frozenset(claims)
    return BindingState(
        key=bk,
        mode=ManagementPolicy(mode),
        suspended=suspended,
        deleting=deleting,
        deletion_policy=DeletionPolicy(deletion_policy),
        claims=claims,
        previous_claims=claims if previous_claims is None else frozenset(previous_claims),
        desired=desired,
        complete=complete,
        errors=tuple(errors),
    )


def owned(role: str, p: Principal | str, scope: str = WS) -> Assignment:
    pid = p.id if isinstance(p, Principal) else p
    return Assignment(assignment_id(Grant(role, pid, scope)), role, pid, scope, "User")


def manual(role: str, p: Principal | str, scope: str = WS) -> Assignment:
    pid = p.id if isinstance(p, Principal) else p
    return Assignment(str(uuid.uuid5(_MANUAL_NS, f"{role}{pid}{scope}")), role, pid, scope, "User")


def inputs(
    *bindings: BindingState,
    actual: Iterable[Assignment] = (),
    actual_complete: bool = True,
    guard: RemovalGuard | None = None,
    approved_plan_id: str | None = None,
    orphaned_ids: Iterable[str] = (),
    role_names: dict[str, str] | None = None,
) -> WorkspaceInputs:
    return WorkspaceInputs(
        bindings=tuple(bindings),
        actual=tuple(actual),
        actual_complete=actual_complete,
        guard=guard if guard is not None else RemovalGuard(),
        approved_plan_id=approved_plan_id,
        orphaned_ids=frozenset(orphaned_ids),
        role_names=tuple((role_names or {}).items()),
    )

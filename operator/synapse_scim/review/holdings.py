"""Why does a principal hold a role: which binding wants it and through which chain of groups, or that
nobody does (a manual grant, an orphaned one, or one the operator is about to revoke).

Everything is derived from a WorkspacePreview (the operator's own reads and plan) plus direct-member
walks for the chains; nothing is written.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from kiota_abstractions.base_request_configuration import RequestConfiguration
from msgraph.generated.models.o_data_errors.o_data_error import ODataError
from msgraph.generated.users.item.user_item_request_builder import UserItemRequestBuilder

from synapse_scim.adapters.directory import Directory, DirectoryError, directory_error
from synapse_scim.core.model import (
    Assignment,
    DesiredGrant,
    Grant,
    Principal,
    PrincipalType,
    Problem,
    normalize_id,
    normalize_scope,
    pair_key,
)
from synapse_scim.core.reasons import Reason
from synapse_scim.core.scope import SCOPE_COLLECTIONS, ScopeKind, scope_path
from synapse_scim.review.chains import GroupWalker
from synapse_scim.review.preview import WorkspacePreview, chain_of, scim_match
from synapse_scim.review.scim_chains import ScimMatch

_GUID = re.compile(r"^[0-9a-fA-F]{8}-([0-9a-fA-F]{4}-){3}[0-9a-fA-F]{12}$")
TupleKey = tuple[str, str, str]


class CauseKind(StrEnum):
    BINDING = "binding"  # a binding wants it
    MANUAL = "manual"  # not the operator's: reported, never removed
    ORPHANED = "orphaned"  # left by a binding deleted with deletionPolicy Orphan
    UNWANTED = "unwanted"  # the operator's, but no binding wants it any more


class HoldingStatus(StrEnum):
    HELD = "held"
    TO_GRANT = "to grant"
    MISSING = "missing (not created: Observe or suspended binding)"
    TO_REVOKE = "to revoke"
    REVOCATION_HELD = "revocation held by the removal guard"


@dataclass(frozen=True)
class Cause:
    """Why a principal holds (or would hold) one role at one scope."""

    kind: CauseKind
    binding: str = ""  # BINDING: the binding that wants it; UNWANTED: the incomplete binding that holds it
    mode: str = ""
    chain: tuple[str, ...] = ()  # groups from the binding's subject down to the principal; () if direct
    scim: ScimMatch | None = None  # BINDING through a pushed group: the pushed user, and how it matched
    # UNWANTED, yet not revoked: the problems that keep ``binding`` incomplete (the planner prunes
    # nothing in its pairs), e.g. a ScimGroup that did not resolve.
    held_by: tuple[Problem, ...] = ()

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"kind": self.kind}
        if self.kind is CauseKind.BINDING:
            out.update(binding=self.binding, mode=self.mode, chain=list(self.chain))
            if self.scim is not None:
                out["scim"] = self.scim.as_dict()
        if self.kind is CauseKind.UNWANTED and self.binding:
            out["heldBy"] = {"binding": self.binding, "problems": problems_list(self.held_by)}
        return out


def problems_list(problems: Iterable[Problem]) -> list[dict[str, str | None]]:
    return [{"reason": p.reason, "subject": p.subject, "message": p.message} for p in problems]


def unresolved_text(problems: Iterable[Problem]) -> str:
    """What keeps a binding incomplete, short: ``ScimGroup okta/Ghosts did not resolve``."""
    return "; ".join(dict.fromkeys(f"{p.subject} did not resolve" if p.subject else str(p.reason) for p in problems))


@dataclass
class Holding:
    """One role at one scope held (or about to be held) by a principal, and why."""

    principal: Principal
    role_id: str
    role: str
    scope: str
    status: HoldingStatus
    assignment_id: str | None
    reasons: list[Cause] = field(default_factory=list)
    through: tuple[str, ...] = ()  # for a role held by a group the principal is in: the group chain

    def sort_key(self) -> tuple[str, ...]:
        return (
            self.role.lower(),
            self.scope.lower(),
            " > ".join(self.through),
            self.principal.display.lower(),
            self.principal.id,
        )

    def as_dict(self) -> dict[str, Any]:
        return {
            "principal": principal_dict(self.principal),
            "role": {"id": self.role_id, "name": self.role},
            "scope": self.scope,
            "status": self.status,
            "assignmentId": self.assignment_id,
            "through": list(self.through),
            "reasons": [r.as_dict() for r in self.reasons],
        }


def principal_dict(p: Principal) -> dict[str, str]:
    return {"id": p.id, "type": str(p.type), "display": p.display}


async def find_principal(directory: Directory, walker: GroupWalker, ref: str) -> tuple[Principal, bool]:
    """A user (UPN or id), service principal (display name, appId or id) or group (name or id), and
    whether its account is enabled (a disabled one gets nothing from bindings, but may still hold grants)."""
    ref = ref.strip()
    try:
        if _GUID.match(ref):
            by_id = await walker.object(ref)
            if by_id is None:
                sp, enabled = await directory.look_up("ServicePrincipal", name=ref)  # an appId
                return sp, enabled is not False
            if by_id.type is PrincipalType.SERVICE_PRINCIPAL:
                sp, enabled = await directory.look_up("ServicePrincipal", id=by_id.id)
                return sp, enabled is not False
            if by_id.type is not PrincipalType.USER:
                return by_id, True
            ref = by_id.id
        if "@" in ref or _GUID.match(ref):
            query = UserItemRequestBuilder.UserItemRequestBuilderGetQueryParameters(
                select=["id", "userPrincipalName", "displayName", "accountEnabled"]
            )
            # Not Directory.resolve: a disabled user still has grants worth explaining.
            user = await directory.get_json(
                directory.client.users.by_user_id(ref).to_get_request_information(
                    request_configuration=RequestConfiguration(query_parameters=query)
                )
            )
            principal = Principal(
                id=str(user["id"]),
                type=PrincipalType.USER,
                display=user.get("userPrincipalName") or user.get("displayName") or ref,
            )
            return principal, user.get("accountEnabled") is not False
    except ODataError as exc:
        raise directory_error(exc, f"principal {ref!r}") from exc
    # Not Directory.resolve, for the same reason: a disabled service principal may still hold grants.
    found: list[tuple[Principal, bool | None]] = []
    for kind in ("Group", "ServicePrincipal"):
        try:
            found.append(await directory.look_up(kind, name=ref))
        except DirectoryError as exc:
            if exc.reason != Reason.SUBJECT_NOT_FOUND:
                raise
    if not found:
        raise DirectoryError(
            Reason.SUBJECT_NOT_FOUND,
            f"no user, group or service principal {ref!r} in the directory "
            "(users by userPrincipalName or id, groups and service principals by display name, "
            "appId or id)",
            definitive=True,
        )
    if len(found) > 1:
        raise DirectoryError(
            Reason.SUBJECT_AMBIGUOUS, f"{ref!r} is both a group and a service principal: name it by id", definitive=True
        )
    principal, enabled = found[0]
    return principal, enabled is not False


class ScopeError(ValueError):
    """An --scope that is not a scope; the message says what is."""


def parse_scope(text: str, ws_name: str) -> str:
    """``workspace``, ``bigDataPool/NAME`` (any spec.scope kind) or a full ``workspaces/...`` path."""
    try:
        return _parse_scope(text, ws_name)
    except ScopeError:
        raise
    except ValueError as exc:
        raise ScopeError(f"--scope: {exc}") from None


def _parse_scope(text: str, ws_name: str) -> str:
    t = text.strip().strip("/")
    if t.lower() in ("", "workspace"):
        return scope_path(ws_name, {})
    if t.lower().startswith("workspaces/"):
        return t
    kind, _, name = t.partition("/")
    by_lower = {str(k).lower(): k for k in SCOPE_COLLECTIONS} | {v.lower(): k for k, v in SCOPE_COLLECTIONS.items()}
    if kind.lower() not in by_lower or not name:
        allowed = ", ".join(f"{k}/NAME" for k in SCOPE_COLLECTIONS)
        raise ScopeError(f"--scope: {text!r} is not a scope (workspace, {allowed}, or workspaces/...)")
    chosen: ScopeKind = by_lower[kind.lower()]
    return scope_path(ws_name, {str(chosen): name})


class Explainer:
    """Answers about one workspace's preview."""

    def __init__(self, preview: WorkspacePreview, walker: GroupWalker) -> None:
        self.p = preview
        self.walker = walker
        plan = preview.plan
        assert plan is not None
        self.wanted: dict[TupleKey, list[DesiredGrant]] = {}
        self.modes: dict[str, str] = {}
        self.principals: dict[str, Principal] = {}  # everyone a binding wants, as the directory named them
        for s in preview.states:
            if s.deleting:
                continue
            self.modes[str(s.key)] = str(s.mode) + (", suspended" if s.suspended else "")
            for dg in s.desired:
                self.wanted.setdefault(dg.grant.key, []).append(dg)
                self.principals.setdefault(dg.principal.id, dg.principal)
        self.creates = {c.grant.key for c in plan.creates}
        self.deletes = {normalize_id(a.id) for a in plan.deletes}
        self.held = {normalize_id(a.id) for a in plan.held}
        self.orphaned = {normalize_id(i) for i in preview.ws.status.get("orphanedAssignments") or ()} | set(
            plan.newly_orphaned
        )
        self.role_names = preview.role_names
        # Pairs the planner prunes nothing in because a binding that may write there is incomplete.
        self.incomplete: dict[tuple[str, str], list[tuple[str, tuple[Problem, ...]]]] = {}
        for s in sorted(preview.states, key=lambda s: s.key):
            if s.deleting or not s.active_enforcer or s.complete:
                continue
            for r, sc in s.all_claims:
                self.incomplete.setdefault(pair_key(r, sc), []).append((str(s.key), s.errors))

    def role_name(self, role_id: str) -> str:
        return self.role_names.get(normalize_id(role_id), role_id)

    async def reasons(self, key: TupleKey, assignment: Assignment | None) -> list[Cause]:
        """The bindings that want it, then who holds the assignment when it is not the operator's: a
        manual or orphaned grant a binding wants gives the access now and stays after the binding."""
        wanted: set[Cause] = set()
        for dg in self.wanted.get(key, ()):
            binding = str(dg.binding)
            chain = await chain_of(self.p, self.walker, binding, dg.via, dg.principal)
            found = scim_match(self.p, binding, dg.via, dg.principal)
            wanted.add(Cause(CauseKind.BINDING, binding, self.modes.get(binding, ""), chain, found))
        out = sorted(wanted, key=lambda r: (r.binding, r.chain))
        if assignment is None:
            return out
        if not assignment.owned:
            return [*out, Cause(CauseKind.MANUAL)]
        if normalize_id(assignment.id) in self.orphaned:
            return [*out, Cause(CauseKind.ORPHANED)]
        if out:
            return out
        if self.status(key, assignment) is HoldingStatus.HELD:
            holders = self.incomplete.get(assignment.grant.pair, ())
            if holders:
                return [Cause(CauseKind.UNWANTED, binding, held_by=problems) for binding, problems in holders]
        return [Cause(CauseKind.UNWANTED)]

    def held_incomplete(self) -> list[tuple[str, tuple[Problem, ...], Assignment]]:
        """Managed assignments no binding wants that are kept because a binding that claims their role
        and scope is incomplete (its ScimGroup or Group did not resolve, a read failed): (binding, its
        problems, assignment), by binding. The plan revokes none of them."""
        out: list[tuple[str, tuple[Problem, ...], Assignment]] = []
        for a in self.p.actual:
            if not a.owned or normalize_id(a.id) in self.orphaned or a.grant.key in self.wanted:
                continue
            if self.status(a.grant.key, a) is not HoldingStatus.HELD:
                continue
            for binding, problems in self.incomplete.get(a.grant.pair, ()):
                out.append((binding, problems, a))
        return sorted(out, key=lambda t: (t[0], t[2].role_id, normalize_scope(t[2].scope), t[2].principal_id))

    def status(self, key: TupleKey, assignment: Assignment | None) -> HoldingStatus:
        if assignment is None:
            return HoldingStatus.TO_GRANT if key in self.creates else HoldingStatus.MISSING
        aid = normalize_id(assignment.id)
        if aid in self.deletes:
            return HoldingStatus.TO_REVOKE
        if aid in self.held:
            return HoldingStatus.REVOCATION_HELD
        return HoldingStatus.HELD

    async def principal_of(self, principal_id: str, fallback_type: str | None) -> Principal:
        known = self.principals.get(normalize_id(principal_id))
        if known is not None:
            return known
        found = await self.walker.object(principal_id)
        return found or Principal(principal_id, PrincipalType(fallback_type or PrincipalType.USER), principal_id)

    async def holding(
        self, principal: Principal, key: TupleKey, assignment: Assignment | None, through: tuple[str, ...] = ()
    ) -> Holding:
        scope = assignment.scope if assignment else next(dg.grant.scope for dg in self.wanted[key])
        return Holding(
            principal=principal,
            role_id=key[0],
            role=self.role_name(key[0]),
            scope=scope,
            status=self.status(key, assignment),
            assignment_id=assignment.id if assignment else None,
            reasons=await self.reasons(key, assignment),
            through=through,
        )

    async def of_principal(self, principal: Principal) -> list[Holding]:
        """Every role the principal holds here, directly or through a group it is in, and every role a
        binding wants it to have that it does not hold yet."""
        out: list[Holding] = []
        seen: set[TupleKey] = set()
        for a in self.p.actual:
            if normalize_id(a.principal_id) == principal.id:
                seen.add(a.grant.key)
                out.append(await self.holding(principal, a.grant.key, a))
        for key, dgs in sorted(self.wanted.items()):
            if key not in seen and any(dg.principal.id == principal.id for dg in dgs):
                out.append(await self.holding(principal, key, None))
        # Synapse honours group assignments for the group's members: show those as inherited.
        for a in self.p.actual:
            if normalize_id(a.principal_id) == principal.id or not await self._is_group(a):
                continue
            group = await self.principal_of(a.principal_id, "Group")
            paths = await self.walker.paths(group)
            if principal.id in paths:
                out.append(await self.holding(group, a.grant.key, a, through=paths[principal.id]))
        return sorted(out, key=Holding.sort_key)

    async def _is_group(self, a: Assignment) -> bool:
        if a.principal_type:
            return a.principal_type == "Group"
        found = await self.walker.object(a.principal_id)
        return found is not None and found.type == "Group"

    async def of_role(self, role_id: str, scope: str) -> list[Holding]:
        """Every holder of the role at exactly this scope, and every principal a binding wants there."""
        target = (normalize_id(role_id), normalize_scope(scope))
        out: list[Holding] = []
        seen: set[TupleKey] = set()
        for a in self.p.actual:
            if a.grant.pair == target:
                seen.add(a.grant.key)
                principal = await self.principal_of(a.principal_id, a.principal_type)
                out.append(await self.holding(principal, a.grant.key, a))
        for key, dgs in sorted(self.wanted.items()):
            if key not in seen and Grant(*key).pair == target:
                out.append(await self.holding(dgs[0].principal, key, None))
        return sorted(out, key=Holding.sort_key)

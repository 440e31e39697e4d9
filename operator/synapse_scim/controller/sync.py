"""One sync of one workspace: read everything, plan (pure), write, and say what happened.

Order matters for safety: every read (role definitions, assignments, every binding's subjects and
memberships) happens before any write, and the planner decides with all of it at once. A read that
fails marks what it touched as incomplete; the planner never prunes on incomplete knowledge.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import logging
from collections import deque
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from synapse_scim.adapters.directory import Directory, DirectoryError, Expansion
from synapse_scim.adapters.directory_cache import DirectoryCache
from synapse_scim.adapters.workspace import RoleDefinition, Workspace, WorkspaceError
from synapse_scim.core.model import (
    Assignment,
    BindingKey,
    BindingState,
    Create,
    Plan,
    Principal,
    Problem,
    RemovalGuard,
    WorkspaceInputs,
)
from synapse_scim.core.planner import apply, desired_grants, plan_workspace
from synapse_scim.core.scope import role_valid_at, scope_path
from synapse_scim.core.status import BindingOutcome, conditions, ready_conditions

log = logging.getLogger("synapse_scim.sync")
audit_log = logging.getLogger("synapse_scim.audit")

APPROVE_ANNOTATION = "synapse-scim.io/approve-removals"


@dataclass(frozen=True)
class BindingObject:
    key: BindingKey
    spec: Mapping[str, Any]
    status: Mapping[str, Any]
    generation: int
    deleting: bool
    uid: str = ""

    @classmethod
    def from_body(cls, body: Mapping[str, Any]) -> BindingObject:
        meta = body.get("metadata", {})
        return cls(
            key=BindingKey(meta["namespace"], meta["name"]),
            spec=body.get("spec") or {},
            status=body.get("status") or {},
            generation=int(meta.get("generation") or 0),
            deleting=bool(meta.get("deletionTimestamp")),
            uid=str(meta.get("uid") or ""),
        )

    @property
    def label(self) -> str:
        return str(self.key)


@dataclass(frozen=True)
class WorkspaceObject:
    namespace: str
    name: str
    spec: Mapping[str, Any]
    status: Mapping[str, Any]
    annotations: Mapping[str, str]
    generation: int

    @classmethod
    def from_body(cls, body: Mapping[str, Any]) -> WorkspaceObject:
        meta = body.get("metadata", {})
        return cls(
            namespace=meta["namespace"],
            name=meta["name"],
            spec=body.get("spec") or {},
            status=body.get("status") or {},
            annotations=meta.get("annotations") or {},
            generation=int(meta.get("generation") or 0),
        )


@dataclass(frozen=True)
class AuditRecord:
    action: str  # "grant" | "revoke" | "adopt"
    principal: str
    principal_id: str
    role: str
    role_id: str
    scope: str
    bindings: tuple[str, ...]
    reason: str
    outcome: str  # "done" | "already" | "failed: ..."

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass
class SyncResult:
    workspace_status: dict[str, Any]
    outcomes: dict[BindingKey, BindingOutcome]
    finalizable: frozenset[BindingKey] = frozenset()
    audit: list[AuditRecord] = field(default_factory=list)
    groups_seen: frozenset[str] = frozenset()
    users_seen: frozenset[str] = frozenset()  # accounts bindings name directly (not through a group)
    plan: Plan | None = None
    problem: Problem | None = None


class _DirectoryReads:
    """Each subject and group is read once per sync, however many bindings name it.

    With a tenant cache, group lookups and expansions come from it when `use_cache` (an incremental
    sync: Graph delta has invalidated whatever changed) and fresh reads are stored back into it."""

    def __init__(
        self,
        directory: Directory,
        concurrency: int,
        cache: DirectoryCache | None = None,
        use_cache: bool = False,
        semaphore: asyncio.Semaphore | None = None,
    ) -> None:
        self.directory = directory
        self.cache = cache
        self.use_cache = use_cache and cache is not None
        self._subjects: dict[tuple[str, str | None, str | None], asyncio.Task[Principal]] = {}
        self._groups: dict[str, asyncio.Task[Expansion]] = {}
        self._sem = semaphore or asyncio.Semaphore(concurrency)

    async def _limited(self, coro: Any) -> Any:
        async with self._sem:
            return await coro

    def resolve(self, kind: str, name: str | None, id: str | None) -> asyncio.Task[Principal]:
        key = (kind, name, id)
        if key not in self._subjects:
            self._subjects[key] = asyncio.ensure_future(self._resolve(key))
        return self._subjects[key]

    async def _resolve(self, key: tuple[str, str | None, str | None]) -> Principal:
        kind, name, id = key
        # Users and service principals are always read: their accountEnabled is not in group delta.
        cache = self.cache if kind == "Group" else None
        if cache is not None and self.use_cache and (hit := cache.group(key)) is not None:
            return hit
        epoch = cache.epoch if cache is not None else 0
        found: Principal = await self._limited(self.directory.resolve(kind, name=name, id=id))
        if cache is not None:
            cache.keep_group(key, found, epoch)
        return found

    def expand(self, group: Principal) -> asyncio.Task[Expansion]:
        if group.id not in self._groups:
            self._groups[group.id] = asyncio.ensure_future(self._expand(group))
        return self._groups[group.id]

    async def _expand(self, group: Principal) -> Expansion:
        cache = self.cache
        if cache is not None and self.use_cache and (hit := cache.expansion(group.id)) is not None:
            return hit
        epoch = cache.epoch if cache is not None else 0
        found: Expansion = await self._limited(self.directory.expand(group))
        if cache is not None:
            cache.keep_expansion(group.id, found, epoch)
        return found

    def cancel(self) -> None:
        for task in (*self._subjects.values(), *self._groups.values()):
            task.cancel()


def _subject_label(subject: Mapping[str, Any]) -> str:
    return f"{subject.get('kind')} {subject.get('name') or subject.get('id')}"


def _claims_from_status(status: Mapping[str, Any]) -> frozenset[tuple[str, str]]:
    return frozenset((c["roleId"], c["scope"]) for c in status.get("claims") or () if "roleId" in c and "scope" in c)


def _resolve_roles(
    b: BindingObject, roles: Mapping[str, RoleDefinition], scope: str, ws_name: str
) -> tuple[dict[str, str], list[Problem]]:
    role_ids: dict[str, str] = {}
    problems: list[Problem] = []
    for name in b.spec.get("roles") or ():
        role = roles.get(name)
        if role is None:
            known = ", ".join(sorted(roles)) or "none"
            problems.append(
                Problem(
                    "RoleNotFound",
                    f"role {name!r} does not exist in workspace {ws_name} (roles are named exactly; known: {known})",
                )
            )
        elif not role_valid_at(role.scopes, scope):
            problems.append(
                Problem(
                    "RoleNotValidAtScope",
                    f"role {name!r} cannot be assigned at scope {scope}; it is valid at: {', '.join(role.scopes)}",
                )
            )
        else:
            role_ids[name] = role.id
    return role_ids, problems


async def resolve_binding(
    b: BindingObject, ws_name: str, roles: Mapping[str, RoleDefinition], reads: _DirectoryReads
) -> tuple[BindingState, frozenset[str]]:
    """A binding's desired grants from the directory, or the problems that kept them unknown."""
    common = dict(
        key=b.key,
        mode=b.spec.get("managementPolicy", "Enforce"),
        suspended=bool(b.spec.get("suspend")),
        deleting=b.deleting,
        deletion_policy=b.spec.get("deletionPolicy", "Delete"),
        previous_claims=_claims_from_status(b.status),
    )
    try:
        scope = scope_path(ws_name, b.spec.get("scope"))
    except ValueError as exc:
        return BindingState(
            complete=False, errors=(Problem("ScopeInvalid", f"spec.scope: {exc}"),), **common
        ), frozenset()
    role_ids, problems = _resolve_roles(b, roles, scope, ws_name)
    claims = frozenset((rid, scope) for rid in role_ids.values())
    if b.deleting or common["suspended"]:
        # Nothing of theirs is wanted any more / may be touched now: no directory reads needed.
        return BindingState(
            complete=not problems and not common["suspended"], claims=claims, errors=tuple(problems), **common
        ), frozenset()

    principals: list[tuple[Principal, tuple[str, ...]]] = []
    groups: set[str] = set()
    subjects = list(b.spec.get("subjects") or ())
    resolved = await asyncio.gather(
        *(reads.resolve(s.get("kind", ""), s.get("name"), s.get("id")) for s in subjects), return_exceptions=True
    )
    expansions: list[tuple[Principal, asyncio.Task[Expansion]]] = []
    for subject, found in zip(subjects, resolved, strict=True):
        label = _subject_label(subject)
        if isinstance(found, DirectoryError):
            if found.reason == "SubjectDisabled":
                continue  # a disabled account gets nothing: offboarding follows the directory
            problems.append(Problem(found.reason, found.message, subject=label))
            continue
        if isinstance(found, BaseException):
            problems.append(Problem("DirectoryReadFailed", f"{label}: {found}", subject=label))
            continue
        if found.type == "Group":
            groups.add(found.id)
            if subject.get("expand", True):
                expansions.append((found, reads.expand(found)))
                continue
        principals.append((found, ()))
    for group, task in expansions:
        try:
            expansion = await task
        except DirectoryError as exc:
            problems.append(Problem(exc.reason, exc.message, subject=f"Group {group.display}"))
            continue
        groups |= expansion.groups
        principals.extend((p, (group.display,)) for p in expansion.principals)
    desired = desired_grants(b.key, role_ids, principals, scope)
    return BindingState(
        complete=not problems, claims=claims, desired=desired, errors=tuple(problems), **common
    ), frozenset(groups)


def _guard(spec: Mapping[str, Any]) -> RemovalGuard:
    g = spec.get("removalGuard") or {}
    return RemovalGuard(max_removals=int(g.get("maxRemovals", 50)), max_percent=int(g.get("maxPercent", 20)))


def workspace_failure(
    ws: WorkspaceObject, bindings: Iterable[BindingObject], problem: Problem, when: str
) -> SyncResult:
    """Nothing could be read: every binding shows why; nothing is written to Azure."""
    stalled = problem.reason not in ("WorkspaceUnreachable", "WorkspaceReadFailed", "DirectoryReadFailed")
    status = {
        **{k: v for k, v in ws.status.items() if k in ("roleDefinitions", "assignments", "orphanedAssignments")},
        "observedGeneration": ws.generation,
        "reachable": problem.reason not in ("WorkspaceUnreachable", "WorkspaceNotFound"),
        "conditions": conditions(
            ready_conditions(ready=False, reason=problem.reason, message=problem.message, stalled=stalled),
            ws.status.get("conditions"),
            ws.generation,
            when,
        ),
    }
    outcomes = {
        b.key: BindingOutcome(report=None, workspace_problem=problem, suspended=bool(b.spec.get("suspend")))
        for b in bindings
        if not b.deleting
    }
    return SyncResult(workspace_status=status, outcomes=outcomes, problem=problem)


def _role_names(roles: Iterable[RoleDefinition]) -> dict[str, str]:
    return {r.id: r.name for r in roles}


async def sync_workspace(
    ws: WorkspaceObject,
    bindings: list[BindingObject],
    directory: Directory,
    workspace: Workspace,
    *,
    when: str,
    read_concurrency: int = 8,
    cache: DirectoryCache | None = None,
    fresh: bool = True,
    fresh_directory: bool | None = None,
    shared_reads: bool = True,
) -> SyncResult:
    """Read, plan, write. Returns statuses to write; raises nothing for Azure failures (they are status).

    `fresh` lists the workspace's assignments again (the full sync every syncInterval: Synapse has no
    change feed), otherwise its last listing plus our own writes since stand in. `fresh_directory`
    (default: `fresh`) reads every subject and group from Graph again; otherwise the tenant cache
    stands in for what Graph delta did not report as changed. `shared_reads=False` reads every group
    once per binding that names it (the naive strategy the benchmarks compare against)."""
    ws_name = workspace.name
    try:
        roles = {r.name: r for r in await workspace.role_definitions()}
        known = None if fresh else workspace.known_assignments
        actual = known if known is not None else await workspace.assignments()
    except WorkspaceError as exc:
        return workspace_failure(ws, bindings, Problem(exc.reason, exc.message), when)

    semaphore = asyncio.Semaphore(max(1, read_concurrency))
    use_cache = not (fresh if fresh_directory is None else fresh_directory)

    def new_reads() -> _DirectoryReads:
        return _DirectoryReads(directory, read_concurrency, cache, use_cache=use_cache, semaphore=semaphore)

    shared = new_reads()
    every = [shared] if shared_reads else [new_reads() for _ in bindings]
    try:
        resolved = await asyncio.gather(
            *(resolve_binding(b, ws_name, roles, shared if shared_reads else every[i]) for i, b in enumerate(bindings))
        )
    finally:
        for reads in every:
            reads.cancel()
    states = [s for s, _ in resolved]
    groups_seen = frozenset().union(*(g for _, g in resolved)) if resolved else frozenset()
    users_seen = frozenset(d.principal.id.lower() for s in states for d in s.desired if not d.via)
    orphaned = frozenset(ws.status.get("orphanedAssignments") or ())
    inputs = WorkspaceInputs(
        bindings=tuple(states),
        actual=actual,
        actual_complete=True,
        guard=_guard(ws.spec),
        approved_plan_id=ws.annotations.get(APPROVE_ANNOTATION),
        orphaned_ids=orphaned,
        role_names=_role_names(roles.values()),
    )
    plan = plan_workspace(inputs, reports=False)  # the reports come from the plan after the writes
    if ws.spec.get("suspend"):
        plan = dataclasses.replace(plan, creates=(), deletes=(), finalizable=frozenset(), newly_orphaned=frozenset())

    audit, done_creates, done_deletes, write_errors = await _execute(plan, workspace, _role_names(roles.values()))
    after = apply(actual, dataclasses.replace(plan, creates=tuple(done_creates), deletes=tuple(done_deletes)))
    workspace.remember(after)
    orphaned_after = orphaned | plan.newly_orphaned
    final = plan_workspace(
        dataclasses.replace(inputs, actual=after, orphaned_ids=orphaned_after, approved_plan_id=inputs.approved_plan_id)
    )

    outcomes: dict[BindingKey, BindingOutcome] = {}
    for state in states:
        if state.deleting:
            continue
        outcomes[state.key] = BindingOutcome(
            report=final.reports.get(state.key),
            problems=state.errors,
            write_errors=tuple(write_errors.get(state.key, ())),
            hold_reason=final.hold_reason,
            plan_id=final.plan_id,
            workspace_name=ws_name,
            claims=tuple(sorted(state.claims)) if state.complete or state.claims else (),
            observe=state.mode == "Observe",
            suspended=state.suspended,
        )
    failed_any = any(write_errors.values())
    finalizable = frozenset() if failed_any else plan.finalizable

    managed = sum(1 for a in after if a.owned and a.id.lower() not in orphaned_after)
    status: dict[str, Any] = {
        "observedGeneration": ws.generation,
        "reachable": True,
        "roleDefinitions": len(roles),
        "assignments": {"managed": managed, "unmanaged": len(after) - managed},
        "orphanedAssignments": sorted(orphaned_after),
    }
    if final.hold_reason == "RemovalsHeld" and final.held:
        previous = ws.status.get("heldPlan") or {}
        status["heldPlan"] = {
            "id": final.plan_id,
            "removals": len(final.held),
            "since": previous.get("since") if previous.get("id") == final.plan_id else when,
        }
        msg = (
            f"{len(final.held)} removal(s) held by the removal guard (maxRemovals "
            f"{inputs.guard.max_removals}, maxPercent {inputs.guard.max_percent}): approve with "
            f"`kubectl annotate synapseworkspace {ws.name} {APPROVE_ANNOTATION}={final.plan_id} --overwrite`"
        )
        conds = ready_conditions(ready=False, reason="RemovalsHeld", message=msg, stalled=True)
    elif ws.spec.get("suspend"):
        conds = ready_conditions(
            ready=False, reason="Suspended", message="spec.suspend is true: nothing is written to this workspace"
        )
    elif failed_any:
        first = next(p for ps in write_errors.values() for p in ps)
        conds = ready_conditions(ready=False, reason=first.reason, message=first.message, reconciling=True)
    else:
        conds = ready_conditions(
            ready=True,
            reason="Synced",
            message=f"{len(roles)} role definitions, {managed} managed and "
            f"{len(after) - managed} unmanaged assignment(s)",
        )
    status["conditions"] = conditions(conds, ws.status.get("conditions"), ws.generation, when)
    return SyncResult(
        workspace_status=status,
        outcomes=outcomes,
        finalizable=finalizable,
        audit=audit,
        groups_seen=groups_seen,
        users_seen=users_seen,
        plan=plan,
    )


async def _execute(
    plan: Plan, workspace: Workspace, role_names: Mapping[str, str]
) -> tuple[list[AuditRecord], list[Create], list[Assignment], dict[BindingKey, list[Problem]]]:
    """Every write of the plan, in parallel within the workspace's adaptive write limit."""
    audit: list[AuditRecord] = []
    done_creates: list[Create] = []
    done_deletes: list[Assignment] = []
    errors: dict[BindingKey, list[Problem]] = {}

    async def create(c: Create) -> None:
        record = dict(
            principal=c.principal.display or c.principal.id,
            principal_id=c.principal.id,
            role=c.role_name,
            role_id=c.grant.role_id,
            scope=c.grant.scope,
            bindings=tuple(str(b) for b in c.bindings),
            reason=f"wanted by {', '.join(str(b) for b in c.bindings)}"
            + (f" via group {' > '.join(c.via)}" if c.via else ""),
        )
        try:
            created = await workspace.create(c.grant, str(c.principal_type))
        except WorkspaceError as exc:
            audit.append(AuditRecord("grant", outcome=f"failed: {exc.reason}", **record))
            for b in c.bindings:
                errors.setdefault(b, []).append(Problem(exc.reason, exc.message))
            return
        done_creates.append(c)
        audit.append(AuditRecord("grant" if created else "adopt", outcome="done" if created else "already", **record))

    async def delete(a: Assignment) -> None:
        record = dict(
            principal=a.principal_id,
            principal_id=a.principal_id,
            role=role_names.get(a.role_id.lower(), a.role_id),
            role_id=a.role_id,
            scope=a.scope,
            bindings=(),
            reason="no binding wants it any more",
        )
        try:
            deleted = await workspace.delete(a)
        except WorkspaceError as exc:
            audit.append(AuditRecord("revoke", outcome=f"failed: {exc.reason}", **record))
            errors.setdefault(BindingKey("", ""), []).append(Problem(exc.reason, exc.message))
            return
        done_deletes.append(a)
        audit.append(AuditRecord("revoke", outcome="done" if deleted else "already", **record))

    # As many workers as writes may be in flight, each taking the next write when it is done: a sync
    # of tens of thousands of writes holds a few coroutines, not one suspended task per write.
    pending: deque[Callable[[], Awaitable[None]]] = deque(
        [*(functools.partial(create, c) for c in plan.creates), *(functools.partial(delete, a) for a in plan.deletes)]
    )

    async def worker() -> None:
        while pending:
            await pending.popleft()()

    await asyncio.gather(*(worker() for _ in range(min(len(pending), workspace.limit.maximum))))
    for r in audit:
        audit_log.info(
            "%s %s role=%r principal=%s scope=%s outcome=%s",
            r.action,
            r.principal,
            r.role,
            r.principal_id,
            r.scope,
            r.outcome,
            extra={"audit": r.as_dict()},
        )
    return audit, done_creates, done_deletes, errors

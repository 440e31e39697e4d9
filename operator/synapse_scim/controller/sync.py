"""One sync of one workspace: read everything, plan (pure), write, and say what happened.

Order matters for safety: every read (role definitions, assignments, every binding's subjects and
memberships) happens before any write (reads/inputs.py), and the planner decides with all of it at
once. Returns the statuses to write; Azure failures become status, never exceptions.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from synapse_scim.adapters.directory import Directory
from synapse_scim.adapters.directory_cache import DirectoryCache
from synapse_scim.adapters.principal_lookups import PrincipalLookupCache
from synapse_scim.adapters.workspace import Workspace, WorkspaceError
from synapse_scim.controller.writes import AuditRecord, execute
from synapse_scim.core.model import BindingKey, ManagementPolicy, Plan, Problem
from synapse_scim.core.objects import BindingObject, WorkspaceObject, approve_command
from synapse_scim.core.plan_index import PlanIndex
from synapse_scim.core.planner import plan_workspace
from synapse_scim.core.reasons import Reason, is_transient
from synapse_scim.core.status import BindingOutcome, Condition, conditions, ready_conditions, settled_conditions
from synapse_scim.reads.binding_memory import BindingMemory
from synapse_scim.reads.inputs import read_workspace
from synapse_scim.reads.scim_reads import ScimResolution, ScimSource


@dataclass
class SyncMemory:
    """What one workspace's syncs keep for the next one, so that its cost follows the change: the
    bindings' states (reads/binding_memory.py) and the planner's index (core/plan_index.py). A full
    sync starts from an empty one: the safety net recomputes everything."""

    bindings: BindingMemory = field(default_factory=BindingMemory)
    index: PlanIndex = field(default_factory=PlanIndex)


@dataclass
class SyncResult:
    workspace_status: dict[str, Any]
    outcomes: dict[BindingKey, BindingOutcome]
    finalizable: frozenset[BindingKey] = frozenset()
    audit: list[AuditRecord] = field(default_factory=list)
    groups_seen: frozenset[str] = frozenset()
    users_seen: frozenset[str] = frozenset()  # accounts bindings name directly (not through a group)
    scim: ScimResolution | None = None  # the pushed groups the bindings use (the SCIM pokes follow them)
    plan: Plan | None = None
    problem: Problem | None = None  # the whole workspace failed: nothing was read past it, nothing written
    read_problems: tuple[Problem, ...] = ()  # what kept bindings' wishes unknown (directory, roles, scope)
    write_problems: tuple[Problem, ...] = ()  # every write that failed
    granted_at: dict[str, str] = field(default_factory=dict)  # assignment id -> time of its 2xx PUT
    revoked_ids: tuple[str, ...] = ()  # the assignments revoked (deleted, or found already gone)
    signed_out: bool = False  # Azure refused a token: the credential was dropped (reconcile.py)

    def problems(self) -> tuple[Problem, ...]:
        """Every failure of the sync: the workspace's, or its reads' and writes'."""
        return (self.problem,) if self.problem is not None else (*self.read_problems, *self.write_problems)

    def transient(self) -> tuple[Problem, ...]:
        """The failures a later try can cure: those that make status say Reconciling (not Stalled).
        The loop retries the sync, with backoff, while there are any."""
        return tuple(p for p in self.problems() if is_transient(p.reason))

    def retry_after(self) -> float | None:
        """The longest Retry-After the transient failures carried (seconds), None when none did."""
        return max((p.retry_after for p in self.transient() if p.retry_after is not None), default=None)


def workspace_failure(
    ws: WorkspaceObject, bindings: Iterable[BindingObject], problem: Problem, when: str
) -> SyncResult:
    """Nothing could be read: every binding shows why; nothing is written to Azure."""
    stalled = not is_transient(problem.reason)
    status = {
        **{k: v for k, v in ws.status.items() if k in ("roleDefinitions", "assignments", "orphanedAssignments")},
        "observedGeneration": ws.generation,
        "reachable": problem.reason not in (Reason.WORKSPACE_UNREACHABLE, Reason.WORKSPACE_NOT_FOUND),
        "conditions": conditions(
            ready_conditions(
                ready=False, reason=problem.reason, message=problem.message, stalled=stalled, reconciling=not stalled
            ),
            ws.status.get("conditions"),
            ws.generation,
            when,
        ),
    }
    outcomes = {
        b.key: BindingOutcome(
            report=None,
            workspace_problem=problem,
            workspace_namespace=ws.namespace,
            suspended=b.suspended,
            workspace_suspended=ws.suspended,
            deleting=b.deleting,  # its clean-up, and so its finalizer, waits for the workspace too
        )
        for b in bindings
    }
    return SyncResult(workspace_status=status, outcomes=outcomes, problem=problem)


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
    scim_source: ScimSource | None = None,
    lookups: PrincipalLookupCache | None = None,
    memory: SyncMemory | None = None,
) -> SyncResult:
    """Read, plan, write. Returns statuses to write; raises nothing for Azure failures (they are status).

    The reading options are those of ``reads.inputs.read_workspace``. ``memory``: what this workspace's
    last sync kept (its states and the planner's index); a fresh one when omitted."""
    memory = memory if memory is not None else SyncMemory()
    try:
        read = await read_workspace(
            ws,
            bindings,
            directory,
            workspace,
            read_concurrency=read_concurrency,
            cache=cache,
            fresh=fresh,
            fresh_directory=fresh_directory,
            shared_reads=shared_reads,
            scim_source=scim_source,
            lookups=lookups,
            memory=memory.bindings,
        )
    except WorkspaceError as exc:
        return workspace_failure(ws, bindings, Problem(exc.reason, exc.message, retry_after=exc.retry_after), when)

    inputs = read.inputs
    index = memory.index
    plan = plan_workspace(inputs, reports=False, index=index)  # the reports come from the plan after the writes
    written = await execute(plan, workspace, read.role_names)
    # The assignments after the writes, as the index keeps them (the next sync plans against this very
    # list, so the index knows it and redoes only the pairs written to).
    after = index.apply(written.creates, written.deletes)
    workspace.remember(after)
    orphaned_after = inputs.orphaned_ids | plan.newly_orphaned
    final = plan_workspace(dataclasses.replace(inputs, actual=after, orphaned_ids=orphaned_after), index=index)

    failed_any = any(written.errors.values())
    finalizable = frozenset() if failed_any else plan.finalizable

    outcomes: dict[BindingKey, BindingOutcome] = {}
    for state in read.states:
        if state.deleting:
            if state.key not in finalizable:
                # Its finalizer waits, and its status is what users see meanwhile (one released
                # now is gone with its status, so it gets none).
                outcomes[state.key] = BindingOutcome(
                    report=final.deleting_reports.get(state.key),
                    hold_reason=final.hold_reason,
                    plan_id=final.plan_id,
                    workspace_name=workspace.name,
                    workspace_namespace=ws.namespace,
                    suspended=state.suspended,
                    workspace_suspended=ws.suspended,
                    deleting=True,
                )  # no claims: its status keeps the ones the next sync must still clean up
            continue
        claims = state.claims | final.carried_claims.get(state.key, frozenset())
        scim = read.scim_subjects.get(state.key)
        outcomes[state.key] = BindingOutcome(
            report=final.reports.get(state.key),
            problems=state.errors,
            write_errors=tuple(written.errors.get(state.key, ())),
            hold_reason=final.hold_reason,
            plan_id=final.plan_id,
            workspace_name=workspace.name,
            workspace_namespace=ws.namespace,
            claims=tuple(sorted(claims)) if state.complete or claims else (),
            observe=state.mode is ManagementPolicy.OBSERVE,
            suspended=state.suspended,
            workspace_suspended=ws.suspended,
            notices=scim.notices if scim is not None else (),
            scim=scim.counts.as_status() if scim is not None and scim.counts is not None else None,
        )

    managed = index.managed  # as the final plan counted them (after the writes, with the new orphans)
    status: dict[str, Any] = {
        "observedGeneration": ws.generation,
        "reachable": True,
        "roleDefinitions": len(read.roles),
        "assignments": {"managed": managed, "unmanaged": len(after) - managed},
        "orphanedAssignments": sorted(orphaned_after),
    }
    conds: list[Condition]
    if final.hold_reason == Reason.REMOVALS_HELD and final.held:
        previous = ws.status.get("heldPlan") or {}
        status["heldPlan"] = {
            "id": final.plan_id,
            "removals": len(final.held),
            "since": previous.get("since") if previous.get("id") == final.plan_id else when,
        }
        msg = (
            f"{len(final.held)} removal(s) held by the removal guard (maxRemovals "
            f"{inputs.guard.max_removals}, maxPercent {inputs.guard.max_percent}): approve with "
            f"`{approve_command(ws.namespace, ws.name, final.plan_id)}`"
        )
        conds = ready_conditions(ready=False, reason=Reason.REMOVALS_HELD, message=msg, stalled=True)
    elif ws.suspended:
        conds = settled_conditions(Reason.SUSPENDED, "spec.suspend is true: nothing is written to this workspace")
    elif failed_any:
        first = next(p for ps in written.errors.values() for p in ps)
        conds = ready_conditions(ready=False, reason=first.reason, message=first.message, reconciling=True)
    else:
        conds = ready_conditions(
            ready=True,
            reason=Reason.SYNCED,
            message=f"{len(read.roles)} role definitions, {managed} managed and "
            f"{len(after) - managed} unmanaged assignment(s)",
        )
    status["conditions"] = conditions(conds, ws.status.get("conditions"), ws.generation, when)
    return SyncResult(
        workspace_status=status,
        outcomes=outcomes,
        finalizable=finalizable,
        audit=written.audit,
        groups_seen=read.groups_seen,
        users_seen=read.users_seen,
        scim=read.scim,
        plan=plan,
        read_problems=tuple(p for state in read.states for p in state.errors),
        write_problems=tuple(p for ps in written.errors.values() for p in ps),
        granted_at=written.granted_at,
        revoked_ids=tuple(a.id for a in written.deletes),
    )

"""A workspace's planner inputs, read: role definitions, assignments, and every binding's wishes.

The one public way to build ``WorkspaceInputs``: the operator's sync and `synapse-scim plan` both call
``read_workspace``, so the review tools cannot plan anything the operator would not. Every read
happens before any write, and a read that fails marks what it touched incomplete (the planner never
prunes on incomplete knowledge). Synapse failures raise ``WorkspaceError``; directory failures become
problems of the bindings they touched.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from synapse_scim.adapters.directory import Directory
from synapse_scim.adapters.directory_cache import DirectoryCache
from synapse_scim.adapters.principal_lookups import PrincipalLookupCache
from synapse_scim.adapters.workspace import RoleDefinition, Workspace
from synapse_scim.core.model import Assignment, BindingKey, BindingState, WorkspaceInputs
from synapse_scim.core.objects import BindingObject, WorkspaceObject
from synapse_scim.reads.binding_memory import BindingMemory
from synapse_scim.reads.bindings import direct_users, resolve_binding
from synapse_scim.reads.directory_reads import DirectoryReads
from synapse_scim.reads.scim_reads import ScimResolution, ScimSource, ScimSubjects, resolve_scim


@dataclass(frozen=True)
class WorkspaceRead:
    """What one read of a workspace found: the planner's inputs and what they were built from."""

    roles: dict[str, RoleDefinition]  # by name
    actual: tuple[Assignment, ...]
    states: tuple[BindingState, ...]
    inputs: WorkspaceInputs
    groups_seen: frozenset[str]  # every group the bindings expanded through (the tenant watch follows them)
    users_seen: frozenset[str]  # accounts bindings name directly, or matched from pushed users (not through a group)
    scim: ScimResolution = field(default_factory=ScimResolution)  # the ScimGroup subjects and their members
    scim_subjects: dict[BindingKey, ScimSubjects] = field(default_factory=dict)  # per binding that has any

    @property
    def role_names(self) -> dict[str, str]:
        return role_names(self.roles.values())


def role_names(roles: Iterable[RoleDefinition]) -> dict[str, str]:
    """Role id -> name."""
    return {r.id: r.name for r in roles}


def workspace_inputs(
    ws: WorkspaceObject, states: Sequence[BindingState], actual: Sequence[Assignment], roles: Iterable[RoleDefinition]
) -> WorkspaceInputs:
    """The planner's inputs from what was read and what the SynapseWorkspace says (guard, approval,
    orphans, suspension)."""
    return WorkspaceInputs(
        bindings=tuple(states),
        actual=tuple(actual),
        actual_complete=True,
        guard=ws.removal_guard,
        approved_plan_id=ws.approved_plan_id,
        orphaned_ids=ws.orphaned_ids,
        role_names=tuple(role_names(roles).items()),
        suspended=ws.suspended,
    )


async def read_workspace(
    ws: WorkspaceObject,
    bindings: Sequence[BindingObject],
    directory: Directory,
    workspace: Workspace,
    *,
    read_concurrency: int = 8,
    cache: DirectoryCache | None = None,
    fresh: bool = True,
    fresh_directory: bool | None = None,
    shared_reads: bool = True,
    reads: DirectoryReads | None = None,
    scim_source: ScimSource | None = None,
    lookups: PrincipalLookupCache | None = None,
    memory: BindingMemory | None = None,
) -> WorkspaceRead:
    """Read everything one sync of ``ws`` needs, and build its planner inputs.

    ``fresh`` lists the workspace's assignments again (otherwise its last listing plus our own writes
    since stand in: Synapse has no change feed, so the operator re-lists every syncInterval).
    ``fresh_directory`` (default: ``fresh``) reads every subject and group from Graph again; otherwise
    the tenant cache stands in for what Graph delta did not report as changed. ``shared_reads=False``
    reads every group once per binding that names it (the naive strategy the benchmarks compare
    against). A caller that passes its own ``reads`` keeps them open (to walk groups afterwards) and
    cancels them itself. ``scim_source`` is where ScimGroup subjects are found (None: the SCIM endpoint is
    off, and they do not resolve); ``lookups`` caches the Graph lookups that match pushed users, and is
    used under the same rule as the tenant cache. ``memory`` keeps bindings' states between syncs
    (reads/binding_memory.py): a binding whose inputs did not change keeps its state object when the
    directory is served from the cache."""
    roles = {r.name: r for r in await workspace.role_definitions()}
    known = None if fresh else workspace.known_assignments
    actual = known if known is not None else await workspace.assignments()

    semaphore = asyncio.Semaphore(max(1, read_concurrency))
    use_cache = not (fresh if fresh_directory is None else fresh_directory)

    def new_reads() -> DirectoryReads:
        return DirectoryReads(directory, read_concurrency, cache, use_cache=use_cache, semaphore=semaphore)

    scim = await resolve_scim(bindings, scim_source, directory, lookups, use_cache=use_cache)
    subjects = {b.key: scim.subjects_of(b) for b in bindings if not (b.deleting or b.suspended)}
    subjects = {k: v for k, v in subjects.items() if v.counts is not None or v.problems}
    shared = reads or new_reads()
    every = [shared] if shared_reads else [new_reads() for _ in bindings]
    kept: dict[int, tuple[BindingState, frozenset[str]]] = {}
    if memory is not None and cache is not None and use_cache:
        for i, b in enumerate(bindings):
            # Pushed groups are resolved every sync (reads/scim_reads.py).
            if b.key not in subjects and (hit := memory.reuse(b, workspace.name, roles, cache)) is not None:
                kept[i] = hit
    try:
        made = await asyncio.gather(
            *(
                resolve_binding(b, workspace.name, roles, shared if shared_reads else every[i], subjects.get(b.key))
                for i, b in enumerate(bindings)
                if i not in kept
            )
        )
    finally:
        for r in every:
            if r is not reads:
                r.cancel()
    made_now = iter(made)
    resolved = [kept[i] if i in kept else next(made_now) for i in range(len(bindings))]
    if memory is not None and cache is not None and shared_reads:
        for i, b in enumerate(bindings):
            if i not in kept:
                used = None if b.key in subjects else memory.lookups(b, shared.used)
                memory.keep(b, workspace.name, roles, used, cache, *resolved[i])
        memory.forget_others({b.key for b in bindings})
    states = tuple(s for s, _ in resolved)
    groups_seen: frozenset[str] = frozenset().union(*(g for _, g in resolved))
    matched = frozenset(p.id for subject in subjects.values() for p, _ in subject.principals)
    direct = memory.direct_users if memory is not None else direct_users
    users_seen = frozenset().union(*(direct(s) for s in states)) | matched
    return WorkspaceRead(
        roles=roles,
        actual=tuple(actual),
        states=states,
        inputs=workspace_inputs(ws, states, actual, roles.values()),
        groups_seen=groups_seen,
        users_seen=users_seen,
        scim=scim,
        scim_subjects=subjects,
    )

"""SyncMemory against the real sandbox: what one workspace's syncs keep for the next (controller/sync.py).

Unchanged bindings keep their states, the planner redoes only the pair a membership change touched,
and what lands in Synapse is what a sync without memory would write. The directory cache is invalidated
here as the tenant watch does it when Graph delta reports the change (controller/tenant.py; its own
tests drive real delta)."""

from __future__ import annotations

from support.controller import BindingObject, WorkspaceObject, binding_body, sync_workspace, workspace_body
from support.sandbox import holders, object_id
from synapse_scim.adapters.connections import Clients
from synapse_scim.adapters.directory_cache import DirectoryCache
from synapse_scim.controller.sync import SyncMemory, SyncResult
from synapse_scim_sandbox import Sandbox

WHEN = "2025-01-01T00:00:00Z"
CONTRIBUTOR, USER = "Synapse Contributor", "Synapse User"


async def test_a_membership_change_remakes_one_state_and_one_pair(sb: Sandbox, clients: Clients, ns: str):
    bindings = [
        binding_body(ns, "engineers", [CONTRIBUTOR], [{"kind": "Group", "name": "Data Engineers"}]),
        binding_body(ns, "analysts", [USER], [{"kind": "Group", "name": "Analysts"}]),
    ]
    cache, memory = DirectoryCache(), SyncMemory()

    async def sync(fresh: bool, memory: SyncMemory = memory) -> SyncResult:
        return await sync_workspace(
            WorkspaceObject.from_body(workspace_body(sb, ns)),
            [BindingObject.from_body(b) for b in bindings],
            clients.directory,
            clients.workspace,
            when=WHEN,
            cache=cache,
            fresh=fresh,
            memory=memory,
        )

    await sync(fresh=True)  # a full sync: reads everything, keeps the states it made
    engineers = set(await holders(sb, CONTRIBUTOR))
    decided = memory.index.decided

    quiet = await sync(fresh=False)
    assert memory.bindings.reused == 2  # both states kept: nothing they were made from changed
    assert memory.index.decided == decided  # and no pair decided again
    assert quiet.plan is not None and quiet.plan.is_empty

    await sb.admin.add_member("Data Engineers", "grace@contoso.com")
    cache.invalidate({object_id(sb, "Data Engineers")}, {})  # what Graph delta makes the tenant watch do
    changed = await sync(fresh=False)
    assert memory.bindings.reused == 3  # analysts' state again; engineers' made anew from Graph
    # The Contributor pair was decided once (the plan after the write carries that decision over the
    # write); the User pair not at all.
    assert memory.index.decided == decided + 1
    assert await holders(sb, CONTRIBUTOR) == engineers | {object_id(sb, "grace@contoso.com")}
    creates = [a for a in changed.audit if a.action == "grant"]
    assert [a.principal_id.lower() for a in creates] == [object_id(sb, "grace@contoso.com")]

    # What the memory decided equals what a sync from scratch decides on the same world.
    scratch = await sync(fresh=True, memory=SyncMemory())
    assert scratch.plan is not None and scratch.plan.is_empty
    assert {k: o.report for k, o in scratch.outcomes.items()} == {k: o.report for k, o in changed.outcomes.items()}

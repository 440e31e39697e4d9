"""sync_workspace (read, plan, write) against the real sandbox: what lands in the sandbox's own
assignments and request log, and the statuses it returns. Bodies are built as the API server hands
them to the operator (WorkspaceObject/BindingObject.from_body); no cluster, no mocks."""

from __future__ import annotations

from typing import Any

from support.controller import (
    APPROVE_ANNOTATION,
    BindingObject,
    SyncResult,
    WorkspaceObject,
    binding_body,
    condition,
    sync_workspace,
    workspace_body,
)
from support.sandbox import holders, last_seq, object_id, synapse_requests
from synapse_scim.adapters.connections import Clients
from synapse_scim.core.model import BindingKey
from synapse_scim.core.status import binding_status
from synapse_scim_sandbox import Sandbox

WHEN = "2025-01-01T00:00:00Z"
CONTRIBUTOR, USER, ADMIN = "Synapse Contributor", "Synapse User", "Synapse Administrator"
ENGINEERS = [{"kind": "Group", "name": "Data Engineers"}]
# Data Engineers: alice, bob, etl-pipeline and the nested Spark Team (carol, dave).
ENGINEERS_MEMBERS = ("alice@contoso.com", "bob@contoso.com", "carol@contoso.com", "dave@contoso.com", "etl-pipeline")


async def sync(
    sb: Sandbox, clients: Clients, ns: str, bindings: list[dict[str, Any]], *, fresh: bool = True, **ws: Any
) -> SyncResult:
    return await sync_workspace(
        WorkspaceObject.from_body(workspace_body(sb, ns, **ws)),
        [BindingObject.from_body(b) for b in bindings],
        clients.directory,
        clients.workspace,
        when=WHEN,
        fresh=fresh,
        fresh_directory=True,
    )


def ids(sb: Sandbox, *refs: str) -> set[str]:
    return {object_id(sb, r) for r in refs}


async def test_grants_every_member_of_a_nested_group(sb: Sandbox, clients: Clients, ns: str):
    result = await sync(sb, clients, ns, [binding_body(ns, "engineers", [CONTRIBUTOR], ENGINEERS)])

    assert await holders(sb, CONTRIBUTOR) == ids(sb, *ENGINEERS_MEMBERS)
    creates = await synapse_requests(sb, "createRoleAssignment")
    assert len(creates) == 5 and all(r["status"] < 300 for r in creates)
    # carol is in Data Engineers only through Spark Team: the audit says which bound group brought her.
    carol = next(a for a in result.audit if a.principal_id.lower() == object_id(sb, "carol@contoso.com"))
    assert (carol.action, carol.outcome) == ("grant", "done") and "via group Data Engineers" in carol.reason
    report = result.outcomes[BindingKey(ns, "engineers")].report
    assert report is not None and report.summary()["inSync"] == 5 and report.summary()["missing"] == 0
    ready = condition(result.workspace_status)
    assert (ready["status"], ready["reason"]) == ("True", "Synced")
    # The seed's two manual grants (heidi, etl-pipeline's credential) count as unmanaged.
    assert result.workspace_status["assignments"] == {"managed": 5, "unmanaged": 2}


async def test_a_disabled_account_gets_nothing(sb: Sandbox, clients: Clients, ns: str):
    # judy is disabled in the seed and named directly; frank is disabled now, a member of Analysts.
    await sb.admin.disable_user("frank@contoso.com")
    subjects = [{"kind": "Group", "name": "Analysts"}, {"kind": "User", "name": "judy@contoso.com"}]
    result = await sync(sb, clients, ns, [binding_body(ns, "analysts", [USER], subjects)])

    assert await holders(sb, USER) == ids(sb, "erin@contoso.com", "grace@contoso.com")
    outcome = result.outcomes[BindingKey(ns, "analysts")]
    assert outcome.problems == ()  # offboarding follows the directory: not an error to report
    assert (condition(result.workspace_status)["reason"], len(result.audit)) == ("Synced", 2)


async def test_removals_above_the_guard_are_held_until_the_annotation_approves_the_plan(
    sb: Sandbox, clients: Clients, ns: str
):
    guard = {"removalGuard": {"maxRemovals": 2}}
    first = await sync(sb, clients, ns, [binding_body(ns, "engineers", [CONTRIBUTOR], ENGINEERS)], **guard)
    assert await holders(sb, CONTRIBUTOR) == ids(sb, *ENGINEERS_MEMBERS)

    # The binding now names Contractors (grace) instead: five removals, more than maxRemovals.
    contractors = [binding_body(ns, "engineers", [CONTRIBUTOR], [{"kind": "Group", "name": "Contractors"}])]
    mark = await last_seq(sb)
    held = await sync(sb, clients, ns, contractors, status=first.workspace_status, **guard)
    assert await synapse_requests(sb, "deleteRoleAssignment", since=mark) == []
    assert await holders(sb, CONTRIBUTOR) == ids(sb, *ENGINEERS_MEMBERS, "grace@contoso.com")  # creates go
    ready = condition(held.workspace_status)
    assert (ready["status"], ready["reason"]) == ("False", "RemovalsHeld")
    plan_id = held.workspace_status["heldPlan"]["id"]
    assert held.workspace_status["heldPlan"]["removals"] == 5
    approve = f"kubectl annotate synapseworkspace analytics -n {ns} {APPROVE_ANNOTATION}={plan_id} --overwrite"
    assert approve in ready["message"]
    assert held.outcomes[BindingKey(ns, "engineers")].hold_reason == "RemovalsHeld"

    # An approval that names another plan approves nothing.
    wrong = await sync(
        sb, clients, ns, contractors, status=held.workspace_status, annotations={APPROVE_ANNOTATION: "0" * 16}, **guard
    )
    assert condition(wrong.workspace_status)["reason"] == "RemovalsHeld"
    assert await synapse_requests(sb, "deleteRoleAssignment", since=mark) == []

    approved = await sync(
        sb, clients, ns, contractors, status=wrong.workspace_status, annotations={APPROVE_ANNOTATION: plan_id}, **guard
    )
    deletes = await synapse_requests(sb, "deleteRoleAssignment", since=mark)
    assert len(deletes) == 5 and all(r["status"] < 300 for r in deletes)
    assert await holders(sb, CONTRIBUTOR) == ids(sb, "grace@contoso.com")
    assert condition(approved.workspace_status)["reason"] == "Synced" and "heldPlan" not in approved.workspace_status


async def test_a_deleted_binding_whose_removals_are_held_says_so_until_they_are_approved(
    sb: Sandbox, clients: Clients, ns: str
):
    guard = {"removalGuard": {"maxRemovals": 2}}
    engineers = binding_body(ns, "engineers", [CONTRIBUTOR], ENGINEERS)
    first = await sync(sb, clients, ns, [engineers], **guard)
    granted = binding_status(
        first.outcomes[BindingKey(ns, "engineers")], generation=1, old=None, workspace_ref="analytics", when=WHEN
    )
    assert condition(granted)["reason"] == "InSync"

    # Deleted: its five grants are due for removal, more than maxRemovals. Its finalizer waits, and
    # its status (what users see meanwhile) says why, instead of the InSync it had.
    deleting = binding_body(ns, "engineers", [CONTRIBUTOR], ENGINEERS, deleting=True, status=granted)
    held = await sync(sb, clients, ns, [deleting], status=first.workspace_status, **guard)
    assert held.finalizable == frozenset() and await holders(sb, CONTRIBUTOR) == ids(sb, *ENGINEERS_MEMBERS)
    plan_id = held.workspace_status["heldPlan"]["id"]
    status = binding_status(
        held.outcomes[BindingKey(ns, "engineers")], generation=1, old=granted, workspace_ref="analytics", when=WHEN
    )
    ready = condition(status)
    assert (ready["status"], ready["reason"], condition(status, "Stalled")["status"]) == (
        "False",
        "RemovalsHeld",
        "True",
    )
    assert (
        f"kubectl annotate synapseworkspace analytics -n {ns} {APPROVE_ANNOTATION}={plan_id} --overwrite"
        in (ready["message"])
    )
    assert status["summary"] == {"desired": 0, "inSync": 0, "missing": 0, "pendingRemoval": 5, "unmanaged": 0}
    assert status["claims"] == granted["claims"]  # what the next sync must still clean up

    # Approved: the removals go and the binding is released; it gets no status any more.
    approved = await sync(
        sb, clients, ns, [deleting], status=held.workspace_status, annotations={APPROVE_ANNOTATION: plan_id}, **guard
    )
    assert approved.finalizable == {BindingKey(ns, "engineers")} and await holders(sb, CONTRIBUTOR) == set()
    assert BindingKey(ns, "engineers") not in approved.outcomes


async def test_a_suspended_workspace_writes_nothing(sb: Sandbox, clients: Clients, ns: str):
    before = await sb.admin.list_assignments("analytics")
    result = await sync(sb, clients, ns, [binding_body(ns, "engineers", [CONTRIBUTOR], ENGINEERS)], suspend=True)

    assert await synapse_requests(sb, "createRoleAssignment") == []
    assert await synapse_requests(sb, "deleteRoleAssignment") == []
    assert await sb.admin.list_assignments("analytics") == before
    ready = condition(result.workspace_status)
    assert (ready["status"], ready["reason"]) == ("True", "Suspended")
    outcome = result.outcomes[BindingKey(ns, "engineers")]
    assert outcome.report is not None and outcome.report.summary()["missing"] == 5  # reported, not granted
    # The binding says why nothing is granted, and that nothing is in progress.
    status = binding_status(outcome, generation=1, old=None, workspace_ref="analytics", when=WHEN)
    ready, reconciling = condition(status), condition(status, "Reconciling")
    assert (ready["status"], ready["reason"], reconciling["status"]) == ("True", "WorkspaceSuspended", "False")
    assert f"SynapseWorkspace {ns}/analytics" in ready["message"] and "spec.suspend" in ready["message"]


async def test_a_manual_assignment_is_never_deleted(sb: Sandbox, clients: Clients, ns: str):
    # heidi's Synapse Administrator is manual in the seed; alice gets one by hand too (nobody wants it).
    await sb.admin.add_assignment("analytics", ADMIN, "alice@contoso.com")
    manual = {a["id"]: a for a in await sb.admin.list_assignments("analytics") if a["createdBy"] is None}
    ops = [{"kind": "Group", "name": "Platform Ops"}]  # heidi, ivan (Platform On-Call, a cycle)

    first = await sync(sb, clients, ns, [binding_body(ns, "admins", [ADMIN], ops)])
    assert await holders(sb, ADMIN) == ids(sb, "heidi@contoso.com", "ivan@contoso.com", "alice@contoso.com")
    created = await synapse_requests(sb, "createRoleAssignment")
    assert [r["status"] for r in created] == [200]  # ivan only: heidi's manual grant already gives the access
    report = first.outcomes[BindingKey(ns, "admins")].report
    # heidi's, wanted and in sync but made by someone else, and alice's, reported: both left alone.
    assert report is not None and report.summary()["unmanaged"] == 2
    assert report.summary()["inSync"] == 2
    assert [d.principal_id.lower() for d in report.unexpected] == [object_id(sb, "alice@contoso.com")]

    # The binding is deleted: what it alone granted (ivan) goes, the manual grants stay as they were.
    gone = await sync(sb, clients, ns, [binding_body(ns, "admins", [ADMIN], ops, deleting=True)])
    assert await holders(sb, ADMIN) == ids(sb, "heidi@contoso.com", "alice@contoso.com")
    after = {a["id"]: a for a in await sb.admin.list_assignments("analytics")}
    assert {i: after.get(i) for i in manual} == manual
    assert len(await synapse_requests(sb, "deleteRoleAssignment")) == 1
    assert gone.finalizable == {BindingKey(ns, "admins")}


async def test_an_incremental_sync_plans_against_the_known_assignments(sb: Sandbox, clients: Clients, ns: str):
    engineers = [binding_body(ns, "engineers", [CONTRIBUTOR], ENGINEERS)]
    await sync(sb, clients, ns, engineers)
    # Out of band: alice's grant is deleted in Synapse, and grace joins Data Engineers.
    alice = object_id(sb, "alice@contoso.com")
    (alices,) = [a for a in await sb.admin.list_assignments("analytics") if a["principalId"].lower() == alice]
    await sb.admin.delete_assignment("analytics", alices["id"])
    await sb.admin.add_member("Data Engineers", "grace@contoso.com")

    mark = await last_seq(sb)
    await sync(sb, clients, ns, engineers, fresh=False)
    # No listing: the last one plus our own writes stand in, so alice's loss goes unseen until the
    # next full sync; the directory was read again, so grace is granted.
    assert await synapse_requests(sb, "listRoleAssignments", since=mark) == []
    assert await holders(sb, CONTRIBUTOR) == ids(sb, *ENGINEERS_MEMBERS, "grace@contoso.com") - {alice}

    mark = await last_seq(sb)
    await sync(sb, clients, ns, engineers, fresh=True)
    assert await synapse_requests(sb, "listRoleAssignments", since=mark)
    assert await holders(sb, CONTRIBUTOR) == ids(sb, *ENGINEERS_MEMBERS, "grace@contoso.com")


async def test_a_role_not_valid_at_the_scope_names_the_valid_scopes_as_spec_scope_says_them(
    sb: Sandbox, clients: Clients, ns: str
):
    # Synapse Credential User is valid at the workspace, a linked service or a credential; not at a pool.
    pool = binding_body(ns, "pool", ["Synapse Credential User"], ENGINEERS, scope={"bigDataPool": "sparkpool"})
    result = await sync(sb, clients, ns, [pool])

    (problem,) = result.outcomes[BindingKey(ns, "pool")].problems
    assert problem.reason == "RoleNotValidAtScope"
    assert problem.message == (
        "role 'Synapse Credential User' cannot be assigned at scope workspaces/analytics/bigDataPools/sparkpool; "
        "it is valid at: spec.scope {} (the workspace), {linkedService: NAME}, {credential: NAME}"
    )
    assert await synapse_requests(sb, "createRoleAssignment") == []


async def test_a_dropped_role_whose_removals_are_held_stays_claimed_until_they_are_approved(
    sb: Sandbox, clients: Clients, ns: str
):
    # The binding's status.claims is how the next sync knows which pairs it must still clean up. A
    # role dropped from the spec while the guard holds its removals must stay claimed, or after one
    # more sync nothing would ever remove them, approval or not.
    guard = {"removalGuard": {"maxRemovals": 2}}
    both = binding_body(ns, "engineers", [CONTRIBUTOR, USER], ENGINEERS)
    first = await sync(sb, clients, ns, [both], **guard)
    assert await holders(sb, USER) == ids(sb, *ENGINEERS_MEMBERS)
    key = BindingKey(ns, "engineers")
    status = binding_status(first.outcomes[key], generation=1, old=None, workspace_ref="analytics", when=WHEN)

    ws_status = first.workspace_status
    for _ in range(2):  # two syncs while held: the claim must survive its own status write
        dropped = binding_body(ns, "engineers", [CONTRIBUTOR], ENGINEERS, status=status)
        held = await sync(sb, clients, ns, [dropped], status=ws_status, **guard)
        assert condition(held.workspace_status)["reason"] == "RemovalsHeld"
        assert await holders(sb, USER) == ids(sb, *ENGINEERS_MEMBERS)
        status = binding_status(held.outcomes[key], generation=2, old=status, workspace_ref="analytics", when=WHEN)
        ws_status = held.workspace_status
        assert len(status["claims"]) == 2

    plan_id = ws_status["heldPlan"]["id"]
    dropped = binding_body(ns, "engineers", [CONTRIBUTOR], ENGINEERS, status=status)
    approved = await sync(
        sb, clients, ns, [dropped], status=ws_status, annotations={APPROVE_ANNOTATION: plan_id}, **guard
    )
    assert await holders(sb, USER) == set()
    assert await holders(sb, CONTRIBUTOR) == ids(sb, *ENGINEERS_MEMBERS)
    done = binding_status(approved.outcomes[key], generation=2, old=status, workspace_ref="analytics", when=WHEN)
    assert len(done["claims"]) == 1  # the cleaned-up pair is no longer claimed

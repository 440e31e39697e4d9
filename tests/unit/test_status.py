"""Status is what users, `kubectl wait`, Flux and Argo CD read: each condition case, and no churn."""

from __future__ import annotations

import dataclasses

import pytest

from synapse_scim.core.model import BindingReport, DriftItem, Problem
from synapse_scim.core.status import (
    BindingOutcome,
    binding_status,
    changed,
    conditions,
    observed,
    ready_conditions,
    reconciling_status,
    stamp,
)

T0, T1 = "2026-11-28T10:00:00Z", "2026-11-28T10:05:00Z"


def report(**kw) -> BindingReport:
    base = dict(desired=2, in_sync=2, pending_removal=0, unmanaged=0, held=0)
    return BindingReport(**{**base, **kw})


def item(principal: str = "alice", managed: bool = True) -> DriftItem:
    return DriftItem(principal, "p-" + principal, "Synapse User", "r", "workspaces/ws", managed)


def conds(outcome: BindingOutcome) -> dict[str, tuple[str, str]]:
    status = binding_status(outcome, generation=3, old=None, workspace_ref="ws", when=T0)
    return {c["type"]: (c["status"], c["reason"]) for c in status["conditions"]}


def test_in_sync_binding_is_ready():
    assert conds(BindingOutcome(report=report())) == {
        "Ready": ("True", "InSync"),
        "Reconciling": ("False", "Idle"),
        "Stalled": ("False", "Progressing"),
    }


def test_missing_grants_are_reconciling_not_ready():
    c = conds(BindingOutcome(report=report(in_sync=1, missing=(item(),))))
    assert c["Ready"] == ("False", "Applying") and c["Reconciling"][0] == "True" and c["Stalled"][0] == "False"


@pytest.mark.parametrize("reason", ["SubjectNotFound", "SubjectAmbiguous", "RoleNotFound", "RoleNotValidAtScope"])
def test_problems_a_person_must_fix_stall_the_binding(reason):
    c = conds(BindingOutcome(report=report(), problems=(Problem(reason, "x"),)))
    assert c["Ready"] == ("False", reason) and c["Stalled"] == ("True", reason)


def test_transient_read_failure_is_reconciling():
    c = conds(BindingOutcome(report=report(), problems=(Problem("DirectoryReadFailed", "429"),)))
    assert c["Reconciling"] == ("True", "DirectoryReadFailed") and c["Stalled"][0] == "False"


def test_workspace_failure_is_shown_on_every_binding():
    c = conds(BindingOutcome(report=None, workspace_problem=Problem("AuthenticationFailed", "AADSTS7000215")))
    assert c["Stalled"] == ("True", "AuthenticationFailed")


def test_held_removals_stall_with_the_approval_command():
    o = BindingOutcome(
        report=report(pending_removal=60, held=60),
        hold_reason="RemovalsHeld",
        plan_id="abc123",
        workspace_namespace="team",
    )
    status = binding_status(o, generation=1, old=None, workspace_ref="ws", when=T0)
    ready = status["conditions"][0]
    assert ready["reason"] == "RemovalsHeld"
    # The command works as pasted, from whatever namespace kubectl is set to.
    approve = "`kubectl annotate synapseworkspace ws -n team synapse-scim.io/approve-removals=abc123 --overwrite`"
    assert approve in ready["message"]


def test_a_deleting_binding_shows_what_its_finalizer_waits_for():
    held = BindingOutcome(
        report=report(desired=0, in_sync=0, pending_removal=7, held=7),
        hold_reason="RemovalsHeld",
        plan_id="abc123",
        workspace_namespace="team",
        deleting=True,
    )
    status = binding_status(held, generation=1, old=None, workspace_ref="ws", when=T0)
    ready = status["conditions"][0]
    assert (ready["status"], ready["reason"]) == ("False", "RemovalsHeld") and conds(held)["Stalled"][0] == "True"
    assert "-n team synapse-scim.io/approve-removals=abc123" in ready["message"]
    assert "being deleted" in ready["message"]
    assert status["summary"]["pendingRemoval"] == 7
    # Revocations still to make (a delete failed, retried): in progress, not Ready.
    revoking = dataclasses.replace(held, report=report(desired=0, in_sync=0, pending_removal=2), hold_reason=None)
    assert conds(revoking)["Ready"] == ("False", "Applying") and conds(revoking)["Reconciling"][0] == "True"
    # Nothing of its own left, but not released by this sync (another write failed): still in progress.
    waiting = dataclasses.replace(revoking, report=report(desired=0, in_sync=0))
    assert conds(waiting)["Ready"] == ("False", "Applying")
    # Observe or not, a deleting binding is never InSync: it is waiting to go.
    assert conds(dataclasses.replace(waiting, observe=True))["Ready"] == ("False", "Applying")
    # No binding leaves a suspended workspace (rule 9).
    assert conds(dataclasses.replace(waiting, workspace_suspended=True))["Ready"] == ("True", "WorkspaceSuspended")


def test_observe_mode_with_drift_is_settled_not_stalled_not_reconciling():
    # Ready=True with reason DriftDetected: the operator did what Observe asks (report, write nothing),
    # and kstatus reads the binding as Current (docs/gitops.md).
    c = conds(BindingOutcome(report=report(missing=(item(),)), observe=True))
    assert c["Ready"] == ("True", "DriftDetected") and c["Stalled"][0] == "False" and c["Reconciling"][0] == "False"


def test_suspended_binding_says_so():
    c = conds(BindingOutcome(report=None, suspended=True))
    assert c["Ready"] == ("True", "Suspended") and c["Stalled"][0] == c["Reconciling"][0] == "False"


def test_a_binding_on_a_suspended_workspace_says_so_and_is_not_reconciling():
    # Its plan writes nothing (rule 9): the drift is told, nothing is in progress, nobody must act.
    o = BindingOutcome(
        report=report(in_sync=1, missing=(item(),)), workspace_suspended=True, workspace_namespace="team"
    )
    status = binding_status(o, generation=1, old=None, workspace_ref="ws", when=T0)
    c = {x["type"]: x for x in status["conditions"]}
    assert (c["Ready"]["status"], c["Ready"]["reason"]) == ("True", "WorkspaceSuspended")
    assert c["Reconciling"]["status"] == c["Stalled"]["status"] == "False"
    assert "SynapseWorkspace team/ws" in c["Ready"]["message"] and "spec.suspend" in c["Ready"]["message"]
    assert "1 missing" in c["Ready"]["message"] and status["summary"]["missing"] == 1
    # Its own suspend, a failed read, a spec a person must fix and held removals say so first.
    assert conds(dataclasses.replace(o, suspended=True))["Ready"] == ("True", "Suspended")
    failed = dataclasses.replace(o, report=None, workspace_problem=Problem("WorkspaceUnreachable", "x"))
    assert conds(failed)["Ready"] == ("False", "WorkspaceUnreachable")
    typo = dataclasses.replace(o, problems=(Problem("RoleNotFound", "x"),))
    assert conds(typo)["Stalled"] == ("True", "RoleNotFound")
    held = dataclasses.replace(o, report=report(pending_removal=9, held=9), hold_reason="RemovalsHeld", plan_id="p")
    assert conds(held)["Stalled"] == ("True", "RemovalsHeld")
    # In sync or not, Observe or not: nothing is written for it while the workspace is suspended.
    assert conds(dataclasses.replace(o, report=report()))["Ready"] == ("True", "WorkspaceSuspended")
    assert conds(dataclasses.replace(o, observe=True))["Ready"] == ("True", "WorkspaceSuspended")


def test_drift_lists_are_truncated_to_fifty_with_a_flag():
    many = tuple(item(f"u{i}") for i in range(120))
    status = binding_status(
        BindingOutcome(report=report(missing=many)), generation=1, old=None, workspace_ref="ws", when=T0
    )
    assert len(status["drift"]["missing"]) == 50 and status["drift"]["truncated"] is True
    assert status["summary"]["missing"] == 120


def test_failed_read_keeps_what_the_status_knew():
    old = {
        "summary": {"desired": 5},
        "drift": {"missing": [], "unexpected": [], "truncated": False},
        "claims": [{"roleId": "r", "scope": "s"}],
    }
    status = binding_status(
        BindingOutcome(report=None, workspace_problem=Problem("WorkspaceUnreachable", "x")),
        generation=1,
        old=old,
        workspace_ref="ws",
        when=T0,
    )
    assert status["summary"] == old["summary"] and status["claims"] == old["claims"]


def test_transition_time_moves_only_when_status_flips():
    first = conditions(ready_conditions(ready=True, reason="InSync", message="a"), None, 1, T0)
    same = conditions(ready_conditions(ready=True, reason="InSync", message="b"), first, 2, T1)
    flipped = conditions(ready_conditions(ready=False, reason="Applying", message="c", reconciling=True), first, 2, T1)
    assert same[0]["lastTransitionTime"] == T0
    assert flipped[0]["lastTransitionTime"] == T1 and flipped[1]["lastTransitionTime"] == T1


def test_quiet_sync_changes_nothing_and_keeps_the_sync_time():
    o = BindingOutcome(report=report())
    first = stamp(binding_status(o, generation=1, old=None, workspace_ref="ws", when=T0), None, T0)
    again = stamp(binding_status(o, generation=1, old=first, workspace_ref="ws", when=T1), first, T1)
    assert again == first and not changed(first, again)
    drifted = stamp(
        binding_status(
            BindingOutcome(report=report(in_sync=1, missing=(item(),))),
            generation=1,
            old=first,
            workspace_ref="ws",
            when=T1,
        ),
        first,
        T1,
    )
    assert drifted["lastSyncTime"] == T1


def test_a_status_is_observed_only_when_written_for_the_generation():
    assert not observed(None, 1)
    assert not observed({"observedGeneration": 0}, 1), "the schema's default: the operator has not looked yet"
    written = binding_status(BindingOutcome(report=report()), generation=1, old=None, workspace_ref="ws", when=T0)
    assert observed(written, 1)
    assert not observed(written, 2), "the spec changed since"


def test_reconciling_status_says_in_progress_and_keeps_what_the_sync_reads():
    old = binding_status(
        BindingOutcome(report=report(), claims=(("r", "s"),)), generation=1, old=None, workspace_ref="ws", when=T0
    )
    new = reconciling_status(old, generation=2, when="2026-01-02T00:00:00Z", message="working on generation 2")
    c = {x["type"]: x for x in new["conditions"]}
    assert new["observedGeneration"] == 2 and all(x["observedGeneration"] == 2 for x in c.values())
    assert (c["Ready"]["status"], c["Ready"]["reason"]) == ("False", "Applying")
    assert (c["Reconciling"]["status"], c["Stalled"]["status"]) == ("True", "False")
    assert new["claims"] == old["claims"] and new["summary"] == old["summary"]
    assert c["Stalled"]["lastTransitionTime"] == T0, "a condition that did not flip keeps its time"


def test_unmatched_pushed_users_are_listed_but_leave_the_binding_ready():
    notice = Problem(
        "PrincipalNotMatched", "pushed user carol@okta.local matches no Entra account", "ScimUser okta/carol"
    )
    counts = {"groups": 1, "members": 3, "matched": 2, "unmatched": 1, "inactive": 0, "disabled": 0}
    outcome = BindingOutcome(report=report(), notices=(notice,), scim=counts)
    status = binding_status(outcome, generation=3, old=None, workspace_ref="ws", when=T0)
    ready = next(c for c in status["conditions"] if c["type"] == "Ready")
    assert (ready["status"], ready["reason"]) == ("True", "InSync")
    assert "1 pushed user(s) match no single Entra account" in ready["message"]
    assert status["unresolved"] == [
        {"reason": "PrincipalNotMatched", "message": notice.message, "name": "ScimUser okta/carol"}
    ]
    assert status["scim"] == counts


def test_a_missing_scim_group_stalls_the_binding_and_a_failed_read_keeps_the_scim_counts():
    gone = Problem("ScimGroupNotFound", "okta has pushed no group Data Engineers", "ScimGroup okta/Data Engineers")
    c = conds(BindingOutcome(report=report(), problems=(gone,)))
    assert c["Ready"] == ("False", "ScimGroupNotFound") and c["Stalled"] == ("True", "ScimGroupNotFound")
    old = {"scim": {"groups": 1, "members": 5, "matched": 5, "unmatched": 0, "inactive": 0, "disabled": 0}}
    failed = BindingOutcome(report=None, workspace_problem=Problem("WorkspaceUnreachable", "timeout"))
    assert binding_status(failed, generation=3, old=old, workspace_ref="ws", when=T0)["scim"] == old["scim"]

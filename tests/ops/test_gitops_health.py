"""What Flux (kstatus) and Argo CD (our health Lua under gopher-lua) show for our resources in every
state, computed by their own libraries (tests/ops/gitops.py), against the promise of docs/gitops.md:
on statuses the operator wrote in a real run, and on statuses built with the operator's status
functions for every reason of the README's table."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import yaml
from argo_health import health as lupa_health
from gitops import (
    DELETING,
    NOT_SEEN,
    STALE,
    evaluate,
    kinds_of,
    kubectl_wait_ready,
    promises,
    readme_reasons,
    state,
)

from support.harness import RB_PLURAL, WS_PLURAL
from support.orgs import upn
from synapse_scim.controller.sync import workspace_failure
from synapse_scim.core.model import BindingReport, DriftItem, Problem
from synapse_scim.core.objects import BindingObject, WorkspaceObject
from synapse_scim.core.reasons import Reason
from synapse_scim.core.status import (
    BindingOutcome,
    binding_status,
    conditions,
    missing_workspace_status,
    ready_conditions,
    reconciling_status,
    settled_conditions,
)

API = "synapse-scim.io/v1alpha1"
WHEN = "2026-01-01T00:00:00Z"
CRDS = Path(__file__).resolve().parents[2] / "crds"
NS = "team"


def _obj(kind: str, name: str, status: dict[str, Any] | None, generation: int = 1) -> dict[str, Any]:
    return {
        "apiVersion": API,
        "kind": kind,
        "metadata": {"name": name, "namespace": NS, "generation": generation, "uid": f"uid-{name}"},
        "spec": {"workspaceRef": {"name": "analytics"}} if kind == "SynapseRoleBinding" else {},
        **({"status": status} if status is not None else {}),
    }


def _crd_status_default(kind: str) -> dict[str, Any]:
    crd = yaml.safe_load((CRDS / f"synapse-scim.io_{kind.lower()}s.yaml").read_text())
    [version] = crd["spec"]["versions"]
    return dict(version["schema"]["openAPIV3Schema"]["properties"]["status"]["default"])


def _report(**kw: Any) -> BindingReport:
    return BindingReport(**{"desired": 2, "in_sync": 2, "pending_removal": 0, "unmanaged": 0, "held": 0, **kw})


MISSING = (DriftItem("erin@contoso.com", "p-erin", "Synapse User", "r", "workspaces/analytics", True),)
# Reasons a binding gets from its own subjects, roles, scope or writes; every other failure reason
# reaches a binding from its workspace (controller/sync.py: workspace_failure).
BINDING_PROBLEMS = {
    Reason.SUBJECT_NOT_FOUND,
    Reason.SUBJECT_AMBIGUOUS,
    Reason.ROLE_NOT_FOUND,
    Reason.ROLE_NOT_VALID_AT_SCOPE,
    Reason.SCOPE_INVALID,
    Reason.DIRECTORY_ACCESS_DENIED,
    Reason.DIRECTORY_READ_FAILED,
    Reason.SCIM_PROVIDER_NOT_FOUND,
    Reason.SCIM_GROUP_NOT_FOUND,
}


def _binding_outcome(reason: str) -> BindingOutcome:
    ws_ns = {"workspace_name": "analytics", "workspace_namespace": NS}
    match reason:
        case Reason.IN_SYNC:
            return BindingOutcome(report=_report(), **ws_ns)
        case Reason.APPLYING:
            return BindingOutcome(report=_report(in_sync=1, missing=MISSING), **ws_ns)
        case Reason.DRIFT_DETECTED:
            return BindingOutcome(report=_report(in_sync=1, missing=MISSING), observe=True, **ws_ns)
        case Reason.SUSPENDED:
            return BindingOutcome(report=None, suspended=True, **ws_ns)
        case Reason.WORKSPACE_SUSPENDED:
            return BindingOutcome(report=_report(in_sync=1, missing=MISSING), workspace_suspended=True, **ws_ns)
        case Reason.REMOVALS_HELD:
            held = _report(pending_removal=3, held=3)
            return BindingOutcome(report=held, hold_reason=Reason.REMOVALS_HELD, plan_id="453004d8d5b8", **ws_ns)
        case Reason.READS_INCOMPLETE:
            return BindingOutcome(
                report=_report(pending_removal=1, held=1), hold_reason=Reason.READS_INCOMPLETE, **ws_ns
            )
        case Reason.GRANT_REJECTED:
            return BindingOutcome(
                report=_report(in_sync=1, missing=MISSING),
                write_errors=(Problem(Reason.GRANT_REJECTED, "Synapse answered 400"),),
                **ws_ns,
            )
    if reason in BINDING_PROBLEMS:
        return BindingOutcome(report=None, problems=(Problem(Reason(reason), f"{reason}: x", "x"),), **ws_ns)
    ws = WorkspaceObject.from_body(_obj("SynapseWorkspace", "analytics", {}))
    b = BindingObject.from_body(_obj("SynapseRoleBinding", "b", {}))
    return workspace_failure(ws, [b], Problem(Reason(reason), f"{reason}: x"), WHEN).outcomes[b.key]


def _workspace_status(reason: str) -> dict[str, Any]:
    def with_conditions(conds: list[Any]) -> dict[str, Any]:
        return {"observedGeneration": 1, "conditions": conditions(conds, None, 1, WHEN)}

    match reason:
        case Reason.SYNCED:
            return with_conditions(ready_conditions(ready=True, reason=Reason.SYNCED, message="3 role definitions"))
        case Reason.SUSPENDED:
            return with_conditions(settled_conditions(Reason.SUSPENDED, "spec.suspend is true"))
        case Reason.REMOVALS_HELD:
            return with_conditions(
                ready_conditions(ready=False, reason=Reason.REMOVALS_HELD, message="3 held", stalled=True)
            )
        case Reason.APPLYING:
            return reconciling_status(None, generation=1, when=WHEN, message="syncing generation 1")
        case Reason.DELETING:  # controller/deletion.py: report_deletion
            return with_conditions(
                ready_conditions(ready=False, reason=Reason.DELETING, message="being deleted", reconciling=True)
            )
        case Reason.DELETION_BLOCKED:
            return with_conditions(
                ready_conditions(ready=False, reason=Reason.DELETION_BLOCKED, message="blocked", stalled=True)
            )
    ws = WorkspaceObject.from_body(_obj("SynapseWorkspace", "analytics", {}))
    return workspace_failure(ws, [], Problem(Reason(reason), f"{reason}: x"), WHEN).workspace_status


def built_objects() -> list[dict[str, Any]]:
    """Every reason of the README's table on each kind it names, plus the states without a reason,
    with the operator's own status functions."""
    out = []
    for reason, on in readme_reasons().items():
        for kind in kinds_of(on):
            name = f"{reason.lower()}-{kind.lower()}"
            if kind == "SynapseWorkspace":
                out.append(_obj(kind, name, _workspace_status(reason)))
            elif reason == Reason.WORKSPACE_NOT_FOUND:  # what the handler writes when the workspace is missing
                out.append(_obj(kind, name, missing_workspace_status(NS, "analytics", 1, None, WHEN)))
            else:
                status = binding_status(
                    _binding_outcome(reason), generation=1, old=None, workspace_ref="analytics", when=WHEN
                )
                out.append(_obj(kind, name, status))
    for kind in ("SynapseRoleBinding", "SynapseWorkspace"):
        out.append(_obj(kind, f"unseen-{kind.lower()}", _crd_status_default(kind)))
        in_sync = (
            binding_status(_binding_outcome(Reason.IN_SYNC), generation=1, old=None, workspace_ref="x", when=WHEN)
            if kind == "SynapseRoleBinding"
            else _workspace_status(Reason.SYNCED)
        )
        out.append(_obj(kind, f"stale-{kind.lower()}", in_sync, generation=2))
        deleting = _obj(kind, f"deleting-{kind.lower()}", in_sync)
        deleting["metadata"]["deletionTimestamp"] = WHEN
        out.append(deleting)
    return out


def check(tool: Path, objects: list[dict[str, Any]], source: str) -> list[tuple[str, ...]]:
    """Compare each object's kstatus and Argo CD results with docs/gitops.md, and the Lua's result under
    gopher-lua with lupa's; return the table rows (object, state, kstatus, Argo CD, kubectl wait, promise)."""
    promised = promises()
    rows, wrong = [], []
    for obj, got in zip(objects, evaluate(tool, objects), strict=True):
        key = state(obj)
        assert key in promised, f"{obj['kind']} {obj['metadata']['name']}: state {key} has no row in docs/gitops.md"
        p = promised[key]
        lupa = lupa_health(obj["kind"], obj)
        assert got.get("lua") == {"status": lupa[0], "message": lupa[1]}, (obj["metadata"]["name"], got, lupa)
        wait = kubectl_wait_ready(obj)
        actual = (got["kstatus"]["status"], got["argocd"]["status"], wait)
        promise = (p.kstatus, p.argocd, p.kubectl_wait if p.kubectl_wait in ("returns", "waits") else wait)
        if actual != promise:
            wrong.append(f"{obj['kind']} {obj['metadata']['name']} ({key}): got {actual}, docs promise {p}")
        rows.append(
            (
                f"{source}: {obj['kind']} {obj['metadata']['name']}",
                key,
                f"{got['kstatus']['status']} ({got['kstatus']['message']})",
                f"{got['argocd']['status']} ({got['argocd']['message']})",
                wait,
                f"{p.kstatus} / {p.argocd} / {p.kubectl_wait}",
            )
        )
    report = os.environ.get("SYNAPSE_SCIM_GITOPS_REPORT")
    if report:
        with open(report, "a") as f:
            for row in rows:
                f.write("| " + " | ".join(c.replace("|", "\\|") for c in row) + " |\n")
    assert not wrong, "\n".join(wrong)
    return rows


def test_every_readme_reason_has_a_row_in_docs_gitops():
    promised = promises()
    missing = [r for r in readme_reasons() if r not in promised]
    assert not missing, f"docs/gitops.md has no row for {missing}"
    assert {NOT_SEEN, STALE, DELETING} <= set(promised)
    extra = [k for k in promised if k not in readme_reasons() and k not in (NOT_SEEN, STALE, DELETING)]
    assert not extra, f"docs/gitops.md has rows for reasons the README does not list: {extra}"


def test_statuses_built_by_the_operator_for_every_reason(gitops_tool):
    objects = built_objects()
    assert {state(o) for o in objects} == set(promises()), "every row of docs/gitops.md is checked"
    check(gitops_tool, objects, "built")


def test_deliberate_states_are_current_in_kstatus_and_suspended_in_argocd(gitops_tool):
    # Issue 13, finding 3: with Ready=False these were InProgress for ever in kstatus (a Flux health
    # check failed by timeout) while Argo CD showed Suspended.
    objects = [o for o in built_objects() if state(o) in ("Suspended", "WorkspaceSuspended", "DriftDetected")]
    assert len(objects) == 4  # Suspended on both kinds
    for obj, got in zip(objects, evaluate(gitops_tool, objects), strict=True):
        assert got["kstatus"]["status"] == "Current", (obj["metadata"]["name"], got)
        assert got["argocd"]["status"] == "Suspended", (obj["metadata"]["name"], got)


def test_the_argocd_script_needs_only_what_argocd_opens(gitops_tool):
    # gopher-lua here has no string or math library, as in Argo CD: a script that used one would fail.
    [got] = evaluate(gitops_tool, [_obj("SynapseRoleBinding", "x", None)])
    assert "luaError" not in got and got["argocd"] == {"status": "Progressing", "message": "waiting for the operator"}


def test_the_states_of_a_real_run(harness, gitops_tool):
    h = harness
    seen: list[dict[str, Any]] = []

    def keep(obj: dict[str, Any] | None) -> dict[str, Any]:
        assert obj is not None
        seen.append(obj)
        return obj

    h.workspace()
    h.binding("analysts", ["Synapse User"], [{"kind": "Group", "name": "Analysts"}])
    keep(h.get(WS_PLURAL, "analytics"))
    keep(h.get(RB_PLURAL, "analysts"))

    # Every grant takes 3 s: the first sync lasts long enough to be read while in progress.
    slow = h.sb.admin.inject_fault(
        {"service": "synapse", "operation": "createRoleAssignment", "kind": "delay", "delay": 3}
    )
    h.start_operator()
    keep(h.wait_condition(RB_PLURAL, "analysts", type_="Reconciling", reason="Applying"))
    keep(h.wait_condition(RB_PLURAL, "analysts", reason="InSync"))
    keep(h.wait_condition(WS_PLURAL, "analytics", reason="Synced"))
    h.sb.admin.remove_fault(slow["id"])

    h.binding("typo", ["Synapse Contributer"], [{"kind": "Group", "name": "Analysts"}])
    h.binding("ghost", ["Synapse Compute Operator"], [{"kind": "Group", "name": "No Such Group"}])
    h.binding("watch", ["Synapse Contributor"], [{"kind": "Group", "name": "Analysts"}], managementPolicy="Observe")
    h.binding("paused", ["Synapse Artifact Publisher"], [{"kind": "User", "name": upn("alice")}], suspend=True)
    h.binding("orphan", ["Synapse User"], [{"kind": "Group", "name": "Analysts"}], workspace="nowhere")
    keep(h.wait_condition(RB_PLURAL, "typo", type_="Stalled", reason="RoleNotFound"))
    keep(h.wait_condition(RB_PLURAL, "ghost", type_="Stalled", reason="SubjectNotFound"))
    keep(h.wait_condition(RB_PLURAL, "watch", reason="DriftDetected"))
    keep(h.wait_condition(RB_PLURAL, "paused", reason="Suspended"))
    keep(h.wait_condition(RB_PLURAL, "orphan", type_="Stalled", reason="WorkspaceNotFound"))

    # Every removal needs a person: erin leaves Analysts, and her Synapse User grant is held.
    h.patch(WS_PLURAL, "analytics", {"spec": {"removalGuard": {"maxRemovals": 0}}})
    keep(h.wait_condition(WS_PLURAL, "analytics", reason="Synced"))
    h.sb.admin.remove_member("Analysts", h.user_id(upn("erin")))
    keep(h.wait_condition(RB_PLURAL, "analysts", type_="Stalled", reason="RemovalsHeld"))
    keep(h.wait_condition(WS_PLURAL, "analytics", type_="Stalled", reason="RemovalsHeld"))

    # With the operator stopped: a spec it has not seen, and a deletion its finalizer holds.
    h.stop_operator()
    h.patch(RB_PLURAL, "watch", {"spec": {"roles": ["Synapse Contributor", "Synapse User"]}})
    assert state(keep(h.get(RB_PLURAL, "watch"))) == STALE
    h.delete(RB_PLURAL, "typo")
    assert state(keep(h.get(RB_PLURAL, "typo"))) == DELETING

    h.start_operator()
    h.patch(WS_PLURAL, "analytics", {"spec": {"suspend": True}})
    keep(h.wait_condition(WS_PLURAL, "analytics", reason="Suspended"))
    keep(h.wait_condition(RB_PLURAL, "watch", reason="WorkspaceSuspended"))

    rows = check(gitops_tool, seen, "operator run")
    print("\n" + "\n".join(json.dumps(r) for r in rows))
    run_states = {state(o) for o in seen}
    marked = {k for k, p in promises().items() if p.in_operator_run}
    assert run_states == marked, f"docs/gitops.md marks {sorted(marked)}; the run produced {sorted(run_states)}"

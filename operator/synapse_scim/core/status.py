"""Status of SynapseRoleBinding and SynapseWorkspace: kstatus conditions, summary, drift lists.

Pure functions: a sync result in, a status dict out. Conditions follow the kstatus convention that
`kubectl wait --for=condition=Ready`, Flux and Argo CD read: Ready (the operator has done everything
this generation of the spec asks), Reconciling (the operator is still working on it), Stalled (it
cannot progress without a person), each with a CamelCase reason, a message, and observedGeneration.

Ready is True in two kinds of state, told apart by its reason: `InSync` / `Synced` (the access is what
the spec lists) and the deliberate states of SETTLED_REASONS (`Suspended`, `WorkspaceSuspended`,
`DriftDetected` in Observe mode: the drift is reported and nothing is written, as the spec asks).
kstatus, which Flux uses, reads a custom resource as Current only when no Reconciling or Stalled
condition is True and Ready is True (or absent): with Ready=False those states would read as
InProgress for ever, and a Flux health check on them would fail by timeout. docs/gitops.md has the
whole mapping (kstatus, Argo CD, kubectl wait) for every reason.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from synapse_scim.core.model import BindingReport, DriftItem, Problem, truncated
from synapse_scim.core.objects import approve_command
from synapse_scim.core.reasons import SETTLED_REASONS, STALLING_REASONS, Reason, is_transient

DRIFT_LIMIT = 50


def now_iso() -> str:
    return dt.datetime.now(dt.UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z")


@dataclass(frozen=True)
class Condition:
    type: str
    status: bool
    reason: str
    message: str


def conditions(
    new: Iterable[Condition], old: Iterable[Mapping[str, Any]] | None, generation: int, when: str
) -> list[dict[str, Any]]:
    """metav1.Condition dicts; lastTransitionTime moves only when a condition's status flips."""
    previous = {c.get("type"): c for c in old or ()}
    out = []
    for c in new:
        status = "True" if c.status else "False"
        before = previous.get(c.type)
        since = before.get("lastTransitionTime") if before and before.get("status") == status else None
        out.append(
            {
                "type": c.type,
                "status": status,
                "reason": c.reason,
                "message": c.message[:32000],
                "observedGeneration": generation,
                "lastTransitionTime": since or when,
            }
        )
    return out


def _drift(items: Iterable[DriftItem]) -> list[dict[str, Any]]:
    return [
        {
            "principal": d.principal,
            "principalId": d.principal_id,
            "role": d.role,
            "roleId": d.role_id,
            "scope": d.scope,
            "managed": d.managed,
        }
        for d in items
    ]


def ready_conditions(
    *, ready: bool, reason: str, message: str, reconciling: bool = False, stalled: bool = False
) -> list[Condition]:
    return [
        Condition("Ready", ready, reason, message),
        Condition(
            "Reconciling",
            reconciling,
            reason if reconciling else Reason.IDLE,
            message if reconciling else "nothing in progress",
        ),
        Condition("Stalled", stalled, reason if stalled else Reason.PROGRESSING, message if stalled else "not stalled"),
    ]


def settled_conditions(reason: str, message: str) -> list[Condition]:
    """A deliberate state (SETTLED_REASONS): Ready with that reason, nothing in progress, nothing stalled."""
    assert reason in SETTLED_REASONS, reason
    return ready_conditions(ready=True, reason=reason, message=message)


def observed(status: Mapping[str, Any] | None, generation: int) -> bool:
    """Whether the operator has written `status` for this generation: its observedGeneration is the
    generation and it has a Ready condition. A resource the operator has not looked at yet has only the
    schema's default `{observedGeneration: 0}`."""
    s = status or {}
    return s.get("observedGeneration") == generation and any(
        c.get("type") == "Ready" for c in s.get("conditions") or ()
    )


def reconciling_status(old: Mapping[str, Any] | None, *, generation: int, when: str, message: str) -> dict[str, Any]:
    """What a resource says from the moment a sync starts on a generation it has not reported yet
    (a new resource, a changed spec) until the sync ends: Reconciling=True (reason Applying), so that
    kstatus and Argo CD read it as in progress during a long first sync. The other fields (claims,
    summary, drift, held plan, orphaned ids) keep their values: the sync reads some of them."""
    old = dict(old or {})
    return {
        **old,
        "observedGeneration": generation,
        "conditions": conditions(
            ready_conditions(ready=False, reason=Reason.APPLYING, message=message, reconciling=True),
            old.get("conditions"),
            generation,
            when,
        ),
    }


@dataclass(frozen=True)
class BindingOutcome:
    """What one sync learned about one binding, ready to be written as status."""

    report: BindingReport | None
    problems: tuple[Problem, ...] = ()
    workspace_problem: Problem | None = None  # the whole workspace failed (credentials, 403, ...)
    write_errors: tuple[Problem, ...] = ()
    hold_reason: str | None = None
    plan_id: str | None = None
    workspace_name: str = ""
    workspace_namespace: str = ""  # the SynapseWorkspace's (and so the binding's) namespace
    claims: tuple[tuple[str, str], ...] = ()
    observe: bool = False
    suspended: bool = False
    workspace_suspended: bool = False  # the SynapseWorkspace's spec.suspend: its plan writes nothing
    # Deleted, and its finalizer waits for its clean-up: ``report`` is then over the pairs it cleans up.
    deleting: bool = False
    # Pushed users of its ScimGroup subjects that match no single Entra account: listed in unresolved,
    # they get nothing, and the binding stays complete (nobody else pays for them).
    notices: tuple[Problem, ...] = ()
    scim: dict[str, int] | None = None  # status.scim: its ScimGroup subjects and their members


def _workspace_label(o: BindingOutcome, workspace_ref: str) -> str:
    return f"{o.workspace_namespace}/{workspace_ref}" if o.workspace_namespace else workspace_ref


def _problem_message(problems: Iterable[Problem]) -> str:
    return "; ".join(p.message for p in problems)


def binding_conditions(o: BindingOutcome, workspace_ref: str) -> list[Condition]:
    if o.suspended:
        return settled_conditions(
            Reason.SUSPENDED, "spec.suspend is true: nothing is granted or revoked for this binding"
        )
    if o.workspace_problem:
        p = o.workspace_problem
        stalled = not is_transient(p.reason)
        return ready_conditions(
            ready=False, reason=p.reason, message=p.message, stalled=stalled, reconciling=not stalled
        )
    problems = tuple(o.problems)
    # A write the service refused for good (403, 400) needs a person as much as a bad spec does.
    stalling = [p for p in (*problems, *o.write_errors) if p.reason in STALLING_REASONS]
    if stalling:
        return ready_conditions(
            ready=False,
            reason=stalling[0].reason,
            message=_problem_message(problems + tuple(o.write_errors)),
            stalled=True,
        )
    if problems or o.write_errors:
        first = (problems or o.write_errors)[0]
        return ready_conditions(
            ready=False,
            reason=first.reason,
            message=_problem_message(problems + tuple(o.write_errors)),
            reconciling=True,
        )
    r = o.report
    assert r is not None
    leaving = "; this binding is being deleted: it goes once they are revoked" if o.deleting else ""
    if r.held and o.hold_reason == Reason.REMOVALS_HELD:
        msg = (
            f"{r.held} removal(s) held by the removal guard of workspace {workspace_ref} (plan {o.plan_id}): "
            f"review them, then approve with `{approve_command(o.workspace_namespace, workspace_ref, o.plan_id)}`"
            f"{leaving}"
        )
        return ready_conditions(ready=False, reason=Reason.REMOVALS_HELD, message=msg, stalled=True)
    if o.workspace_suspended:
        # Rule 9: nothing is written to the workspace, so nothing is in progress and nothing leaves;
        # the counts still tell what would change.
        waits = " (and this binding, being deleted, waits for it)" if o.deleting else ""
        return settled_conditions(
            Reason.WORKSPACE_SUSPENDED,
            f"SynapseWorkspace {_workspace_label(o, workspace_ref)} has spec.suspend: true, so nothing is "
            f"granted or revoked for this binding ({len(r.missing)} missing, {r.pending_removal} to revoke); "
            f"set it to false to resume{waits}",
        )
    if r.held:
        return ready_conditions(
            ready=False,
            reason=Reason.READS_INCOMPLETE,
            reconciling=True,
            message=f"{r.held} removal(s) wait until every read of a sync succeeds{leaving}",
        )
    if o.deleting:
        # Not released by this sync although nothing is held: a revocation (its own or another
        # binding's) failed, and the next sync retries it.
        return ready_conditions(
            ready=False,
            reason=Reason.APPLYING,
            reconciling=True,
            message=f"being deleted: {r.pending_removal} to revoke first"
            if r.pending_removal
            else "being deleted: released after a sync in which every write succeeds",
        )
    drift = len(r.missing) + r.pending_removal
    if o.observe:
        if drift:
            return settled_conditions(
                Reason.DRIFT_DETECTED,
                f"Observe mode: {len(r.missing)} missing and {r.pending_removal} unexpected "
                "assignment(s); nothing is written (set managementPolicy: Enforce to apply)",
            )
        return ready_conditions(
            ready=True, reason=Reason.IN_SYNC, message=f"Observe mode: all {r.desired} desired assignment(s) present"
        )
    if drift:
        return ready_conditions(
            ready=False,
            reason=Reason.APPLYING,
            reconciling=True,
            message=f"{len(r.missing)} to grant, {r.pending_removal} to revoke",
        )
    note = f"; {r.unmanaged} manual assignment(s) left alone" if r.unmanaged else ""
    if o.notices:
        note += f"; {len(o.notices)} pushed user(s) match no single Entra account and get nothing (status.unresolved)"
    return ready_conditions(
        ready=True, reason=Reason.IN_SYNC, message=f"all {r.desired} desired assignment(s) present{note}"
    )


def binding_status(
    o: BindingOutcome, *, generation: int, old: Mapping[str, Any] | None, workspace_ref: str, when: str
) -> dict[str, Any]:
    """The whole status of a binding. Fields the sync could not learn keep their old values, so a
    failed read never makes the status claim less than it knew."""
    old = dict(old or {})
    status: dict[str, Any] = {"observedGeneration": generation}
    status["conditions"] = conditions(binding_conditions(o, workspace_ref), old.get("conditions"), generation, when)
    if o.report is not None:
        r = o.report
        missing, cut_missing = truncated(r.missing, DRIFT_LIMIT)
        unexpected, cut_unexpected = truncated(r.unexpected, DRIFT_LIMIT)
        status["summary"] = r.summary()
        status["drift"] = {
            "missing": _drift(missing),
            "unexpected": _drift(unexpected),
            "truncated": cut_missing or cut_unexpected,
        }
    else:
        for keep in ("summary", "drift"):
            if keep in old:
                status[keep] = old[keep]
    status["unresolved"] = [
        {"reason": p.reason, "message": p.message, **({"name": p.subject} if p.subject else {})}
        for p in (*o.problems, *o.notices)
        if p.subject
    ][:256]
    if o.scim is not None:
        status["scim"] = dict(o.scim)
    elif o.report is None and "scim" in old:
        status["scim"] = old["scim"]
    if o.claims:
        status["claims"] = [{"roleId": r, "scope": s} for r, s in sorted(o.claims)][:1000]
    elif "claims" in old:
        status["claims"] = old["claims"]
    if o.workspace_name:
        status["workspace"] = o.workspace_name
    status["lastSyncTime"] = old.get("lastSyncTime") or when
    return status


def changed(old: Mapping[str, Any] | None, new: Mapping[str, Any]) -> bool:
    """Whether writing `new` would change anything but the sync time (no churn on quiet syncs)."""

    def strip(s: Mapping[str, Any] | None) -> dict[str, Any]:
        return {k: v for k, v in (s or {}).items() if k != "lastSyncTime"}

    return strip(old) != strip(new)


def stamp(new: dict[str, Any], old: Mapping[str, Any] | None, when: str) -> dict[str, Any]:
    """lastSyncTime is the time of the last sync that changed the status: quiet syncs write nothing."""
    new["lastSyncTime"] = when if changed(old, new) else (old or {}).get("lastSyncTime", when)
    return new


def missing_workspace_status(
    namespace: str, workspace_ref: str, generation: int, old: Mapping[str, Any] | None, when: str
) -> dict[str, Any]:
    """A binding whose SynapseWorkspace does not exist: Stalled until it does (nothing is granted or
    revoked through it meanwhile)."""
    message = (
        f"SynapseWorkspace {namespace}/{workspace_ref} does not exist: create it, or fix spec.workspaceRef.name "
        "(nothing is granted or revoked until it exists)"
    )
    return {
        "observedGeneration": generation,
        "conditions": conditions(
            ready_conditions(ready=False, reason=Reason.WORKSPACE_NOT_FOUND, message=message, stalled=True),
            (old or {}).get("conditions"),
            generation,
            when,
        ),
    }

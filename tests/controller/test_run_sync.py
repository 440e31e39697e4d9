"""run_sync, one workspace's sync as the operator's loop runs it, in process: a real kopf.Memo with the
operator's own Connections (the real SDKs against the sandbox), Registry, Tenants and Settings; the
statuses it writes, the events it posts, the bindings it releases and the metrics it records.

Its Kubernetes side is the one stand-in: `FakeKube` (support.controller) answers the four calls run_sync makes of the
Kube adapter from dicts. That side is tested against the real API server by tests/e2e (the operator as
its own process); here we test the orchestration around it, which needs no cluster.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest
from kopf._core.engines import posting  # kopf's own event queue: see the fixture `events`

from support.controller import FakeKube, binding_body, condition, run_sync, workspace_body
from support.sandbox import holders, object_id, role_id
from synapse_scim import metrics
from synapse_scim.adapters.kube import BINDINGS, FINALIZER, WORKSPACES
from synapse_scim.controller.registry import LET_GO_AFTER
from synapse_scim.core.model import BindingKey
from synapse_scim_sandbox import Sandbox

CONTRIBUTOR = "Synapse Contributor"
ENGINEERS = [{"kind": "Group", "name": "Data Engineers"}]
LOG = logging.getLogger("test.run_sync")


def drain(queue: asyncio.Queue[posting.K8sEvent]) -> list[tuple[str, str, str]]:
    """The events posted since the last drain: (object name, type, reason)."""
    out = []
    while not queue.empty():
        e = queue.get_nowait()
        out.append((e.ref["name"], e.type, e.reason))
    return out


def sample(name: str, **labels: str) -> float:
    return metrics.REGISTRY.get_sample_value(name, labels) or 0.0


async def test_statuses_are_written_when_they_change_and_only_then(sb: Sandbox, memo: Any, ns: str, events: Any):
    kube: FakeKube = memo.kube
    kube.add(workspace_body(sb, ns))
    kube.add(binding_body(ns, "engineers", [CONTRIBUTOR], ENGINEERS))
    created = sample("synapse_scim_assignments_created_total", namespace=ns, workspace="analytics")
    result = await run_sync((ns, "analytics"), memo, LOG)
    assert result is not None and result.problem is None
    # Neither had a status for its generation: each says Reconciling before the sync reads anything,
    # then what the sync found.
    first = [(WORKSPACES, "analytics"), (BINDINGS, "engineers")]
    assert [(p[0], p[2]) for p in kube.patches] == first + first
    for _, _, _, early in kube.patches[:2]:
        assert early["observedGeneration"] == 1
        assert (condition(early, "Reconciling")["status"], condition(early)["reason"]) == ("True", "Applying")
        assert condition(early)["status"] == "False"
    binding = kube.status(BINDINGS, ns, "engineers")
    assert (condition(binding)["status"], condition(binding)["reason"]) == ("True", "InSync")
    assert binding["summary"]["desired"] == binding["summary"]["inSync"] == 5
    assert binding["workspace"] == "analytics" and binding["observedGeneration"] == 1
    assert binding["claims"] == [{"roleId": role_id(sb, CONTRIBUTOR), "scope": "workspaces/analytics"}]
    assert condition(kube.status(WORKSPACES, ns, "analytics"))["reason"] == "Synced"
    assert drain(events) == [("engineers", "Normal", "Granted")]

    # Nothing changed: nothing is written, nothing is posted.
    await run_sync((ns, "analytics"), memo, LOG, full=False)
    assert len(kube.patches) == 4 and drain(events) == []

    # grace joins the group: the binding's status and the workspace's count change, and are written.
    await sb.admin.add_member("Data Engineers", "grace@contoso.com")
    await run_sync((ns, "analytics"), memo, LOG, full=True, fresh_directory=True)
    assert [(p[0], p[2]) for p in kube.patches[4:]] == [(WORKSPACES, "analytics"), (BINDINGS, "engineers")]
    assert kube.status(BINDINGS, ns, "engineers")["summary"]["inSync"] == 6
    assert kube.status(WORKSPACES, ns, "analytics")["assignments"]["managed"] == 6

    labels = {"namespace": ns, "workspace": "analytics"}
    assert sample("synapse_scim_assignments_created_total", **labels) - created == 6
    assert sample("synapse_scim_reconciles_total", result="success", **labels) == 3
    assert sample("synapse_scim_syncs_total", kind="full", **labels) >= 1
    assert sample("synapse_scim_binding_ready", namespace=ns, binding="engineers") == 1
    assert sample("synapse_scim_binding_stalled", namespace=ns, binding="engineers") == 0
    assert sample("synapse_scim_workspace_last_success_timestamp_seconds", **labels) > 0
    assert sample("synapse_scim_binding_drift", namespace=ns, binding="engineers", direction="missing") == 0
    assert sample("synapse_scim_removals_held", **labels) == 0
    assert sample("synapse_scim_reconcile_duration_seconds_count", **labels) == 3
    # The tenant watch now knows which groups concern this workspace (nested Spark Team included).
    (watch,) = memo.tenants.watches.values()
    assert object_id(sb, "Spark Team") in watch.subscribers[(ns, "analytics")].groups


async def test_a_deleted_binding_is_released_once_what_it_granted_is_revoked(
    sb: Sandbox, memo: Any, ns: str, events: Any
):
    kube: FakeKube = memo.kube
    kube.add(workspace_body(sb, ns))
    kube.add(binding_body(ns, "engineers", [CONTRIBUTOR], ENGINEERS))
    await run_sync((ns, "analytics"), memo, LOG)
    assert len(await holders(sb, CONTRIBUTOR)) == 5 and drain(events) == [("engineers", "Normal", "Granted")]
    ready = {"namespace": ns, "binding": "engineers"}
    assert metrics.REGISTRY.get_sample_value("synapse_scim_binding_ready", ready) == 1

    # What binding_deleted does: the binding is deleting, its finalizer waits to be released.
    kube.add(binding_body(ns, "engineers", [CONTRIBUTOR], ENGINEERS, deleting=True))
    released = memo.registry.waiting_release(BindingKey(ns, "engineers"))
    patches = len(kube.patches)
    result = await run_sync((ns, "analytics"), memo, LOG)
    assert drain(events) == [("analytics", "Normal", "Revoked")]
    assert released.done()
    assert result is not None and result.finalizable == {BindingKey(ns, "engineers")}
    assert await holders(sb, CONTRIBUTOR) == set()
    # A deleting binding gets no status; the workspace's counts change.
    assert [(p[0], p[2]) for p in kube.patches[patches:]] == [(WORKSPACES, "analytics")]
    labels = {"namespace": ns, "workspace": "analytics"}
    assert sample("synapse_scim_assignments_deleted_total", **labels) == 5
    # A binding that is gone has no gauges left to read as ready or drifted.
    assert metrics.REGISTRY.get_sample_value("synapse_scim_binding_ready", ready) is None
    drift = {**ready, "direction": "missing"}
    assert metrics.REGISTRY.get_sample_value("synapse_scim_binding_drift", drift) is None


async def test_a_deleted_binding_kopf_did_not_let_go_has_its_finalizer_taken_off_by_a_later_sync(
    sb: Sandbox, memo: Any, ns: str, events: Any
):
    """kopf drops its own patch taking the finalizer off when the API server refuses it, and the binding
    has no next event to try again at: a sync LET_GO_AFTER seconds after the one that let it go takes
    kopf's finalizer off (only kopf's), and none sooner."""
    kube: FakeKube = memo.kube
    kube.add(workspace_body(sb, ns))
    kube.add(binding_body(ns, "engineers", [CONTRIBUTOR], ENGINEERS))
    await run_sync((ns, "analytics"), memo, LOG)
    deleting = binding_body(ns, "engineers", [CONTRIBUTOR], ENGINEERS, deleting=True)
    deleting["metadata"]["finalizers"] = [FINALIZER, "example.com/another"]
    kube.add(deleting)
    key = BindingKey(ns, "engineers")
    result = await run_sync((ns, "analytics"), memo, LOG)
    assert result is not None and result.finalizable == {key} and await holders(sb, CONTRIBUTOR) == set()
    await run_sync((ns, "analytics"), memo, LOG)  # kopf's to take it off, a moment after: not yet ours
    assert kube.finalizers_removed == []

    workspace, first = memo.registry.let_go[key]
    memo.registry.let_go[key] = (workspace, first - LET_GO_AFTER)  # as if LET_GO_AFTER had passed
    await run_sync((ns, "analytics"), memo, LOG)
    assert kube.finalizers_removed == [(BINDINGS, "engineers")]
    assert kube.bindings[(ns, "engineers")]["metadata"]["finalizers"] == ["example.com/another"]
    # Gone (the other finalizer's owner let it go too): forgotten.
    del kube.bindings[(ns, "engineers")]
    await run_sync((ns, "analytics"), memo, LOG)
    assert key not in memo.registry.let_go


async def test_a_deleted_binding_whose_removals_are_held_shows_it_and_is_not_released(
    sb: Sandbox, memo: Any, ns: str, events: Any
):
    kube: FakeKube = memo.kube
    kube.add(workspace_body(sb, ns, removalGuard={"maxRemovals": 2}))
    kube.add(binding_body(ns, "engineers", [CONTRIBUTOR], ENGINEERS))
    await run_sync((ns, "analytics"), memo, LOG)
    assert condition(kube.status(BINDINGS, ns, "engineers"))["reason"] == "InSync"

    deleting = binding_body(ns, "engineers", [CONTRIBUTOR], ENGINEERS, deleting=True)
    deleting["status"] = kube.status(BINDINGS, ns, "engineers")
    kube.add(deleting)
    released = memo.registry.waiting_release(BindingKey(ns, "engineers"))
    result = await run_sync((ns, "analytics"), memo, LOG)
    assert result is not None and result.finalizable == frozenset() and not released.done()
    assert len(await holders(sb, CONTRIBUTOR)) == 5
    # While its finalizer waits, its status is what users see: the held removals, not the old InSync.
    binding = kube.status(BINDINGS, ns, "engineers")
    assert (condition(binding)["reason"], binding["summary"]["pendingRemoval"]) == ("RemovalsHeld", 5)
    assert f"-n {ns} synapse-scim.io/approve-removals=" in condition(binding)["message"]
    assert condition(kube.status(WORKSPACES, ns, "analytics"))["reason"] == "RemovalsHeld"
    assert sample("synapse_scim_binding_ready", namespace=ns, binding="engineers") == 0
    # Held removals wait for a person: the binding is Stalled (the alert SynapseScimBindingStalled).
    assert sample("synapse_scim_binding_stalled", namespace=ns, binding="engineers") == 1


async def test_credentials_are_dropped_after_authentication_failed(sb: Sandbox, memo: Any, ns: str, events: Any):
    kube: FakeKube = memo.kube
    kube.add(workspace_body(sb, ns))
    kube.add(binding_body(ns, "engineers", [CONTRIBUTOR], ENGINEERS))
    await run_sync((ns, "analytics"), memo, LOG)
    tokens = len(await sb.admin.request_log(service="login", operation="token"))

    # Azure stops honouring every token issued so far (revoked, or expired before their declared time).
    assert (await sb.admin.expire_tokens())["expired"] >= 1
    failed = await run_sync((ns, "analytics"), memo, LOG)
    assert failed is not None and failed.problem is not None
    assert failed.problem.reason == "AuthenticationFailed"
    assert ("analytics", "Warning", "AuthenticationFailed") in drain(events)
    ws = kube.status(WORKSPACES, ns, "analytics")
    assert (condition(ws)["status"], condition(ws)["reason"]) == ("False", "AuthenticationFailed")
    assert condition(kube.status(BINDINGS, ns, "engineers"))["reason"] == "AuthenticationFailed"
    assert sample("synapse_scim_reconciles_total", namespace=ns, workspace="analytics", result="error") == 1

    # The refused credential was dropped: the next sync signs in afresh and succeeds.
    again = await run_sync((ns, "analytics"), memo, LOG)
    assert again is not None and again.problem is None
    assert len(await sb.admin.request_log(service="login", operation="token")) > tokens
    assert condition(kube.status(WORKSPACES, ns, "analytics"))["reason"] == "Synced"
    assert condition(kube.status(BINDINGS, ns, "engineers"))["reason"] == "InSync"


async def test_credentials_are_dropped_when_only_a_bindings_graph_reads_were_refused(
    sb: Sandbox, memo: Any, ns: str, events: Any
):
    """An incremental sync lists no Synapse assignments, so a refused token fails only the bindings'
    Graph reads (the workspace itself does not fail). The credential must be dropped all the same: kept,
    its refused Graph token was presented again by every sync and by the tenant watch until its declared
    expiry (the replica soak: a leader stuck 60 s on 401s, its bindings DirectoryAccessDenied)."""
    kube: FakeKube = memo.kube
    kube.add(workspace_body(sb, ns))
    kube.add(binding_body(ns, "engineers", [CONTRIBUTOR], ENGINEERS))
    assert (first := await run_sync((ns, "analytics"), memo, LOG)) is not None and first.problem is None
    tokens = len(await sb.admin.request_log(service="login", operation="token"))

    assert (await sb.admin.expire_tokens())["expired"] >= 1
    failed = await run_sync((ns, "analytics"), memo, LOG, full=False, fresh_directory=True)
    assert failed is not None and failed.problem is None, "the workspace itself did not fail"
    assert [p.reason for p in failed.read_problems] == ["DirectoryAccessDenied"]
    assert "refused the operator's token" in failed.read_problems[0].message
    assert failed.signed_out

    again = await run_sync((ns, "analytics"), memo, LOG, full=False, fresh_directory=True)
    assert again is not None and again.problems() == () and not again.signed_out
    assert len(await sb.admin.request_log(service="login", operation="token")) > tokens
    assert condition(kube.status(BINDINGS, ns, "engineers"))["reason"] == "InSync"


async def test_a_workspace_that_is_gone_writes_nothing(memo: Any, ns: str, events: Any):
    assert await run_sync((ns, "analytics"), memo, LOG) is None
    assert memo.kube.patches == []


async def test_a_changed_spec_says_reconciling_before_the_sync_reads(sb: Sandbox, memo: Any, ns: str, events: Any):
    kube: FakeKube = memo.kube
    kube.add(workspace_body(sb, ns))
    kube.add(binding_body(ns, "engineers", [CONTRIBUTOR], ENGINEERS))
    await run_sync((ns, "analytics"), memo, LOG)
    drain(events)
    # A new spec (generation 2): until the sync that handles it ends, the binding says it is in progress.
    kube.bindings[(ns, "engineers")]["metadata"]["generation"] = 2
    kube.bindings[(ns, "engineers")]["spec"]["roles"] = [CONTRIBUTOR, "Synapse User"]
    patches = len(kube.patches)
    await run_sync((ns, "analytics"), memo, LOG, full=False)
    (early, final) = [p[3] for p in kube.patches[patches:] if p[0] == BINDINGS]
    assert early["observedGeneration"] == 2 and condition(early, "Reconciling")["status"] == "True"
    assert (condition(early)["status"], condition(early)["reason"]) == ("False", "Applying")
    assert early["claims"] == kube.patches[patches - 1][3]["claims"], "the previous claims stay for the planner"
    assert (condition(final)["status"], condition(final)["reason"]) == ("True", "InSync")
    assert condition(final, "Reconciling")["status"] == "False" and final["summary"]["desired"] == 10
    # The workspace's spec did not change: no mark for it.
    assert all(
        p[0] == BINDINGS for p in kube.patches[patches:] if p[3].get("conditions", [{}])[0].get("reason") == "Applying"
    )


async def test_a_reconciling_mark_that_cannot_be_written_does_not_stop_the_sync(
    sb: Sandbox, memo: Any, ns: str, events: Any
):
    # The marks are advisory: without the right to patch a binding's status (RBAC), the grants are
    # still made, as before the marks existed; the final status write fails as it always did.
    kube: FakeKube = memo.kube
    kube.add(workspace_body(sb, ns))
    kube.add(binding_body(ns, "engineers", [CONTRIBUTOR], ENGINEERS))
    patch = kube.patch_status

    async def forbidden_for_bindings(plural: str, namespace: str, name: str, old: Any, new: Any) -> None:
        if plural == BINDINGS:
            raise RuntimeError("(403) Forbidden")
        await patch(plural, namespace, name, old, new)

    kube.patch_status = forbidden_for_bindings  # type: ignore[method-assign]
    with pytest.raises(RuntimeError, match="403"):
        await run_sync((ns, "analytics"), memo, LOG)
    assert len(await holders(sb, CONTRIBUTOR)) == 5


async def test_kopfs_finalizer_is_put_on_where_kopfs_own_patch_did_not(sb: Sandbox, memo: Any, ns: str, events: Any):
    """Issue 17 (Kubernetes-side faults, tests/e2e/test_status_patch_faults.py): kopf drops a patch of
    its own that the API server refused (409, or a timeout after its retries) and tries again only at
    the object's next event. A quiet binding thus stayed without kopf's finalizer, granted and Ready,
    and its deletion would not have waited for the revocations. The sync puts it on, on the workspace
    and every binding not being deleted, and leaves one already there alone."""
    kube: FakeKube = memo.kube
    kube.add(workspace_body(sb, ns))
    kube.add(binding_body(ns, "engineers", [CONTRIBUTOR], ENGINEERS))
    kube.add(binding_body(ns, "kept", [CONTRIBUTOR], ENGINEERS))
    kube.bindings[(ns, "kept")]["metadata"]["finalizers"] = ["other.example/keep", FINALIZER]
    kube.add(binding_body(ns, "leaving", [CONTRIBUTOR], ENGINEERS, deleting=True))
    result = await run_sync((ns, "analytics"), memo, LOG)
    assert result is not None and result.problem is None
    assert sorted(kube.finalizers_added) == [(BINDINGS, "engineers"), (WORKSPACES, "analytics")]
    assert kube.bindings[(ns, "engineers")]["metadata"]["finalizers"] == [FINALIZER]
    assert kube.workspaces[(ns, "analytics")]["metadata"]["finalizers"] == [FINALIZER]
    assert kube.bindings[(ns, "kept")]["metadata"]["finalizers"] == ["other.example/keep", FINALIZER]
    assert "finalizers" not in kube.bindings[(ns, "leaving")]["metadata"], "none is added to what is going"

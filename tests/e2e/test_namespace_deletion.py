"""`kubectl delete namespace` with the operator running, against a control plane that runs the real
namespace controller and garbage collector (kube-controller-manager): every grant of the deleted
bindings with deletionPolicy Delete is revoked before the namespace goes, Orphan ones are kept and
recorded, and when Synapse fails the namespace stays Terminating and the workspace says why.

The figures (delete namespace -> namespace gone) are printed, never asserted: `pytest -s` shows them.
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator
from typing import Any

import pytest
from kubernetes.client.exceptions import ApiException

from support.harness import RB_PLURAL, WS_PLURAL, running_harness
from support.kube import new_namespace
from support.orgs import small_org, upn
from synapse_scim_sandbox.devcluster import ControlPlane, ExistingCluster, Tools

CONTRIBUTOR = "7572bffe-f453-4b66-912a-46cc5ef38fda"
USER_ROLE = "2a385764-43e8-416c-9825-7b18d05a2c4b"
COMPUTE_OPERATOR = "e3844cc7-4670-42cb-9349-9bdac1ee7881"
CREDENTIAL_FINALIZER = "synapse-scim.io/credential-in-use"


@pytest.fixture(scope="module")
def gc_cluster(kube_tools: Tools, request: pytest.FixtureRequest) -> Iterator[Any]:
    """A control plane of this module's own with kube-controller-manager (namespace controller and
    garbage collector); a cluster of one's own already has them."""
    from support.fixtures import _use_existing

    if _use_existing():
        yield request.getfixturevalue("cluster")
        return
    with ControlPlane(tools=kube_tools, controller_manager=True) as cp:
        yield cp


@pytest.fixture
def nsdel(gc_cluster: ControlPlane | ExistingCluster, tmp_path, request) -> Iterator[Any]:
    with (
        new_namespace(gc_cluster, prefix="nsdel") as ns,
        running_harness(gc_cluster, ns, small_org(), tmp_path, request) as h,
    ):
        yield h


def namespace_gone(h) -> bool:
    try:
        h.core.read_namespace(h.namespace)
    except ApiException as exc:
        return exc.status == 404
    return False


def delete_namespace(h) -> float:
    """`kubectl delete namespace` as a person types it (without waiting); its start time."""
    started = time.monotonic()
    subprocess.run(
        [
            str(h.cluster.tools.kubectl),
            "--kubeconfig",
            str(h.cluster.kubeconfig),
            "delete",
            "namespace",
            h.namespace,
            "--wait=false",
        ],
        check=True,
        capture_output=True,
    )
    return started


def team(h, *, orphan: bool) -> None:
    """Two Delete bindings with 5 grants between them (the issue's case), and an Orphan one."""
    h.workspace()
    h.binding("analysts", ["Synapse Contributor"], [{"kind": "Group", "name": "Analysts"}])  # erin, frank
    h.binding("engineers", ["Synapse User"], [{"kind": "Group", "name": "Data Engineers"}])  # alice, bob, carol
    if orphan:
        h.binding(
            "keepers",
            ["Synapse Compute Operator"],
            [{"kind": "User", "name": upn("alice")}],
            deletionPolicy="Orphan",
        )
    for name in ("analysts", "engineers", *(("keepers",) if orphan else ())):
        h.wait_condition(RB_PLURAL, name, timeout=90)


def secret_finalizers(h) -> list[str]:
    try:
        return list(h.core.read_namespaced_secret("synapse-sp", h.namespace).metadata.finalizers or [])
    except ApiException as exc:
        if exc.status == 404:
            return []
        raise


def by_role(h, role_id: str) -> set[str]:
    return {a["id"] for a in h.assignments() if a["roleDefinitionId"] == role_id}


def test_nsdel_delete_namespace_revokes_delete_bindings_and_keeps_orphan_ones(nsdel):
    h = nsdel
    h.start_operator()
    team(h, orphan=True)
    deleted = by_role(h, CONTRIBUTOR) | by_role(h, USER_ROLE)
    kept = by_role(h, COMPUTE_OPERATOR)
    assert len(deleted) == 5 and len(kept) == 1
    h.wait_for(lambda: CREDENTIAL_FINALIZER in secret_finalizers(h), "the credential Secret's finalizer")
    since = max((e["seq"] for e in h.sb.admin.request_log()), default=0)

    started = delete_namespace(h)
    h.wait_for(lambda: namespace_gone(h), "the namespace to go", timeout=180)
    took = time.monotonic() - started
    print(f"\n[nsdel] delete namespace -> namespace gone: {took:.1f} s (5 revocations, 1 orphaned)")

    remaining = {a["id"] for a in h.assignments()}
    assert not deleted & remaining, "every grant of the Delete bindings is revoked"
    assert kept <= remaining, "the Orphan binding's grant stays"
    revoked = {
        e["path"].split("?")[0].rsplit("/", 1)[-1].lower()
        for e in h.sb.admin.request_log(service="synapse", operation="deleteRoleAssignment")
        if e["seq"] > since and 200 <= int(e["status"]) < 300
    }
    assert {i.lower() for i in deleted} <= revoked, "each revocation was a DELETE Synapse answered"
    assert not {i.lower() for i in kept} & revoked
    log = h.operator_log()
    assert "deletionPolicy Orphan left in Synapse" in log and next(iter(kept)) in log, "the orphaned grant is recorded"


def test_nsdel_namespace_waits_while_synapse_fails_then_goes(nsdel):
    h = nsdel
    h.start_operator(SYNAPSE_SCIM_DELETION_TIMEOUT="5m")
    team(h, orphan=False)
    deleted = by_role(h, CONTRIBUTOR) | by_role(h, USER_ROLE)
    h.wait_for(lambda: CREDENTIAL_FINALIZER in secret_finalizers(h), "the credential Secret's finalizer")
    rule = h.sb.admin.inject_fault({"service": "synapse", "operations": "*", "kind": "reset"})

    started = delete_namespace(h)

    def blocked() -> dict[str, Any] | None:
        ws = h.get(WS_PLURAL, "analytics") or {}
        stalled = next((c for c in (ws.get("status") or {}).get("conditions") or () if c["type"] == "Stalled"), None)
        return stalled if stalled and stalled["status"] == "True" and stalled["reason"] == "DeletionBlocked" else None

    stalled = h.wait_for(blocked, "the workspace to say DeletionBlocked", timeout=120)
    message = stalled["message"]
    assert "analysts" in message and "engineers" in message, message
    assert "WorkspaceUnreachable" in message, message
    assert "kubectl -n" in message and "finalizers" in message, "the message says how to force it"
    assert "\n" not in message
    assert h.core.read_namespace(h.namespace).status.phase == "Terminating"
    assert deleted <= {a["id"] for a in h.assignments()}, "nothing could be revoked yet"
    assert h.get(RB_PLURAL, "analysts") is not None, "the binding waits too"
    assert secret_finalizers(h) == [CREDENTIAL_FINALIZER], "the credential outlives the namespace's other content"
    # A namespace being deleted accepts no new object, Events included: the operator's log says it then.
    log = h.operator_log()
    assert "being deleted, blocked: WorkspaceUnreachable" in log, log[-3000:]
    assert "no Event (its namespace is being deleted)" in log, log[-3000:]

    cleared = time.monotonic()
    h.sb.admin.remove_fault(rule["id"])
    h.wait_for(lambda: namespace_gone(h), "the namespace to go once Synapse answers", timeout=180)
    now = time.monotonic()
    print(f"\n[nsdel] blocked: deleted -> gone {now - started:.1f} s; fault cleared -> gone {now - cleared:.1f} s")
    assert not deleted & {a["id"] for a in h.assignments()}, "every grant revoked once Synapse answered"


def test_nsdel_held_revocations_outlast_the_bound_then_an_approval_ends_it(nsdel):
    h = nsdel
    h.start_operator(SYNAPSE_SCIM_DELETION_TIMEOUT="3s")
    team(h, orphan=False)
    h.patch(WS_PLURAL, "analytics", {"spec": {"removalGuard": {"maxRemovals": 1, "maxPercent": 1}}})
    deleted = by_role(h, CONTRIBUTOR) | by_role(h, USER_ROLE)
    h.wait_for(lambda: CREDENTIAL_FINALIZER in secret_finalizers(h), "the credential Secret's finalizer")

    started = delete_namespace(h)

    def stalled() -> dict[str, Any] | None:
        ws = h.get(WS_PLURAL, "analytics") or {}
        status = ws.get("status") or {}
        c = next((c for c in status.get("conditions") or () if c["type"] == "Stalled"), None)
        return ws if c and c["reason"] == "DeletionBlocked" and "not done within" in c["message"] else None

    # The guard holds the 5 revocations (a person must approve them): the bound passes, and says so.
    ws = h.wait_for(stalled, "DeletionBlocked once SYNAPSE_SCIM_DELETION_TIMEOUT passed", timeout=120)
    message = next(c for c in ws["status"]["conditions"] if c["type"] == "Stalled")["message"]
    assert "held" in message and "analysts" in message, message
    assert deleted <= {a["id"] for a in h.assignments()}, "nothing revoked without the approval"
    plan = h.wait_for(lambda: (h.get(WS_PLURAL, "analytics") or {}).get("status", {}).get("heldPlan"), "held plan")
    h.patch(WS_PLURAL, "analytics", {"metadata": {"annotations": {"synapse-scim.io/approve-removals": plan["id"]}}})
    h.wait_for(lambda: namespace_gone(h), "the namespace to go once approved", timeout=180)
    print(f"\n[nsdel] held: delete namespace -> approved -> gone {time.monotonic() - started:.1f} s")
    assert not deleted & {a["id"] for a in h.assignments()}

"""Issue 17, Kubernetes-side faults: the operator talks to the real API server through a fault-injecting
proxy (devcluster/apiproxy.py) that answers 40 % of its status patches and of its patches of the
synapse-scim.io objects (kopf's finalizers and progress annotations) with a 409 Conflict, or holds them
and answers 504 or cuts the connection (before or after the API server applied them), and ends its
watches after 4 s, while a binding is deleted, another edited, and members leave and join a group,
round after round until every kind of fault was injected a few times.

The invariants: no failure turns into a revocation (every deleteRoleAssignment in the sandbox's log is
one a directory change or the deletion asked for), the manual assignment stays, no binding is lost
(each keeps kopf's finalizer), no workspace loop dies, the grants follow every change even during the
faults, and once the faults stop every object is Ready at its current generation with exactly the
wanted assignments, without anyone touching the objects again."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from support.harness import RB_PLURAL, WS_PLURAL, Harness
from support.orgs import upn
from synapse_scim_sandbox.devcluster.apiproxy import SCIM_IO_WRITES, STATUS_PATCHES, ApiFaultProxy, Match

USER_ROLE = "2a385764-43e8-416c-9825-7b18d05a2c4b"
CONTRIBUTOR_ROLE = "7572bffe-f453-4b66-912a-46cc5ef38fda"
ADMIN_ROLE = "6e4bf58a-b8e1-4cc3-bbf9-d73143322b78"
WS_SCOPE = "workspaces/analytics"
FAULT_KINDS = ("conflict", "timeout", "cut", "lost")
# Enough of each kind before the faults stop (the rounds go on until there are).
AT_LEAST = {"conflict": 3, "timeout": 2, "cut": 2, "lost": 1}
FINALIZER = "synapse-scim.io/finalizer"  # kopf's, on every binding (controller/runtime.py)


@pytest.fixture
def proxy(cluster: Any, tmp_path: Any) -> Iterator[ApiFaultProxy]:
    with ApiFaultProxy(cluster, seed=17, workdir=tmp_path / "apiproxy", hold=1.0) as started:
        yield started


def held(h: Harness) -> set[tuple[str, str]]:
    return {(a["principalId"], a["roleDefinitionId"]) for a in h.assignments() if a["scope"] == WS_SCOPE}


def wait_held(h: Harness, wanted: set[tuple[str, str]], what: str) -> None:
    """Until the workspace's assignments are exactly `wanted` (principal id, role id)."""
    expected = frozenset(wanted)
    h.wait_for(lambda: held(h) == expected, what, timeout=120)


def wait_finalizer(h: Harness, name: str) -> None:
    """Until kopf's finalizer is on the binding: kopf may still be retrying a patch a fault cut (its
    backoff: 1, 1, 2, 3, 5 ... s)."""

    def on() -> bool:
        meta = (h.get(RB_PLURAL, name) or {}).get("metadata") or {}
        return FINALIZER in meta.get("finalizers", ())

    h.wait_for(on, f"kopf's finalizer on binding {name}", timeout=120)


def test_conflicting_and_timed_out_patches_revoke_nothing_and_converge(proxy: ApiFaultProxy, harness: Harness):
    # `proxy` before `harness`: the operator stops before the proxy it talks through.
    h = harness
    ids = {name: h.user_id(upn(name)) for name in ("alice", "bob", "carol", "erin", "frank", "grace", "heidi")}
    manual = h.sb.admin.add_assignment("analytics", "Synapse Administrator", ids["grace"])
    log = h.sb.admin.request_log(service="synapse")
    since = log[-1]["seq"] if log else 0

    proxy.set_faults(rate=0.4, kinds=FAULT_KINDS, match=(STATUS_PATCHES, SCIM_IO_WRITES))
    proxy.set_watch_faults(end_after=4.0)  # and every watch ends after 4 s (kopf watches again)
    h.operator_kubeconfig = proxy.kubeconfig
    h.start_operator()
    h.workspace()
    h.binding("analysts", ["Synapse User"], [{"kind": "Group", "name": "Analysts"}])
    h.binding("engineers", ["Synapse User"], [{"kind": "Group", "name": "Data Engineers"}])
    h.binding("contractors", ["Synapse User"], [{"kind": "Group", "name": "Contractors"}])  # grace
    wanted = {(ids[u], USER_ROLE) for u in ("erin", "frank", "alice", "bob", "carol", "grace")}
    wanted |= {(ids["grace"], ADMIN_ROLE)}
    wait_held(h, wanted, "the first grants, through the faults")
    # The assignments a directory change or a deletion may revoke (their ids are deterministic).
    may_revoke = {
        a["id"]
        for a in h.assignments()
        if a["principalId"] in (ids["erin"], ids["grace"]) and a["roleDefinitionId"] == USER_ROLE
    }

    # A binding deleted (deletionPolicy Delete): its grant revoked, then kopf's finalizer let go, through
    # the faults; grace's manual assignment of another role stays.
    wait_finalizer(h, "contractors")
    h.delete(RB_PLURAL, "contractors")
    wanted -= {(ids["grace"], USER_ROLE)}
    wait_held(h, wanted, "the deleted binding's grant revoked, through the faults")
    h.wait_for(lambda: h.get(RB_PLURAL, "contractors") is None, "the deleted binding gone", timeout=120)

    # A binding edited and members joining and leaving, all while the faults go on: every change is a
    # sync with status writes (and a generation for kopf and the Reconciling mark), until enough of
    # them were faulted.
    h.patch(RB_PLURAL, "engineers", {"spec": {"roles": ["Synapse User", "Synapse Contributor"]}})
    wanted |= {(ids[u], CONTRIBUTOR_ROLE) for u in ("alice", "bob", "carol")}
    wait_held(h, wanted, "the edited binding's grants, through the faults")
    h.sb.admin.remove_member("Analysts", upn("erin"))
    wanted -= {(ids["erin"], USER_ROLE)}
    wait_held(h, wanted, "erin's grant revoked, through the faults")
    heidi = (ids["heidi"], USER_ROLE)
    for round in range(40):
        joins = round % 2 == 0
        (h.sb.admin.add_member if joins else h.sb.admin.remove_member)("Analysts", upn("heidi"))
        wanted = wanted | {heidi} if joins else wanted - {heidi}
        wait_held(h, wanted, f"round {round}: heidi's grant follows, through the faults")
        if joins:
            may_revoke |= {a["id"] for a in h.assignments() if (a["principalId"], a["roleDefinitionId"]) == heidi}
        injected = proxy.injected
        if not joins and all(injected[kind] >= n for kind, n in AT_LEAST.items()):
            break

    proxy.clear()
    for plural, name in ((WS_PLURAL, "analytics"), (RB_PLURAL, "analysts"), (RB_PLURAL, "engineers")):
        h.wait_condition(plural, name, timeout=120)
    assert held(h) == wanted
    assert h.get(RB_PLURAL, "engineers")["metadata"]["generation"] == 2

    # Nothing was revoked but what the directory changes took away.
    deletes = [
        e for e in h.sb.admin.request_log(service="synapse", operation="deleteRoleAssignment") if e["seq"] > since
    ]
    assert deletes and {e["params"]["roleAssignmentId"] for e in deletes} <= may_revoke, deletes
    assert manual["id"] in {a["id"] for a in h.assignments()}, "the manual assignment was revoked"
    for name in ("analysts", "engineers"):
        wait_finalizer(h, name)

    # No handler was killed by a fault: a sync's failed patch is retried by its loop, never let out of
    # the daemon (kopf would start it again only after 60 s).
    assert "Daemon 'workspace_loop' failed" not in h.operator_log()
    injected = proxy.injected
    assert all(injected[kind] >= n for kind, n in AT_LEAST.items()), injected
    assert injected["watch_end"], f"watches were ended early too ({proxy.watches} watches)"
    print(f"faults injected: {dict(injected)}; matched: {dict(proxy.matched)}; forwarded: {proxy.forwarded}")


def test_a_binding_kopf_could_not_put_its_finalizer_on_gets_it_at_the_next_sync(proxy: ApiFaultProxy, harness: Harness):
    """kopf drops a patch of its own that the API server refused (here every patch kopf makes of the
    binding `late`: a 409 Conflict) and tries again only at the object's next event. The next sync of
    the workspace puts kopf's finalizer on (with the kubernetes client, which the rule does not match),
    so that the binding's deletion still waits for its revocations."""
    h = harness
    ids = {name: h.user_id(upn(name)) for name in ("erin", "frank", "grace")}
    h.operator_kubeconfig = proxy.kubeconfig
    h.start_operator()
    h.workspace()
    h.binding("analysts", ["Synapse User"], [{"kind": "Group", "name": "Analysts"}])
    h.wait_condition(RB_PLURAL, "analysts")

    proxy.set_faults(
        1.0, kinds=("conflict",), match=Match.of("PATCH", r"/synapserolebindings/late$", user_agent=r"^kopf/")
    )
    h.binding("late", ["Synapse User"], [{"kind": "Group", "name": "Contractors"}])  # grace
    h.wait_for(lambda: proxy.injected["conflict"] >= 1, "kopf's finalizer patch refused")
    # Any sync of the workspace will do: another binding's change pokes one.
    h.patch(RB_PLURAL, "analysts", {"spec": {"roles": ["Synapse User", "Synapse Contributor"]}})
    wait_finalizer(h, "late")
    wait_held(
        h,
        {
            *((ids[u], role) for u in ("erin", "frank") for role in (USER_ROLE, CONTRIBUTOR_ROLE)),
            (ids["grace"], USER_ROLE),
        },
        "the late binding's grant",
    )

    # With the finalizer on, its deletion waits for the revocation (kopf's own patches still refused
    # until here: the faults stop so that kopf can let it go).
    proxy.clear()
    h.delete(RB_PLURAL, "late")
    h.wait_for(lambda: h.get(RB_PLURAL, "late") is None, "the deleted binding gone", timeout=120)
    assert (ids["grace"], USER_ROLE) not in held(h), "gone before its grant was revoked"
    assert "put synapse-scim.io/finalizer on synapserolebindings" in h.operator_log()


def test_deleted_objects_kopf_could_not_let_go_go_once_their_revocations_are_done(
    proxy: ApiFaultProxy, harness: Harness
):
    """kopf takes its finalizer off a deleted object in one patch once its deletion handler returned,
    and drops that patch if the API server refuses it (here every patch kopf makes of the object from
    its deletion on: a 409), trying again only at the object's next event, which an object being deleted
    does not have: it stayed Terminating (CI run 26: over 120 s). A binding: a sync LET_GO_AFTER (10 s)
    after the one that let it go takes the finalizer off (the registry pokes one). A workspace: its
    deletion handler takes it off itself once no binding names it."""
    h = harness
    ids = {name: h.user_id(upn(name)) for name in ("erin", "frank", "grace")}
    h.operator_kubeconfig = proxy.kubeconfig
    h.start_operator()
    h.workspace()
    h.binding("analysts", ["Synapse User"], [{"kind": "Group", "name": "Analysts"}])  # erin, frank
    h.binding("leaving", ["Synapse User"], [{"kind": "Group", "name": "Contractors"}])  # grace
    wait_held(h, {(ids[u], USER_ROLE) for u in ("erin", "frank", "grace")}, "the first grants")
    wait_finalizer(h, "leaving")

    kopf_patches = r"^kopf/"
    proxy.set_faults(
        1.0, kinds=("conflict",), match=Match.of("PATCH", r"/synapserolebindings/leaving$", user_agent=kopf_patches)
    )
    h.delete(RB_PLURAL, "leaving")
    wait_held(h, {(ids[u], USER_ROLE) for u in ("erin", "frank")}, "the deleted binding's grant revoked")
    h.wait_for(lambda: h.get(RB_PLURAL, "leaving") is None, "the deleted binding gone", timeout=60)
    assert proxy.injected["conflict"] >= 1, "kopf's patch of the deleted binding was never refused"
    assert "took synapse-scim.io/finalizer off binding" in h.operator_log()

    # The workspace, once its last binding has gone: kopf's patches of it refused from here on.
    h.delete(RB_PLURAL, "analysts")
    h.wait_for(lambda: h.get(RB_PLURAL, "analysts") is None, "the last binding gone", timeout=60)
    refused = proxy.injected["conflict"]
    proxy.set_faults(
        1.0, kinds=("conflict",), match=Match.of("PATCH", r"/synapseworkspaces/analytics$", user_agent=kopf_patches)
    )
    h.delete(WS_PLURAL, "analytics")
    h.wait_for(lambda: h.get(WS_PLURAL, "analytics") is None, "the deleted workspace gone", timeout=60)
    assert proxy.injected["conflict"] > refused, "kopf's patch of the deleted workspace was never refused"
    assert held(h) == set(), "a deleted Delete binding's grant stayed"

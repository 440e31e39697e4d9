"""Two operator replicas (`synapse-scim run`, leader election on, the default 15 s Lease) against the real
API server and the Azure sandbox: exactly one acts, the other stands by; SIGKILL the leader and the
standby takes over and converges a directory change made after the kill, with no write done twice."""

from __future__ import annotations

import time
import urllib.request
from collections import Counter

from kubernetes import client
from kubernetes.client.exceptions import ApiException

from support.harness import RB_PLURAL
from support.orgs import upn

CONTRIBUTOR = "7572bffe-f453-4b66-912a-46cc5ef38fda"


def lease_holder(h) -> str | None:
    try:
        return client.CoordinationV1Api(h.api).read_namespaced_lease("synapse-scim", h.namespace).spec.holder_identity
    except ApiException as exc:
        if exc.status == 404:
            return None
        raise


def scrape(h, name: str) -> dict[str, float]:
    """The replica's /metrics, as {sample line without value: value}; empty while it is not serving yet."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{h.metrics_ports[name]}/metrics", timeout=5) as r:
            text = r.read().decode()
    except OSError:
        return {}
    samples = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            key, _, value = line.rpartition(" ")
            samples[key] = float(value)
    return samples


def azure_requests(samples: dict[str, float]) -> float:
    return sum(v for k, v in samples.items() if k.startswith("synapse_scim_azure_requests_total"))


def contributors(h) -> set[str]:
    return {a["principalId"] for a in h.assignments() if a["roleDefinitionId"] == CONTRIBUTOR}


def test_one_replica_acts_and_the_standby_takes_over_after_the_leader_is_killed(replicas):
    h = replicas
    h.start_replica("a")
    h.start_replica("b")
    leader = h.wait_for(lambda: lease_holder(h), "a replica to hold the Lease")
    standby = "b" if leader == "a" else "a"
    h.wait_for(lambda: scrape(h, leader).get("synapse_scim_leader") == 1.0, f"{leader} reporting leader 1")
    h.wait_for(lambda: scrape(h, standby).get("synapse_scim_leader") == 0.0, f"{standby} reporting leader 0")

    h.workspace()
    h.binding("analysts", ["Synapse Contributor"], [{"kind": "Group", "name": "Analysts"}])
    h.wait_condition(RB_PLURAL, "analysts")
    erin, frank, heidi = (h.user_id(upn(u)) for u in ("erin", "frank", "heidi"))
    assert contributors(h) == {erin, frank}
    assert lease_holder(h) == leader
    assert azure_requests(scrape(h, leader)) > 0
    assert azure_requests(scrape(h, standby)) == 0, "the standby must not talk to Azure at all"
    assert "acquired Lease" in h.replica_log(leader)
    assert "acquired Lease" not in h.replica_log(standby)
    assert "is a standby" in h.replica_log(standby)

    h.replicas[leader].kill()  # SIGKILL: no release, the Lease has to expire
    h.replicas[leader].wait()
    killed = time.monotonic()
    h.sb.admin.add_member("Analysts", upn("heidi"))  # a change only the new leader can converge
    h.wait_for(lambda: lease_holder(h) == standby, f"{standby} to take the Lease over", timeout=60)
    takeover = time.monotonic() - killed
    h.wait_for(lambda: heidi in contributors(h), "heidi granted by the new leader", timeout=60)
    converged = time.monotonic() - killed
    print(
        f"\nHA: Lease taken over {takeover:.1f} s after SIGKILL of the leader; "
        f"directory change converged {converged:.1f} s after it"
    )
    assert contributors(h) == {erin, frank, heidi}
    assert scrape(h, standby).get("synapse_scim_leader") == 1.0
    assert "acquired Lease" in h.replica_log(standby)

    creates = Counter(e["path"] for e in h.sb.admin.request_log(service="synapse", operation="createRoleAssignment"))
    assert len(creates) == 3
    assert all(n == 1 for n in creates.values()), f"an assignment was written more than once: {creates}"
    deletes = h.sb.admin.request_log(service="synapse", operation="deleteRoleAssignment")
    assert deletes == [], "nothing was revoked"


def test_a_leader_that_loses_the_lease_exits_non_zero_at_once(replicas):
    h = replicas
    proc = h.start_replica("a")
    h.wait_for(lambda: lease_holder(h) == "a", "a to hold the Lease")
    h.workspace()
    h.binding("analysts", ["Synapse Contributor"], [{"kind": "Group", "name": "Analysts"}])
    h.wait_condition(RB_PLURAL, "analysts")
    coordination = client.CoordinationV1Api(h.api)
    lease = coordination.read_namespaced_lease("synapse-scim", h.namespace)
    lease.spec.holder_identity = "another-replica"  # as if a partition let another one take it
    coordination.replace_namespaced_lease("synapse-scim", h.namespace, lease)
    h.wait_for(lambda: proc.poll() is not None, "the replica to exit", timeout=30)
    assert proc.returncode == 3, h.replica_log("a")[-3000:]
    assert "lost the Lease" in h.replica_log("a")


def test_sigterm_hands_the_lease_over_at_once_as_in_a_rollout(replicas):
    h = replicas
    old = h.start_replica("a")
    h.wait_for(lambda: lease_holder(h) == "a", "a to hold the Lease")
    new = h.start_replica("b")
    h.wait_for(lambda: "is a standby" in h.replica_log("b"), "b standing by")
    h.workspace()
    h.binding("analysts", ["Synapse Contributor"], [{"kind": "Group", "name": "Analysts"}])
    h.wait_condition(RB_PLURAL, "analysts")

    old.terminate()
    assert old.wait(timeout=60) == 0, h.replica_log("a")[-3000:]
    stopped = time.monotonic()
    assert "released Lease" in h.replica_log("a")
    # Released, not expired: b takes over within its retry period, far below the 15 s lease duration.
    h.wait_for(lambda: lease_holder(h) == "b", "b to take the released Lease", timeout=60)
    print(f"\nHA: Lease handed over {time.monotonic() - stopped:.1f} s after the leader stopped on SIGTERM")
    h.sb.admin.add_member("Analysts", upn("heidi"))
    h.wait_for(lambda: h.user_id(upn("heidi")) in contributors(h), "heidi granted by b")

    new.terminate()
    assert new.wait(timeout=60) == 0, h.replica_log("b")[-3000:]
    assert lease_holder(h) is None, "a leader that stops cleanly leaves the Lease free"

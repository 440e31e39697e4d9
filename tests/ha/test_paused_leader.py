"""A leader paused (SIGSTOP: a frozen VM, a stalled node) while a write of its own waits to be retried,
and woken up (SIGCONT) after the standby took its expired Lease over: it must send nothing more to
Synapse, and exit. Proved from the sandbox's request log, where every request carries the replica's
name in its user agent, against the Lease's acquire time of the new leader (one machine, one clock)."""

from __future__ import annotations

import os
import signal
import time

from kubernetes import client

from support.harness import RB_PLURAL
from support.orgs import upn

CONTRIBUTOR = "7572bffe-f453-4b66-912a-46cc5ef38fda"
LEASE = {"SYNAPSE_SCIM_LEASE_DURATION": "6s"}  # renewal every 2 s, given up after 4 s


def lease(h) -> client.V1Lease | None:
    try:
        return client.CoordinationV1Api(h.api).read_namespaced_lease("synapse-scim", h.namespace)
    except client.exceptions.ApiException as exc:
        if exc.status == 404:
            return None
        raise


def holder(h) -> str | None:
    current = lease(h)
    return current.spec.holder_identity if current is not None else None


def writes_of(h, replica: str, since: int) -> list[dict]:
    return [
        e
        for e in h.sb.admin.request_log(service="synapse", since=since)
        if e["method"] in ("PUT", "DELETE") and f"pod/{replica}" in e["headers"].get("user-agent", "")
    ]


def test_a_paused_leader_woken_after_losing_its_lease_sends_nothing_and_exits(replicas):
    h = replicas
    procs = {name: h.start_replica(name, **LEASE) for name in ("a", "b")}
    leader = h.wait_for(lambda: holder(h), "a replica to hold the Lease")
    standby = "b" if leader == "a" else "a"
    h.wait_for(lambda: "is a standby" in h.replica_log(standby), f"{standby} standing by")
    h.workspace()
    h.binding("analysts", ["Synapse Contributor"], [{"kind": "Group", "name": "Analysts"}])
    h.wait_condition(RB_PLURAL, "analysts")
    since = max((e["seq"] for e in h.sb.admin.request_log()), default=0)
    # Whoever leads now (a replica starved of CPU past its renew deadline hands over; not this test's point).
    leader = h.wait_for(lambda: holder(h), "a replica to hold the Lease")
    standby = "b" if leader == "a" else "a"
    assert writes_of(h, leader, 0) or writes_of(h, standby, 0), "writes carry the replica name"

    # The leader's next create is throttled and told to come back in 3 s; it is paused while it waits.
    h.sb.admin.inject_fault(
        {"service": "synapse", "operation": "createRoleAssignment", "status": 429, "retry_after": 3, "count": 1}
    )
    heidi = h.user_id(upn("heidi"))
    h.sb.admin.add_member("Analysts", upn("heidi"))
    h.wait_for(
        lambda: any(str(e["status"]) == "429" for e in writes_of(h, leader, since)),
        "the leader's create to be throttled",
    )
    os.kill(procs[leader].pid, signal.SIGSTOP)
    paused = time.monotonic()
    try:
        h.wait_for(lambda: holder(h) == standby, f"{standby} to take the expired Lease over", timeout=60)
        taken = lease(h)
        assert taken is not None and taken.spec.acquire_time is not None
        takeover = taken.spec.acquire_time.timestamp()
        print(f"\nHA: {standby} took the Lease {time.monotonic() - paused:.1f} s after {leader} was paused")
        # Past its 3 s Retry-After and its lease: everything it had queued is due the moment it wakes.
    finally:
        os.kill(procs[leader].pid, signal.SIGCONT)
    h.wait_for(lambda: procs[leader].poll() is not None, f"{leader} to exit once awake", timeout=30)
    assert procs[leader].returncode == 3, h.replica_log(leader)[-3000:]
    assert "lost the Lease" in h.replica_log(leader)

    late = [
        (e["method"], e["path"], e["status"], e["time"])
        for e in writes_of(h, leader, since)
        if e["time"] - e["duration_ms"] / 1000 >= takeover
    ]
    assert late == [], f"{leader} wrote after {standby} held the Lease: {late}"
    h.wait_for(
        lambda: heidi in {a["principalId"] for a in h.assignments() if a["roleDefinitionId"] == CONTRIBUTOR},
        f"heidi granted by {standby}",
    )
    assert writes_of(h, standby, since), f"{standby} made the grant"

"""The Lease protocol of synapse_scim.controller.election against the real API server: acquire, renew, refuse a
held Lease, take over an expired one, lose a race on resourceVersion, release."""

from __future__ import annotations

import asyncio
import time

import pytest
from kubernetes import client

from synapse_scim.controller.election import LeaderElector, LeaseConfig, LeaseLost, election_enabled


@pytest.fixture
def coordination(cluster):
    with cluster.api_client() as api:
        yield client.CoordinationV1Api(api)


def elector(api, namespace: str, identity: str, duration: float = 3.0) -> LeaderElector:
    return LeaderElector(
        api,
        LeaseConfig(
            name="synapse-scim",
            namespace=namespace,
            identity=identity,
            duration=duration,
            renew_period=duration / 3,
            renew_deadline=duration * 2 / 3,
            retry_period=0.2,
        ),
    )


def holder(api, namespace: str) -> str | None:
    return api.read_namespaced_lease("synapse-scim", namespace).spec.holder_identity


async def test_first_candidate_creates_the_lease_and_renews_it(coordination, namespace):
    a = elector(coordination, namespace, "a")
    assert await a.try_acquire_or_renew()
    lease = coordination.read_namespaced_lease("synapse-scim", namespace)
    assert lease.spec.holder_identity == "a"
    assert lease.spec.lease_duration_seconds == 3
    assert lease.spec.lease_transitions == 0
    first_renew, rv = lease.spec.renew_time, lease.metadata.resource_version
    assert await a.try_acquire_or_renew(), "the holder renews its own Lease"
    renewed = coordination.read_namespaced_lease("synapse-scim", namespace)
    assert renewed.metadata.resource_version != rv
    assert renewed.spec.renew_time >= first_renew
    assert renewed.spec.acquire_time == lease.spec.acquire_time, "a renewal keeps the acquire time"
    assert renewed.spec.lease_transitions == 0


async def test_a_held_lease_is_refused_while_it_is_renewed(coordination, namespace):
    a, b = elector(coordination, namespace, "a"), elector(coordination, namespace, "b")
    assert await a.try_acquire_or_renew()
    deadline = time.monotonic() + 5.0  # longer than the 3 s lease: renewals keep it alive
    while time.monotonic() < deadline:
        assert not await b.try_acquire_or_renew()
        assert await a.try_acquire_or_renew()
        await asyncio.sleep(0.5)
    assert holder(coordination, namespace) == "a"
    assert b.holder == "a"


async def test_an_expired_lease_is_taken_over(coordination, namespace):
    a, b = elector(coordination, namespace, "a"), elector(coordination, namespace, "b")
    assert await a.try_acquire_or_renew()
    assert not await b.try_acquire_or_renew()
    first_seen = time.monotonic()
    # a stops renewing (it died): b may take the Lease once it has seen it unchanged for 3 s.
    while not await b.try_acquire_or_renew():
        await asyncio.sleep(0.2)
        assert time.monotonic() - first_seen < 30, "never taken over"
    waited = time.monotonic() - first_seen
    assert waited >= 3.0, f"taken over after {waited:.1f}s, before the lease duration ran out"
    lease = coordination.read_namespaced_lease("synapse-scim", namespace)
    assert lease.spec.holder_identity == "b"
    assert lease.spec.lease_transitions == 1
    assert not await a.try_acquire_or_renew(), "the old holder is now refused"


async def test_a_write_over_a_stale_resource_version_loses(coordination, namespace):
    a, b = elector(coordination, namespace, "a"), elector(coordination, namespace, "b")
    assert await a.try_acquire_or_renew()
    seen_by_b = await b.read()
    assert await a.try_acquire_or_renew()  # a renews: the resourceVersion b read is stale now
    assert not await b.claim(seen_by_b), "409 Conflict: b must not win with what it read before"
    assert holder(coordination, namespace) == "a"


async def test_two_candidates_racing_for_a_missing_lease_have_one_winner(coordination, namespace):
    candidates = [elector(coordination, namespace, f"c{i}") for i in range(4)]
    won = await asyncio.gather(*(c.try_acquire_or_renew() for c in candidates))
    assert sum(won) == 1
    assert holder(coordination, namespace) == candidates[won.index(True)].config.identity


async def test_hold_raises_lease_lost_when_another_holder_appears(coordination, namespace):
    a = elector(coordination, namespace, "a")
    await a.acquire()
    lease = coordination.read_namespaced_lease("synapse-scim", namespace)
    lease.spec.holder_identity = "intruder"
    coordination.replace_namespaced_lease("synapse-scim", namespace, lease)
    with pytest.raises(LeaseLost, match="held by intruder"):
        await asyncio.wait_for(a.hold(), timeout=10)
    assert not a.is_leader


async def test_hold_raises_lease_lost_when_renewals_fail_past_the_deadline(coordination, namespace):
    a = elector(coordination, namespace, "a")
    await a.acquire()
    coordination.delete_namespaced_lease("synapse-scim", namespace)
    a.config = LeaseConfig(
        name="synapse-scim",
        namespace="no-such-namespace-for-leases",
        identity="a",
        duration=3.0,
        renew_period=1.0,
        renew_deadline=2.0,
        retry_period=0.2,
    )
    started = time.monotonic()
    with pytest.raises(LeaseLost, match="could not renew"):
        await asyncio.wait_for(a.hold(), timeout=10)
    assert time.monotonic() - started < 3.0, "the leader must stop before the lease duration runs out"


async def test_release_lets_a_standby_take_over_at_once(coordination, namespace):
    a, b = elector(coordination, namespace, "a", duration=30), elector(coordination, namespace, "b", duration=30)
    await a.acquire()
    assert not await b.try_acquire_or_renew()
    await a.release()
    assert holder(coordination, namespace) is None
    assert await b.try_acquire_or_renew(), "a released Lease is free without waiting 30 s"


def test_settings_from_the_environment():
    env = {
        "SYNAPSE_SCIM_LEASE_NAME": "ops",
        "SYNAPSE_SCIM_LEASE_DURATION": "30s",
        "POD_NAME": "op-1",
        "POD_NAMESPACE": "synapse-system",
    }
    c = LeaseConfig.from_env(["watched"], env)
    assert (c.name, c.namespace, c.identity, c.duration) == ("ops", "synapse-system", "op-1", 30.0)
    assert c.renew_period == 10.0 and c.renew_deadline == 20.0
    assert LeaseConfig.from_env(["watched"], {"SYNAPSE_SCIM_LEASE_NAMESPACE": "x"}).namespace == "x"
    assert election_enabled({"SYNAPSE_SCIM_LEADER_ELECTION": "on"})
    assert not election_enabled({})
    with pytest.raises(ValueError, match="SYNAPSE_SCIM_LEADER_ELECTION"):
        election_enabled({"SYNAPSE_SCIM_LEADER_ELECTION": "maybe"})

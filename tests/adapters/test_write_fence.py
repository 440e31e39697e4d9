"""The write fence (adapters/fence.py) in the Synapse client's pipeline: nothing is sent once the
leadership deadline has passed (a paused leader waking up after its Lease expired), retries included;
the process is told at once; an open fence (no leader election) lets everything through. The user agent
names the replica.

The transport is the pipeline test's recorder: what matters is whether a request reaches the transport."""

from __future__ import annotations

import time

import pytest
from test_workspace_pipeline import ROLE, SCOPE, Recorder, Token  # tests/adapters, beside this file

from synapse_scim.adapters.credentials import Cloud
from synapse_scim.adapters.fence import FENCE, FenceExpired, FencePolicy, WriteFence
from synapse_scim.adapters.workspace import AccessControl, access_control_client, user_agent

ENDPOINT = "https://analytics.dev.azuresynapse.net"
PRINCIPAL = "0b0c6cd6-1f1a-4c36-8b0e-d1a9e3b8f0a1"


@pytest.fixture
def fence():
    """The process's fence, as leader election drives it; open again afterwards (other tests write)."""
    yield FENCE
    FENCE.open()
    FENCE.on_expired = None


def client(transport: Recorder) -> AccessControl:
    return access_control_client(Token(), ENDPOINT, Cloud.from_spec(None), transport=transport)  # type: ignore[arg-type]


async def test_an_open_fence_lets_writes_through(fence) -> None:
    recorder = Recorder()
    await client(recorder).put_assignment("a", ROLE, PRINCIPAL, SCOPE, "User")
    assert len(recorder.sent) == 1


async def test_a_write_past_the_deadline_is_not_sent_and_the_process_is_told(fence) -> None:
    told: list[str] = []
    fence.on_expired = told.append
    fence.close()
    fence.extend(time.monotonic() + 60)  # a leader: renewed a moment ago
    recorder = Recorder()
    await client(recorder).put_assignment("a", ROLE, PRINCIPAL, SCOPE, "User")
    assert len(recorder.sent) == 1 and told == []

    fence.until = time.monotonic() - 0.001  # the deadline passed while the process was paused
    with pytest.raises(FenceExpired):
        await client(recorder).put_assignment("b", ROLE, PRINCIPAL, SCOPE, "User")
    with pytest.raises(FenceExpired):
        await client(recorder).role_assignments.delete_role_assignment_by_id("a")
    assert len(recorder.sent) == 1, "nothing past the deadline reached the transport"
    assert len(told) == 2 and "deadline" in told[0]


async def test_a_retry_waiting_out_a_429_is_not_sent_once_the_deadline_passed(fence) -> None:
    """The hazard of a paused leader: a write throttled before the pause is retried after it."""
    fence.close()
    fence.extend(time.monotonic() + 0.5)
    recorder = Recorder([(429, {"error": {"code": "TooManyRequests", "message": "slow down"}}, {"Retry-After": "1"})])
    with pytest.raises(FenceExpired):
        await client(recorder).put_assignment("a", ROLE, PRINCIPAL, SCOPE, "User")
    assert len(recorder.sent) == 1, "the first attempt went out in time; its retry, due after the deadline, did not"


async def test_a_closed_fence_refuses_and_counts() -> None:
    fence = WriteFence()
    policy = FencePolicy(fence)
    fence.close()
    with pytest.raises(FenceExpired):
        await policy.send(None)  # type: ignore[arg-type]  # refused before the request is looked at
    assert fence.refused == 1
    fence.open()
    assert fence.until is None


def test_the_user_agent_names_the_replica() -> None:
    assert user_agent({"POD_NAME": "synapse-scim-7d9f-abcde"}).endswith(" pod/synapse-scim-7d9f-abcde")
    assert " pod/" not in user_agent({})
    assert user_agent({}).startswith("synapse-scim/")


async def test_the_user_agent_is_sent(monkeypatch, fence) -> None:
    monkeypatch.setenv("POD_NAME", "replica-b")
    recorder = Recorder()
    await client(recorder).put_assignment("a", ROLE, PRINCIPAL, SCOPE, "User")
    assert recorder.sent[0].headers["User-Agent"].startswith("synapse-scim/0.1.0 pod/replica-b ")

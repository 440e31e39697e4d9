"""A workspace's sync loop (controller/loop.py) in process, as kopf's daemon runs it: the operator's
memo (support: FakeKube for Kubernetes, the real SDKs against the sandbox, the real tenant watch
polling on its own) and a stop flag like the one kopf hands the daemon.

Issue 13, finding 1: a removal that a Graph storm kept unknown must be made within about one poll
interval of the storm's end, by retrying the failed sync, not at the next full sync (syncInterval,
10 minutes by default)."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

import pytest
from kopf._cogs.aiokits.aioenums import FlagSetter  # what kopf builds a daemon's `stopped` from
from kubernetes.client.exceptions import ApiException

from support.controller import FakeKube, SyncResult, binding_body, condition, workspace_body
from support.sandbox import holders, last_seq, object_id
from synapse_scim import metrics
from synapse_scim.adapters.connections import Clients
from synapse_scim.adapters.directory import DirectoryError
from synapse_scim.adapters.kube import BINDINGS
from synapse_scim.adapters.workspace import WorkspaceError
from synapse_scim.controller.loop import Retry, retry_delay, run_workspace_loop
from synapse_scim.controller.settings import Settings
from synapse_scim.core.model import Problem
from synapse_scim.core.reasons import Reason
from synapse_scim_sandbox import Sandbox

CONTRIBUTOR = "Synapse Contributor"
ENGINEERS = [{"kind": "Group", "name": "Data Engineers"}]
POLL = 5.0  # the tenant watch's poll interval here (30 s by default)
LOG = logging.getLogger("test.loop")


@pytest.fixture
def settings() -> Settings:
    return Settings(directory_poll_interval=POLL)


@asynccontextmanager
async def workspace_loop(memo: Any, ns: str, name: str = "analytics") -> AsyncIterator[asyncio.Task[None]]:
    """The workspace's loop as kopf's daemon runs it; stopped (as kopf stops it) on the way out."""
    stopper: FlagSetter[Any] = FlagSetter()
    body = memo.kube.workspaces[(ns, name)]
    task = asyncio.create_task(run_workspace_loop(stopper.async_waiter, ns, name, body, memo, LOG))
    try:
        yield task
    finally:
        stopper.set()
        await asyncio.wait_for(task, 30)


async def until(check: Callable[[], Awaitable[bool]], what: str, limit: float) -> float:
    """Seconds until `check` holds (AssertionError naming `what` after `limit` seconds)."""
    started = time.monotonic()
    while not await check():
        assert time.monotonic() - started < limit, f"not within {limit:g} s: {what}"
        await asyncio.sleep(0.1)
    return time.monotonic() - started


def syncs(ns: str, kind: str) -> float:
    labels = {"namespace": ns, "workspace": "analytics", "kind": kind}
    return metrics.REGISTRY.get_sample_value("synapse_scim_syncs_total", labels) or 0.0


async def test_a_removal_a_graph_storm_kept_unknown_is_made_within_a_poll_interval_of_its_end(
    sb: Sandbox, memo: Any, ns: str, events: Any
):
    kube: FakeKube = memo.kube
    kube.add(workspace_body(sb, ns))  # syncInterval: the default 10m, far beyond this test
    kube.add(binding_body(ns, "engineers", [CONTRIBUTOR], ENGINEERS))
    bob = object_id(sb, "bob@contoso.com")

    def ready() -> dict[str, Any]:
        return condition(kube.status(BINDINGS, ns, "engineers"))

    async with workspace_loop(memo, ns) as loop:

        async def in_sync() -> bool:
            return bool(kube.status(BINDINGS, ns, "engineers")) and ready()["reason"] == "InSync"

        await until(in_sync, "the first sync grants Data Engineers", 30)
        assert bob in await holders(sb, CONTRIBUTOR)
        full_syncs = syncs(ns, "full")

        # A storm of 429s on every membership read, and bob leaves Data Engineers during it.
        await sb.admin.inject_fault(
            {"service": "graph", "operation": "transitiveMembers", "status": 429, "retry_after": 1}
        )
        await sb.admin.remove_member("Data Engineers", "bob@contoso.com")

        # The watch sees the change and pokes; the sync cannot read the group: bob keeps his role
        # (the binding's wishes are unknown) and the status says Reconciling.
        async def failed() -> bool:
            return ready()["reason"] == "DirectoryReadFailed"

        await until(failed, "the sync during the storm fails on the group's read", 60)
        assert not loop.done()
        assert ready()["status"] == "False"
        reconciling = condition(kube.status(BINDINGS, ns, "engineers"), "Reconciling")
        assert (reconciling["status"], reconciling["reason"]) == ("True", "DirectoryReadFailed")
        assert bob in await holders(sb, CONTRIBUTOR), "nothing is revoked on a failed read"

        # The storm ends: the retry reads the group again and revokes bob's role, without a full sync.
        since = await last_seq(sb)
        await sb.admin.clear_faults()

        async def revoked() -> bool:
            return bob not in await holders(sb, CONTRIBUTOR)

        took = await until(revoked, "bob's role revoked after the storm", 60)
        assert took <= POLL + 5, f"revoked {took:.1f} s after the storm ended (poll interval {POLL:g} s)"
        await until(in_sync, "the binding InSync again", 10)
        log = await sb.admin.request_log(since=since)
        reads = [e for e in log if e["operation"] == "transitiveMembers"]
        assert reads and all(e["status"] == 200 for e in reads), "the failed read is made again, from Graph"
        assert not [e for e in log if e["operation"] == "listRoleAssignments"], "no full re-listing of Synapse"
        assert syncs(ns, "full") == full_syncs


def test_the_backoff_doubles_up_to_its_cap_and_never_comes_before_a_retry_after():
    assert [retry_delay(n, None, 30.0) for n in range(1, 8)] == [2.0, 4.0, 8.0, 16.0, 30.0, 30.0, 30.0]
    assert retry_delay(1, 7.0, 30.0) == 7.0
    assert retry_delay(9, 120.0, 30.0) == 120.0, "the service's Retry-After wins over the cap"
    assert retry_delay(1, None, 1.0) == 1.0, "a poll interval shorter than the first step caps it"
    assert retry_delay(10_000, None, 60.0) == 60.0


def failed(*problems: Problem, workspace: bool = False, writes: bool = False) -> SyncResult:
    if workspace:
        return SyncResult({}, {}, problem=problems[0])
    return SyncResult({}, {}, **{"write_problems" if writes else "read_problems": problems})


def test_a_retry_reads_again_only_what_the_failed_sync_read():
    listing = Problem(Reason.WORKSPACE_READ_FAILED, "listing role assignments: HTTP 429", retry_after=45.0)
    members = Problem(Reason.DIRECTORY_READ_FAILED, "reading members of group 'Data Engineers' failed: 429")
    throttled = Problem(Reason.THROTTLED, "revoking assignment 1: Synapse kept answering 429")
    retry = Retry()

    # A full sync whose listing failed: the retry lists again, no sooner than the Retry-After.
    delay = retry.after(failed(listing, workspace=True), full=True, directory=True, cap=30.0)
    assert delay == 45.0 and (retry.failures, retry.full, retry.directory) == (1, True, True)
    # An incremental sync whose group read failed: an incremental retry, 4 s later (less jitter).
    delay = retry.after(failed(members), full=False, directory=False, cap=30.0)
    assert delay is not None and 3.6 <= delay <= 4.0
    assert (retry.failures, retry.full, retry.directory) == (2, False, False)
    # A full sync whose listing worked but a group read did not: the directory fresh again, not Synapse.
    retry.after(failed(members), full=True, directory=True, cap=30.0)
    assert (retry.failures, retry.full, retry.directory) == (3, False, True)
    # A write Synapse kept throttling: retried, reading nothing fresh; the backoff stops at the cap.
    for _ in range(3):
        delay = retry.after(failed(throttled, writes=True), full=True, directory=False, cap=30.0)
    assert delay is not None and 27.0 <= delay <= 30.0 and (retry.full, retry.directory) == (False, False)
    assert time.monotonic() < retry.at <= time.monotonic() + 30.0

    # A problem a person must fix is not retried (Stalled), and a success ends the retries.
    assert (
        retry.after(failed(Problem(Reason.SUBJECT_NOT_FOUND, "no group")), full=False, directory=False, cap=30.0)
        is None
    )
    assert (retry.failures, retry.at, retry.full, retry.directory) == (0, float("inf"), False, False)
    retry.after(failed(members), full=False, directory=False, cap=30.0)
    assert retry.after(SyncResult({}, {}), full=False, directory=False, cap=30.0) is None and retry.failures == 0
    assert retry.after(None, full=False, directory=False, cap=30.0) is None, "the workspace is gone"


def test_a_sign_out_is_retried_once_soon_even_when_its_reason_stalls():
    """A refused token is cured by the fresh one the next sync asks for: one prompt retry although
    DirectoryAccessDenied stalls; refused again right after, it is the credential: no more retries."""
    refused = Problem(Reason.DIRECTORY_ACCESS_DENIED, "Graph refused the operator's token (401)")
    signed_out = SyncResult({}, {}, read_problems=(refused,), signed_out=True)
    retry = Retry()
    delay = retry.after(signed_out, full=False, directory=True, cap=30.0)
    assert delay is not None and delay <= 2.0 and retry.directory
    assert retry.after(signed_out, full=False, directory=True, cap=30.0) is None, "refused again: stalled"
    assert retry.at == float("inf")
    # A sync without a sign-out in between: the next one is a first again.
    assert retry.after(SyncResult({}, {}), full=False, directory=False, cap=30.0) is None
    assert retry.after(signed_out, full=False, directory=True, cap=30.0) is not None
    # Not signed out, the same stalling reason is not retried.
    assert Retry().after(SyncResult({}, {}, read_problems=(refused,)), full=False, directory=True, cap=30.0) is None


async def test_a_throttled_read_carries_the_retry_after_the_service_sent(sb: Sandbox, clients: Clients):
    """What the retry waits for, at least: the Retry-After of the last 429, after the SDKs' own retries."""
    group = await clients.directory.resolve("Group", name="Data Engineers")
    for service, operation in (("graph", "transitiveMembers"), ("synapse", "listRoleAssignments")):
        await sb.admin.inject_fault({"service": service, "operation": operation, "status": 429, "retry_after": 1})
    with pytest.raises(DirectoryError) as graph:
        await clients.directory.expand(group)
    assert (graph.value.reason, graph.value.retry_after) == (Reason.DIRECTORY_READ_FAILED, 1.0)
    with pytest.raises(WorkspaceError) as synapse:
        await clients.workspace.assignments()
    assert (synapse.value.reason, synapse.value.retry_after) == (Reason.WORKSPACE_READ_FAILED, 1.0)


async def test_a_status_patch_the_api_server_refuses_is_retried_without_ending_the_loop(
    sb: Sandbox, memo: Any, ns: str, events: Any
):
    """Issue 17 (Kubernetes-side faults): the sync's status write answered 409 Conflict (or cut by a
    timeout) raised out of run_sync and ended the loop; kopf starts a failed daemon again only after
    60 s, with the binding's status unwritten (Reconciling, or a stale Ready) and its pokes unanswered
    meanwhile. The loop retries the sync instead, and nothing is revoked on the way."""
    kube: FakeKube = memo.kube
    kube.add(workspace_body(sb, ns))
    kube.add(binding_body(ns, "engineers", [CONTRIBUTOR], ENGINEERS))
    refused: list[dict[str, Any]] = []
    patch_status = kube.patch_status

    async def conflicting(plural: str, namespace: str, name: str, old: Any, new: Any) -> None:
        # The first status write that reports the binding Ready: refused, as a conflict would be.
        if plural == BINDINGS and not refused and condition(dict(new))["status"] == "True":
            refused.append(dict(new))
            raise ApiException(status=409, reason="Conflict")
        await patch_status(plural, namespace, name, old, new)

    kube.patch_status = conflicting  # type: ignore[method-assign]
    since = await last_seq(sb)
    async with workspace_loop(memo, ns) as loop:

        async def in_sync() -> bool:
            status = kube.status(BINDINGS, ns, "engineers")
            return bool(status) and condition(status)["reason"] == "InSync"

        async def refused_once() -> bool:
            return bool(refused) or loop.done()

        await until(refused_once, "the binding's Ready status written (and refused)", 30)
        await until(lambda: _alive_and(loop, in_sync), "the refused status written again by a retry", 30)
        assert not loop.done(), "the loop ended on the refused status patch"
    log = await sb.admin.request_log(since=since)
    assert not [e for e in log if e["operation"] == "deleteRoleAssignment"], "a refused status patch revoked"
    assert object_id(sb, "bob@contoso.com") in await holders(sb, CONTRIBUTOR)


async def _alive_and(loop: asyncio.Task[None], check: Callable[[], Awaitable[bool]]) -> bool:
    if loop.done():
        raise AssertionError(f"the loop ended: {loop.exception()!r}")
    return await check()

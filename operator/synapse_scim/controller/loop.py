"""A SynapseWorkspace's sync loop: when to sync, and how much to read again.

It syncs at start (everything read fresh), when poked (a binding changed, or the tenant's change
watch saw one of its groups change: incremental, through the caches), and every spec.syncInterval:
the safety net, where Synapse (which has no change feed) is listed again, and the directory is read
again once per SYNAPSE_SCIM_DIRECTORY_RESYNC_INTERVAL.

A sync that failed in a way a later try can cure (a read or write that was throttled, timed out or
got a 5xx: the status says Reconciling) is tried again with backoff: 2 s, 4 s, 8 s ... up to the
directory poll interval (at most 60 s), never sooner than the Retry-After the failure carried, until
a sync succeeds. A leaver whose removal a Graph storm kept unknown thus loses access within about one
poll interval of the storm's end, not at the next safety net. The retry reads again only what the
failed sync read: it lists Synapse again only if the failed sync was a full one and failed on
Synapse's side, and it reads the directory fresh only if the failed sync did. A read that failed is
never stored in the tenant cache, so even an incremental retry reads it from Graph again.

A sync that ended with Azure refusing a token (expired early, revoked: its credential is dropped) is
tried again once at once with a fresh one, even when its reason would stall; refused again, it stalls.

A sync the Kubernetes API failed (a status patch answered 409 Conflict, or cut or answered 504 by a
timeout; a read of the objects that failed) raises out of run_sync: the loop logs it and retries the
same way, reading again at least what that sync was to read. It never ends the loop: kopf would start
it again only after its daemon backoff (60 s), with the sync's statuses unwritten meanwhile.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
import time
from dataclasses import dataclass
from typing import Any

import kopf

from synapse_scim import metrics
from synapse_scim.controller.credential_guard import protect_credential
from synapse_scim.controller.reconcile import run_sync
from synapse_scim.controller.settings import Settings, Strategy
from synapse_scim.controller.sync import SyncMemory, SyncResult
from synapse_scim.core.durations import parse_duration

RETRY_FIRST = 2.0  # seconds before the first retry of a failed sync; doubled at each failure in a row
RETRY_MAX = 60.0  # the longest backoff (the directory poll interval, when that is shorter)


def retry_delay(failures: int, retry_after: float | None, cap: float) -> float:
    """Seconds before retrying a sync that failed ``failures`` times in a row: RETRY_FIRST doubled at
    each failure, at most ``cap``, and never less than the Retry-After the failure carried."""
    backoff = min(cap, RETRY_FIRST * 2.0 ** min(max(failures, 1) - 1, 30))
    return max(backoff, retry_after or 0.0)


@dataclass
class Retry:
    """The retry a failed sync leaves pending: when, and what it reads again."""

    failures: int = 0  # failed syncs in a row
    at: float = float("inf")  # time.monotonic() of the retry; inf when none is pending
    full: bool = False  # list Synapse's assignments again (a full sync failed on Synapse's side)
    directory: bool = False  # read the whole directory fresh again (the failed sync did, and it failed)
    signed_out: bool = False  # the last sync ended with Azure refusing a token (its credential dropped)

    def after(self, result: SyncResult | None, *, full: bool, directory: bool, cap: float) -> float | None:
        """Record how a sync ended; the seconds until its retry, or None when no retry is due."""
        # A refused token (expired early, revoked) is cured by the fresh one the next sync asks for: one
        # prompt retry, whatever the reason's kind. Refused again right after, it is the credential or
        # its permissions: stalled, as the status says, until a change or the next full sync.
        again = result is not None and result.signed_out and not self.signed_out
        self.signed_out = result is not None and result.signed_out
        if result is None or not (result.transient() or again):
            self.failures, self.at, self.full, self.directory = 0, float("inf"), False, False
            return None
        self.failures += 1
        self.full = full and result.problem is not None
        # A fresh read of the directory that failed halfway leaves the older cache entries of what it
        # could not read: the retry must not trust them, so it reads fresh again.
        self.directory = directory and (result.problem is not None or bool(result.read_problems))
        # Jitter below the backoff, never below a Retry-After: workspaces that one storm failed
        # together do not all come back in the same instant.
        delay = retry_delay(self.failures, None, cap) * random.uniform(0.9, 1.0)
        delay = max(delay, result.retry_after() or 0.0)
        self.at = time.monotonic() + delay
        return delay

    def failed(self, *, full: bool, directory: bool, cap: float) -> float:
        """Record a sync that raised (the Kubernetes API failed it); the seconds until its retry, which
        reads again at least what the failed sync was to read (it may have stopped before any read)."""
        self.failures += 1
        self.full = self.full or full
        self.directory = self.directory or directory
        delay = retry_delay(self.failures, None, cap) * random.uniform(0.9, 1.0)
        self.at = time.monotonic() + delay
        return delay


async def run_workspace_loop(
    stopped: kopf.DaemonStopped,
    namespace: str,
    name: str,
    body: kopf.Body,
    memo: kopf.Memo,
    logger: logging.Logger | logging.LoggerAdapter[Any],
) -> None:
    key = (namespace, name)
    settings: Settings = memo.settings
    memo.registry.loop_started(key)
    trigger = memo.registry.trigger(key)
    trigger.set()  # first sync at once
    last_full = last_directory = -float("inf")
    retry = Retry()
    memory = SyncMemory()  # what one sync keeps for the next (controller/sync.py)
    protected: str | None = None  # the credential Secret this loop keeps its finalizer on
    # kopf sets `stopped` when the workspace is deleted or the operator exits. The wait below ends on
    # it too: a loop that only checked it between waits would sleep on until kopf cancels it.
    stopping = asyncio.ensure_future(stopped.wait())
    # The alert on a workspace no sync succeeded for counts from here until the first success.
    metrics.LOOP_STARTED.labels(namespace, name).set(time.time())
    try:
        while not stopped:
            # Read each time: a changed spec.syncInterval applies from the last full sync, not the next.
            interval = sync_interval(body.get("spec", {}))
            if settings.strategy is Strategy.NAIVE:
                interval = min(interval, settings.directory_poll_interval)
            metrics.SYNC_INTERVAL.labels(namespace, name).set(interval)
            poked = asyncio.ensure_future(trigger.wait())
            try:
                await asyncio.wait(
                    (poked, stopping),
                    timeout=max(0.0, min(last_full + interval, retry.at) - time.monotonic()),
                    return_when=asyncio.FIRST_COMPLETED,
                )
            finally:
                poked.cancel()
            if stopped:
                break
            trigger.clear()
            now = time.monotonic()
            due = now >= last_full + interval
            # A sync while a retry is pending (poked before it was due) reads at least what the retry would.
            full = due or retry.full
            directory = retry.directory or (
                due
                and (settings.strategy is Strategy.NAIVE or now >= last_directory + settings.directory_resync_interval)
            )
            if full:
                memory = SyncMemory()  # the safety net: a full sync recomputes everything from scratch
            cap = min(RETRY_MAX, settings.directory_poll_interval)
            raised: Exception | None = None
            try:
                # Before the sync: a Secret the namespace controller may delete must already carry the
                # finalizer (none can be added once its deletion started); looked at again at every full
                # sync.
                protected = await protect_credential(
                    memo.kube, namespace, body.get("spec"), protected, logger, recheck=full
                )
                result = await run_sync(key, memo, logger, full=full, fresh_directory=directory, memory=memory)
            except Exception as exc:
                # The Kubernetes API failed the sync (a status patch answered 409 or cut by a timeout, a
                # read that failed): Azure's failures are status, never exceptions. Retried with backoff
                # like a transient failure, reading again what this sync would have read. Let out, it
                # would end the loop, and kopf would start it again only after its daemon backoff (60 s),
                # with this sync's statuses unwritten meanwhile and its pokes unanswered.
                result, raised = None, exc
            if full:
                last_full = now
            if directory:
                last_directory = now
            if raised is not None:
                backoff = retry.failed(full=full, directory=directory, cap=cap)
                logger.warning(
                    "sync of %s/%s failed on the Kubernetes API (%s: %s): retrying in %.1f s (%d failed in a row)",
                    namespace,
                    name,
                    type(raised).__name__,
                    describe(raised),
                    backoff,
                    retry.failures,
                )
                continue
            delay = retry.after(result, full=full, directory=directory, cap=cap)
            if delay is not None and result is not None:
                first = (*result.transient(), *result.problems())[0]  # a sign-out's may not be transient
                logger.info(
                    "sync of %s/%s failed (%s: %s): retrying in %.1f s (%d failed in a row)",
                    namespace,
                    name,
                    first.reason,
                    first.message,
                    delay,
                    retry.failures,
                )
    finally:
        stopping.cancel()
        memo.registry.loop_ended(key)
        forget_workspace(memo, key)
        await memo.connections.drop(namespace, name)


def describe(exc: Exception) -> str:
    """One line for a failure of the Kubernetes API: an ApiException's status, reason and the message
    of its Status body (which names the resource and, for a 403, the verb), not its headers."""
    status = getattr(exc, "status", None)
    body = getattr(exc, "body", None)
    if status is not None and body:
        try:
            message = json.loads(body).get("message")
        except (ValueError, AttributeError):
            message = None
        if message:
            return " ".join(f"({status}) {getattr(exc, 'reason', '')}: {message}".split())[:1000]
    return " ".join(str(exc).split())[:1000]


def forget_workspace(memo: kopf.Memo, key: tuple[str, str]) -> None:
    """Drop what the process keeps for a workspace's syncs (the loop's end; a deletion's end)."""
    memo.tenants.unsubscribe(key)
    if memo.get("scim_pokes") is not None:
        memo.scim_pokes.unsubscribe(key)
    if memo.get("scim_prefetch") is not None:
        memo.scim_prefetch.forget(key)
    metrics.forget_workspace(*key)


def sync_interval(spec: Any) -> float:
    """spec.syncInterval in seconds (10m when unset; the CRD's pattern keeps a bad value out)."""
    try:
        return parse_duration(spec.get("syncInterval") or "10m")
    except ValueError:
        return 600.0

"""A SynapseWorkspace's sync loop: when to sync, and how much to read again.

It syncs at start (everything read fresh), when poked (a binding changed, or the tenant's change
watch saw one of its groups change: incremental, through the caches), and every spec.syncInterval:
the safety net, where Synapse (which has no change feed) is listed again, and the directory is read
again once per SYNAPSE_SCIM_DIRECTORY_RESYNC_INTERVAL.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

import kopf

from synapse_scim.controller.reconcile import run_sync
from synapse_scim.controller.settings import Settings, Strategy
from synapse_scim.core.durations import parse_duration


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
    memo.registry.running.add(key)
    trigger = memo.registry.trigger(key)
    trigger.set()  # first sync at once
    last_full = last_directory = -float("inf")
    # kopf sets `stopped` when the workspace is deleted or the operator exits. The wait below ends on
    # it too: a loop that only checked it between waits would sleep on until kopf cancels it.
    stopping = asyncio.ensure_future(stopped.wait())
    try:
        while not stopped:
            # Read each time: a changed spec.syncInterval applies from the last full sync, not the next.
            interval = sync_interval(body.get("spec", {}))
            if settings.strategy is Strategy.NAIVE:
                interval = min(interval, settings.directory_poll_interval)
            poked = asyncio.ensure_future(trigger.wait())
            try:
                await asyncio.wait(
                    (poked, stopping),
                    timeout=max(0.0, last_full + interval - time.monotonic()),
                    return_when=asyncio.FIRST_COMPLETED,
                )
            finally:
                poked.cancel()
            if stopped:
                break
            trigger.clear()
            now = time.monotonic()
            full = now >= last_full + interval
            directory = full and (
                settings.strategy is Strategy.NAIVE or now >= last_directory + settings.directory_resync_interval
            )
            await run_sync(key, memo, logger, full=full, fresh_directory=directory)
            if full:
                last_full = now
            if directory:
                last_directory = now
    finally:
        stopping.cancel()
        memo.registry.running.discard(key)
        memo.tenants.unsubscribe(key)
        await memo.connections.drop(namespace, name)


def sync_interval(spec: Any) -> float:
    """spec.syncInterval in seconds (10m when unset; the CRD's pattern keeps a bad value out)."""
    try:
        return parse_duration(spec.get("syncInterval") or "10m")
    except ValueError:
        return 600.0

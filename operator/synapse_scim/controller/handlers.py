"""kopf glue only: which event triggers what.

- A SynapseWorkspace runs one daemon: its sync loop (loop.py), which syncs at start, every
  spec.syncInterval and when poked; one sync is reconcile.py around sync.py; the decisions are the
  core's planner (core/planner.py).
- A SynapseRoleBinding's create/update/resume pokes its workspace's loop; its deletion waits (through
  kopf's finalizer) until the loop has revoked what it alone granted (or orphaned it).
- A SynapseWorkspace's deletion waits until no binding names it, running its syncs in place of its
  stopped loop (deletion.py), so that `kubectl delete namespace` revokes what Delete bindings granted.
"""

from __future__ import annotations

import datetime
import logging
from typing import Any

import kopf

from synapse_scim import metrics
from synapse_scim.adapters.kube import BINDINGS, GROUP, VERSION, WORKSPACES
from synapse_scim.controller import runtime
from synapse_scim.controller.deletion import finish_deletion
from synapse_scim.controller.loop import run_workspace_loop
from synapse_scim.core.model import BindingKey
from synapse_scim.core.status import missing_workspace_status, now_iso


@kopf.on.startup()
async def startup(settings: kopf.OperatorSettings, memo: Any, **_: Any) -> None:
    runtime.configure(settings)
    await runtime.start(memo)


@kopf.on.cleanup()
async def cleanup(memo: Any, **_: Any) -> None:
    await runtime.stop(memo)


@kopf.on.create(GROUP, VERSION, BINDINGS)
@kopf.on.update(GROUP, VERSION, BINDINGS)
@kopf.on.resume(GROUP, VERSION, BINDINGS)
async def binding_changed(
    namespace: str | None, spec: kopf.Spec, status: kopf.Status, meta: kopf.Meta, memo: Any, patch: kopf.Patch, **_: Any
) -> None:
    namespace = _namespaced(namespace)
    ws = spec["workspaceRef"]["name"]
    if (namespace, ws) in memo.registry.running or await memo.kube.get_workspace(namespace, ws):
        memo.registry.poke((namespace, ws))
        return
    generation = int(meta.get("generation") or 0)
    patch.status.update(missing_workspace_status(namespace, ws, generation, status, now_iso()))


@kopf.on.delete(GROUP, VERSION, BINDINGS)
async def binding_deleted(namespace: str | None, name: str, spec: kopf.Spec, memo: Any, **_: Any) -> None:
    namespace = _namespaced(namespace)
    ws = spec["workspaceRef"]["name"]
    if (namespace, ws) not in memo.registry.running and not await memo.kube.get_workspace(namespace, ws):
        metrics.forget_binding(namespace, name)
        return  # no workspace, nothing it could have granted through us is reachable
    if not await memo.registry.released(BindingKey(namespace, name), (namespace, ws), memo.settings.finalizer_wait):
        raise kopf.TemporaryError(
            f"revoking what this binding granted is not finished (see SynapseWorkspace {ws} status)", delay=10
        )


@kopf.on.delete(GROUP, VERSION, WORKSPACES)
async def workspace_deleted(
    namespace: str | None,
    name: str,
    memo: Any,
    started: datetime.datetime,
    logger: logging.Logger | logging.LoggerAdapter[Any],
    **_: Any,
) -> None:
    await finish_deletion(
        (_namespaced(namespace), name),
        memo,
        logger,
        # kopf's `started`: the first attempt of this handler, kept across its retries.
        elapsed=(datetime.datetime.now(datetime.UTC) - started).total_seconds(),
        loop_gone=LOOP_STOP_GRACE + LOOP_CANCEL_WAIT,
    )


@kopf.on.update(GROUP, VERSION, WORKSPACES)
async def workspace_changed(namespace: str | None, name: str, memo: Any, **_: Any) -> None:
    memo.registry.poke((_namespaced(namespace), name))  # spec, or the approval annotation


# How kopf stops a loop (workspace deleted, operator exiting): it sets `stopped`, waits
# LOOP_STOP_GRACE for the loop to return (at once when it is waiting; after its sync when one is
# running), then cancels it and waits LOOP_CANCEL_WAIT more. Without a grace period kopf cancels
# the loop right after setting `stopped` ("Daemon 'workspace_loop' is cancelled. Will escalate.").
# Both together stay well within the chart's terminationGracePeriodSeconds (60 s).
LOOP_STOP_GRACE = 20.0
LOOP_CANCEL_WAIT = 10.0


@kopf.daemon(GROUP, VERSION, WORKSPACES, cancellation_backoff=LOOP_STOP_GRACE, cancellation_timeout=LOOP_CANCEL_WAIT)
async def workspace_loop(
    stopped: kopf.DaemonStopped,
    namespace: str | None,
    name: str,
    body: kopf.Body,
    memo: Any,
    logger: logging.Logger | logging.LoggerAdapter[Any],
    **_: Any,
) -> None:
    await run_workspace_loop(stopped, _namespaced(namespace), name, body, memo, logger)


def _namespaced(namespace: str | None) -> str:
    # Both kinds are namespaced (the CRDs say so): kopf's None is for cluster-scoped resources.
    assert namespace is not None
    return namespace

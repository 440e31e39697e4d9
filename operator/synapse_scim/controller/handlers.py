"""kopf glue only: which event triggers what. The work is in sync.py, the decisions in planner.py.

- A SynapseWorkspace runs one daemon: its sync loop. It syncs on start (everything read fresh), every
  spec.syncInterval (Synapse assignments listed again; the directory too once per
  SYNAPSE_SCIM_DIRECTORY_RESYNC_INTERVAL), and when poked (incremental: caches) by a binding change or
  by its tenant's change watch (tenant.py: Graph delta rounds per tenant per poll interval).
- A SynapseRoleBinding's create/update/resume pokes its workspace's loop; its deletion waits (through
  kopf's finalizer) until the loop has revoked what it alone granted (or orphaned it).
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from typing import Any

import kopf

from synapse_scim import metrics
from synapse_scim.adapters.connections import Connections
from synapse_scim.adapters.credentials import CredentialError
from synapse_scim.adapters.directory import Directory
from synapse_scim.adapters.kube import BINDINGS, GROUP, VERSION, WORKSPACES, Kube, api_client
from synapse_scim.controller.registry import Registry
from synapse_scim.controller.settings import Settings
from synapse_scim.controller.sync import BindingObject, SyncResult, WorkspaceObject, sync_workspace, workspace_failure
from synapse_scim.controller.tenant import Tenants, TenantWatch
from synapse_scim.core.durations import parse_duration
from synapse_scim.core.model import BindingKey, Problem
from synapse_scim.core.status import binding_conditions, binding_status, now_iso, ready_conditions, stamp
from synapse_scim.core.status import conditions as make_conditions

log = logging.getLogger("synapse_scim.handlers")


@kopf.on.startup()
async def startup(settings: kopf.OperatorSettings, memo: kopf.Memo, **_: Any) -> None:
    settings.persistence.finalizer = "synapse-scim.io/finalizer"
    # A prefix of kopf's own: kopf ignores changes to annotations under it, and the approval
    # annotation (synapse-scim.io/approve-removals) must be seen as a change.
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix="kopf.synapse-scim.io")
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(prefix="kopf.synapse-scim.io")
    settings.posting.level = logging.WARNING  # events are posted explicitly, not for every log line
    settings.watching.server_timeout = 300
    if os.environ.get("SYNAPSE_SCIM_WATCH_NAMESPACES"):
        # Namespaced installs have no cluster-wide read on namespaces or CRDs: without this, kopf
        # retries those 403s for about a minute before it handles the first object.
        settings.scanning.disabled = True
    memo.settings = Settings.from_env()
    memo.kube = Kube(api_client())
    memo.connections = Connections(memo.kube.read_secret, memo.settings.write_concurrency)
    memo.registry = Registry()
    memo.tenants = Tenants(memo.settings.directory_poll_interval)
    port = int(os.environ.get("SYNAPSE_SCIM_METRICS_PORT", "9090"))
    memo.metrics_server = await metrics.serve(port) if port else None


@kopf.on.cleanup()
async def cleanup(memo: kopf.Memo, **_: Any) -> None:
    await memo.tenants.close()
    await memo.connections.close()
    if memo.get("metrics_server"):
        await memo.metrics_server.cleanup()


# -- bindings ----------------------------------------------------------------------------------


@kopf.on.create(GROUP, VERSION, BINDINGS)
@kopf.on.update(GROUP, VERSION, BINDINGS)
@kopf.on.resume(GROUP, VERSION, BINDINGS)
async def binding_changed(
    namespace: str, name: str, spec: Any, status: Any, meta: Any, memo: kopf.Memo, patch: kopf.Patch, **_: Any
) -> None:
    ws = spec["workspaceRef"]["name"]
    if (namespace, ws) in memo.registry.running or await memo.kube.get_workspace(namespace, ws):
        memo.registry.poke((namespace, ws))
        return
    message = (
        f"SynapseWorkspace {namespace}/{ws} does not exist: create it, or fix spec.workspaceRef.name "
        "(nothing is granted or revoked until it exists)"
    )
    generation = int(meta.get("generation") or 0)
    patch.status["observedGeneration"] = generation
    patch.status["conditions"] = make_conditions(
        ready_conditions(ready=False, reason="WorkspaceNotFound", message=message, stalled=True),
        (status or {}).get("conditions"),
        generation,
        now_iso(),
    )


@kopf.on.delete(GROUP, VERSION, BINDINGS)
async def binding_deleted(namespace: str, name: str, spec: Any, memo: kopf.Memo, **_: Any) -> None:
    ws = spec["workspaceRef"]["name"]
    if (namespace, ws) not in memo.registry.running and not await memo.kube.get_workspace(namespace, ws):
        return  # no workspace, nothing it could have granted through us is reachable
    released = memo.registry.waiting_release(BindingKey(namespace, name))
    memo.registry.poke((namespace, ws))
    try:
        await asyncio.wait_for(asyncio.shield(released), timeout=memo.settings.finalizer_wait)
    except TimeoutError:
        raise kopf.TemporaryError(
            f"revoking what this binding granted is not finished (see SynapseWorkspace {ws} status)", delay=10
        ) from None


# -- workspaces --------------------------------------------------------------------------------


@kopf.on.update(GROUP, VERSION, WORKSPACES)
async def workspace_changed(namespace: str, name: str, memo: kopf.Memo, **_: Any) -> None:
    memo.registry.poke((namespace, name))  # spec, or the approval annotation


@kopf.daemon(GROUP, VERSION, WORKSPACES, cancellation_timeout=30)
async def workspace_loop(
    stopped: kopf.DaemonStopped,
    namespace: str,
    name: str,
    body: kopf.Body,
    memo: kopf.Memo,
    logger: logging.Logger,
    **_: Any,
) -> None:
    """Syncs on start, when poked (a binding changed, or the tenant's change watch saw one of its
    groups change: incremental), and every spec.syncInterval (the safety net: Synapse re-listed, and
    the directory re-read when its own resync interval has passed)."""
    key = (namespace, name)
    settings: Settings = memo.settings
    memo.registry.running.add(key)
    trigger = memo.registry.trigger(key)
    trigger.set()  # first sync at once
    last_full = last_directory = -float("inf")
    try:
        while not stopped:
            # Read each time: a changed spec.syncInterval applies from the last full sync, not the next.
            interval = _sync_interval(body.get("spec", {}))
            if settings.strategy == "naive":
                interval = min(interval, settings.directory_poll_interval)
            try:
                await asyncio.wait_for(trigger.wait(), timeout=max(0.0, last_full + interval - time.monotonic()))
            except TimeoutError:
                pass
            if stopped:
                break
            trigger.clear()
            now = time.monotonic()
            full = now >= last_full + interval
            directory = full and (
                settings.strategy == "naive" or now >= last_directory + settings.directory_resync_interval
            )
            await run_sync(key, memo, logger, full=full, fresh_directory=directory)
            if full:
                last_full = now
            if directory:
                last_directory = now
    finally:
        memo.registry.running.discard(key)
        memo.tenants.unsubscribe(key)
        await memo.connections.drop(namespace, name)


def _sync_interval(spec: Any) -> float:
    try:
        return parse_duration(spec.get("syncInterval") or "10m")
    except ValueError:
        return 600.0


_TOKEN_REFUSED = frozenset({"AuthenticationFailed", "DirectoryAccessDenied"})


async def run_sync(
    key: tuple[str, str],
    memo: kopf.Memo,
    logger: logging.Logger,
    *,
    full: bool = True,
    fresh_directory: bool | None = None,
) -> SyncResult | None:
    namespace, name = key
    started = time.monotonic()
    kube: Kube = memo.kube
    ws_body = await kube.get_workspace(namespace, name)
    if ws_body is None:
        return None
    ws = WorkspaceObject.from_body(ws_body)
    bindings = [BindingObject.from_body(b) for b in await kube.list_bindings(namespace, name)]
    when = now_iso()
    settings: Settings = memo.settings
    watch: TenantWatch | None = None
    try:
        clients = await memo.connections.get(namespace, name, dict(ws.spec))
        if settings.strategy == "delta":
            spec = dict(ws.spec)

            async def connect() -> Directory:
                return (await memo.connections.get(namespace, name, spec)).directory

            watch = await memo.tenants.subscribe(
                clients.tenant, key, clients.directory, lambda: memo.registry.poke(key), connect
            )
        trusted = watch is not None and watch.trusted
        directory = not trusted or (full if fresh_directory is None else fresh_directory)
        kind = "full" if directory else "assignments" if full else "incremental"
        metrics.SYNCS.labels(namespace, name, kind).inc()
        result = await sync_workspace(
            ws,
            bindings,
            clients.directory,
            clients.workspace,
            when=when,
            read_concurrency=settings.read_concurrency,
            cache=watch.cache if watch else None,
            fresh=full or not trusted,
            fresh_directory=directory,
            shared_reads=settings.strategy != "naive",
        )
        metrics.WRITE_LIMIT.labels(namespace, name).set(int(clients.workspace.limit.limit))
    except CredentialError as exc:
        result = workspace_failure(ws, bindings, Problem(exc.reason, exc.message), when)
    except (KeyError, ValueError) as exc:
        result = workspace_failure(ws, bindings, Problem("WorkspaceNameUnknown", f"spec: {exc}"), when)
    if watch is not None and result.problem is None and key in watch.subscribers:
        watch.subscribers[key].groups = result.groups_seen
        watch.subscribers[key].users = result.users_seen
    if result.problem is not None and result.problem.reason in _TOKEN_REFUSED:
        # The credential caches its tokens until their declared expiry: a token Azure refused
        # (expired early, revoked) would be presented again on every sync. Start afresh next time.
        await memo.connections.drop(namespace, name)

    # The workspace first: orphaned ids must be persisted before a finalizer lets a binding go.
    ws_status = stamp(result.workspace_status, ws.status, when)
    if ws_status != dict(ws.status):
        await kube.patch_status(WORKSPACES, namespace, name, ws.status, ws_status)
    by_key = {b.key: b for b in bindings}
    for bkey, outcome in result.outcomes.items():
        b = by_key[bkey]
        new = stamp(
            binding_status(outcome, generation=b.generation, old=b.status, workspace_ref=name, when=when),
            b.status,
            when,
        )
        if new != dict(b.status):
            await kube.patch_status(BINDINGS, bkey.namespace, bkey.name, b.status, new)
    _post_events(ws_body, bindings, result)
    record_metrics(namespace, name, result, time.monotonic() - started)
    for bkey in result.finalizable:
        memo.registry.release(bkey)
    if result.plan is not None and (result.plan.creates or result.plan.deletes or result.plan.held):
        logger.info(
            "sync of %s/%s: %d granted, %d revoked, %d held",
            namespace,
            name,
            sum(1 for a in result.audit if a.action == "grant" and a.outcome == "done"),
            sum(1 for a in result.audit if a.action == "revoke" and a.outcome == "done"),
            len(result.plan.held),
        )
    return result


def record_metrics(namespace: str, name: str, result: SyncResult, seconds: float) -> None:
    metrics.RECONCILES.labels(namespace, name, "error" if result.problem else "success").inc()
    metrics.RECONCILE_SECONDS.labels(namespace, name).observe(seconds)
    for record in result.audit:
        if record.outcome == "done":
            (metrics.ASSIGNMENTS_CREATED if record.action == "grant" else metrics.ASSIGNMENTS_DELETED).labels(
                namespace, name
            ).inc()
        elif record.action == "adopt":
            metrics.ASSIGNMENTS_ADOPTED.labels(namespace, name).inc()
    if result.plan is not None:
        metrics.REMOVALS_HELD.labels(namespace, name).set(len(result.plan.held))
    for key, outcome in result.outcomes.items():
        ready = next(c for c in binding_conditions(outcome, name) if c.type == "Ready").status
        metrics.BINDING_READY.labels(key.namespace, key.name).set(1 if ready else 0)
        if outcome.report is not None:
            metrics.BINDING_DRIFT.labels(key.namespace, key.name, "missing").set(len(outcome.report.missing))
            metrics.BINDING_DRIFT.labels(key.namespace, key.name, "unexpected").set(len(outcome.report.unexpected))


def _post_events(ws_body: dict[str, Any], bindings: list[BindingObject], result: SyncResult) -> None:
    """One Event per binding per sync that changed something, and a Warning per failure kind.

    kopf.event, not kopf.info/warn: those are filtered by settings.posting.level, which is raised to
    keep kopf's own per-handler log lines out of Events."""
    per_binding: dict[str, list[int]] = {}
    for record in result.audit:
        for b in record.bindings:
            counts = per_binding.setdefault(b, [0, 0])
            counts[0 if record.outcome in ("done", "already") else 1] += 1
    for b in bindings:
        counts = per_binding.get(str(b.key))
        if not counts:
            continue
        body = kopf.Body(
            {
                "apiVersion": f"{GROUP}/{VERSION}",
                "kind": "SynapseRoleBinding",
                "metadata": {"namespace": b.key.namespace, "name": b.key.name, "uid": b.uid},
            }
        )
        if counts[0]:
            kopf.event(
                body, type="Normal", reason="Granted", message=f"{counts[0]} role assignment(s) granted or adopted"
            )
        if counts[1]:
            kopf.event(
                body,
                type="Warning",
                reason="GrantFailed",
                message=f"{counts[1]} role assignment(s) could not be granted",
            )
    revoked = sum(1 for r in result.audit if r.action == "revoke" and r.outcome == "done")
    failed = sum(1 for r in result.audit if r.action == "revoke" and r.outcome.startswith("failed"))
    ws = kopf.Body(ws_body)
    if revoked:
        kopf.event(
            ws, type="Normal", reason="Revoked", message=f"{revoked} role assignment(s) no binding wants were revoked"
        )
    if failed:
        kopf.event(
            ws, type="Warning", reason="RevokeFailed", message=f"{failed} revocation(s) failed; retried next sync"
        )
    if result.problem:
        kopf.event(ws, type="Warning", reason=result.problem.reason, message=result.problem.message)

"""One sync of one workspace as the running operator does it, around the pure sync: Kubernetes reads,
the tenant watch's subscription, status writes, Events, metrics, and a refused credential dropped."""

from __future__ import annotations

import dataclasses
import functools
import logging
import time
from enum import StrEnum
from typing import Any, TypeVar

import kopf

from synapse_scim import metrics
from synapse_scim.adapters.connections import Clients
from synapse_scim.adapters.credentials import CredentialError
from synapse_scim.adapters.directory import Directory
from synapse_scim.adapters.kube import BINDINGS, FINALIZER, WORKSPACES, Kube
from synapse_scim.adapters.principal_lookups import find_accounts
from synapse_scim.controller.events import post_events
from synapse_scim.controller.grant_ledger import record_grants
from synapse_scim.controller.registry import LET_GO_AFTER, Registry
from synapse_scim.controller.settings import Settings, Strategy
from synapse_scim.controller.sync import SyncMemory, SyncResult, sync_workspace, workspace_failure
from synapse_scim.controller.tenant import TenantWatch
from synapse_scim.core.model import BindingKey, Problem
from synapse_scim.core.objects import BindingObject, WorkspaceObject
from synapse_scim.core.reasons import TOKEN_REFUSED_REASONS, Action, Outcome, Reason
from synapse_scim.core.status import (
    binding_conditions,
    binding_status,
    now_iso,
    observed,
    reconciling_status,
    stamp,
)

# Either kind mark_reconciling marks, so that a marked workspace comes back as a workspace.
Marked = TypeVar("Marked", WorkspaceObject, BindingObject)


class SyncKind(StrEnum):
    """What a sync reads again (the label of synapse_scim_syncs_total)."""

    FULL = "full"  # Synapse assignments and the whole directory
    ASSIGNMENTS = "assignments"  # Synapse assignments; the directory from the delta-kept cache
    INCREMENTAL = "incremental"  # neither: the last listing plus our writes, and the cache


async def run_sync(
    key: tuple[str, str],
    memo: kopf.Memo,
    logger: logging.Logger | logging.LoggerAdapter[Any],
    *,
    full: bool = True,
    fresh_directory: bool | None = None,
    memory: SyncMemory | None = None,
) -> SyncResult | None:
    """One sync of a workspace as the operator runs it: its objects from Kubernetes, its tenant's watch
    subscribed, the sync, then status (only where it changed), Events, metrics and finalizer releases.
    None when the workspace no longer exists."""
    namespace, name = key
    started = time.monotonic()
    kube: Kube = memo.kube
    ws_body = await kube.get_workspace(namespace, name)
    if ws_body is None:
        return None
    ws = WorkspaceObject.from_body(ws_body)
    binding_bodies = await kube.list_bindings(namespace, name)
    await keep_finalizers(kube, ws_body, binding_bodies, logger)
    bindings = [BindingObject.from_body(b) for b in binding_bodies]
    when = now_iso()
    ws, bindings = await mark_reconciling(kube, ws, bindings, when, logger)
    settings: Settings = memo.settings
    watch: TenantWatch | None = None
    try:
        clients = await memo.connections.get(namespace, name, dict(ws.spec))
        if settings.strategy is Strategy.DELTA:
            spec = dict(ws.spec)

            async def connect() -> Directory:
                reconnected: Clients = await memo.connections.get(namespace, name, spec)
                return reconnected.directory

            watch = await memo.tenants.subscribe(
                clients.tenant, key, clients.directory, lambda: memo.registry.poke(key), connect
            )
        trusted = watch is not None and watch.trusted
        directory = not trusted or (full if fresh_directory is None else fresh_directory)
        kind = SyncKind.FULL if directory else SyncKind.ASSIGNMENTS if full else SyncKind.INCREMENTAL
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
            shared_reads=settings.strategy is not Strategy.NAIVE,
            scim_source=memo.get("scim"),
            lookups=watch.lookups if watch else None,
            memory=memory,
        )
        metrics.WRITE_LIMIT.labels(namespace, name).set(int(clients.workspace.limit.limit))
    except CredentialError as exc:
        result = workspace_failure(ws, bindings, Problem(exc.reason, exc.message), when)
    except (KeyError, ValueError) as exc:
        result = workspace_failure(ws, bindings, Problem(Reason.WORKSPACE_NAME_UNKNOWN, f"spec: {exc}"), when)
    if watch is not None and result.problem is None and key in watch.subscribers:
        watch.subscribers[key].groups = result.groups_seen
        watch.subscribers[key].users = result.users_seen
        watch.subscribers[key].lookups = result.scim.lookups if result.scim is not None else frozenset()
    if result.problem is None and memo.get("scim_pokes") is not None:
        memo.scim_pokes.subscribe(key, result.scim)
    if any(p.reason in TOKEN_REFUSED_REASONS for p in result.problems()):
        # The credential caches its tokens until their declared expiry: a token Azure refused (expired
        # early, revoked) would be presented again on every sync, and by the tenant watch. Whether the
        # whole workspace failed on it or only one binding's Graph reads did (an incremental sync reads
        # no Synapse listing that could fail first): start afresh, and the loop retries once soon.
        await memo.connections.drop(namespace, name)
        result = dataclasses.replace(result, signed_out=True)
    if result.problem is None and memo.get("scim_prefetch") is not None:
        # Pushed users of the providers these bindings name are looked up as they arrive, into the
        # tenant's cache (controller/scim_prefetch.py); only where the watch keeps that cache true
        # and with clients that are still open (none after a sign-out: the next sync registers them).
        providers = result.scim.providers() if result.scim is not None else frozenset()
        fetch = (
            functools.partial(find_accounts, clients.directory, cache=watch.lookups)
            if watch and not result.signed_out
            else None
        )
        memo.scim_prefetch.register(key, providers, fetch)

    if result.granted_at or result.revoked_ids:
        # When each grant was made, for `report --cluster` (best-effort: never fails the sync).
        await record_grants(
            kube,
            namespace,
            name,
            (ws_body.get("metadata") or {}).get("uid"),
            result.granted_at,
            result.revoked_ids,
            logger,
        )
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
    post_events(ws_body, bindings, result)
    record_metrics(namespace, name, result, time.monotonic() - started)
    if result.plan is not None and result.plan.newly_orphaned:
        # status.orphanedAssignments goes with the workspace (a deleted namespace): the log keeps them.
        logger.info(
            "sync of %s/%s: %d assignment(s) of deleted binding(s) with deletionPolicy Orphan left in Synapse, "
            "unmanaged from now on: %s",
            namespace,
            name,
            len(result.plan.newly_orphaned),
            ", ".join(sorted(result.plan.newly_orphaned)),
        )
    await finish_released(kube, memo.registry, key, binding_bodies, result.finalizable, logger)
    if result.plan is not None and (result.plan.creates or result.plan.deletes or result.plan.held):
        logger.info(
            "sync of %s/%s: %d granted, %d revoked, %d held",
            namespace,
            name,
            sum(1 for a in result.audit if a.action is Action.GRANT and a.outcome == Outcome.DONE),
            sum(1 for a in result.audit if a.action is Action.REVOKE and a.outcome == Outcome.DONE),
            len(result.plan.held),
        )
    return result


async def keep_finalizers(
    kube: Kube,
    ws_body: dict[str, Any],
    binding_bodies: list[dict[str, Any]],
    logger: logging.Logger | logging.LoggerAdapter[Any],
) -> None:
    """kopf's finalizer on the workspace and each of its bindings that is not being deleted, put on
    here when kopf's own patch did not: kopf drops a patch of its own the API server refused (a 409
    Conflict, or a timeout after its retries) and tries again only at the object's next event, which a
    quiet object may never have. Without the finalizer its deletion would not wait for the revocations.
    Best-effort: a failure is logged, and the next sync looks again."""
    for plural, body in ((WORKSPACES, ws_body), *((BINDINGS, b) for b in binding_bodies)):
        meta = body.get("metadata") or {}
        if meta.get("deletionTimestamp") or FINALIZER in (meta.get("finalizers") or ()):
            continue
        try:
            added = await kube.add_finalizer(plural, body, FINALIZER)
        except Exception as exc:
            logger.warning(
                "could not put %s on %s %s/%s: %s", FINALIZER, plural, meta.get("namespace"), meta.get("name"), exc
            )
            continue
        if added:
            logger.info("put %s on %s %s/%s (kopf had not)", FINALIZER, plural, meta.get("namespace"), meta.get("name"))


async def finish_released(
    kube: Kube,
    registry: Registry,
    key: tuple[str, str],
    binding_bodies: list[dict[str, Any]],
    finalizable: frozenset[BindingKey],
    logger: logging.Logger | logging.LoggerAdapter[Any],
) -> None:
    """Let the deleted bindings this sync found finished go: their deletion handlers return and kopf
    takes its finalizer off. A binding a sync let go more than LET_GO_AFTER seconds ago and still
    listed has its finalizer taken off here: kopf's own patch was refused (a 409 Conflict, a timeout)
    and kopf tries again only at the object's next event, which a binding being deleted may never have;
    it would stay Terminating, and its workspace's deletion would wait for it. This sync decided again
    that its grants are revoked or recorded, which is all the deletion handler waits for."""
    listed = {BindingKey(b["metadata"]["namespace"], b["metadata"]["name"]): b for b in binding_bodies}
    registry.gone(key, set(listed))
    for bkey in finalizable:
        since = registry.release(bkey, key)
        metrics.forget_binding(bkey.namespace, bkey.name)
        meta = (listed.get(bkey) or {}).get("metadata") or {}
        if since < LET_GO_AFTER or FINALIZER not in (meta.get("finalizers") or ()):
            continue
        try:
            removed = await kube.remove_finalizer(BINDINGS, bkey.namespace, bkey.name, str(meta.get("uid")), FINALIZER)
        except Exception as exc:  # the next sync (the registry pokes one) tries again
            logger.warning("could not take %s off binding %s/%s: %s", FINALIZER, bkey.namespace, bkey.name, exc)
            continue
        if removed:
            logger.info(
                "took %s off binding %s/%s, let go %.0f s ago (kopf had not: its patch was refused)",
                FINALIZER,
                bkey.namespace,
                bkey.name,
                since,
            )


async def mark_reconciling(
    kube: Kube,
    ws: WorkspaceObject,
    bindings: list[BindingObject],
    when: str,
    logger: logging.Logger | logging.LoggerAdapter[Any],
) -> tuple[WorkspaceObject, list[BindingObject]]:
    """Before any read: each resource whose status does not describe its generation yet (new, or its
    spec changed) says Reconciling=True (reason Applying), so that the minutes a first sync of a large
    group can take read as in progress to kstatus, Argo CD and kubectl. A resource already reported
    for its generation is left alone (a quiet sync writes nothing), and so is a binding being deleted
    (kstatus and Argo CD read it as terminating whatever its status says). The marks are advisory: one
    that cannot be written (e.g. RBAC) is logged and the sync goes on, as it did before they existed."""

    async def mark(obj: Marked, plural: str, namespace: str, name: str, message: str) -> Marked:
        if observed(obj.status, obj.generation):
            return obj
        new = reconciling_status(obj.status, generation=obj.generation, when=when, message=message)
        try:
            await kube.patch_status(plural, namespace, name, obj.status, new)
        except Exception as exc:  # the sync's own status write reports it again, after the grants
            logger.warning("could not mark %s %s/%s Reconciling: %s", plural, namespace, name, exc)
            return obj
        return dataclasses.replace(obj, status=new)

    ws = await mark(
        ws,
        WORKSPACES,
        ws.namespace,
        ws.name,
        f"syncing generation {ws.generation}: reading the role definitions, the assignments "
        "and the directory, then granting and revoking",
    )
    marked = []
    for b in bindings:
        if not b.deleting:
            b = await mark(
                b,
                BINDINGS,
                b.key.namespace,
                b.key.name,
                f"working on generation {b.generation}: reading its subjects and the workspace, "
                "then granting and revoking",
            )
        marked.append(b)
    return ws, marked


def record_metrics(namespace: str, name: str, result: SyncResult, seconds: float) -> None:
    metrics.RECONCILES.labels(namespace, name, "error" if result.problem else "success").inc()
    metrics.RECONCILE_SECONDS.labels(namespace, name).observe(seconds)
    if result.problem is None and not result.transient():
        metrics.LAST_SUCCESS.labels(namespace, name).set(time.time())
    for record in result.audit:
        if record.outcome == Outcome.DONE:
            (metrics.ASSIGNMENTS_CREATED if record.action is Action.GRANT else metrics.ASSIGNMENTS_DELETED).labels(
                namespace, name
            ).inc()
        elif record.action is Action.ADOPT:
            metrics.ASSIGNMENTS_ADOPTED.labels(namespace, name).inc()
    if result.plan is not None:
        metrics.REMOVALS_HELD.labels(namespace, name).set(len(result.plan.held))
    for key, outcome in result.outcomes.items():
        conditions = {c.type: c.status for c in binding_conditions(outcome, name)}
        metrics.BINDING_READY.labels(key.namespace, key.name).set(1 if conditions["Ready"] else 0)
        metrics.BINDING_STALLED.labels(key.namespace, key.name).set(1 if conditions.get("Stalled") else 0)
        if outcome.report is not None:
            metrics.BINDING_DRIFT.labels(key.namespace, key.name, "missing").set(len(outcome.report.missing))
            metrics.BINDING_DRIFT.labels(key.namespace, key.name, "unexpected").set(len(outcome.report.unexpected))

"""A SynapseWorkspace's deletion, and the credential Secret it keeps until then.

`kubectl delete namespace` deletes everything in it at once: the workspace, its bindings and the
Secret of its credential. The bindings' finalizers wait for the workspace's loop to revoke (Delete)
or orphan (Orphan) what they granted, but kopf stops a deleted workspace's loop at once and the
Secret goes with the namespace: the revocations were never made and nothing said so. So:

- The workspace's deletion waits while any SynapseRoleBinding names it (in-use protection, as a
  PersistentVolumeClaim's): a binding with deletionPolicy Delete until its grants are revoked, one
  with Orphan until they are recorded, a live one until someone deletes it. This also covers the
  namespace controller deleting the workspace a moment before the bindings. Meanwhile this handler
  runs the workspace's syncs in place of its stopped loop (reconcile.py: run_sync, the same sync),
  poked by directory changes as the loop was: live bindings are served as before (a leaver loses
  access while the workspace waits), deleted ones revoked or recorded.
- The Secret named by spec.credential carries CREDENTIAL_FINALIZER for as long as a workspace of
  its namespace names it (put on by the loop), so that the namespace controller cannot delete it
  before the revocations that need it. The API server accepts no new finalizer on an object being
  deleted, so it has to be there beforehand.
- Bounded: once the deletion has taken longer than SYNAPSE_SCIM_DELETION_TIMEOUT, or as soon as a
  sync of it fails (Azure unreachable, a credential refused), the workspace says DeletionBlocked
  (Stalled) with what remains, why, and how to force it, and a Warning Event says so too. It keeps
  retrying: for a product whose job is offboarding, access left behind silently is the worse
  outcome; a person who decides otherwise removes the finalizers (the message says how).
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

import kopf

from synapse_scim.adapters.kube import FINALIZER, WORKSPACES, Kube
from synapse_scim.controller.credential_guard import credential_secret, release_credential
from synapse_scim.controller.loop import forget_workspace
from synapse_scim.controller.reconcile import run_sync
from synapse_scim.controller.registry import Registry, WorkspaceKey
from synapse_scim.controller.sync import SyncResult
from synapse_scim.core.model import BindingKey, Problem
from synapse_scim.core.objects import BindingObject
from synapse_scim.core.reasons import Reason
from synapse_scim.core.status import conditions, now_iso, ready_conditions

log = logging.getLogger("synapse_scim.deletion")

RETRY_FIRST = 2.0  # seconds before retrying a failed deletion sync; doubled at each failure in a row
RETRY_MAX = 30.0
SETTLE = 1.0  # seconds between looks while released bindings' finalizers go (no event wakes us then)


def force_commands(namespace: str, name: str, secret: str | None) -> str:
    """What a person runs to end the deletion now, leaving whatever is not revoked in Synapse."""
    cmd = (
        f'kubectl -n {namespace} patch synapseworkspace {name} --type=merge -p \'{{"metadata":{{"finalizers":null}}}}\''
    )
    if secret:
        cmd += (
            f" then kubectl -n {namespace} patch secret {secret} --type=json "
            f'-p \'[{{"op":"remove","path":"/metadata/finalizers"}}]\''
        )
    return cmd


def remaining(bindings: list[BindingObject], result: SyncResult | None) -> str:
    """What the workspace's deletion still waits for, in words."""
    parts = []
    for b in sorted(bindings, key=lambda b: b.key.name):
        if not b.deleting:
            parts.append(f"{b.key.name} (not deleted: delete it first)")
            continue
        policy = b.spec.get("deletionPolicy") or "Delete"
        outcome = result.outcomes.get(b.key) if result is not None else None
        report = outcome.report if outcome is not None else None
        if policy == "Orphan":
            parts.append(f"{b.key.name} (Orphan: recording its assignments)")
        elif report is not None and report.pending_removal:
            held = f", {report.held} held" if report.held else ""
            parts.append(f"{b.key.name} (Delete: {report.pending_removal} assignment(s) to revoke{held})")
        else:
            parts.append(f"{b.key.name} (Delete: revoking)")
    return f"{len(bindings)} binding(s): " + "; ".join(parts)


async def finish_deletion(
    key: WorkspaceKey,
    memo: kopf.Memo,
    logger: logging.Logger | logging.LoggerAdapter[Any],
    *,
    elapsed: float,
    loop_gone: float,
) -> None:
    """One attempt (at most SYNAPSE_SCIM_FINALIZER_WAIT) at finishing a deleted workspace: sync until no
    binding names it, then release its Secret and return. Raises kopf.TemporaryError to be called
    again while bindings remain. `elapsed`: seconds since the deletion's first attempt (kopf's)."""
    namespace, name = key
    kube: Kube = memo.kube
    registry: Registry = memo.registry
    # The stopped loop may be finishing a sync: two syncs of one workspace at once would race on its
    # clients and status. kopf waits for it at most LOOP_STOP_GRACE + LOOP_CANCEL_WAIT.
    await registry.wait_loop_ended(key, loop_gone)
    started = time.monotonic()
    deadline = started + memo.settings.finalizer_wait
    trigger = registry.trigger(key)
    failures = 0
    sync_due = True  # a sync at once; then when poked, or when a failed or unfinished one is retried
    result: SyncResult | None = None
    failed: Problem | None = None  # what made the last sync fail, until one succeeds
    released: frozenset[BindingKey] = frozenset()  # let go by a sync of this call, maybe not gone yet
    while True:
        body = await kube.get_workspace(namespace, name)
        if body is None:
            return
        secret = credential_secret(body.get("spec"))
        bindings = [BindingObject.from_body(b) for b in await kube.list_bindings(namespace, name)]
        if not bindings:
            if secret is not None:
                await release_credential(kube, namespace, secret, logger, leaving=name)
            forget_workspace(memo, key)
            await memo.connections.drop(namespace, name)
            logger.info("workspace %s/%s: no binding names it any more; its deletion is done", namespace, name)
            await let_go(kube, body, logger)
            return
        # Live bindings are served as before while the workspace waits for them (a leaver removed from a
        # group meanwhile must lose access as fast as ever), deleted ones revoked or orphaned.
        if sync_due or trigger.is_set():
            trigger.clear()
            result = await run_sync(key, memo, logger, full=True, fresh_directory=False)
            if result is None:
                return
            failed = result.problem or next(iter(result.write_problems), None)
            failures = failures + 1 if failed else 0
            released |= result.finalizable  # a later sync may not name a binding that is leaving
            body = await kube.get_workspace(namespace, name) or body  # the status the sync just wrote
        sync_due = False
        bindings = [b for b in bindings if b.key not in released]
        if failed is not None:
            retry_after = result.retry_after() if result is not None else None
            delay = min(RETRY_MAX, max(RETRY_FIRST * 2.0 ** (failures - 1), retry_after or 0.0))
        elif bindings:
            # Held removals, or live bindings: a poke (a binding deleted, its handler retrying) or the
            # next retry brings the next sync.
            delay = RETRY_MAX
        else:
            delay = SETTLE  # all released: their handlers let them go in a moment
        if bindings:
            took = elapsed + time.monotonic() - started
            await report_deletion(kube, body, bindings, result, failed, took, memo)
            if took < memo.settings.deletion_timeout:  # say DeletionBlocked as soon as the bound passes
                delay = min(delay, memo.settings.deletion_timeout - took + 0.1)
        left = deadline - time.monotonic()
        if left <= 0:
            # kopf calls this handler again: the operator keeps its finalizer and goes on retrying.
            raise kopf.TemporaryError(f"still waiting for {remaining(bindings, result)}", delay=1)
        try:
            await asyncio.wait_for(trigger.wait(), timeout=min(delay, left))
        except TimeoutError:
            sync_due = True


async def let_go(kube: Kube, body: dict[str, Any], logger: logging.Logger | logging.LoggerAdapter[Any]) -> None:
    """Take kopf's finalizer off the finished workspace here rather than leave it to kopf alone: kopf
    drops its own patch if the API server refuses it (a 409, a timeout) and tries again only at the
    object's next event, which a workspace being deleted may never have. kopf's patch then finds the
    object gone, which it expects. If ours fails too, kopf calls this handler again."""
    meta = body.get("metadata") or {}
    try:
        await kube.remove_finalizer(WORKSPACES, meta["namespace"], meta["name"], str(meta.get("uid")), FINALIZER)
    except Exception as exc:
        raise kopf.TemporaryError(f"could not take {FINALIZER} off: {exc}", delay=RETRY_FIRST) from exc


async def report_deletion(
    kube: Kube,
    body: dict[str, Any],
    bindings: list[BindingObject],
    result: SyncResult | None,
    failed: Problem | None,
    elapsed: float,
    memo: kopf.Memo,
) -> None:
    """The workspace's conditions while its deletion waits: Reconciling (Deleting) while it is on its
    way, Stalled (DeletionBlocked) once a sync of it failed or it took longer than the bound; and a
    Warning Event when it becomes blocked or its reason changes. In a namespace being deleted the API
    server refuses new Events: the status and the operator's log (WARNING) still say it."""
    meta = body.get("metadata") or {}
    namespace, name = meta["namespace"], meta["name"]
    timeout: float = memo.settings.deletion_timeout
    what = remaining(bindings, result)
    secret = credential_secret(body.get("spec"))
    blocked = failed is not None or elapsed > timeout
    if blocked:
        why = (
            f"{failed.reason}: {failed.message}"
            if failed is not None
            else f"not done within SYNAPSE_SCIM_DELETION_TIMEOUT ({int(timeout)} s)"
        )
        message = (
            f"being deleted, blocked: {why}; waiting for {what}; the operator keeps retrying. To give up and "
            f"leave the grants in Synapse: {force_commands(namespace, name, secret)}"
        )
        reason = Reason.DELETION_BLOCKED
    else:
        message = f"being deleted: waiting for {what}"
        reason = Reason.DELETING
    old = body.get("status") or {}
    generation = int(meta.get("generation") or 0)
    new_conditions = conditions(
        ready_conditions(ready=False, reason=reason, message=message, reconciling=not blocked, stalled=blocked),
        old.get("conditions"),
        generation,
        now_iso(),
    )
    if [(c["type"], c["status"], c["reason"], c["message"]) for c in new_conditions] == [
        (c.get("type"), c.get("status"), c.get("reason"), c.get("message")) for c in old.get("conditions") or ()
    ]:
        return
    await kube.patch_status(WORKSPACES, namespace, name, old, {**old, "conditions": new_conditions})
    if blocked:  # once per change of what blocks it (an unchanged status returned above)
        log.warning("workspace %s/%s %s", namespace, name, message)
        try:
            posted = await kube.post_event(body, "Warning", Reason.DELETION_BLOCKED, message)
        except Exception as exc:  # advisory: the status and the log above say it already
            log.warning("could not post the DeletionBlocked Event of %s/%s: %s", namespace, name, exc)
        else:
            if not posted:
                log.info("workspace %s/%s: no Event (its namespace is being deleted): see its status", namespace, name)

"""The Kubernetes Events of one sync: what it changed per binding, and its failures per workspace."""

from __future__ import annotations

from typing import Any, cast

import kopf

from synapse_scim.adapters.kube import GROUP, VERSION
from synapse_scim.controller.sync import SyncResult
from synapse_scim.core.objects import BindingObject
from synapse_scim.core.reasons import Action, Outcome, Reason


def post_events(ws_body: dict[str, Any], bindings: list[BindingObject], result: SyncResult) -> None:
    """One Event per binding per sync that changed something, and a Warning per failure kind.

    kopf.event, not kopf.info/warn: those are filtered by settings.posting.level, which is raised to
    keep kopf's own per-handler log lines out of Events."""
    per_binding: dict[str, list[int]] = {}
    for record in result.audit:
        for label in record.bindings:
            per_binding.setdefault(label, [0, 0])[1 if record.failed else 0] += 1
    for b in bindings:
        counts = per_binding.get(str(b.key))
        if not counts:
            continue
        raw = {
            "apiVersion": f"{GROUP}/{VERSION}",
            "kind": "SynapseRoleBinding",
            "metadata": {"namespace": b.key.namespace, "name": b.key.name, "uid": b.uid},
        }
        body = kopf.Body(cast(kopf.RawBody, raw))
        if counts[0]:
            kopf.event(
                body, type="Normal", reason=Reason.GRANTED, message=f"{counts[0]} role assignment(s) granted or adopted"
            )
        if counts[1]:
            kopf.event(
                body,
                type="Warning",
                reason=Reason.GRANT_FAILED,
                message=f"{counts[1]} role assignment(s) could not be granted",
            )
    revoked = sum(1 for r in result.audit if r.action is Action.REVOKE and r.outcome == Outcome.DONE)
    failed = sum(1 for r in result.audit if r.action is Action.REVOKE and r.failed)
    ws = kopf.Body(cast(kopf.RawBody, ws_body))
    if revoked:
        kopf.event(
            ws,
            type="Normal",
            reason=Reason.REVOKED,
            message=f"{revoked} role assignment(s) no binding wants were revoked",
        )
    if failed:
        kopf.event(
            ws, type="Warning", reason=Reason.REVOKE_FAILED, message=f"{failed} revocation(s) failed; retried next sync"
        )
    if result.problem:
        kopf.event(ws, type="Warning", reason=result.problem.reason, message=result.problem.message)

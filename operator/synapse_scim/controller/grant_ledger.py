"""The grant ledger's writes: after a sync's writes, the time of every grant the operator made and the
removal of every assignment it revoked, one merge patch per touched shard (adapters/grant_ledger.py has
the layout, and why adoptions are not recorded).

Best-effort evidence: a shard that cannot be written is logged and counted
(synapse_scim_grant_ledger_write_failures_total); it never fails the sync nor changes what was granted
or revoked, and those events are not written again (the next sync writes only its own). The audit log
lines are the complete trail.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from typing import Any

from kubernetes.client.exceptions import ApiException

from synapse_scim import metrics
from synapse_scim.adapters.grant_ledger import metadata, patches, shard_name
from synapse_scim.adapters.kube import Kube


async def record_grants(
    kube: Kube,
    namespace: str,
    workspace: str,
    workspace_uid: str | None,
    granted: Mapping[str, str],
    revoked: Iterable[str],
    logger: logging.Logger | logging.LoggerAdapter[Any],
) -> int:
    """Write the sync's grants (assignment id -> time) and revocations to the ledger. Returns the number
    of shards that could not be written (each logged and counted); raises nothing."""
    failed = 0
    meta = metadata(workspace, workspace_uid)
    for shard, data in patches(granted, revoked).items():
        name = shard_name(workspace, shard)
        try:
            await kube.merge_patch_configmap(namespace, name, data, meta)
        except ApiException as exc:
            if exc.status == 403 and "NamespaceTerminating" in str(exc.body or ""):
                # The namespace is being deleted, and the ledger with it (it is owned by the workspace):
                # nothing is lost that would have outlived it, so no failure to count or alert on.
                logger.info("grant ledger: %s/%s not written: its namespace is being deleted", namespace, name)
                continue
            failed += 1
            _failed(namespace, workspace, name, len(data), exc, logger)
        except Exception as exc:  # best-effort: the grants and revocations stand, the audit log has them
            failed += 1
            _failed(namespace, workspace, name, len(data), exc, logger)
    return failed


def _failed(
    namespace: str,
    workspace: str,
    name: str,
    entries: int,
    exc: Exception,
    logger: logging.Logger | logging.LoggerAdapter[Any],
) -> None:
    metrics.GRANT_LEDGER_WRITE_FAILURES.labels(namespace, workspace).inc()
    logger.warning(
        "grant ledger: could not write ConfigMap %s/%s (%d entries not recorded; the audit log has them): %s",
        namespace,
        name,
        entries,
        " ".join(str(exc).split())[:300],
    )

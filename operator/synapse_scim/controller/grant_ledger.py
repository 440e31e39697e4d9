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
        except Exception as exc:  # best-effort: the grants and revocations stand, the audit log has them
            failed += 1
            metrics.GRANT_LEDGER_WRITE_FAILURES.labels(namespace, workspace).inc()
            logger.warning(
                "grant ledger: could not write ConfigMap %s/%s (%d entries not recorded; the audit log has them): %s",
                namespace,
                name,
                len(data),
                " ".join(str(exc).split())[:300],
            )
    return failed

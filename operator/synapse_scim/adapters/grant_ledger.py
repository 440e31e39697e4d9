"""The grant ledger: when the operator granted each assignment, kept in ConfigMaps beside the workspace.

Synapse's role-assignment API has no creation time, so the operator records one itself: after a sync's
writes, controller/grant_ledger.py merge-patches the time of every grant it made (the PUT answered 2xx)
and removes every assignment it revoked. `synapse-scim report --cluster` reads it back (read_ledger).

Layout: 16 ConfigMaps per SynapseWorkspace, ``<workspace>-grants-<0..f>``, in the workspace's namespace,
sharded by the first hex digit of the assignment id (50,000 grants are ~200 KB a shard, far under the
1 MiB object limit). ``data`` maps the assignment id (lowercase) to the RFC 3339 UTC time of the grant.
Labels ``app.kubernetes.io/managed-by: synapse-scim`` and ``synapse-scim.io/workspace: <name>``; an
ownerReference to the SynapseWorkspace, so Kubernetes deletes them with it.

An adoption (the PUT answered 409: the assignment already existed with the operator's id) is not
recorded: the operator did not grant it then and does not know when it was granted. An entry already
there is kept. The ledger is best-effort evidence: a write that fails is logged and counted
(synapse_scim_grant_ledger_write_failures_total) and those events are not written again; the audit log
lines (logger ``synapse_scim.audit``) are the complete trail.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Mapping
from typing import Any

from synapse_scim.adapters.kube import GROUP, VERSION, Kube

SHARDS = "0123456789abcdef"
MANAGED_BY = "app.kubernetes.io/managed-by"
WORKSPACE_LABEL = "synapse-scim.io/workspace"


def shard_of(assignment_id: str) -> str:
    """The shard (one hex digit) an assignment id belongs to; ids not starting with one go to shard 0."""
    first = assignment_id.strip().lower()[:1]
    return first if first and first in SHARDS else "0"


def shard_name(workspace: str, shard: str) -> str:
    return f"{workspace}-grants-{shard}"


def shard_names(workspace: str) -> list[str]:
    return [shard_name(workspace, s) for s in SHARDS]


def metadata(workspace: str, workspace_uid: str | None) -> dict[str, Any]:
    """Labels and (with the workspace's uid) the ownerReference of a ledger ConfigMap."""
    meta: dict[str, Any] = {"labels": {MANAGED_BY: "synapse-scim", WORKSPACE_LABEL: workspace}}
    if workspace_uid:
        meta["ownerReferences"] = [
            {
                "apiVersion": f"{GROUP}/{VERSION}",
                "kind": "SynapseWorkspace",
                "name": workspace,
                "uid": workspace_uid,
                "blockOwnerDeletion": False,
            }
        ]
    return meta


def patches(granted: Mapping[str, str], revoked: Iterable[str]) -> dict[str, dict[str, str | None]]:
    """Per touched shard, the merge patch of its data: granted ids with their time, revoked ids None.
    An id both granted and revoked in one sync cannot happen (one plan); the grant wins if it did."""
    out: dict[str, dict[str, str | None]] = {}
    for aid in revoked:
        out.setdefault(shard_of(aid), {})[aid.strip().lower()] = None
    for aid, when in granted.items():
        out.setdefault(shard_of(aid), {})[aid.strip().lower()] = when
    return dict(sorted(out.items()))


def entry_time(value: str) -> str:
    """The time of a ledger entry (``<time>`` or ``<time>|<anything later versions add>``)."""
    return value.split("|", 1)[0].strip()


async def read_ledger(kube: Kube, namespace: str, workspace: str, concurrency: int = 4) -> dict[str, str]:
    """Every recorded grant of a workspace: assignment id (lowercase) -> RFC 3339 time. Reads the 16
    shards by name (get; a missing one is empty). Raises the API's error (e.g. 403) to the caller."""
    sem = asyncio.Semaphore(concurrency)

    async def one(name: str) -> dict[str, str]:
        async with sem:
            return await kube.get_configmap_data(namespace, name) or {}

    found: dict[str, str] = {}
    for data in await asyncio.gather(*(one(n) for n in shard_names(workspace))):
        found.update({k.lower(): entry_time(v) for k, v in data.items()})
    return found

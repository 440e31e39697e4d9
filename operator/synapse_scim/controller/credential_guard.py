"""The finalizer the operator keeps on a SynapseWorkspace's credential Secret while the workspace may
still need it (controller/deletion.py says why: revocations after `kubectl delete namespace`)."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from synapse_scim.adapters.kube import Kube

CREDENTIAL_FINALIZER = "synapse-scim.io/credential-in-use"


def credential_secret(spec: Mapping[str, Any] | None) -> str | None:
    """The Secret spec.credential names (client secret or certificate), None for the other kinds."""
    credential = (spec or {}).get("credential") or {}
    for kind in ("clientSecret", "certificate"):
        name = ((credential.get(kind) or {}).get("secretRef") or {}).get("name")
        if name:
            return str(name)
    return None


async def protect_credential(
    kube: Kube,
    namespace: str,
    spec: Mapping[str, Any] | None,
    protected: str | None,
    logger: logging.Logger | logging.LoggerAdapter[Any],
    *,
    recheck: bool = False,
) -> str | None:
    """Keep CREDENTIAL_FINALIZER on the Secret the workspace's spec names; release the one it named
    before (when no other workspace names it). Returns the Secret now protected. Best-effort: a Secret
    the operator may not patch (an older chart's RBAC) is logged, and the sync goes on as before.

    `recheck` (every full sync): look again even when the same Secret is protected already, because
    a Secret deleted and created again under the same name (its finalizer taken off by hand, a tool
    that replaces Secrets) is a new object without the finalizer."""
    wanted = credential_secret(spec)
    if wanted == protected and not (recheck and wanted is not None):
        return protected
    if wanted is not None:
        try:
            if not await kube.add_secret_finalizer(namespace, wanted, CREDENTIAL_FINALIZER):
                return protected  # missing or being deleted: the sync says so; try again next time
        except Exception as exc:
            logger.warning(
                "could not put %s on Secret %s/%s (it may go before the revocations that need it): %s",
                CREDENTIAL_FINALIZER,
                namespace,
                wanted,
                exc,
            )
            return protected
    if protected is not None and protected != wanted:
        await release_credential(kube, namespace, protected, logger, leaving=None)
    return wanted


async def release_credential(
    kube: Kube,
    namespace: str,
    secret: str,
    logger: logging.Logger | logging.LoggerAdapter[Any],
    *,
    leaving: str | None,
) -> None:
    """Take CREDENTIAL_FINALIZER off `secret` unless a workspace of the namespace (other than
    `leaving`, the one whose deletion is done) still names it: that one releases it when it goes."""
    try:
        for ws in await kube.list_workspaces(namespace):
            name = (ws.get("metadata") or {}).get("name")
            if name != leaving and credential_secret(ws.get("spec")) == secret:
                return
        await kube.remove_secret_finalizer(namespace, secret, CREDENTIAL_FINALIZER)
    except Exception as exc:
        logger.warning("could not take %s off Secret %s/%s: %s", CREDENTIAL_FINALIZER, namespace, secret, exc)
        raise

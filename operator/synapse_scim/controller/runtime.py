"""What the operator process holds while it runs (kopf's memo): settings, clients, loops' registry,
tenant watches, the metrics server; how kopf is configured for it; and their clean-up."""

from __future__ import annotations

import logging
import os

import kopf

from synapse_scim import metrics
from synapse_scim.adapters.connections import Connections
from synapse_scim.adapters.kube import Kube, api_client
from synapse_scim.controller.registry import Registry
from synapse_scim.controller.settings import Settings
from synapse_scim.controller.tenant import Tenants

FINALIZER = "synapse-scim.io/finalizer"


def configure(settings: kopf.OperatorSettings) -> None:
    settings.persistence.finalizer = FINALIZER
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


async def start(memo: kopf.Memo) -> None:
    memo.settings = Settings.from_env()
    memo.kube = Kube(api_client())
    memo.connections = Connections(memo.kube.read_secret, memo.settings.write_concurrency)
    memo.registry = Registry()
    memo.tenants = Tenants(memo.settings.directory_poll_interval)
    port = int(os.environ.get("SYNAPSE_SCIM_METRICS_PORT", "9090"))
    memo.metrics_server = await metrics.serve(port) if port else None


async def stop(memo: kopf.Memo) -> None:
    await memo.tenants.close()
    await memo.connections.close()
    if memo.get("metrics_server"):
        await memo.metrics_server.cleanup()

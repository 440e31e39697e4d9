"""`synapse-scim run` with leader election: a standby waits for the Lease, the leader runs kopf.

While standby the process runs no kopf operator at all (no watches, no handlers, no writes); it
serves /metrics (synapse_scim_leader 0) and the liveness endpoint, so the kubelet keeps it. Once
it holds the Lease it starts the kopf operator and keeps renewing. If a renewal fails past the
deadline the process exits at once with LEASE_LOST_EXIT: nothing of the operator may keep writing
while another replica takes over, and Kubernetes restarts the container as a standby.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import sys
from collections.abc import Sequence
from urllib.parse import urlsplit

from aiohttp import web
from kubernetes import client

from . import leadership, metrics

log = logging.getLogger("synapse_scim.leadership")

LEASE_LOST_EXIT = 3


async def _standby_liveness(endpoint: str | None) -> web.AppRunner | None:
    """Answer the kubelet's liveness probe while kopf (which serves it when leading) is not running."""
    if not endpoint:
        return None
    url = urlsplit(endpoint)

    async def healthz(_: web.Request) -> web.Response:
        return web.json_response({"leader": False})

    app = web.Application()
    app.router.add_get(url.path or "/", healthz)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, url.hostname or "0.0.0.0", url.port or 80).start()
    return runner


def _lost(exc: BaseException) -> None:
    metrics.LEADER.set(0)
    log.error("leader election: lost the Lease (%s): exiting so that nothing keeps acting", exc)
    for handler in logging.getLogger().handlers:
        handler.flush()
    sys.stderr.flush()
    os._exit(LEASE_LOST_EXIT)  # no clean-up: kopf's handlers must not run one more write


async def elected(namespaces: Sequence[str], liveness: str | None) -> int:
    import kopf

    from .handlers import _kube_client

    config = leadership.LeaseConfig.from_env(namespaces)
    elector = leadership.LeaderElector(client.CoordinationV1Api(_kube_client()), config)
    metrics.LEADER.set(0)
    port = int(os.environ.get("SYNAPSE_SCIM_METRICS_PORT", "9090"))
    if port:
        await metrics.serve(port)

    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    health = await _standby_liveness(liveness)
    acquiring = asyncio.create_task(elector.acquire())
    stopping = asyncio.create_task(stop.wait())
    await asyncio.wait({acquiring, stopping}, return_when=asyncio.FIRST_COMPLETED)
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.remove_signal_handler(sig)  # kopf installs its own
    if health is not None:
        await health.cleanup()
    if not acquiring.done():
        acquiring.cancel()
        log.info("leader election: stopped while standby")
        return 0
    stopping.cancel()

    metrics.LEADER.set(1)
    holding = asyncio.create_task(elector.hold())
    operating = asyncio.create_task(kopf.operator(
        clusterwide=not namespaces, namespaces=list(namespaces), standalone=True, liveness_endpoint=liveness))
    await asyncio.wait({holding, operating}, return_when=asyncio.FIRST_COMPLETED)
    if holding.done():
        _lost(holding.exception() or RuntimeError("the renewal loop ended"))
    holding.cancel()
    await elector.release()
    metrics.LEADER.set(0)
    operating.result()  # the operator's own failure, if any, is the process's
    return 0


def run_elected(namespaces: Sequence[str], liveness: str | None) -> int:
    try:
        return asyncio.run(elected(namespaces, liveness))
    except asyncio.CancelledError:
        return 0

"""What the operator process holds while it runs (kopf's memo): settings, clients, loops' registry,
tenant watches, the metrics server; how kopf is configured, run and stopped; and their clean-up."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
from collections.abc import Sequence

import kopf

from synapse_scim import metrics
from synapse_scim.adapters.connections import Connections
from synapse_scim.adapters.kube import FINALIZER, Kube, api_client
from synapse_scim.controller import heap
from synapse_scim.controller.registry import Registry
from synapse_scim.controller.scim import ScimEndpoint, serve_scim
from synapse_scim.controller.scim_pokes import ScimPokes
from synapse_scim.controller.scim_prefetch import LookupPrefetch
from synapse_scim.controller.settings import Settings
from synapse_scim.controller.tenant import Tenants
from synapse_scim.core.durations import parse_duration

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)

log = logging.getLogger("synapse_scim.runtime")


def configure(settings: kopf.OperatorSettings) -> None:
    settings.persistence.finalizer = FINALIZER
    # A prefix of kopf's own: kopf ignores changes to annotations under it, and the approval
    # annotation (synapse-scim.io/approve-removals) must be seen as a change.
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix="kopf.synapse-scim.io")
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(prefix="kopf.synapse-scim.io")
    settings.posting.level = logging.WARNING  # events are posted explicitly, not for every log line
    settings.watching.server_timeout = 300
    # kopf's per-object workers stay unbounded by default (SYNAPSE_SCIM_KOPF_WORKER_LIMIT bounds them).
    # A bound of 32 saved ~17 MB of start-up RSS at L (within one run's noise), but the finalizer handlers
    # of deleting bindings and workspaces wait up to a minute each: 32 of them (one team's namespace
    # deleted) held every other object's handlers back, so a new binding was synced to Ready before kopf
    # had put its finalizer on it (seen in tests/chart/test_chart_rbac_operator.py, cluster-wide). A
    # binding deleted in that window would leave its grants behind: offboarding comes before memory.
    limit = int(os.environ.get("SYNAPSE_SCIM_KOPF_WORKER_LIMIT") or "0")
    settings.queueing.worker_limit = limit or None
    heap.small_tls_buffers()  # before kopf's and the workspaces' first connections
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
    # The SCIM endpoint (every replica serves it; it started before kopf, see operate): the syncs read
    # the pushed groups from its index, and its changes poke the workspaces that use them.
    memo.scim_pokes = ScimPokes(memo.registry.poke)
    scim: ScimEndpoint | None = memo.get("scim")
    memo.scim_prefetch = None
    if scim is not None:
        scim.listen(memo.scim_pokes.changed)
        memo.scim_prefetch = LookupPrefetch(scim)
        scim.listen(memo.scim_prefetch.changed)
    port = int(os.environ.get("SYNAPSE_SCIM_METRICS_PORT", "9090"))
    memo.metrics_server = await metrics.serve(port) if port else None
    # glibc keeps freed heap pages resident: controller/heap.py says why and what it saves.
    trim_interval = parse_duration(os.environ.get("SYNAPSE_SCIM_HEAP_TRIM_INTERVAL") or "5s")
    memo.heap_trim = asyncio.ensure_future(heap.trim_every(trim_interval))


async def stop(memo: kopf.Memo) -> None:
    if memo.get("heap_trim") is not None:
        memo.heap_trim.cancel()
    if memo.get("scim_pokes") is not None:
        memo.scim_pokes.close()
    if memo.get("scim_prefetch") is not None:
        memo.scim_prefetch.close()
    await memo.tenants.close()
    await memo.connections.close()
    if memo.get("metrics_server"):
        await memo.metrics_server.cleanup()


def stop_on_signals(stop: asyncio.Future[None]) -> None:
    """Resolve `stop` on SIGTERM (the kubelet) and SIGINT (Ctrl-C), however many of them come.

    kopf's own handlers set a future's result on every signal: a second one while the operator
    stops (Ctrl-C on `synapse-scim demo` interrupts the whole process group, then the demo
    terminates the operator) fails in the event loop with "ERROR asyncio: Exception in callback
    Future.set_result(<Signals.SIGTERM: 15>)". These handlers replace kopf's."""
    loop = asyncio.get_running_loop()

    def received(sig: signal.Signals) -> None:
        if stop.done():
            log.info("%s received: already stopping", sig.name)
            return
        log.info("%s received: stopping", sig.name)
        stop.set_result(None)

    for sig in STOP_SIGNALS:
        loop.add_signal_handler(sig, received, sig)


async def operate(
    namespaces: Sequence[str], liveness: str | None, stop: asyncio.Future[None], scim: ScimEndpoint | None = None
) -> None:
    """Run kopf until `stop` resolves (or kopf stops by itself). This is `kopf.operator` (its
    spawn_tasks and run_tasks), with kopf's signal handlers, which spawn_tasks installs, replaced
    by stop_on_signals'. kopf then stops through its stop flag: as on a signal of its own, except
    that it arms no SIGKILL of last resort (10 minutes later); in a pod, the kubelet's
    terminationGracePeriodSeconds is that."""
    current = asyncio.current_task()
    existing = {task for task in asyncio.all_tasks() if task is not current}
    tasks = await kopf.spawn_tasks(
        clusterwide=not namespaces,
        namespaces=list(namespaces),
        standalone=True,
        liveness_endpoint=liveness,
        stop_flag=stop,
        memo=kopf.Memo(scim=scim),
    )
    stop_on_signals(stop)
    await kopf.run_tasks(tasks, ignored=existing)


def ignore_stop_signals() -> None:
    """After the operator stopped, a late SIGTERM or SIGINT must not turn the clean exit into a
    death by signal: the interpreter's own teardown (garbage collection of the Azure SDKs) takes a
    few hundred milliseconds, with the signals' default action back once the event loop closed."""
    for sig in STOP_SIGNALS:
        signal.signal(sig, signal.SIG_IGN)


def run(namespaces: Sequence[str], liveness: str | None) -> int:
    """`synapse-scim run` without leader election: kopf until SIGTERM or SIGINT."""

    async def alone() -> None:
        stop = asyncio.get_running_loop().create_future()
        stop_on_signals(stop)
        scim = await serve_scim(namespaces)
        try:
            await operate(namespaces, liveness, stop, scim)
        finally:
            if scim is not None:
                await scim.close()

    try:
        asyncio.run(alone())
    except asyncio.CancelledError:
        pass
    return 0

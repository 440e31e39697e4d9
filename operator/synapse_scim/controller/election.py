"""Leader election with a coordination.k8s.io/v1 Lease: of several replicas, exactly one acts.

The protocol is client-go's (leaderelection/resourcelock): a candidate reads the Lease, and writes
itself in as holder when the Lease is missing, released (no holder), its own, or expired. Every
write is a replace carrying the resourceVersion it read, so two candidates racing for the same
expired Lease cannot both win: the API server answers the second one 409 Conflict.

Expiry is judged by the candidate's own monotonic clock: a Lease is expired when its record has not
changed for leaseDurationSeconds since this process last saw it change. Node clocks may disagree;
renewTime is written for people (kubectl) but never compared with the local wall clock.

The leader renews every `renew_period` and gives up when it could not renew for `renew_deadline`
(shorter than the lease duration, measured from *before* its last successful write was sent): it
stops before any standby can consider the Lease expired. Giving up is the caller's business
(`elected` below exits the process at once, so nothing keeps writing).

Why not a library: the kubernetes client's own `kubernetes.leaderelection` is thread-based and
blocking (time.sleep loops, the leader's work runs in a daemon thread), talks through the global
default client configuration, and has no Lease lock before kubernetes 32; kubernetes_asyncio's
would bring a second Kubernetes client; kopf's peering is not an election (peers of equal priority
all freeze). The protocol is small; this is it, on the client the operator already uses.

Running elected (`synapse-scim run` with SYNAPSE_SCIM_LEADER_ELECTION=on):
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
import socket
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

from aiohttp import web
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from synapse_scim import metrics
from synapse_scim.adapters.fence import FENCE, WriteFence
from synapse_scim.adapters.kube import api_client
from synapse_scim.controller import runtime
from synapse_scim.controller.scim import ScimEndpoint, serve_scim
from synapse_scim.core.durations import parse_duration

log = logging.getLogger("synapse_scim.leadership")

SERVICE_ACCOUNT_NAMESPACE = "/var/run/secrets/kubernetes.io/serviceaccount/namespace"


class LeaseLost(Exception):
    """The leader could not renew its Lease in time (or saw another holder): it must stop acting."""


def election_enabled(env: dict[str, str] | None = None) -> bool:
    """SYNAPSE_SCIM_LEADER_ELECTION: on/off (true/false, 1/0); off when unset."""
    value = (env if env is not None else os.environ).get("SYNAPSE_SCIM_LEADER_ELECTION", "off").strip().lower()
    if value in ("on", "true", "1", "yes"):
        return True
    if value in ("off", "false", "0", "no", ""):
        return False
    raise ValueError(f"SYNAPSE_SCIM_LEADER_ELECTION={value!r}: use on or off")


@dataclass(frozen=True)
class LeaseConfig:
    name: str
    namespace: str
    identity: str
    duration: float = 15.0
    renew_period: float = 5.0
    renew_deadline: float = 10.0
    retry_period: float = 2.0

    def __post_init__(self) -> None:
        if self.duration < 1:
            raise ValueError("SYNAPSE_SCIM_LEASE_DURATION must be at least 1s")
        if not 0 < self.renew_period < self.renew_deadline < self.duration:
            raise ValueError("lease timings must satisfy 0 < renew period < renew deadline < lease duration")

    @classmethod
    def from_env(cls, watch_namespaces: Sequence[str] = (), env: dict[str, str] | None = None) -> LeaseConfig:
        """SYNAPSE_SCIM_LEASE_NAME (default synapse-scim), SYNAPSE_SCIM_LEASE_NAMESPACE (default: the
        pod's namespace, POD_NAMESPACE or the ServiceAccount's, else the first watched namespace),
        SYNAPSE_SCIM_LEASE_DURATION (default 15s; renewal every third of it, given up after two
        thirds). The identity is POD_NAME, or hostname-pid outside a pod."""
        env = env if env is not None else dict(os.environ)
        duration = parse_duration(env.get("SYNAPSE_SCIM_LEASE_DURATION") or "15s")
        return cls(
            name=env.get("SYNAPSE_SCIM_LEASE_NAME") or "synapse-scim",
            namespace=env.get("SYNAPSE_SCIM_LEASE_NAMESPACE") or _default_namespace(env, watch_namespaces),
            identity=env.get("POD_NAME") or f"{socket.gethostname()}-{os.getpid()}",
            duration=duration,
            renew_period=duration / 3,
            renew_deadline=duration * 2 / 3,
            retry_period=max(0.2, min(2.0, duration / 7)),
        )


def _default_namespace(env: dict[str, str], watch_namespaces: Sequence[str]) -> str:
    if env.get("POD_NAMESPACE"):
        return env["POD_NAMESPACE"]
    try:
        with open(SERVICE_ACCOUNT_NAMESPACE) as f:
            return f.read().strip()
    except OSError:
        pass
    return watch_namespaces[0] if watch_namespaces else "default"


def _now() -> datetime:
    return datetime.now(UTC)


class LeaderElector:
    """One candidate for one Lease. `acquire()` waits until it leads; `hold()` renews until it cannot."""

    def __init__(self, api: client.CoordinationV1Api, config: LeaseConfig, fence: WriteFence | None = None) -> None:
        self.api = api
        self.config = config
        # The process's fence (adapters/fence.py) when elected() runs it; a candidate sends nothing
        # to Synapse until it holds the Lease, and nothing past the deadline of its last renewal.
        self.fence = fence if fence is not None else WriteFence()
        self.fence.close()
        self.is_leader = False
        self.holder: str | None = None  # the holder this candidate last saw
        self._observed: tuple[Any, ...] | None = None
        self._observed_at = 0.0
        self._request_timeout = max(1.0, config.renew_deadline / 2)

    # -- one round -------------------------------------------------------------------------------

    async def read(self) -> client.V1Lease | None:
        try:
            return await asyncio.to_thread(
                self.api.read_namespaced_lease,
                self.config.name,
                self.config.namespace,
                _request_timeout=self._request_timeout,
            )
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise

    def expired(self, lease: client.V1Lease) -> bool:
        """Whether `lease` may be taken: no holder, or its record unchanged for its whole duration
        since this candidate first saw it so (by this process's monotonic clock)."""
        spec = lease.spec or client.V1LeaseSpec()
        version = lease.metadata.resource_version if lease.metadata else None
        record = (spec.holder_identity, spec.renew_time, spec.lease_duration_seconds, version)
        if record != self._observed:
            self._observed, self._observed_at = record, time.monotonic()
        if not spec.holder_identity:
            return True
        duration = spec.lease_duration_seconds or self.config.duration
        return time.monotonic() - self._observed_at > duration

    async def try_acquire_or_renew(self) -> bool:
        """One round: True when this candidate holds the Lease afterwards."""
        try:
            lease = await self.read()
            if lease is None:
                return await self.create()
            spec = lease.spec or client.V1LeaseSpec()
            self.holder = spec.holder_identity
            if spec.holder_identity != self.config.identity and not self.expired(lease):
                return False
            return await self.claim(lease)
        except ApiException as exc:
            log.warning(
                "leader election: Lease %s/%s: %s %s", self.config.namespace, self.config.name, exc.status, exc.reason
            )
        except Exception as exc:  # the API server unreachable, a timeout: try again next round
            log.warning("leader election: Lease %s/%s: %s", self.config.namespace, self.config.name, exc)
        return False

    async def create(self) -> bool:
        now = _now()
        body = client.V1Lease(
            metadata=client.V1ObjectMeta(name=self.config.name, namespace=self.config.namespace),
            spec=client.V1LeaseSpec(
                holder_identity=self.config.identity,
                lease_duration_seconds=round(self.config.duration),
                acquire_time=now,
                renew_time=now,
                lease_transitions=0,
            ),
        )
        try:
            await asyncio.to_thread(
                self.api.create_namespaced_lease, self.config.namespace, body, _request_timeout=self._request_timeout
            )
        except ApiException as exc:
            if exc.status == 409:  # another candidate created it first
                return False
            raise
        self.holder = self.config.identity
        return True

    async def claim(self, lease: client.V1Lease) -> bool:
        """Write this candidate as holder over `lease` as it was read: False when somebody else wrote
        it in between (409 Conflict on its resourceVersion)."""
        old = lease.spec or client.V1LeaseSpec()
        mine = old.holder_identity == self.config.identity
        now = _now()
        lease.spec = client.V1LeaseSpec(
            holder_identity=self.config.identity,
            lease_duration_seconds=round(self.config.duration),
            acquire_time=old.acquire_time if mine and old.acquire_time else now,
            renew_time=now,
            lease_transitions=(old.lease_transitions or 0) + (0 if mine else 1),
        )
        try:
            await asyncio.to_thread(
                self.api.replace_namespaced_lease,
                self.config.name,
                self.config.namespace,
                lease,
                _request_timeout=self._request_timeout,
            )
        except ApiException as exc:
            if exc.status == 409:
                return False
            raise
        self.holder = self.config.identity
        return True

    # -- the loops -------------------------------------------------------------------------------

    async def acquire(self) -> None:
        """Wait until this candidate holds the Lease."""
        log.info(
            "leader election: %s is a standby for Lease %s/%s",
            self.config.identity,
            self.config.namespace,
            self.config.name,
        )
        while True:  # polling is the protocol: the Lease is re-read every retry period
            sent = time.monotonic()
            if await self.try_acquire_or_renew():
                break
            await asyncio.sleep(self.config.retry_period)
        self.fence.extend(sent + self.config.renew_deadline)
        self.is_leader = True
        log.info(
            "leader election: %s acquired Lease %s/%s: acting as the leader",
            self.config.identity,
            self.config.namespace,
            self.config.name,
        )

    async def hold(self) -> None:
        """Renew the Lease until it cannot be renewed within the deadline; then raise LeaseLost."""
        last = time.monotonic()  # acquire() wrote the Lease no earlier than this
        while True:
            await asyncio.sleep(self.config.renew_period)
            while True:
                sent = time.monotonic()
                left = last + self.config.renew_deadline - sent
                if left <= 0:
                    self.is_leader = False
                    self.fence.close()
                    raise LeaseLost(
                        f"could not renew Lease {self.config.namespace}/{self.config.name} within "
                        f"{self.config.renew_deadline:g}s"
                    )
                try:
                    renewed = await asyncio.wait_for(self.try_acquire_or_renew(), timeout=left)
                except TimeoutError:
                    renewed = False
                if renewed:
                    last = sent
                    self.fence.extend(sent + self.config.renew_deadline)
                    break
                if self.holder not in (None, self.config.identity):
                    self.is_leader = False
                    self.fence.close()
                    raise LeaseLost(f"Lease {self.config.namespace}/{self.config.name} is held by {self.holder}")
                await asyncio.sleep(
                    min(self.config.retry_period, max(0.0, last + self.config.renew_deadline - time.monotonic()))
                )

    async def release(self) -> None:
        """Give the Lease up on a clean shutdown, so a standby takes over without waiting for expiry."""
        if not self.is_leader:
            return
        self.is_leader = False
        self.fence.close()
        try:
            lease = await self.read()
            if lease is None or lease.spec is None or lease.spec.holder_identity != self.config.identity:
                return
            lease.spec.holder_identity = None
            lease.spec.lease_duration_seconds = 1
            lease.spec.renew_time = _now()
            await asyncio.to_thread(
                self.api.replace_namespaced_lease,
                self.config.name,
                self.config.namespace,
                lease,
                _request_timeout=self._request_timeout,
            )
            log.info(
                "leader election: %s released Lease %s/%s",
                self.config.identity,
                self.config.namespace,
                self.config.name,
            )
        except Exception as exc:  # it expires on its own
            log.warning(
                "leader election: could not release Lease %s/%s: %s", self.config.namespace, self.config.name, exc
            )


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
    config = LeaseConfig.from_env(namespaces)
    # A write about to leave after the leadership deadline ends the process, as a lost renewal does
    # (a paused leader may wake up with its queued writes ready before its renewal loop runs).
    FENCE.on_expired = lambda why: _lost(LeaseLost(why))
    elector = LeaderElector(client.CoordinationV1Api(api_client()), config, FENCE)
    metrics.LEADER.set(0)
    port = int(os.environ.get("SYNAPSE_SCIM_METRICS_PORT", "9090"))
    if port:
        await metrics.serve(port)

    # One stop for the whole run, standby and leader: a signal at any moment (also a second one,
    # or one between the two) resolves it, and nothing is left without a handler in between.
    stop = asyncio.get_running_loop().create_future()
    runtime.stop_on_signals(stop)
    # The SCIM endpoint serves on every replica, standby or leader (it is no kopf handler).
    scim = await serve_scim(namespaces)
    try:
        return await _elect_and_operate(elector, namespaces, liveness, stop, scim)
    finally:
        if scim is not None:
            await scim.close()


async def _elect_and_operate(
    elector: LeaderElector,
    namespaces: Sequence[str],
    liveness: str | None,
    stop: asyncio.Future[None],
    scim: ScimEndpoint | None = None,
) -> int:
    health = await _standby_liveness(liveness)
    acquiring = asyncio.create_task(elector.acquire())
    await asyncio.wait({acquiring, stop}, return_when=asyncio.FIRST_COMPLETED)
    if health is not None:
        await health.cleanup()
    if stop.done():
        acquiring.cancel()
        await elector.release()  # if it was acquired in the same moment
        log.info("leader election: stopped while standby")
        return 0

    metrics.LEADER.set(1)
    holding = asyncio.create_task(elector.hold())
    operating = asyncio.create_task(runtime.operate(namespaces, liveness, stop, scim))
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

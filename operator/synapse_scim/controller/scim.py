"""The SCIM endpoint in `synapse-scim run` (docs/scim.md): served on every replica, leader or standby.

Leader election gates only the kopf operator (election.py: a standby runs no kopf at all), so nothing
here is a kopf handler: each replica watches the ScimProviders itself and

- serves /scim/v2/<namespace>/<provider>/... on its own port (SYNAPSE_SCIM_SCIM_PORT or --scim-port;
  0, the default, serves nothing), over TLS 1.2+ with tls.crt/tls.key from a mounted Secret, reloaded
  when they change (adapters/scim/providers.py);
- keeps one KubeScimStore per provider (a watch-fed index: any replica answers any request);
- reads each provider's tokens from its Secret (a short cache: a rotation needs no restart);
- writes each provider's status: Ready (or the reason it is not served), the endpoint URL, the numbers
  of users and groups, lastRequestTime (at most every status interval). Every replica computes the same
  status from the same objects, and writes only what differs from what the object shows;
- the requests rejected in the last hour: each replica sees only the requests it answered, so it owns
  one entry of `status.rejectedByReplica` (its pod name, refreshed at most every status interval) and
  leaves the other replicas' entries as they are; `status.rejected` and `status.rejectedTotal` are the
  sum of those entries, a function of the object alone, so every replica computes the same and two
  replicas never rewrite each other's figures. Writes carry the resourceVersion they read: a replica
  that read a stale object gets 409 and tries again at its next tick instead of dropping an entry.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import os
import socket
import ssl
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from aiohttp import web
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from synapse_scim.adapters.kube import Kube, api_client
from synapse_scim.adapters.scim.kube_store import KubeScimStore
from synapse_scim.adapters.scim.providers import ReloadingTLS, SecretTokens, TLSFilesError
from synapse_scim.adapters.scim.server import (
    PREFIX,
    REJECTED_WINDOW,
    Provider,
    Registry,
    ServerSettings,
    TokenBucket,
    make_runner,
)
from synapse_scim.adapters.scim.watch import Watcher
from synapse_scim.core.durations import parse_duration
from synapse_scim.core.errors import ReasonedError
from synapse_scim.core.reasons import Reason
from synapse_scim.core.scim.resources import Kind
from synapse_scim.core.scim.service import ScimService
from synapse_scim.reads.scim_reads import ProviderKey, ScimProviderView, matching_rules

PROVIDERS = "scimproviders"
LOAD_WAIT = 20.0  # seconds a sync waits for the providers' first listing before it says they are not loaded
STATUS_TICK = 2.0  # how often the statuses are compared with what they should be (in memory; writes only on change)
REJECTED_SHOWN = 10  # reasons in status.rejected and in each replica's entry, the most frequent first
REPLICAS_SHOWN = 16  # entries of status.rejectedByReplica (the CRD's maxItems)

log = logging.getLogger("synapse_scim.scim")


def _flag(value: str, name: str) -> bool:
    value = value.strip().lower()
    if value in ("on", "true", "1", "yes"):
        return True
    if value in ("off", "false", "0", "no"):
        return False
    raise ValueError(f"{name}={value!r}: use on or off")


@dataclass(frozen=True)
class ScimSettings:
    port: int = 0  # 0: no SCIM endpoint
    host: str = "0.0.0.0"
    tls: bool = True
    tls_dir: str = "/etc/synapse-scim/scim-tls"  # tls.crt and tls.key, a mounted kubernetes.io/tls Secret
    tls_check_interval: float = 10.0
    base_url: str | None = None  # https://scim.example.com (an Ingress); else the Service's DNS name
    service_host: str = "synapse-scim-scim.default.svc"
    status_interval: float = 30.0  # lastRequestTime is written at most this often
    token_cache: float = 5.0
    request_timeout: float = 30.0
    rate: float = 50.0
    burst: int = 100
    replica: str = ""  # this replica's name in status.rejectedByReplica: POD_NAME, else hostname-pid

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None) -> ScimSettings:
        """SYNAPSE_SCIM_SCIM_PORT (0: off), _HOST, _TLS (on/off; off only behind a proxy that terminates
        TLS), _TLS_DIR, _BASE_URL, _SERVICE_HOST (default synapse-scim-scim.<pod namespace>.svc),
        _STATUS_INTERVAL, _TOKEN_CACHE, _REQUEST_TIMEOUT, _RATE and _BURST (per provider)."""
        env = env if env is not None else dict(os.environ)

        def get(name: str, default: str) -> str:
            return env.get(f"SYNAPSE_SCIM_SCIM_{name}") or default

        namespace = env.get("POD_NAMESPACE") or "default"
        return cls(
            port=int(get("PORT", "0")),
            host=get("HOST", "0.0.0.0"),
            tls=_flag(get("TLS", "on"), "SYNAPSE_SCIM_SCIM_TLS"),
            tls_dir=get("TLS_DIR", cls.tls_dir),
            tls_check_interval=parse_duration(get("TLS_CHECK_INTERVAL", "10s")),
            base_url=env.get("SYNAPSE_SCIM_SCIM_BASE_URL") or None,
            service_host=get("SERVICE_HOST", f"synapse-scim-scim.{namespace}.svc"),
            status_interval=parse_duration(get("STATUS_INTERVAL", "30s")),
            token_cache=parse_duration(get("TOKEN_CACHE", "5s")),
            request_timeout=parse_duration(get("REQUEST_TIMEOUT", "30s")),
            rate=float(get("RATE", "50")),
            burst=int(get("BURST", "100")),
            replica=env.get("POD_NAME") or f"{socket.gethostname()}-{os.getpid()}",
        )

    @property
    def origin(self) -> str:
        if self.base_url:
            return self.base_url.rstrip("/")
        return f"{'https' if self.tls else 'http'}://{self.service_host}:{self.port}"

    def endpoint(self, namespace: str, name: str) -> str:
        """The base URL an administrator pastes into the identity provider."""
        return f"{self.origin}{PREFIX}/{namespace}/{name}"


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _iso(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _seconds(value: Any) -> float:
    """A status timestamp in seconds; 0 when it is not one (an entry edited by hand is then dropped)."""
    try:
        return datetime.fromisoformat(str(value)).timestamp()
    except ValueError:
        return 0.0


@dataclass
class Served:
    """One ScimProvider as this replica serves it."""

    provider: Provider
    store: KubeScimStore
    tokens: SecretTokens
    obj: dict[str, Any]  # the ScimProvider as last seen
    written: dict[str, Any] = field(default_factory=dict)  # the status this replica last wrote
    rejected: dict[str, Any] | None = None  # this replica's entry of status.rejectedByReplica, as last decided
    rejected_at: float | None = None  # time.time() when it last changed


def _figures(entry: dict[str, Any] | None) -> Any:
    """What a replica's entry says, without the time it was computed at."""
    return None if entry is None else (entry["total"], entry["rejected"])


def rejected_summary(entries: Sequence[dict[str, Any]]) -> tuple[list[dict[str, Any]], int]:
    """status.rejected and status.rejectedTotal from the replicas' entries: counts added up by reason, the
    latest lastTime, the most frequent first. A function of the entries alone: every replica agrees."""
    merged: dict[str, dict[str, Any]] = {}
    total = 0
    for entry in entries:
        total += int(entry.get("total") or 0)
        for item in entry.get("rejected") or []:
            found = merged.setdefault(item["reason"], {"reason": item["reason"], "count": 0, "lastTime": ""})
            found["count"] += int(item["count"])
            found["lastTime"] = max(found["lastTime"], str(item["lastTime"]))
    ordered = sorted(merged.values(), key=lambda item: (-item["count"], item["reason"]))
    return ordered[:REJECTED_SHOWN], total


class ScimEndpoint:
    def __init__(self, settings: ScimSettings, api: client.ApiClient, namespaces: Sequence[str] = ()) -> None:
        self.settings = settings
        self.api = api
        self.namespaces = list(namespaces)
        self.custom = client.CustomObjectsApi(api)
        self.core = client.CoreV1Api(api)
        self.kube = Kube(api)
        self.registry = Registry(listed=False)  # until the ScimProviders are listed: requests wait
        self.served: dict[tuple[str, str], Served] = {}
        self.tls: ReloadingTLS | None = None
        self._runner: web.AppRunner | None = None
        self._watchers: list[Watcher] = []
        self._tasks: list[asyncio.Task[None]] = []
        self._status_lock = asyncio.Lock()
        self._listed: set[str | None] = set()  # the namespaces (None: all) whose providers were listed once
        self._all_listed = asyncio.Event()
        self._listeners: list[Callable[[ProviderKey, Kind | None, str, set[str]], None]] = []

    # -- what the operator's syncs read (reads/scim_reads.py: ScimSource) ----------------------------

    def listen(self, listener: Callable[[ProviderKey, Kind | None, str, set[str]], None]) -> None:
        """Be told of every pushed change: (provider, kind, id, the groups of a changed user); kind None
        when the ScimProvider itself changed or went."""
        self._listeners.append(listener)

    def _changed(self, key: ProviderKey, kind: Kind | None, resource_id: str) -> None:
        served = self.served.get(key)
        groups = served.store.groups_of(resource_id) if served is not None and kind is Kind.USER else set()
        for listener in self._listeners:
            try:
                listener(key, kind, resource_id, groups)
            except Exception:  # a listener's bug must not break the SCIM index
                log.exception("scim: a change listener failed")

    async def provider(self, namespace: str, name: str) -> ScimProviderView:
        """A served provider's objects and matching rules, once loaded (waits up to LOAD_WAIT seconds)."""
        try:
            await asyncio.wait_for(self._all_listed.wait(), LOAD_WAIT)
        except TimeoutError:
            raise ReasonedError(
                Reason.DIRECTORY_READ_FAILED,
                f"the ScimProviders were not listed within {LOAD_WAIT:.0f} s (the Kubernetes API is slow or away)",
            ) from None
        served = self.served.get((namespace, name))
        if served is None:
            raise ReasonedError(
                Reason.SCIM_PROVIDER_NOT_FOUND,
                f"ScimProvider {namespace}/{name} does not exist: create it, or fix the subject's provider "
                f"(`kubectl get scimproviders -n {namespace}`)",
            )
        try:
            await asyncio.wait_for(served.store.ready(), LOAD_WAIT)
        except TimeoutError:
            raise ReasonedError(
                Reason.DIRECTORY_READ_FAILED,
                f"ScimProvider {namespace}/{name}: its pushed users and groups did not load within {LOAD_WAIT:.0f} s",
            ) from None
        return ScimProviderView(namespace, name, served.store, matching_rules(served.obj))

    async def start(self) -> None:
        settings = self.settings
        if settings.tls:
            self.tls = ReloadingTLS(
                os.path.join(settings.tls_dir, "tls.crt"),
                os.path.join(settings.tls_dir, "tls.key"),
                settings.tls_check_interval,
            )
            self._tasks.append(asyncio.create_task(self.tls.watch()))
        self._runner = make_runner(
            self.registry,
            ServerSettings(public_url=settings.base_url, request_timeout=settings.request_timeout),
        )
        await self._runner.setup()
        site = web.TCPSite(
            self._runner, settings.host, settings.port, ssl_context=self.tls.context if self.tls else None
        )
        await site.start()
        targets: list[str | None] = [*self.namespaces] or [None]  # None: every namespace
        for namespace in targets:
            listing = functools.partial(self.take_listing, namespace)
            watcher = Watcher(self.custom, PROVIDERS, namespace, None, listing, self.take_event)
            watcher.start()
            self._watchers.append(watcher)
        self._tasks.append(asyncio.create_task(self._status_loop()))
        log.info(
            "scim: serving SCIM 2.0 on %s:%s (%s) for the ScimProviders of %s",
            settings.host,
            settings.port,
            "TLS" if self.tls else "plain HTTP: TLS is terminated in front",
            ", ".join(self.namespaces) or "every namespace",
        )

    async def close(self) -> None:
        for watcher in self._watchers:
            watcher.stop()
        for task in self._tasks:
            task.cancel()
        for served in self.served.values():
            served.store.close()
        if self._runner is not None:
            await self._runner.cleanup()

    # -- the ScimProviders ---------------------------------------------------------------------------

    def take_listing(self, namespace: str | None, names: set[str], resource_version: str) -> None:
        """A full listing of `namespace` (None: every namespace; names are then namespace/name) is in (its
        providers came as events): the providers it lacks are gone."""
        self._listed.add(namespace)
        if len(self._listed) >= max(1, len(self.namespaces)):
            self._all_listed.set()
            self.registry.listed.set()
        for key in list(self.served):
            if namespace is None:
                if f"{key[0]}/{key[1]}" not in names:
                    self.forget(key)
            elif key[0] == namespace and key[1] not in names:
                self.forget(key)

    def take_event(self, kind: str, obj: dict[str, Any]) -> None:
        key = (obj["metadata"]["namespace"], obj["metadata"]["name"])
        if kind == "DELETED":
            self.forget(key)
            return
        secret = str(((obj.get("spec") or {}).get("tokenSecretRef") or {}).get("name") or "")
        served = self.served.get(key)
        if served is not None:
            rules_before = matching_rules(served.obj)
            served.obj = obj
            served.tokens.point_at(secret)
            if matching_rules(obj) != rules_before:
                self._changed(key, None, "")
            return
        namespace, name = key
        store = KubeScimStore(self.custom, namespace, name)
        tokens = SecretTokens(self.core, namespace, secret, ttl=self.settings.token_cache)
        provider = Provider(
            namespace,
            name,
            ScimService(store),
            tokens.get,
            TokenBucket(rate=self.settings.rate, burst=self.settings.burst),
        )
        self.served[key] = Served(provider, store, tokens, obj)
        store.listeners.append(functools.partial(self._changed, key))
        self.registry.add(provider)
        self._tasks.append(asyncio.create_task(self._load(key, store)))
        log.info("scim: serving provider %s/%s at %s", namespace, name, self.settings.endpoint(namespace, name))

    async def _load(self, key: ProviderKey, store: KubeScimStore) -> None:
        """Load a newly served provider's objects, then tell the listeners: a binding that named the
        provider before it existed (ScimProviderNotFound) resolves now, not at its workspace's
        syncInterval. A provider with no pushed objects yet sends no other change."""
        await store.start()
        served = self.served.get(key)
        if served is not None and served.store is store:
            self._changed(key, None, "")

    def forget(self, key: tuple[str, str]) -> None:
        served = self.served.pop(key, None)
        if served is not None:
            self.registry.remove(*key)
            served.store.close()
            log.info("scim: provider %s/%s deleted: no longer served", *key)
            self._changed(key, None, "")

    # -- status --------------------------------------------------------------------------------------

    async def _status_loop(self) -> None:
        while True:
            try:
                await self.write_statuses()
            except Exception as exc:  # the API server away: the next tick tries again
                log.warning("scim: writing provider status: %s", exc)
            await asyncio.sleep(STATUS_TICK)

    async def write_statuses(self) -> None:
        async with self._status_lock:
            for key, served in list(self.served.items()):
                if self.served.get(key) is served:
                    await self._write_status(served)

    async def desired_status(self, served: Served, now: float | None = None) -> dict[str, Any]:
        now = time.time() if now is None else now
        namespace, name = served.provider.namespace, served.provider.name
        current = dict(served.obj.get("status") or {})
        generation = int(served.obj["metadata"].get("generation") or 0)
        problem = served.tokens.problem
        endpoint = self.settings.endpoint(namespace, name)
        if problem is None:
            ready = ("True", Reason.SERVING.value, f"the SCIM endpoint serves this provider at {endpoint}")
        else:
            ready = ("False", problem.reason.value, problem.message)
        before = next((c for c in current.get("conditions") or [] if c.get("type") == "Ready"), None)
        changed = before is None or (before.get("status"), before.get("reason"), before.get("message")) != ready
        condition = {
            "type": "Ready",
            "status": ready[0],
            "reason": ready[1],
            "message": ready[2],
            "observedGeneration": generation,
            "lastTransitionTime": _now()
            if before is None or before.get("status") != ready[0]
            else before.get("lastTransitionTime") or _now(),
        }
        if not changed and before is not None and before.get("observedGeneration") == generation:
            condition = before
        status: dict[str, Any] = {
            "observedGeneration": generation,
            "conditions": [condition],
            "endpoint": endpoint,
        }
        if served.store.is_ready:
            status["users"] = await served.store.count(Kind.USER)
            status["groups"] = await served.store.count(Kind.GROUP)
        else:
            for name_ in ("users", "groups"):
                if name_ in current:
                    status[name_] = current[name_]
        # lastRequestTime moves forward at most every status interval, whichever replica was asked.
        last, shown = served.provider.last_request, current.get("lastRequestTime")
        value = shown
        if last is not None and (
            shown is None or last - datetime.fromisoformat(shown).timestamp() >= self.settings.status_interval
        ):
            value = _iso(last)
        if value:
            status["lastRequestTime"] = value
        entries = self._rejected_entries(served, current, now)
        if entries:
            status["rejectedByReplica"] = entries
        status["rejected"], status["rejectedTotal"] = rejected_summary(entries)
        return status

    def _rejected_entries(self, served: Served, current: dict[str, Any], now: float) -> list[dict[str, Any]]:
        """status.rejectedByReplica: this replica's own entry (its window, refreshed at most every status
        interval) and the others' as the object shows them, less those not refreshed for longer than the
        window (a replica that is gone: a live one rewrites its entry before its counts expire)."""
        replica = self.settings.replica or f"{socket.gethostname()}-{os.getpid()}"
        if served.rejected_at is None or now - served.rejected_at >= self.settings.status_interval:
            found = served.provider.rejected.snapshot()
            fresh = None
            if found:
                fresh = {
                    "pod": replica,
                    "time": _iso(now),
                    "total": sum(each.count for each in found),
                    "rejected": [
                        {"reason": each.reason, "count": each.count, "lastTime": _iso(each.last)}
                        for each in found[:REJECTED_SHOWN]
                    ],
                }
            if _figures(fresh) != _figures(served.rejected):
                served.rejected, served.rejected_at = fresh, now
        oldest = now - REJECTED_WINDOW - self.settings.status_interval
        others = [
            entry
            for entry in current.get("rejectedByReplica") or []
            if isinstance(entry, dict) and entry.get("pod") != replica and _seconds(entry.get("time")) >= oldest
        ]
        entries = sorted(others, key=lambda entry: str(entry.get("time")), reverse=True)
        entries = entries[: REPLICAS_SHOWN - 1]
        if served.rejected is not None:
            entries.append(served.rejected)
        return sorted(entries, key=lambda entry: str(entry["pod"]))

    async def _write_status(self, served: Served) -> None:
        try:
            await served.tokens.get()  # the Secret as it is now (cached)
        except Exception as exc:  # unreadable with none read before: the status cannot say more yet
            log.warning("scim: tokens of %s: %s", served.obj["metadata"].get("name"), exc)
            return
        status = await self.desired_status(served)
        current = dict(served.obj.get("status") or {})
        if status == current or status == served.written:
            return
        meta = served.obj["metadata"]
        try:
            await self.kube.patch_status(
                PROVIDERS, meta["namespace"], meta["name"], current, status, meta.get("resourceVersion")
            )
        except ApiException as exc:
            if exc.status != 409:
                raise
            # Another replica wrote since this one read: the watch brings its write, the next tick retries.
            log.debug("scim: status of %s/%s changed meanwhile: next tick", meta["namespace"], meta["name"])
            return
        served.written = status
        served.obj = {**served.obj, "status": status}


async def serve_scim(namespaces: Sequence[str]) -> ScimEndpoint | None:
    """Start the SCIM endpoint when SYNAPSE_SCIM_SCIM_PORT is set (else None)."""
    settings = ScimSettings.from_env()
    if not settings.port:
        return None
    endpoint = ScimEndpoint(settings, api_client(), namespaces)
    try:
        await endpoint.start()
    except (OSError, ssl.SSLError, TLSFilesError) as exc:  # no certificate, the port taken: one line, exit 1
        log.error("scim: cannot serve the SCIM endpoint on port %s: %s", settings.port, exc)
        await endpoint.close()
        raise SystemExit(1) from None
    return endpoint

"""A fault-injecting HTTPS reverse proxy in front of a kube-apiserver (issue 17: Kubernetes-side faults).

The operator is pointed at the proxy (its own kubeconfig), the proxy forwards every request to the real
API server as the admin (the control plane's client certificate), and answers some of them itself,
seeded and at a rate set at runtime: a 409 Conflict, a request held and then answered 504 or cut, or a
write applied upstream whose answer is then lost. Watches are streamed chunk by chunk, never buffered,
and can be ended early.

    from synapse_scim_sandbox.devcluster.apiproxy import ApiFaultProxy, STATUS_PATCHES, OBJECT_WRITES

    with ApiFaultProxy(cluster, seed=7) as proxy:          # or proxy = ApiFaultProxy(cluster).start()
        start_operator(KUBECONFIG=str(proxy.kubeconfig))  # a kubeconfig that points at the proxy
        proxy.set_faults(rate=0.4, kinds=("conflict", "timeout"), match=(STATUS_PATCHES, OBJECT_WRITES))
        proxy.set_watch_faults(end_after=5.0)              # every watch ends after 5 s (the client resumes)
        ...
        proxy.injected                                     # Counter: {"conflict": 12, "timeout": 9, ...}
        proxy.clear()                                      # no faults from here on (counters kept)
    # stop() on exit; proxy.stop() otherwise

`cluster` is a `ControlPlane` (the proxy's serving certificate is signed by its CA, so the
kubeconfig trusts the same CA as the cluster's own) or anything with `server` and `kubeconfig` (an
`ExistingCluster`: the proxy then makes a CA of its own and forwards with the credentials of the
cluster's kubeconfig, if they are a client certificate or a token).

A test tool only: it forwards every request as the cluster's admin, whoever sends it (its kubeconfig
carries no credentials; it listens on 127.0.0.1 alone).

The API:

- `ApiFaultProxy(cluster, *, seed=0, workdir=None, hold=1.0)`; `.start()` (returns self), `.stop()`,
  a context manager. It runs its own event loop in a daemon thread.
- `.url`, `.kubeconfig` (a Path; the CA embedded), `.api_client()` (a kubernetes ApiClient
  through the proxy).
- `.set_faults(rate, kinds=("conflict", "timeout"), match=STATUS_PATCHES, hold=None)`: every request that
  a rule of `match` matches is faulted with probability `rate`, the kind drawn uniformly from `kinds`.
  `match`: one `Match` (methods, a path regex, optionally Content-Type and User-Agent regexes; or a
  `(methods, path regex)` pair), or a sequence of them. Thread-safe; it
  replaces the faults set before.
- `.set_watch_faults(end_after, rate=1.0)`: a watch (`?watch=true`) is ended after `end_after`
  seconds of streaming (with probability `rate`), as an API server ends one at its timeout: a clean end
  of the chunked body, and the client lists or watches again. `None` turns it off.
- `.clear()`: no faults of either kind from here on (in-flight holds still finish).
- `.injected`: a `Counter` (a copy) of what was injected, by kind (`conflict`, `timeout`, `cut`,
  `lost`, `watch_end`). `.matched`: a `Counter` of the requests the rules matched, by method.
  `.forwarded`: the number of requests forwarded upstream; `.watches`: how many of them were watches.

The kinds:

- `conflict`: answered 409 at once, a metav1 Status (reason `Conflict`, the message the API server
  writes for a stale resourceVersion); nothing reaches the API server.
- `timeout`: held `hold` seconds, then answered 504 with a metav1 Status (reason `Timeout`); nothing
  reaches the API server.
- `cut`: held `hold` seconds, then the connection is closed without an answer; nothing reaches the
  API server.
- `lost`: forwarded (the API server applies it), then held `hold` seconds and the connection closed
  without the answer: the client cannot tell it from `cut`, but the write happened.

Presets for `match`: `STATUS_PATCHES` (PATCH or PUT of any `.../status` subresource), `OBJECT_WRITES`
(PATCH or PUT of a synapse-scim.io object, not its status: kopf's finalizers and progress
annotations), `SCIM_IO_WRITES` (both, synapse-scim.io only).
"""

from __future__ import annotations

import asyncio
import base64
import collections
import json
import random
import re
import shutil
import ssl
import tempfile
import threading
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

import aiohttp
import yaml
from aiohttp import web

from .controlplane import free_port, write_kubeconfig
from .pki import issue_serving_cert, write_ca

KINDS = ("conflict", "timeout", "cut", "lost")

# Headers that belong to one hop (RFC 9110 7.6.1), and those aiohttp sets itself.
_HOP = frozenset(
    h.lower()
    for h in (
        "Connection",
        "Keep-Alive",
        "Proxy-Authenticate",
        "Proxy-Authorization",
        "TE",
        "Trailer",
        "Transfer-Encoding",
        "Upgrade",
        "Host",
        "Content-Length",
        "Date",
        "Server",
    )
)


@dataclass(frozen=True)
class Match:
    """Requests of one of `methods` whose path (without the query) matches the regex `path`; with
    `content_type` or `user_agent`, also those headers' regexes (e.g. `user_agent="^kopf/"`: kopf's
    own requests, not those the operator makes with the kubernetes client)."""

    methods: frozenset[str]
    path: re.Pattern[str]
    content_type: re.Pattern[str] | None = None
    user_agent: re.Pattern[str] | None = None

    @classmethod
    def of(
        cls,
        methods: Iterable[str] | str,
        path: str,
        content_type: str | None = None,
        user_agent: str | None = None,
    ) -> Match:
        names = (methods,) if isinstance(methods, str) else tuple(methods)
        return cls(
            frozenset(m.upper() for m in names),
            re.compile(path),
            re.compile(content_type) if content_type is not None else None,
            re.compile(user_agent) if user_agent is not None else None,
        )

    def __call__(self, method: str, path: str, headers: Mapping[str, str] | None = None) -> bool:
        headers = headers or {}
        return (
            method.upper() in self.methods
            and self.path.search(path) is not None
            and (self.content_type is None or self.content_type.search(headers.get("Content-Type", "")) is not None)
            and (self.user_agent is None or self.user_agent.search(headers.get("User-Agent", "")) is not None)
        )


STATUS_PATCHES = Match.of(("PATCH", "PUT"), r"/status$")
OBJECT_WRITES = Match.of(("PATCH", "PUT"), r"^/apis/synapse-scim\.io/(?!.*/status$)")
SCIM_IO_WRITES = Match.of(("PATCH", "PUT"), r"^/apis/synapse-scim\.io/")

MatchSpec = Match | tuple[Any, str]


def _matches(match: MatchSpec | Sequence[MatchSpec]) -> tuple[Match, ...]:
    if isinstance(match, Match):
        return (match,)
    if isinstance(match, tuple) and len(match) == 2 and isinstance(match[1], str) and not isinstance(match[0], Match):
        return (Match.of(match[0], match[1]),)
    return tuple(m if isinstance(m, Match) else Match.of(m[0], m[1]) for m in match)


@dataclass(frozen=True)
class _Faults:
    rate: float = 0.0
    kinds: tuple[str, ...] = ()
    match: tuple[Match, ...] = ()
    hold: float = 1.0
    watch_end_after: float | None = None
    watch_rate: float = 1.0


def status_body(code: int, reason: str, message: str, details: dict[str, Any] | None = None) -> dict[str, Any]:
    """A metav1 Status, as the API server answers a failure."""
    body: dict[str, Any] = {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": reason,
        "code": code,
    }
    if details:
        body["details"] = details
    return body


def _object_details(path: str) -> dict[str, Any]:
    # /apis/<group>/<version>/namespaces/<ns>/<plural>/<name>[/status]
    parts = [p for p in path.split("/") if p]
    if parts and parts[-1] == "status":
        parts = parts[:-1]
    details: dict[str, Any] = {}
    if len(parts) >= 2:
        details["name"] = parts[-1]
        details["kind"] = parts[-2]
    if len(parts) >= 3 and parts[0] == "apis":
        details["group"] = parts[1]
    return details


class ApiFaultProxy:
    """See the module's docstring."""

    def __init__(self, cluster: Any, *, seed: int = 0, workdir: Path | None = None, hold: float = 1.0) -> None:
        self.cluster = cluster
        self.upstream: str = str(cluster.server).rstrip("/")
        self._own_workdir = workdir is None
        self.workdir = workdir or Path(tempfile.mkdtemp(prefix="synapse-scim-apiproxy-"))
        self._lock = threading.Lock()
        self._random = random.Random(seed)
        self._faults = _Faults(hold=hold)
        self._injected: collections.Counter[str] = collections.Counter()
        self._matched: collections.Counter[str] = collections.Counter()
        self._forwarded = 0
        self._watches = 0
        self.port = 0
        self.url = ""
        self.kubeconfig = self.workdir / "kubeconfig-apiproxy"
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._upstream_auth: dict[str, str] = {}

    # -- lifecycle ---------------------------------------------------------------------------------

    def start(self) -> ApiFaultProxy:
        self.workdir.mkdir(parents=True, exist_ok=True)
        ca_cert, ca_key = self._ca()
        self._serving = issue_serving_cert(
            ca_cert,
            ca_key,
            self.workdir / "apiproxy.crt",
            self.workdir / "apiproxy.key",
            hosts=("127.0.0.1", "localhost"),
            common_name="synapse-scim-apiproxy",
        )
        self.port = free_port()
        self.url = f"https://127.0.0.1:{self.port}"
        self._client_ssl = self._upstream_context()
        write_kubeconfig(self.kubeconfig, self.url, ca_cert, user="apiproxy")
        self._thread = threading.Thread(target=self._run, name="apiproxy", daemon=True)
        self._thread.start()
        self._ready.wait(30)
        if self._error is not None:
            raise RuntimeError(f"the API proxy did not start: {self._error!r}") from self._error
        if not self._ready.is_set():
            raise RuntimeError("the API proxy did not start within 30 s")
        return self

    def stop(self) -> None:
        if self._loop is not None and self._stop is not None and self._thread is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
            self._thread.join(30)
        self._thread = None
        if self._own_workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)

    def __enter__(self) -> ApiFaultProxy:
        return self.start()

    def __exit__(self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None) -> None:
        self.stop()

    def api_client(self) -> Any:
        from kubernetes.config import new_client_from_config

        return new_client_from_config(config_file=str(self.kubeconfig))

    # -- faults (thread-safe) ----------------------------------------------------------------------

    def set_faults(
        self,
        rate: float,
        kinds: Sequence[str] = ("conflict", "timeout"),
        match: MatchSpec | Sequence[MatchSpec] = STATUS_PATCHES,
        hold: float | None = None,
    ) -> None:
        unknown = set(kinds) - set(KINDS)
        if unknown:
            raise ValueError(f"unknown fault kinds {sorted(unknown)}: the kinds are {', '.join(KINDS)}")
        if not 0.0 <= rate <= 1.0:
            raise ValueError(f"rate {rate} is not within [0, 1]")
        with self._lock:
            self._faults = _Faults(
                rate=rate,
                kinds=tuple(kinds),
                match=_matches(match),
                hold=self._faults.hold if hold is None else hold,
                watch_end_after=self._faults.watch_end_after,
                watch_rate=self._faults.watch_rate,
            )

    def set_watch_faults(self, end_after: float | None, rate: float = 1.0) -> None:
        with self._lock:
            f = self._faults
            self._faults = _Faults(f.rate, f.kinds, f.match, f.hold, end_after, rate)

    def clear(self) -> None:
        with self._lock:
            self._faults = _Faults(hold=self._faults.hold)

    @property
    def injected(self) -> collections.Counter[str]:
        with self._lock:
            return collections.Counter(self._injected)

    @property
    def matched(self) -> collections.Counter[str]:
        with self._lock:
            return collections.Counter(self._matched)

    @property
    def forwarded(self) -> int:
        with self._lock:
            return self._forwarded

    @property
    def watches(self) -> int:
        """The watches forwarded (streams opened)."""
        with self._lock:
            return self._watches

    def _decide(self, method: str, path: str, headers: Mapping[str, str]) -> tuple[str | None, float]:
        with self._lock:
            f = self._faults
            if not f.rate or not f.kinds or not any(m(method, path, headers) for m in f.match):
                return None, f.hold
            self._matched[method.upper()] += 1
            if self._random.random() >= f.rate:
                return None, f.hold
            kind = self._random.choice(f.kinds)
            self._injected[kind] += 1
            return kind, f.hold

    def _watch_end(self) -> float | None:
        with self._lock:
            f = self._faults
            if f.watch_end_after is None or self._random.random() >= f.watch_rate:
                return None
            return f.watch_end_after

    # -- TLS and credentials ----------------------------------------------------------------------------

    def _ca(self) -> tuple[Path, Path]:
        pki = getattr(self.cluster, "pki", None)
        if pki is not None and getattr(pki, "ca_key", None) is not None and Path(pki.ca_key).exists():
            return Path(pki.ca_cert), Path(pki.ca_key)
        return write_ca(self.workdir)

    def _upstream_context(self) -> ssl.SSLContext:
        """TLS to the API server with the credentials of the cluster's kubeconfig (the admin's)."""
        config = yaml.safe_load(Path(self.cluster.kubeconfig).read_text())
        contexts = {c["name"]: c["context"] for c in config.get("contexts") or ()}
        current = contexts.get(config.get("current-context"), {})
        cluster = next(
            (c["cluster"] for c in config.get("clusters") or () if c["name"] == current.get("cluster")),
            (config.get("clusters") or [{}])[0].get("cluster", {}),
        )
        user = next(
            (u["user"] for u in config.get("users") or () if u["name"] == current.get("user")),
            (config.get("users") or [{}])[0].get("user", {}),
        )
        ctx = ssl.create_default_context()
        if cluster.get("certificate-authority-data"):
            ctx.load_verify_locations(cadata=base64.b64decode(cluster["certificate-authority-data"]).decode())
        elif cluster.get("certificate-authority"):
            ctx.load_verify_locations(cafile=cluster["certificate-authority"])
        cert, key = user.get("client-certificate-data"), user.get("client-key-data")
        if cert and key:
            cert_path, key_path = self.workdir / "upstream.crt", self.workdir / "upstream.key"
            cert_path.write_bytes(base64.b64decode(cert))
            key_path.write_bytes(base64.b64decode(key))
            key_path.chmod(0o600)
            ctx.load_cert_chain(str(cert_path), str(key_path))
        elif user.get("client-certificate") and user.get("client-key"):
            ctx.load_cert_chain(user["client-certificate"], user["client-key"])
        if user.get("token"):
            self._upstream_auth = {"Authorization": f"Bearer {user['token']}"}
        return ctx

    # -- the server --------------------------------------------------------------------------------

    def _run(self) -> None:
        loop = asyncio.new_event_loop()
        asyncio.set_event_loop(loop)  # this thread's own
        self._loop = loop
        try:
            loop.run_until_complete(self._serve())
        except BaseException as exc:  # reported to start(), which raises it
            self._error = exc
            self._ready.set()
        finally:
            # Handlers still streaming (watches the clients kept open) end here, in their loop, not
            # later in the garbage collector with the loop closed.
            pending = asyncio.all_tasks(loop)
            for task in pending:
                task.cancel()
            if pending:
                loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.close()

    async def _serve(self) -> None:
        self._stop = asyncio.Event()
        server_ssl = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        server_ssl.load_cert_chain(str(self._serving[0]), str(self._serving[1]))
        # No connection limit: every watch of the operator holds one for minutes.
        connector = aiohttp.TCPConnector(ssl=self._client_ssl, limit=0)
        self._session = aiohttp.ClientSession(
            connector=connector,
            auto_decompress=False,  # bytes through as they come: gzip stays gzip
            timeout=aiohttp.ClientTimeout(total=None, sock_connect=10),
        )
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_route("*", "/{tail:.*}", self._handle)
        runner = web.AppRunner(app, access_log=None, handle_signals=False, shutdown_timeout=1.0)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", self.port, ssl_context=server_ssl)
        await site.start()
        self._ready.set()
        try:
            await self._stop.wait()
        finally:
            await runner.cleanup()
            await self._session.close()

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        path = request.path
        kind, hold = self._decide(request.method, path, request.headers)
        if kind == "conflict":
            return self._status(
                409,
                "Conflict",
                f"Operation cannot be fulfilled on {path}: the object has been modified; please apply your "
                "changes to the latest version and try again (injected by the API proxy)",
                _object_details(path),
            )
        if kind in ("timeout", "cut"):
            await request.read()
            await asyncio.sleep(hold)
            if kind == "timeout":
                return self._status(
                    504,
                    "Timeout",
                    "Timeout: request did not complete within the allowed duration (injected by the API proxy)",
                    {"retryAfterSeconds": 1},
                )
            return self._cut(request)
        response = await self._forward(request, lost=kind == "lost")
        if kind == "lost":
            await asyncio.sleep(hold)
            return self._cut(request)
        return response

    @staticmethod
    def _status(code: int, reason: str, message: str, details: dict[str, Any] | None) -> web.Response:
        return web.Response(
            status=code, text=json.dumps(status_body(code, reason, message, details)), content_type="application/json"
        )

    @staticmethod
    def _cut(request: web.Request) -> web.StreamResponse:
        transport = request.transport
        if transport is not None:
            transport.abort()  # no answer at all: the client sees the connection reset or closed
        raise asyncio.CancelledError  # aiohttp ends the handler; nothing is written

    async def _forward(self, request: web.Request, *, lost: bool = False) -> web.StreamResponse:
        headers = {k: v for k, v in request.headers.items() if k.lower() not in _HOP}
        headers.pop("Authorization", None)
        headers.update(self._upstream_auth)
        body = await request.read()
        with self._lock:
            self._forwarded += 1
        try:
            upstream = await self._session.request(
                request.method,
                self.upstream + request.rel_url.raw_path_qs,
                headers=headers,
                data=body if body else None,
                allow_redirects=False,
                # Forward the client's headers, no more: the kubernetes client sends its JSON bodies
                # without a Content-Type (the API server takes JSON then), and aiohttp's default for
                # bytes (application/octet-stream) would be refused with 415.
                skip_auto_headers=("Content-Type", "User-Agent", "Accept", "Accept-Encoding"),
            )
        except (aiohttp.ClientError, OSError) as exc:
            return self._status(502, "InternalError", f"the API proxy could not reach the API server: {exc}", None)
        try:
            if lost:
                await upstream.read()  # applied upstream; the answer goes nowhere
                return web.Response(status=204)
            out = web.StreamResponse(status=upstream.status, reason=upstream.reason)
            for name, value in upstream.headers.items():
                if name.lower() not in _HOP:
                    out.headers.add(name, value)
            if upstream.content_length is not None and "watch" not in request.query:
                out.content_length = upstream.content_length
            else:
                out.enable_chunked_encoding()
            await out.prepare(request)
            end_after = self._watch_end() if _is_watch(request) else None
            if _is_watch(request):
                with self._lock:
                    self._watches += 1
            if end_after is None:
                async for chunk in upstream.content.iter_any():
                    await out.write(chunk)
            else:
                await self._stream_until(upstream, out, end_after)
            await out.write_eof()
            return out
        except (ConnectionResetError, aiohttp.ClientConnectionResetError):
            return web.Response(status=499)  # the client went away (a watch it stopped): nothing to answer
        finally:
            upstream.release()

    async def _stream_until(self, upstream: aiohttp.ClientResponse, out: web.StreamResponse, seconds: float) -> None:
        """Copy a watch's chunks for `seconds`, then end it (a clean end, as at the server's timeout)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + seconds
        while True:
            left = deadline - loop.time()
            if left <= 0:
                break
            try:
                chunk = await asyncio.wait_for(upstream.content.readany(), timeout=left)
            except TimeoutError:
                break
            if not chunk:
                return  # the API server ended it first
            await out.write(chunk)
        with self._lock:
            self._injected["watch_end"] += 1
        upstream.close()


def _is_watch(request: web.Request) -> bool:
    return request.query.get("watch", "").lower() in ("1", "true") or "/watch/" in request.path

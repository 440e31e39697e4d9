"""The `Sandbox`: three HTTPS listeners (login, Graph, Synapse) over one in-memory state.

```python
async with Sandbox(seed="org.yaml", cert_dir=tmp_path) as sb:
    sb.authority_host, sb.graph_url, sb.workspace_endpoint("analytics"), sb.ca_path, sb.admin_url
```
`SandboxThread` runs the same object on a background thread with its own event loop, for sync code
and for tests that start the operator as another process.
"""

from __future__ import annotations

import asyncio
import shutil
import socket
import tempfile
import threading
import weakref
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path
from types import TracebackType
from typing import Any

from aiohttp import web

from .admin import PREFIX, AdminClient, SyncAdminClient, admin_routes
from .apps import GRAPH_AUDIENCE, AppRegistration
from .entra import EntraService
from .faults import FaultInjector
from .graph import GraphService
from .seed import load_seed
from .service import Service
from .state import Settings, State
from .synapse import SynapseService
from .tls import SandboxTLS

SeedSource = str | Path | Mapping[str, Any] | None


class Sandbox:
    def __init__(
        self,
        seed: SeedSource = None,
        *,
        cert_dir: str | Path | None = None,
        latency: Mapping[str, float] | None = None,
        token_lifetime: float = 3600.0,
        page_size: int = 100,
        graph_page_size: int = 100,
        delta_member_chunk: int = 1000,
        host: str = "127.0.0.1",
        ports: Mapping[str, int] | None = None,
        fault_hold: float = 30.0,
        log_size: int = 10000,
    ) -> None:
        """`seed`: path of a YAML seed, YAML text, a dict (see seed.py), or None for an empty tenant.
        `latency`: seconds per service ("login", "graph", "synapse"). `page_size`: Synapse role
        assignments per list page. `ports`: fixed ports per service (default: free ports).
        `fault_hold`: how long a "timeout" fault holds a request unless its rule says otherwise."""
        self.settings = Settings(
            token_lifetime=token_lifetime,
            page_size=page_size,
            graph_page_size=graph_page_size,
            delta_member_chunk=delta_member_chunk,
        )
        self._seed = seed
        self.state: State = load_seed(seed, settings=self.settings)
        self.faults = FaultInjector(latency=latency, hold=fault_hold, log_size=log_size)
        self.host = host
        self._ports = dict(ports or {})
        self._cert_dir_arg = Path(cert_dir) if cert_dir is not None else None
        self.cert_dir: Path | None = None
        self.tls: SandboxTLS | None = None
        self._runners: list[web.AppRunner] = []
        self._stopping: asyncio.Event | None = None
        self._transports: weakref.WeakSet[asyncio.BaseTransport] = weakref.WeakSet()
        self.ports: dict[str, int] = {}

    # ------------------------------------------------------------------ lifecycle
    async def start(self) -> Sandbox:
        if self._runners:
            return self
        self.cert_dir = self._cert_dir_arg or Path(tempfile.mkdtemp(prefix="synapse-scim-sandbox-"))
        self.tls = SandboxTLS.create(self.cert_dir)
        for app in self.state.apps.values():
            app.write_files(self.cert_dir)
        self._stopping = asyncio.Event()
        services: dict[str, Service] = {
            "login": EntraService(self.state, self.faults, self._stopping),
            "graph": GraphService(self.state, self.faults, self._stopping),
            "synapse": SynapseService(self.state, self.faults, self._stopping),
        }
        try:
            for name, service in services.items():
                app = web.Application(client_max_size=16 * 1024 * 1024, middlewares=[self._track_connection])
                if name == "login":
                    app.add_routes(admin_routes(self))
                app.router.add_route("*", "/{tail:.*}", service.handle)
                app.on_response_prepare.append(service.on_response_prepare)
                runner = web.AppRunner(app, access_log=None, handle_signals=False, shutdown_timeout=2.0)
                await runner.setup()
                self._runners.append(runner)
                sock = socket.socket(socket.AF_INET6 if ":" in self.host else socket.AF_INET, socket.SOCK_STREAM)
                try:
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                    sock.bind((self.host, self._ports.get(name, 0)))
                    self.ports[name] = sock.getsockname()[1]
                    await web.SockSite(runner, sock, ssl_context=self.tls.server_context).start()
                except BaseException:
                    sock.close()
                    raise
        except BaseException:
            await self.stop()
            raise
        login = services["login"]
        assert isinstance(login, EntraService)
        login.aliases = {self._url("graph"): GRAPH_AUDIENCE}
        return self

    @web.middleware
    async def _track_connection(
        self, request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        if request.transport is not None:
            self._transports.add(request.transport)
        return await handler(request)

    async def stop(self) -> None:
        if self._stopping is not None:
            self._stopping.set()
        runners, self._runners = self._runners, []
        for runner in runners:
            await runner.cleanup()
        # aiohttp closes idle keep-alive connections with a TLS close_notify and then waits (up to 30 s) for
        # the client's; a client that is not reading never answers. Drop them now.
        for transport in list(self._transports):
            transport.abort()
        self.ports = {}
        if self._cert_dir_arg is None and self.cert_dir is not None:
            shutil.rmtree(self.cert_dir, ignore_errors=True)
            self.cert_dir = None

    async def __aenter__(self) -> Sandbox:
        return await self.start()

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.stop()

    def reset(self) -> None:
        """Back to the seeded directory and workspaces; faults, counters and the log cleared. App
        registrations and issued tokens stay valid."""
        self.state.replace_data(load_seed(self._seed, settings=self.settings))
        self.faults.clear()
        self.faults.reset_counters()

    # ------------------------------------------------------------------ endpoints
    def _url(self, service: str) -> str:
        if service not in self.ports:
            raise RuntimeError("the sandbox is not started")
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"https://{host}:{self.ports[service]}"

    @property
    def authority_host(self) -> str:
        return self._url("login")

    @property
    def graph_url(self) -> str:
        return self._url("graph") + "/v1.0"

    @property
    def synapse_url(self) -> str:
        return self._url("synapse")

    def workspace_endpoint(self, workspace: str) -> str:
        return f"{self.synapse_url}/{workspace}"

    @property
    def admin_url(self) -> str:
        return self._url("login") + PREFIX

    @property
    def ca_path(self) -> Path:
        if self.tls is None:
            raise RuntimeError("the sandbox is not started")
        return self.tls.ca_path

    @property
    def tenant_id(self) -> str:
        return self.state.tenant_id

    @property
    def clients(self) -> dict[str, AppRegistration]:
        """Seeded app registrations by client id (secret, certificate_path, federated_token_file ...)."""
        return self.state.apps

    def client(self, name: str) -> AppRegistration:
        """An app registration by name or client id."""
        app = self.state.app(name) or next((a for a in self.state.apps.values() if a.name == name), None)
        if app is None:
            raise KeyError(f"no app registration {name!r}")
        return app

    @property
    def admin(self) -> AdminClient:
        return AdminClient(self.admin_url, self.ca_path)

    def sync_admin(self) -> SyncAdminClient:
        return SyncAdminClient(self.admin_url, self.ca_path)

    def info(self) -> dict[str, Any]:
        return {
            "authority_host": self.authority_host,
            "graph_url": self.graph_url,
            "synapse_url": self.synapse_url,
            "workspaces": {name: self.workspace_endpoint(name) for name in self.state.workspaces},
            "admin_url": self.admin_url,
            "ca_path": str(self.ca_path),
            "cert_dir": str(self.cert_dir),
            "tenant_id": self.tenant_id,
            "tenant_domain": self.state.tenant_domain,
            "clients": [a.summary() for a in self.state.apps.values()],
            "state": self.state.summary(),
        }

    def env(self, client: str | None = None) -> dict[str, str]:
        """Environment variables that point the SDKs (and the operator) at this sandbox, for one client
        (default: the first app registration)."""
        env = {
            "AZURE_AUTHORITY_HOST": self.authority_host,
            "AZURE_TENANT_ID": self.tenant_id,
            "SSL_CERT_FILE": str(self.ca_path),
            "REQUESTS_CA_BUNDLE": str(self.ca_path),
            "SYNAPSE_SCIM_GRAPH_URL": self.graph_url,
            "SYNAPSE_SCIM_SYNAPSE_URL": self.synapse_url,
            "SYNAPSE_SCIM_SANDBOX_ADMIN_URL": self.admin_url,
            "SYNAPSE_SCIM_SANDBOX_CA": str(self.ca_path),
            # What `synapse-scim run` trusts for Azure's endpoints (adapters/credentials.py).
            "SYNAPSE_SCIM_AZURE_CA_BUNDLE": str(self.ca_path),
        }
        for name in self.state.workspaces:
            key = "".join(c if c.isalnum() else "_" for c in name).upper()
            env[f"SYNAPSE_SCIM_WORKSPACE_{key}"] = self.workspace_endpoint(name)
        apps = list(self.state.apps.values())
        if apps:
            app = self.client(client) if client else apps[0]
            env["AZURE_CLIENT_ID"] = app.client_id
            if app.secret:
                env["AZURE_CLIENT_SECRET"] = app.secret
            elif app.federated_token_file:
                env["AZURE_FEDERATED_TOKEN_FILE"] = str(app.federated_token_file)
            elif app.certificate_path:
                env["AZURE_CLIENT_CERTIFICATE_PATH"] = str(app.certificate_path)
        return env


class SandboxThread:
    """A Sandbox on a background thread with its own event loop.

    ```python
    with SandboxThread(seed=..., cert_dir=tmp_path) as sb:   # or sb = SandboxThread(...).start()
        AccessControlClient(cred, sb.workspace_endpoint("ws1"), connection_verify=str(sb.ca_path))
    ```
    Attributes of the Sandbox (urls, ca_path, clients, state, ...) are available directly. Mutate
    state through `sb.admin` (SyncAdminClient) or `sb.call(fn)`, which runs fn(state) on the loop."""

    def __init__(self, seed: SeedSource = None, **kwargs: Any) -> None:
        self.sandbox = Sandbox(seed, **kwargs)
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None

    def start(self, timeout: float = 60.0) -> SandboxThread:
        if self._thread is not None:
            return self
        ready = threading.Event()
        errors: list[BaseException] = []

        def run() -> None:
            loop = asyncio.new_event_loop()
            self._loop = loop
            try:
                self._stop = asyncio.Event()
                loop.run_until_complete(self.sandbox.start())
            except BaseException as e:
                errors.append(e)
                ready.set()
                loop.close()
                return
            ready.set()
            try:
                loop.run_until_complete(self._stop.wait())
            finally:
                loop.run_until_complete(self.sandbox.stop())
                loop.run_until_complete(loop.shutdown_asyncgens())
                loop.close()

        self._thread = threading.Thread(target=run, name="synapse-scim-sandbox", daemon=True)
        self._thread.start()
        if not ready.wait(timeout):
            raise TimeoutError("the sandbox did not start in time")
        if errors:
            self._thread.join()
            self._thread = None
            raise errors[0]
        return self

    def stop(self, timeout: float = 30.0) -> None:
        if self._thread is None or self._loop is None or self._stop is None:
            return
        self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(timeout)
        self._thread = None

    def call(self, fn: Any, *args: Any) -> Any:
        """Run fn(state, *args) on the sandbox's loop (thread-safe) and return its result."""
        if self._loop is None:
            raise RuntimeError("the sandbox thread is not running")

        async def run() -> Any:
            return fn(self.sandbox.state, *args)

        return asyncio.run_coroutine_threadsafe(run(), self._loop).result(30)

    @property
    def admin(self) -> SyncAdminClient:
        return self.sandbox.sync_admin()

    @property
    def async_admin(self) -> AdminClient:
        return self.sandbox.admin

    def __getattr__(self, name: str) -> Any:
        return getattr(self.sandbox, name)

    def __enter__(self) -> SandboxThread:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

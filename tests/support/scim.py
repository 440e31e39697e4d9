"""`synapse-scim run` with the SCIM endpoint on, as the cluster tests start it: one helper for the endpoint's
own tests (tests/scim/test_endpoint_process.py) and the end-to-end tests of ScimGroup subjects
(tests/e2e/test_scim_subjects.py).

- `Pki`: a throw-away CA and the endpoint's certificate, written as a mounted kubernetes.io/tls Secret.
- `ScimOperator`: named `synapse-scim run` replicas serving SCIM over TLS on the loopback, the token
  Secrets and ScimProviders they serve, HTTP clients (httpx, and scim2-client's synchronous client) on
  a provider's base URL through a chosen replica. `env` is the environment every replica starts from
  (the e2e Harness's `operator_env()` points it at the Azure sandbox); default: this process's.
- `wait_for`: polls a check that may raise while the endpoint comes up.
"""

from __future__ import annotations

import base64
import os
import signal
import ssl
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import httpx
import httpx2
import trustme
from kubernetes import client
from kubernetes.client.exceptions import ApiException
from scim2_client.engines.httpx2 import SyncSCIMClient

from synapse_scim_sandbox.devcluster import free_port

GROUP, VERSION = "synapse-scim.io", "v1alpha1"
PROVIDERS = "scimproviders"
SCIM = "application/scim+json"


class Pki:
    """A CA and the endpoint's certificate, written as a mounted kubernetes.io/tls Secret would be."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        directory.mkdir(parents=True, exist_ok=True)
        self.ca: trustme.CA | None = None
        self.issue()

    def issue(self) -> trustme.CA:
        ca = trustme.CA(organization_name="synapse-scim scim test")
        leaf = ca.issue_cert("127.0.0.1", "localhost")
        # As the kubelet updates a Secret volume: new files, then one rename.
        for name, data in (
            ("tls.crt", b"".join(blob.bytes() for blob in leaf.cert_chain_pems)),
            ("tls.key", leaf.private_key_pem.bytes()),
        ):
            tmp = self.directory / f".{name}.new"
            tmp.write_bytes(data)
            os.replace(tmp, self.directory / name)
        self.ca = ca
        return ca

    def client_context(self, ca: trustme.CA | None = None) -> ssl.SSLContext:
        context = ssl.create_default_context()
        found = ca or self.ca
        assert found is not None
        found.configure_trust(context)
        return context


class ScimOperator:
    """`synapse-scim run` processes with the SCIM endpoint on, and the cluster objects they serve."""

    def __init__(self, cluster: Any, namespace: str, tmp: Path, env: Mapping[str, str] | None = None) -> None:
        self.cluster, self.namespace, self.tmp = cluster, namespace, tmp
        self.env = dict(env) if env is not None else None
        self.api = cluster.api_client()
        self.core = client.CoreV1Api(self.api)
        self.custom = client.CustomObjectsApi(self.api)
        self.pki = Pki(tmp / "scim-tls")
        self.processes: dict[str, subprocess.Popen[bytes]] = {}
        self.ports: dict[str, int] = {}

    # -- the processes -----------------------------------------------------------------------------

    def start(self, name: str = "a", port: int | None = None, **env: str) -> int:
        """Start replica `name` (its SCIM port kept across restarts); returns the port."""
        port = port or self.ports.get(name) or free_port()
        self.ports[name] = port
        environment = {
            **(self.env if self.env is not None else os.environ),
            "KUBECONFIG": str(self.cluster.kubeconfig),
            "SYNAPSE_SCIM_METRICS_PORT": "0",
            "SYNAPSE_SCIM_SCIM_PORT": str(port),
            "SYNAPSE_SCIM_SCIM_HOST": "127.0.0.1",
            "SYNAPSE_SCIM_SCIM_TLS_DIR": str(self.pki.directory),
            "SYNAPSE_SCIM_SCIM_TLS_CHECK_INTERVAL": "0.5s",
            "SYNAPSE_SCIM_SCIM_TOKEN_CACHE": "0.5s",
            "SYNAPSE_SCIM_SCIM_STATUS_INTERVAL": "1s",
            "SYNAPSE_SCIM_SCIM_BASE_URL": f"https://127.0.0.1:{port}",
            **env,
        }
        log = open(self.tmp / f"operator-{name}.log", "ab")  # owned by the process
        self.processes[name] = subprocess.Popen(
            [sys.executable, "-m", "synapse_scim.cli", "run", "--namespace", self.namespace, "--liveness", ""],
            env=environment,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        return port

    def start_elected(self, names: Sequence[str] = ("a", "b"), **env: str) -> None:
        """Replicas with leader election on (the Lease in this namespace): one leader, the others standby."""
        for name in names:
            self.start(
                name,
                SYNAPSE_SCIM_LEADER_ELECTION="on",
                SYNAPSE_SCIM_LEASE_NAMESPACE=self.namespace,
                POD_NAME=f"replica-{name}",
                **env,
            )

    def leader(self, names: Sequence[str] = ("a", "b")) -> str | None:
        """The replica whose log says it acquired the Lease, if exactly one does."""
        leaders = [n for n in names if "acquired Lease" in self.replica_log(n)]
        return leaders[0] if len(leaders) == 1 else None

    def exited(self) -> dict[str, int]:
        """The replicas that exited, with their exit codes."""
        return {n: p.returncode for n, p in self.processes.items() if p.poll() is not None}

    def kill(self, name: str = "a") -> None:
        proc = self.processes.pop(name)
        proc.send_signal(signal.SIGKILL)
        proc.wait()

    def stop_all(self) -> None:
        for proc in self.processes.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
        self.processes.clear()

    def close(self) -> None:
        self.stop_all()
        self.api.close()

    def replica_log(self, name: str) -> str:
        path = self.tmp / f"operator-{name}.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def log(self, tail: int = 4000) -> str:
        return "\n".join(
            f"--- {p.name} ---\n{p.read_text(errors='replace')[-tail:]}"
            for p in sorted(self.tmp.glob("operator-*.log"))
        )

    # -- objects ---------------------------------------------------------------------------------

    def secret(self, name: str, tokens: dict[str, str]) -> None:
        body = {
            "metadata": {"name": name},
            "data": {k: base64.b64encode(v.encode()).decode() for k, v in tokens.items()},
        }
        try:
            self.core.create_namespaced_secret(self.namespace, body)
        except ApiException as exc:
            if exc.status != 409:
                raise
            self.core.replace_namespaced_secret(name, self.namespace, body)

    def provider(self, name: str, secret: str, *, rules: Sequence[str] | None = None) -> None:
        spec: dict[str, Any] = {"tokenSecretRef": {"name": secret}}
        if rules is not None:
            spec["principalMatching"] = {"rules": list(rules)}
        self.custom.create_namespaced_custom_object(
            GROUP,
            VERSION,
            self.namespace,
            PROVIDERS,
            {"apiVersion": f"{GROUP}/{VERSION}", "kind": "ScimProvider", "metadata": {"name": name}, "spec": spec},
        )

    def provider_with_token(self, name: str, token: str, *, rules: Sequence[str] | None = None) -> None:
        """A ScimProvider and its token Secret (`<name>-scim-token`, key `token`)."""
        self.secret(f"{name}-scim-token", {"token": token})
        self.provider(name, f"{name}-scim-token", rules=rules)

    def provider_status(self, name: str) -> dict[str, Any]:
        found = self.custom.get_namespaced_custom_object(GROUP, VERSION, self.namespace, PROVIDERS, name)
        return found.get("status") or {}

    # -- HTTP --------------------------------------------------------------------------------------

    def base(self, provider: str = "okta", replica: str = "a") -> str:
        return f"https://127.0.0.1:{self.ports[replica]}/scim/v2/{self.namespace}/{provider}"

    def http(self, token: str, ca: trustme.CA | None = None) -> httpx.Client:
        return httpx.Client(
            verify=self.pki.client_context(ca),
            headers={"Authorization": f"Bearer {token}", "Content-Type": SCIM},
            timeout=20,
        )

    def serving(self, token: str, provider: str = "okta", replica: str = "a") -> bool:
        with self.http(token) as http:
            return http.get(f"{self.base(provider, replica)}/ServiceProviderConfig").status_code == 200

    def scim_client(self, provider: str, token: str, replica: str = "a") -> SyncSCIMClient:
        """scim2-client on a provider's base URL through one replica, its models discovered from the
        endpoint's /Schemas and /ResourceTypes. Close it with `.client.close()`."""
        http = httpx2.Client(
            base_url=self.base(provider, replica) + "/",
            headers={"Authorization": f"Bearer {token}"},
            verify=self.pki.client_context(),
            timeout=20,
        )
        scim = SyncSCIMClient(http)
        scim.discover()
        return scim


def wait_for(check: Callable[[], Any], what: str, timeout: float = 60.0, operator: ScimOperator | None = None) -> Any:
    """Poll `check` until it returns something true; an HTTP, TLS, assertion or key error while it is
    not there yet is kept as the last answer (shown if it never comes)."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        try:
            last = check()
            if last:
                return last
        except (httpx.HTTPError, ssl.SSLError, OSError, AssertionError, KeyError) as exc:
            last = exc
        time.sleep(0.2)
    raise AssertionError(f"{what}: not in {timeout}s (last: {last!r})\n{operator.log() if operator else ''}")

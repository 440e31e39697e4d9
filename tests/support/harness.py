"""What an end-to-end test drives: the operator process, the cluster's objects, the sandbox's admin API."""

from __future__ import annotations

import base64
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from kubernetes import client
from kubernetes.client.exceptions import ApiException

from synapse_scim_sandbox import SandboxThread

GROUP, VERSION = "synapse-scim.io", "v1alpha1"
WS_PLURAL, RB_PLURAL = "synapseworkspaces", "synapserolebindings"


class Harness:
    """What a test drives: the sandbox's admin API, the cluster's objects, waiting for status."""

    def __init__(self, cluster: Any, namespace: str, sandbox: SandboxThread, tmp: Path) -> None:
        self.cluster = cluster
        self.namespace = namespace
        self.sb = sandbox
        self.tmp = tmp
        self.api = cluster.api_client()
        self.custom = client.CustomObjectsApi(self.api)
        self.core = client.CoreV1Api(self.api)
        self.operator: subprocess.Popen[bytes] | None = None
        self.log_path = tmp / "operator.log"
        # The kubeconfig the operator is started with: the cluster's own unless a test points it
        # elsewhere (the fault-injecting API proxy, devcluster/apiproxy.py). The harness's own client
        # (self.api) always talks to the cluster directly.
        self.operator_kubeconfig: Path | None = None

    # -- the operator --------------------------------------------------------------------------

    def start_operator(self, command: list[str] | None = None, **env: str) -> None:
        """Run the operator as its own process: `synapse-scim run` from this venv by default, or any
        `command` that ends in the operator's own arguments (e.g. `buildah run <image> --`)."""
        environment = self.operator_env(**env)
        log = open(self.log_path, "ab")  # owned by the operator process
        command = command or [sys.executable, "-m", "synapse_scim.cli"]
        self.operator = subprocess.Popen(
            [*command, "run", "--namespace", self.namespace, "--liveness", ""],
            env=environment,
            stdout=log,
            stderr=subprocess.STDOUT,
        )

    def operator_env(self, **env: str) -> dict[str, str]:
        """The operator's environment: pointed at this cluster and trusting the sandbox's CA only (also
        what support.scim.ScimOperator starts its replicas from)."""
        environment = {
            **os.environ,
            "KUBECONFIG": str(self.operator_kubeconfig or self.cluster.kubeconfig),
            "SYNAPSE_SCIM_AZURE_CA_BUNDLE": str(self.sb.ca_path),
            "SYNAPSE_SCIM_DIRECTORY_POLL_INTERVAL": "1s",
            "SYNAPSE_SCIM_FINALIZER_WAIT": "20s",
            "SYNAPSE_SCIM_METRICS_PORT": "0",
            **env,
        }
        # The operator must trust nothing but what it is told: no ambient CA overrides.
        for var in (
            "SSL_CERT_FILE",
            "REQUESTS_CA_BUNDLE",
            "AZURE_CLIENT_SECRET",
            "AZURE_CLIENT_ID",
            "AZURE_TENANT_ID",
            "AZURE_FEDERATED_TOKEN_FILE",
            "AZURE_TOKEN_CREDENTIALS",
        ):
            if var not in env:
                environment.pop(var, None)
        return environment

    def stop_operator(self) -> None:
        if self.operator and self.operator.poll() is None:
            self.operator.send_signal(signal.SIGTERM)
            try:
                self.operator.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.operator.kill()
                self.operator.wait()
        self.operator = None

    def operator_log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    # -- the sandbox's directory --------------------------------------------------------------------

    @property
    def app(self) -> Any:
        """The operator's app registration in the sandbox (client id and secret)."""
        return self.sb.client("synapse-scim-operator")

    def _object_id(self, ref: str, kind: str) -> str:
        return str(self.sb.state.directory.resolve(ref, kinds=(kind,)).id).lower()

    def user_id(self, upn: str) -> str:
        return self._object_id(upn, "user")

    def group_id(self, name: str) -> str:
        return self._object_id(name, "group")

    def sp_id(self, name: str) -> str:
        return self._object_id(name, "servicePrincipal")

    # -- objects --------------------------------------------------------------------------------

    def secret(self, name: str, data: dict[str, str]) -> None:
        body = {"metadata": {"name": name}, "data": {k: base64.b64encode(v.encode()).decode() for k, v in data.items()}}
        try:
            self.core.create_namespaced_secret(self.namespace, body)
        except ApiException as exc:
            if exc.status != 409:
                raise
            self.core.replace_namespaced_secret(name, self.namespace, body)

    def workspace(
        self,
        name: str = "analytics",
        *,
        client_id: str | None = None,
        secret_name: str = "synapse-sp",
        credential: dict[str, Any] | None = None,
        own_identity: bool = False,
        **spec: Any,
    ) -> dict[str, Any]:
        """A SynapseWorkspace pointed at the sandbox: a client secret by default, `credential` to use
        another kind, `own_identity` for none at all (the operator's own identity)."""
        if client_id is None and not own_identity:
            client_id = self.app.client_id
            self.secret(secret_name, {"clientSecret": self.app.secret})
        body = {
            "apiVersion": f"{GROUP}/{VERSION}",
            "kind": "SynapseWorkspace",
            "metadata": {"name": name},
            "spec": {
                "endpoint": self.sb.workspace_endpoint(spec.pop("workspaceName", name)),
                "workspaceName": name,
                "tenantId": self.sb.tenant_id,
                "credential": credential
                or {"clientSecret": {"clientId": client_id, "secretRef": {"name": secret_name}}},
                "cloud": {
                    "authorityHost": self.sb.authority_host,
                    "graphEndpoint": self.sb.graph_url.removesuffix("/v1.0"),
                },
                **spec,
            },
        }
        if own_identity:
            del body["spec"]["credential"]
        return self.custom.create_namespaced_custom_object(GROUP, VERSION, self.namespace, WS_PLURAL, body)

    def binding(
        self, name: str, roles: list[str], subjects: list[dict[str, Any]], workspace: str = "analytics", **spec: Any
    ) -> dict[str, Any]:
        body = {
            "apiVersion": f"{GROUP}/{VERSION}",
            "kind": "SynapseRoleBinding",
            "metadata": {"name": name},
            "spec": {"workspaceRef": {"name": workspace}, "roles": roles, "subjects": subjects, **spec},
        }
        return self.custom.create_namespaced_custom_object(GROUP, VERSION, self.namespace, RB_PLURAL, body)

    def patch(self, plural: str, name: str, body: dict[str, Any]) -> None:
        self.custom.patch_namespaced_custom_object(GROUP, VERSION, self.namespace, plural, name, body)

    def delete(self, plural: str, name: str) -> None:
        self.custom.delete_namespaced_custom_object(GROUP, VERSION, self.namespace, plural, name)

    def get(self, plural: str, name: str) -> dict[str, Any] | None:
        try:
            return self.custom.get_namespaced_custom_object(GROUP, VERSION, self.namespace, plural, name)
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise

    def condition(self, plural: str, name: str, type_: str = "Ready") -> dict[str, Any] | None:
        obj = self.get(plural, name) or {}
        return next((c for c in (obj.get("status") or {}).get("conditions") or () if c["type"] == type_), None)

    # -- waiting --------------------------------------------------------------------------------

    def wait_for(self, predicate: Callable[[], Any], what: str, timeout: float = 60.0) -> Any:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            value = predicate()
            if value:
                return value
            if self.operator is not None and self.operator.poll() is not None:
                raise AssertionError(
                    f"operator exited ({self.operator.returncode}) while waiting for {what}:\n"
                    + self.operator_log()[-4000:]
                )
            time.sleep(0.2)
        raise AssertionError(
            f"timed out after {timeout}s waiting for {what}\n--- operator log ---\n" + self.operator_log()[-6000:]
        )

    def wait_condition(
        self,
        plural: str,
        name: str,
        *,
        type_: str = "Ready",
        status: str = "True",
        reason: str | None = None,
        timeout: float = 60.0,
    ) -> dict[str, Any]:
        def check() -> dict[str, Any] | None:
            obj = self.get(plural, name) or {}
            meta_gen = (obj.get("metadata") or {}).get("generation")
            for c in (obj.get("status") or {}).get("conditions") or ():
                if (
                    c["type"] == type_
                    and c["status"] == status
                    and (reason is None or c["reason"] == reason)
                    and c.get("observedGeneration") == meta_gen
                ):
                    return obj
            return None

        return self.wait_for(check, f"{plural}/{name} {type_}={status} reason={reason}", timeout)

    def assignments(self, workspace: str = "analytics") -> list[dict[str, Any]]:
        return self.sb.admin.list_assignments(workspace)


@contextmanager
def running_harness(
    cluster: Any, namespace: str, seed: Any, tmp_path: Path, request: Any = None, cls: type[Harness] = Harness
) -> Iterator[Harness]:
    """A sandbox seeded with `seed` and a Harness on it; on the way out the operator is stopped and,
    if the test failed, the tail of its log is shown (the report hook is in tests/conftest.py)."""
    with SandboxThread(seed=seed, cert_dir=tmp_path / "sandbox") as sb:
        h = cls(cluster, namespace, sb, tmp_path)
        try:
            yield h
        finally:
            h.stop_operator()
            rep = getattr(request.node, "rep_call", None) if request is not None else None
            if rep is not None and rep.failed:
                sys.stderr.write("--- operator log ---\n" + h.operator_log()[-8000:])
            h.api.close()

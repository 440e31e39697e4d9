"""`synapse-scim run` serving one ScimProvider over TLS on a local control plane, for the SCIM benchmark
and the transcript: the namespace, the token Secret, the ScimProvider, a test CA and the endpoint's
certificate, and the operator process (pinned to one CPU when there are two)."""

from __future__ import annotations

import base64
import os
import ssl
import time
from pathlib import Path

import trustme
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from scale_procs import OperatorProcess, cpu_plan, free_port
from synapse_scim_sandbox.devcluster import ControlPlane, ExistingCluster

GROUP, VERSION = "synapse-scim.io", "v1alpha1"


class ScimOperator:
    def __init__(
        self,
        cp: ControlPlane | ExistingCluster,
        workdir: Path,
        namespace: str,
        provider: str,
        *,
        env: dict[str, str] | None = None,
        azure_ca: Path | None = None,
    ) -> None:
        self.cp, self.workdir, self.namespace, self.provider = cp, workdir, namespace, provider
        self.env = env or {}  # more of the operator's settings, e.g. SYNAPSE_SCIM_SCIM_RATE
        self.azure_ca = azure_ca  # the sandbox's CA, when the operator talks to one (else the SCIM test CA)
        self.api = cp.api_client()
        self.core = client.CoreV1Api(self.api)
        self.custom = client.CustomObjectsApi(self.api)
        self.token = f"{provider}-" + base64.b32encode(os.urandom(20)).decode().lower()
        ca = trustme.CA(organization_name="synapse-scim bench")
        self.tls_dir = workdir / "scim-tls"
        self.tls_dir.mkdir()
        leaf = ca.issue_cert("127.0.0.1")
        leaf.private_key_pem.write_to_path(str(self.tls_dir / "tls.key"))
        (self.tls_dir / "tls.crt").write_bytes(b"".join(blob.bytes() for blob in leaf.cert_chain_pems))
        self.ca_path = workdir / "ca.pem"
        ca.cert_pem.write_to_path(str(self.ca_path))
        self.port = free_port()
        self.cpu = cpu_plan()[1]
        self.process: OperatorProcess | None = None
        self.starts = 0
        self.profile: Path | None = None  # cProfile's output of the next start (written when it stops)

    @property
    def base_url(self) -> str:
        return f"https://127.0.0.1:{self.port}/scim/v2/{self.namespace}/{self.provider}"

    def ssl_context(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=str(self.ca_path))

    def create_provider(self) -> None:
        try:
            self.core.create_namespace({"metadata": {"name": self.namespace}})
        except ApiException as exc:
            if exc.status != 409:  # a namespace made for it already (the smoke tests')
                raise
        secret = f"{self.provider}-scim-token"
        self.core.create_namespaced_secret(
            self.namespace, {"metadata": {"name": secret}, "stringData": {"token": self.token}}
        )
        self.custom.create_namespaced_custom_object(
            GROUP,
            VERSION,
            self.namespace,
            "scimproviders",
            {
                "apiVersion": f"{GROUP}/{VERSION}",
                "kind": "ScimProvider",
                "metadata": {"name": self.provider},
                "spec": {"tokenSecretRef": {"name": secret}},
            },
        )

    def start(self) -> float:
        """A new operator process; returns when it was started (perf_counter)."""
        self.starts += 1
        started = time.perf_counter()
        self.process = OperatorProcess(
            kubeconfig=self.cp.kubeconfig,
            ca_path=str(self.azure_ca or self.ca_path),
            namespace=self.namespace,
            log_path=self.workdir / f"operator-{self.starts}.log",
            cpu=self.cpu,
            profile=self.profile,
            env={
                "SYNAPSE_SCIM_SCIM_PORT": str(self.port),
                "SYNAPSE_SCIM_SCIM_HOST": "127.0.0.1",
                "SYNAPSE_SCIM_SCIM_TLS_DIR": str(self.tls_dir),
                "SYNAPSE_SCIM_SCIM_BASE_URL": f"https://127.0.0.1:{self.port}",
                **self.env,
            },
        )
        return started

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def stop(self) -> None:
        if self.process is not None:
            self.process.stop()

    def status(self) -> dict[str, object]:
        found = self.custom.get_namespaced_custom_object(GROUP, VERSION, self.namespace, "scimproviders", self.provider)
        return dict(found.get("status") or {})

    def log_lines(self, containing: str) -> list[str]:
        return [
            line
            for f in sorted(self.workdir.glob("operator-*.log"))
            for line in f.read_text(errors="replace").splitlines()
            if containing in line
        ]

    def logs(self) -> str:
        return "\n".join(
            f"--- {f.name} (tail) ---\n" + "\n".join(f.read_text(errors="replace").splitlines()[-40:])
            for f in sorted(self.workdir.glob("operator-*.log"))
        )

"""Helpers for tests that use the Helm chart in charts/synapse-scim.

- `Helm` (the session fixture `helm` of support.fixtures): the cached helm binary with a private home;
  `helm(...)` runs it, `helm.render(...)` is `helm template` with values files / --set, parsed into
  objects. Tests that render the chart take the fixture, so the root conftest marks them `cluster`
  (they need the tools hack/build-tools.sh builds).
- `install_chart(cluster, namespace, release, ...)`, `service_account_kubeconfig(cluster, namespace,
  release, path)`: a release in the session cluster, and a kubeconfig that authenticates as the
  chart's ServiceAccount (a TokenRequest token), so a test can run the operator, kubectl or a client
  with exactly the RBAC the chart grants:

      from support.chart import install_chart, service_account_kubeconfig

      install_chart(cluster, namespace, "scim", "--set", "image.pullPolicy=Never")
      kubeconfig = service_account_kubeconfig(cluster, namespace, "scim", tmp_path / "operator.kubeconfig")
      # then: synapse-scim run with KUBECONFIG=kubeconfig (outside a pod, kopf uses the kubeconfig)
"""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import yaml
from kubernetes import client

from synapse_scim_sandbox.devcluster import run_tool, write_kubeconfig
from synapse_scim_sandbox.devcluster.controlplane import helm_env

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "charts" / "synapse-scim"
CRDS = REPO / "crds"
VALUES_DIR = REPO / "tests" / "chart" / "values"
# helm template knows no cluster; without this it assumes Kubernetes v1.20 and the chart's kubeVersion
# (>=1.33.0-0) refuses to render. The version of the local control plane (hack/versions.env).
KUBE_VERSION = "1.37.2"


class Helm:
    """The cached helm, with caches and config in a private directory (`home`); no cluster involved."""

    def __init__(self, binary: Path, home: Path) -> None:
        self.binary = binary
        self.home = home

    def __call__(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return run_tool(self.binary, list(args), check=check, env_extra=helm_env(self.home))

    def render_text(
        self, *args: str, release: str = "scim", namespace: str = "synapse-scim", check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        return self(
            "template",
            release,
            str(CHART),
            "--namespace",
            namespace,
            "--kube-version",
            KUBE_VERSION,
            *args,
            check=check,
        )

    def render(self, *args: str, release: str = "scim", namespace: str = "synapse-scim") -> list[dict[str, Any]]:
        """The chart's objects for these helm arguments (-f FILE, --set K=V, ...)."""
        out = self.render_text(*args, release=release, namespace=namespace).stdout
        return [doc for doc in yaml.safe_load_all(out) if doc]


def fullname(release: str) -> str:
    """The chart's fullname for a release (no overrides)."""
    return release if "synapse-scim" in release else f"{release}-synapse-scim"


def by_kind(objects: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [o for o in objects if o["kind"] == kind]


def one(objects: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    found = by_kind(objects, kind)
    assert len(found) == 1, f"expected one {kind}, got {len(found)}"
    return found[0]


def install_chart(cluster: Any, namespace: str, release: str, *args: str) -> subprocess.CompletedProcess[str]:
    """`helm install` into the session cluster. --skip-crds: the cluster fixture installed the project's
    CRDs already (from the same files); no --wait: there is no kubelet to run the pod."""
    return cluster.helm("install", release, str(CHART), "--namespace", namespace, "--skip-crds", *args)


def service_account_kubeconfig(
    cluster: Any,
    namespace: str,
    release: str,
    path: Path,
    *,
    service_account: str | None = None,
    expiration_seconds: int = 3600,
) -> Path:
    """Write a kubeconfig at `path` that signs in as the release's ServiceAccount (TokenRequest)."""
    name = service_account or fullname(release)
    with cluster.api_client() as api:
        ca_cert = Path(api.configuration.ssl_ca_cert)
        request = client.AuthenticationV1TokenRequest(
            spec=client.V1TokenRequestSpec(audiences=[], expiration_seconds=expiration_seconds)
        )
        token = client.CoreV1Api(api).create_namespaced_service_account_token(name, namespace, request).status.token
        # The client wrote the admin kubeconfig's embedded CA to this file; read it while it is there.
        return write_kubeconfig(
            path, cluster.server, ca_cert, token=token, user=f"system:serviceaccount:{namespace}:{name}"
        )


def crd_documents(directory: Path = CRDS) -> dict[str, str]:
    """The project's CRD files by name, as text."""
    return {p.name: p.read_text() for p in sorted(directory.glob("*.yaml"))}

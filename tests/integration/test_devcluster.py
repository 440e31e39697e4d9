"""The local control plane is the real thing: CRD validation, RBAC with ServiceAccount tokens, the
cached kubectl and helm, and a clean stop that leaves no process behind."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from synapse_scim_sandbox.devcluster import Tools, install_crds, write_kubeconfig

WIDGET_CRD = {
    "apiVersion": "apiextensions.k8s.io/v1",
    "kind": "CustomResourceDefinition",
    "metadata": {"name": "widgets.devcluster.synapse-scim.io"},
    "spec": {
        "group": "devcluster.synapse-scim.io",
        "scope": "Namespaced",
        "names": {"plural": "widgets", "singular": "widget", "kind": "Widget"},
        "versions": [
            {
                "name": "v1",
                "served": True,
                "storage": True,
                "schema": {
                    "openAPIV3Schema": {
                        "type": "object",
                        "properties": {
                            "spec": {
                                "type": "object",
                                "required": ["size"],
                                "properties": {"size": {"type": "integer", "minimum": 1}},
                            }
                        },
                    }
                },
            }
        ],
    },
}


def _wait_until(predicate, timeout: float = 30.0, interval: float = 0.1) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return predicate()


def test_crd_becomes_established_and_schema_violation_names_the_field(cluster, namespace):
    with cluster.api_client() as api:
        install_crds(api, [WIDGET_CRD])
        crd = client.ApiextensionsV1Api(api).read_custom_resource_definition(WIDGET_CRD["metadata"]["name"])
        assert any(c.type == "Established" and c.status == "True" for c in crd.status.conditions)

        objects = client.CustomObjectsApi(api)
        good = {
            "apiVersion": "devcluster.synapse-scim.io/v1",
            "kind": "Widget",
            "metadata": {"name": "ok"},
            "spec": {"size": 3},
        }
        objects.create_namespaced_custom_object("devcluster.synapse-scim.io", "v1", namespace, "widgets", good)

        bad = {**good, "metadata": {"name": "bad"}, "spec": {"size": 0}}
        with pytest.raises(ApiException) as err:
            objects.create_namespaced_custom_object("devcluster.synapse-scim.io", "v1", namespace, "widgets", bad)
        assert err.value.status == 422
        assert "spec.size" in err.value.body
        assert "should be greater than or equal to 1" in err.value.body


def _token_client(cluster, namespace: str, tmp_path: Path) -> client.ApiClient:
    with cluster.api_client() as api:
        core = client.CoreV1Api(api)
        rbac = client.RbacAuthorizationV1Api(api)
        core.create_namespaced_service_account(namespace, {"metadata": {"name": "reader"}})
        rbac.create_namespaced_role(
            namespace,
            {
                "metadata": {"name": "configmap-reader"},
                "rules": [{"apiGroups": [""], "resources": ["configmaps"], "verbs": ["get", "list"]}],
            },
        )
        rbac.create_namespaced_role_binding(
            namespace,
            {
                "metadata": {"name": "reader"},
                "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "configmap-reader"},
                "subjects": [{"kind": "ServiceAccount", "name": "reader", "namespace": namespace}],
            },
        )
        core.create_namespaced_config_map(namespace, {"metadata": {"name": "visible"}, "data": {"k": "v"}})
        token = core.create_namespaced_service_account_token(
            "reader", namespace, {"spec": {"expirationSeconds": 600}}
        ).status.token
    ca = Path(tmp_path / "ca.crt")
    with cluster.api_client() as api:
        ca.write_text(Path(api.configuration.ssl_ca_cert).read_text())
    kubeconfig = write_kubeconfig(tmp_path / "reader.kubeconfig", cluster.server, ca, token=token, user="reader")
    return cluster.api_client(kubeconfig)


def test_service_account_token_is_limited_to_its_role(cluster, namespace, tmp_path):
    with _token_client(cluster, namespace, tmp_path) as api:
        core = client.CoreV1Api(api)
        assert core.read_namespaced_config_map("visible", namespace).data == {"k": "v"}
        assert [c.metadata.name for c in core.list_namespaced_config_map(namespace).items] == ["visible"]
        for forbidden in (
            lambda: core.list_namespaced_secret(namespace),
            lambda: core.create_namespaced_config_map(namespace, {"metadata": {"name": "x"}}),
            lambda: core.list_config_map_for_all_namespaces(),
        ):
            with pytest.raises(ApiException) as err:
                forbidden()
            assert err.value.status == 403
            assert "system:serviceaccount:" + namespace + ":reader" in err.value.body


def test_cached_kubectl_and_apiserver_report_the_pinned_release(cluster):
    pins = dict(
        line.split("=", 1)
        for line in (Path(__file__).resolve().parents[2] / "hack" / "versions.env").read_text().splitlines()
        if line and not line.startswith("#")
    )
    versions = json.loads(cluster.kubectl("version", "-o", "json").stdout)
    assert versions["clientVersion"]["gitVersion"] == pins["KUBERNETES_VERSION"]
    if not os.environ.get("SYNAPSE_SCIM_EXISTING_CLUSTER"):
        assert versions["serverVersion"]["gitVersion"] == pins["KUBERNETES_VERSION"]
        assert versions["serverVersion"]["buildDate"], "buildDate is stamped from the module's release time"
    assert pins["HELM_VERSION"] in cluster.helm("version", "--short").stdout


def test_helm_installs_and_uninstalls_a_chart(cluster, namespace, tmp_path):
    chart = tmp_path / "tiny"
    (chart / "templates").mkdir(parents=True)
    (chart / "Chart.yaml").write_text("apiVersion: v2\nname: tiny\nversion: 0.1.0\nkubeVersion: '>=1.33.0-0'\n")
    (chart / "templates" / "cm.yaml").write_text(
        textwrap.dedent("""\
        apiVersion: v1
        kind: ConfigMap
        metadata:
          name: {{ .Release.Name }}-cm
        data:
          kube: {{ .Capabilities.KubeVersion.Version | quote }}
        """)
    )
    cluster.helm("install", "tiny", str(chart), "--namespace", namespace, "--wait", "--timeout", "60s")
    data = json.loads(cluster.kubectl("get", "configmap", "tiny-cm", "-n", namespace, "-o", "json").stdout)["data"]
    assert data["kube"].startswith("v1.")
    assert "tiny" in cluster.helm("list", "--namespace", namespace, "--short").stdout
    cluster.helm("uninstall", "tiny", "--namespace", namespace, "--wait")
    gone = cluster.kubectl("get", "configmap", "tiny-cm", "-n", namespace, check=False)
    assert gone.returncode != 0 and "NotFound" in gone.stderr


_STARTER = textwrap.dedent("""
    import json, sys, time
    from synapse_scim_sandbox.devcluster import ControlPlane
    with ControlPlane(crds=False) as cp:
        print(json.dumps({"pids": cp.pids, "workdir": str(cp.workdir)}), flush=True)
        while True:
            time.sleep(1)
""")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie still answers kill(0); it is gone for every practical purpose once reaped or a zombie.
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except FileNotFoundError:
        return False


def _start_child(tools: Tools) -> tuple[subprocess.Popen[str], dict]:
    """A control plane of its own, in a child process, with the session's tools."""
    env = {**os.environ, "SYNAPSE_SCIM_TOOLS": str(tools.directory)}
    proc = subprocess.Popen([sys.executable, "-c", _STARTER], stdout=subprocess.PIPE, text=True, env=env)
    line = proc.stdout.readline()
    assert line, "the child control plane did not start"
    info = json.loads(line)
    assert len(info["pids"]) == 2 and all(_alive(p) for p in info["pids"])
    return proc, info


@pytest.mark.skipif(
    bool(os.environ.get("SYNAPSE_SCIM_EXISTING_CLUSTER")),
    reason="starts its own control plane; meaningless against an existing cluster",
)
def test_ctrl_c_stops_etcd_and_apiserver_and_removes_the_workdir(kube_tools):
    proc, info = _start_child(kube_tools)
    proc.send_signal(signal.SIGINT)
    proc.wait(timeout=60)
    assert not any(_alive(p) for p in info["pids"])
    assert not Path(info["workdir"]).exists()


@pytest.mark.skipif(
    bool(os.environ.get("SYNAPSE_SCIM_EXISTING_CLUSTER")),
    reason="starts its own control plane; meaningless against an existing cluster",
)
def test_sigkilled_parent_takes_its_control_plane_with_it(kube_tools):
    proc, info = _start_child(kube_tools)
    proc.kill()
    proc.wait(timeout=10)
    try:
        assert _wait_until(lambda: not any(_alive(p) for p in info["pids"]), timeout=30)
    finally:
        # A SIGKILLed parent cannot clean its directory; the processes are what must not leak.
        import shutil

        shutil.rmtree(info["workdir"], ignore_errors=True)

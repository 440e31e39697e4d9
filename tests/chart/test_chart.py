"""The Helm chart (charts/synapse-scim): lint, render, schema, server-side validation, the install /
upgrade / uninstall cycle against the real API server, the CRDs it ships, and its RBAC, asserted
verbatim so that any widening fails here.

No kubelet or controllers run in the local control plane: nothing waits for pods; the tests assert
what the API server stores.
"""

from __future__ import annotations

import json
import re
import tarfile
from typing import Any

import pytest
import yaml
from kubernetes import client

from support.chart import (
    CHART,
    CRDS,
    VALUES_DIR,
    by_kind,
    crd_documents,
    fullname,
    install_chart,
    one,
    service_account_kubeconfig,
)
from support.kube import gone
from synapse_scim_sandbox.devcluster import ControlPlane, install_crds
from synapse_scim_sandbox.devcluster.crds import wait_established

VALUES_FILES = sorted(p.name for p in VALUES_DIR.glob("*.yaml"))
GROUP = "synapse-scim.io"
CRD_NAMES = {f"synapseworkspaces.{GROUP}", f"synapserolebindings.{GROUP}"}

# The whole of the operator's access, in every namespace it watches. Widening the chart's RBAC must
# change this list, on purpose, in review.
NAMESPACED_RULES = [
    # kopf lists/watches both kinds and patches them (finalizer, annotations); the operator gets a
    # workspace by name and lists the bindings of its namespace.
    {
        "apiGroups": [GROUP],
        "resources": ["synapseworkspaces", "synapserolebindings"],
        "verbs": ["get", "list", "watch", "patch"],
    },
    # Status reports go to the status subresource.
    {"apiGroups": [GROUP], "resources": ["synapseworkspaces/status", "synapserolebindings/status"], "verbs": ["patch"]},
    # The credential Secret a workspace names: read by name, never listed or watched; patched for the
    # finalizer that keeps it until a deleted workspace's revocations are made.
    {"apiGroups": [""], "resources": ["secrets"], "verbs": ["get", "patch"]},
    # kopf posts core/v1 Events.
    {"apiGroups": [""], "resources": ["events"], "verbs": ["create"]},
    # The grant ledger's ConfigMaps: merge-patched, created when missing; never read, listed or deleted.
    {"apiGroups": [""], "resources": ["configmaps"], "verbs": ["create", "patch"]},
]
# scim.enabled only (controller/scim.py, adapters/scim/): every replica lists/watches the ScimProviders
# and patches their status; the store lists/watches, creates, replaces, gets and deletes the storage
# kinds. Tokens come from a Secret read by name (the `get` on secrets above). No patch, no
# deletecollection. test_chart_rbac_scim.py proves these are enough, and that each is needed.
SCIM_RULES = [
    {"apiGroups": [GROUP], "resources": ["scimproviders"], "verbs": ["list", "watch"]},
    {"apiGroups": [GROUP], "resources": ["scimproviders/status"], "verbs": ["patch"]},
    {
        "apiGroups": [GROUP],
        "resources": ["scimusers", "scimgroups", "scimgroupmembers"],
        "verbs": ["get", "list", "watch", "create", "update", "delete"],
    },
]
SCIM_ON = ["--set", "scim.enabled=true", "--set", "scim.tls.secretName=scim-tls"]
# Cluster-wide mode only: kopf watches CRDs to (re)discover resources.
CLUSTER_RULES = [
    {"apiGroups": ["apiextensions.k8s.io"], "resources": ["customresourcedefinitions"], "verbs": ["list", "watch"]},
]


# Leader election, in the release namespace only (a Role of its own, whatever watchNamespaces says):
# create the Lease (RBAC cannot limit create by name), then get and update only that Lease.
def leader_election_rules(lease: str) -> list[dict[str, Any]]:
    return [
        {"apiGroups": ["coordination.k8s.io"], "resources": ["leases"], "verbs": ["create"]},
        {
            "apiGroups": ["coordination.k8s.io"],
            "resources": ["leases"],
            "resourceNames": [lease],
            "verbs": ["get", "update"],
        },
    ]


def _leader_election_role(objects: list[dict[str, Any]], release: str, namespace: str) -> None:
    """The leader-election Role and RoleBinding, exactly."""
    name = f"{fullname(release)}-leader-election"
    role = next(r for r in by_kind(objects, "Role") if r["metadata"]["name"] == name)
    assert role["metadata"]["namespace"] == namespace
    assert role["rules"] == leader_election_rules(fullname(release))
    binding = next(b for b in by_kind(objects, "RoleBinding") if b["metadata"]["name"] == name)
    assert binding["metadata"]["namespace"] == namespace
    assert binding["roleRef"] == {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": name}
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": fullname(release), "namespace": namespace}]


# Minimal stand-ins for prometheus-operator's ServiceMonitor and PrometheusRule CRDs: the real ones are
# ~1000 lines and not part of this project; the server-side dry-run only needs the kinds to exist (their
# spec is kept as-is).
def _stand_in_crd(kind: str) -> dict[str, Any]:
    plural = f"{kind.lower()}s"
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"{plural}.monitoring.coreos.com"},
        "spec": {
            "group": "monitoring.coreos.com",
            "scope": "Namespaced",
            "names": {"plural": plural, "singular": kind.lower(), "kind": kind, "listKind": f"{kind}List"},
            "versions": [
                {
                    "name": "v1",
                    "served": True,
                    "storage": True,
                    "schema": {
                        "openAPIV3Schema": {
                            "type": "object",
                            "properties": {
                                "spec": {"type": "object", "x-kubernetes-preserve-unknown-fields": True},
                            },
                        }
                    },
                }
            ],
        },
    }


MONITORING_CRDS = [_stand_in_crd("ServiceMonitor"), _stand_in_crd("PrometheusRule")]


def _values_args(name: str) -> list[str]:
    return ["-f", str(VALUES_DIR / name)]


def _container(objects: list[dict[str, Any]]) -> dict[str, Any]:
    pod = one(objects, "Deployment")["spec"]["template"]["spec"]
    assert [c["name"] for c in pod["containers"]] == ["operator"]
    return pod["containers"][0]


def _env(container: dict[str, Any]) -> dict[str, str]:
    return {e["name"]: e.get("value") for e in container["env"]}


def _source_blocks(text: str) -> dict[str, str]:
    """helm template output, split by its `---\\n# Source: <file>\\n` headers."""
    parts = re.split(r"^---\n# Source: (.+)\n", text, flags=re.MULTILINE)
    blocks: dict[str, str] = {}
    for source, body in zip(parts[1::2], parts[2::2], strict=True):
        blocks[source] = blocks.get(source, "") + body
    return blocks


# -- the CRDs are the repository's crds/, not a copy -----------------------------------------------


def test_chart_crds_dir_is_a_relative_symlink_to_the_repository_crds():
    link = CHART / "crds"
    assert link.is_symlink(), "charts/synapse-scim/crds must be a symlink to ../../crds, not a copy"
    assert str(link.readlink()) == "../../crds"
    assert link.resolve() == CRDS.resolve()


def test_template_include_crds_is_the_crd_files_byte_for_byte(helm):
    blocks = _source_blocks(helm.render_text("--include-crds").stdout)
    shipped = {
        src.removeprefix("synapse-scim/crds/"): body
        for src, body in blocks.items()
        if src.startswith("synapse-scim/crds/")
    }
    files = crd_documents()
    assert sorted(shipped) == sorted(files)
    for name, text in files.items():
        assert shipped[name] == text + "\n", f"{name} differs from crds/{name}"  # helm appends one newline
        assert list(yaml.safe_load_all(shipped[name])) == list(yaml.safe_load_all(text))
    # Without --include-crds, the templates carry no CRD (Helm installs crds/ itself, before them).
    assert not by_kind(helm.render(), "CustomResourceDefinition")


def test_helm_package_contains_the_crd_files(helm, tmp_path):
    helm("package", str(CHART), "--destination", str(tmp_path))
    (tgz,) = tmp_path.glob("synapse-scim-*.tgz")
    with tarfile.open(tgz) as tar:
        names = tar.getnames()
        packaged = {
            n.removeprefix("synapse-scim/crds/"): tar.extractfile(n).read()  # type: ignore[union-attr]
            for n in names
            if n.startswith("synapse-scim/crds/")
        }
    assert packaged == {p.name: p.read_bytes() for p in sorted(CRDS.glob("*.yaml"))}
    assert all(n.startswith("synapse-scim/") and ".." not in n for n in names)  # no resolved-path duplicates
    assert {"synapse-scim/values.schema.json", "synapse-scim/README.md", "synapse-scim/templates/NOTES.txt"} <= set(
        names
    )


def test_helm_install_creates_the_crds_and_they_are_established(cluster):
    # The session cluster has the CRDs already; only a cluster without them shows that `helm install`
    # creates them from the chart's crds/ (through the symlink). A private control plane: ~3 s.
    with ControlPlane(tools=cluster.tools, crds=False) as fresh:
        fresh.helm("install", "scim", str(CHART), "--namespace", "synapse-scim", "--create-namespace")
        with fresh.api_client() as api:
            ext = client.ApiextensionsV1Api(api)
            wait_established(ext, sorted(CRD_NAMES), timeout=30)
            served = {c.metadata.name: c for c in ext.list_custom_resource_definition().items}
            assert CRD_NAMES <= set(served)
            for doc in (d for text in crd_documents().values() for d in yaml.safe_load_all(text) if d):
                crd = served[doc["metadata"]["name"]]
                assert crd.spec.group == doc["spec"]["group"]
                assert [v.name for v in crd.spec.versions] == [v["name"] for v in doc["spec"]["versions"]]
                assert crd.metadata.labels == doc["metadata"]["labels"]
            fresh.helm("uninstall", "scim", "--namespace", "synapse-scim")
            # Helm never deletes what it installed from crds/ (that would delete every custom resource).
            assert CRD_NAMES <= {c.metadata.name for c in ext.list_custom_resource_definition().items}


# -- lint and schema ------------------------------------------------------------------------------


@pytest.mark.parametrize("values", VALUES_FILES)
@pytest.mark.parametrize("strict", [False, True], ids=["lint", "lint-strict"])
def test_helm_lint_passes(helm, values, strict):
    out = helm("lint", str(CHART), *_values_args(values), *(["--strict"] if strict else []))
    assert "1 chart(s) linted, 0 chart(s) failed" in out.stdout


@pytest.mark.parametrize(
    ("args", "field", "detail"),
    [
        (["--set", "logFormat=xml"], "/logFormat", "'text', 'json'"),
        (["--set", "replicaCount=two"], "/replicaCount", "want integer"),
        (["--set", "replicaCount=6"], "/replicaCount", "maximum"),
        (
            ["--set", "leaderElection.leaseDuration=15 seconds"],
            "/leaderElection/leaseDuration",
            "does not match pattern",
        ),
        (["--set", "leaderElection.enabled=yes"], "/leaderElection/enabled", "want boolean"),
        (["--set", "bogus=1"], "at ''", "'bogus' not allowed"),
        (["--set", "image.tagg=v1"], "/image", "'tagg' not allowed"),
        (["--set", "operator.finalizerWait=1 minute"], "/operator/finalizerWait", "does not match pattern"),
        (["--set", "operator.writeConcurrency=0"], "/operator/writeConcurrency", "minimum"),
        (["--set", "peering.enabled=true"], "/peering/enabled", "false"),
        (["--set", "azureWorkloadIdentity.clientId=not-a-guid"], "/azureWorkloadIdentity/clientId", "pattern"),
        (["--set-json", 'watchNamespaces=["Team_A"]'], "/watchNamespaces/0", "pattern"),
        (["--set", "scim.enabled=yes"], "/scim/enabled", "want boolean"),
        (["--set", "scim.port=70000"], "/scim/port", "maximum"),
        (["--set", "scim.baseUrl=http://scim.example.com"], "/scim/baseUrl", "does not match pattern"),
        (["--set", "scim.baseUrl=https://scim.example.com/"], "/scim/baseUrl", "does not match pattern"),
        (["--set", "scim.ingress.host=https://scim.example.com"], "/scim/ingress/host", "does not match pattern"),
        (["--set", "scim.tls.secretName=Not_A_Name"], "/scim/tls/secretName", "does not match pattern"),
        (["--set", "scim.tls.certificate.issuerRef.kind=Foo"], "/scim/tls/certificate/issuerRef/kind", "'Issuer'"),
        (["--set", "scim.service.type=ExternalName"], "/scim/service/type", "'ClusterIP'"),
        (["--set", "scim.requestTimeout=30 seconds"], "/scim/requestTimeout", "does not match pattern"),
        (["--set", "scim.rateLimit=0"], "/scim/rateLimit", "exclusiveMinimum"),
        (["--set", "scim.tlss.secretName=x"], "/scim", "'tlss' not allowed"),
    ],
    ids=[
        "logFormat-enum",
        "replicaCount-type",
        "replicaCount-max",
        "lease-duration",
        "leader-election-bool",
        "unknown-top-level",
        "unknown-nested",
        "duration",
        "concurrency",
        "peering",
        "client-id",
        "namespace-name",
        "scim-enabled-bool",
        "scim-port",
        "scim-base-url-http",
        "scim-base-url-slash",
        "scim-ingress-host",
        "scim-tls-secret",
        "scim-issuer-kind",
        "scim-service-type",
        "scim-timeout",
        "scim-rate",
        "scim-unknown-key",
    ],
)
def test_schema_rejects_bad_values_naming_the_field(helm, args, field, detail):
    out = helm.render_text(*args, check=False)
    assert out.returncode != 0
    assert "values don't meet the specifications of the schema" in out.stderr
    assert field in out.stderr and detail in out.stderr, out.stderr


def test_lint_reports_schema_errors_too(helm):
    out = helm("lint", str(CHART), "--strict", "--set", "logFormat=xml", check=False)
    assert out.returncode != 0
    assert "/logFormat" in out.stdout + out.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["--set", "azureCABundle.configMap=a", "--set", "azureCABundle.secret=b"],
            "set configMap or secret, not both",
        ),
        (["--set", "serviceAccount.create=false"], "serviceAccount.name is required"),
        (
            ["--set", "replicaCount=2", "--set", "leaderElection.enabled=false"],
            "replicaCount > 1 needs leaderElection.enabled=true",
        ),
        (["--set", "scim.enabled=true"], "scim.enabled needs scim.tls.secretName"),
        ([*SCIM_ON, "--set", "scim.ingress.enabled=true"], "scim.ingress.enabled needs scim.ingress.host"),
        (
            ["--set", "scim.enabled=true", "--set", "scim.tls.certificate.enabled=true"],
            "scim.tls.certificate.enabled needs scim.tls.certificate.issuerRef.name",
        ),
        ([*SCIM_ON, "--set", "scim.port=9090"], "scim.port must differ from metrics.port"),
        ([*SCIM_ON, "--set", "scim.port=8080"], "scim.port must differ from healthPort"),
    ],
)
def test_template_refuses_contradictory_values(helm, args, message):
    out = helm.render_text(*args, check=False)
    assert out.returncode != 0 and message in out.stderr, out.stderr


# -- rendering -----------------------------------------------------------------------------------


def test_default_rbac_is_exactly_the_minimal_cluster_role(helm):
    objects = helm.render(release="scim", namespace="ops")
    role = one(objects, "ClusterRole")
    assert role["rules"] == NAMESPACED_RULES + CLUSTER_RULES
    binding = one(objects, "ClusterRoleBinding")
    assert binding["roleRef"] == {
        "apiGroup": "rbac.authorization.k8s.io",
        "kind": "ClusterRole",
        "name": role["metadata"]["name"],
    }
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "scim-synapse-scim", "namespace": "ops"}]
    # Besides the ClusterRole, only leader election's Role in the release namespace.
    assert [r["metadata"]["name"] for r in by_kind(objects, "Role")] == ["scim-synapse-scim-leader-election"]
    assert len(by_kind(objects, "RoleBinding")) == 1
    _leader_election_role(objects, "scim", "ops")
    assert _container(objects)["args"] == ["run", "--log-format=text", "--liveness=http://0.0.0.0:8080/healthz"]


def test_namespaced_rbac_is_a_role_per_watched_namespace_and_nothing_cluster_scoped(helm):
    objects = helm.render(*_values_args("namespaced.yaml"), release="scim", namespace="ops")
    assert not by_kind(objects, "ClusterRole") and not by_kind(objects, "ClusterRoleBinding")
    _leader_election_role(objects, "scim", "ops")
    roles = [r for r in by_kind(objects, "Role") if not r["metadata"]["name"].endswith("-leader-election")]
    bindings = [b for b in by_kind(objects, "RoleBinding") if not b["metadata"]["name"].endswith("-leader-election")]
    assert sorted(r["metadata"]["namespace"] for r in roles) == ["team-a", "team-b"]
    assert sorted(b["metadata"]["namespace"] for b in bindings) == ["team-a", "team-b"]
    for role in roles:
        assert role["rules"] == NAMESPACED_RULES
    for binding in bindings:
        assert binding["roleRef"] == {
            "apiGroup": "rbac.authorization.k8s.io",
            "kind": "Role",
            "name": "scim-synapse-scim",
        }
        assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "scim-synapse-scim", "namespace": "ops"}]
    assert _container(objects)["args"] == [
        "run",
        "--namespace=team-a",
        "--namespace=team-b",
        "--log-format=text",
        "--liveness=http://0.0.0.0:8080/healthz",
    ]
    # Every object is namespaced: a namespace admin can review the whole footprint.
    assert all(o["metadata"].get("namespace") for o in objects)


def test_rbac_create_false_renders_no_rbac(helm):
    kinds = {o["kind"] for o in helm.render("--set", "rbac.create=false")}
    assert not kinds & {"ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding"}


def test_deployment_is_hardened(helm):
    objects = helm.render()
    deployment = one(objects, "Deployment")
    assert deployment["spec"]["replicas"] == 1
    # Leader election: a new pod waits as a standby until the old one releases the Lease.
    assert deployment["spec"]["strategy"] == {
        "type": "RollingUpdate",
        "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0},
    }
    pod = deployment["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] == 10001
    assert pod["securityContext"]["runAsGroup"] == 10001
    assert pod["securityContext"]["fsGroup"] == 10001
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert pod["automountServiceAccountToken"] is True
    assert pod["enableServiceLinks"] is False
    assert pod["serviceAccountName"] == "scim-synapse-scim"
    container = _container(objects)
    sc = container["securityContext"]
    assert sc["allowPrivilegeEscalation"] is False
    assert sc["readOnlyRootFilesystem"] is True
    assert sc["privileged"] is False
    assert sc["capabilities"] == {"drop": ["ALL"]}
    assert "add" not in sc["capabilities"]
    assert container["image"] == "synapse-scim:0.1.0"
    assert container["imagePullPolicy"] == "IfNotPresent"
    assert container["resources"] == {
        "requests": {"cpu": "50m", "memory": "128Mi"},
        "limits": {"cpu": "500m", "memory": "512Mi"},
    }
    assert {"name": "tmp", "mountPath": "/tmp"} in container["volumeMounts"]
    assert {"name": "tmp", "emptyDir": {"sizeLimit": "64Mi"}} in pod["volumes"]
    for probe in ("livenessProbe", "readinessProbe"):
        assert container[probe]["httpGet"] == {"path": "/healthz", "port": "healthz"}
    assert {"name": "healthz", "containerPort": 8080, "protocol": "TCP"} in container["ports"]
    assert {"name": "http-metrics", "containerPort": 9090, "protocol": "TCP"} in container["ports"]
    # The ServiceAccount opts out of token automounting; only the operator pod opts in.
    assert one(objects, "ServiceAccount")["automountServiceAccountToken"] is False


def test_default_env_and_metrics_service(helm):
    objects = helm.render()
    assert _env(_container(objects)) == {
        "SYNAPSE_SCIM_DIRECTORY_POLL_INTERVAL": "30s",
        "SYNAPSE_SCIM_WRITE_CONCURRENCY": "8",
        "SYNAPSE_SCIM_READ_CONCURRENCY": "8",
        "SYNAPSE_SCIM_FINALIZER_WAIT": "60s",
        "SYNAPSE_SCIM_DELETION_TIMEOUT": "10m",
        "SYNAPSE_SCIM_METRICS_PORT": "9090",
        "SYNAPSE_SCIM_LEADER_ELECTION": "on",
        "SYNAPSE_SCIM_LEASE_NAME": "scim-synapse-scim",
        "SYNAPSE_SCIM_LEASE_DURATION": "15s",
        "POD_NAME": None,
        "POD_NAMESPACE": None,
    }
    downward = {e["name"]: e["valueFrom"] for e in _container(objects)["env"] if "valueFrom" in e}
    assert downward == {
        "POD_NAME": {"fieldRef": {"fieldPath": "metadata.name"}},
        "POD_NAMESPACE": {"fieldRef": {"fieldPath": "metadata.namespace"}},
    }
    service = one(objects, "Service")
    assert service["spec"]["ports"] == [
        {"name": "http-metrics", "port": 9090, "targetPort": "http-metrics", "protocol": "TCP"}
    ]
    assert service["spec"]["selector"] == one(objects, "Deployment")["spec"]["selector"]["matchLabels"]
    assert {o["kind"] for o in objects} == {
        "ServiceAccount",
        "ClusterRole",
        "ClusterRoleBinding",
        "Role",
        "RoleBinding",
        "Service",
        "Deployment",
    }


def test_two_replicas_with_leader_election_and_one_without(helm):
    objects = helm.render("--set", "replicaCount=2", release="scim", namespace="ops")
    assert one(objects, "Deployment")["spec"]["replicas"] == 2
    _leader_election_role(objects, "scim", "ops")
    single = helm.render("--set", "leaderElection.enabled=false", release="scim", namespace="ops")
    deployment = one(single, "Deployment")
    assert deployment["spec"]["strategy"] == {"type": "Recreate"}  # every pod acts: never two at once
    assert not by_kind(single, "Role") and not by_kind(single, "RoleBinding")
    env = _env(_container(single))
    assert not {"SYNAPSE_SCIM_LEADER_ELECTION", "POD_NAME", "POD_NAMESPACE"} & set(env)


def test_metrics_disabled_turns_the_endpoint_off(helm):
    objects = helm.render("--set", "metrics.enabled=false", "--set", "metrics.serviceMonitor.enabled=true")
    assert not by_kind(objects, "Service") and not by_kind(objects, "ServiceMonitor")
    container = _container(objects)
    assert _env(container)["SYNAPSE_SCIM_METRICS_PORT"] == "0"
    assert [p["name"] for p in container["ports"]] == ["healthz"]


def test_workload_identity_ca_bundle_network_policy_and_pdb(helm):
    objects = helm.render(*_values_args("hardened-azure.yaml"), namespace="ops")
    sa = one(objects, "ServiceAccount")
    assert sa["metadata"]["annotations"] == {
        "azure.workload.identity/client-id": "11111111-2222-3333-4444-555555555555",
        "azure.workload.identity/tenant-id": "aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee",
    }
    pod = one(objects, "Deployment")["spec"]["template"]
    assert pod["metadata"]["labels"]["azure.workload.identity/use"] == "true"
    container = _container(objects)
    assert _env(container)["SYNAPSE_SCIM_AZURE_CA_BUNDLE"] == "/etc/synapse-scim/azure-ca/ca.crt"
    assert {"name": "azure-ca", "mountPath": "/etc/synapse-scim/azure-ca", "readOnly": True} in container[
        "volumeMounts"
    ]
    assert {
        "name": "azure-ca",
        "configMap": {"name": "corporate-proxy-ca", "items": [{"key": "ca.crt", "path": "ca.crt"}]},
    } in pod["spec"]["volumes"]

    policy = one(objects, "NetworkPolicy")["spec"]
    assert policy["podSelector"]["matchLabels"] == one(objects, "Deployment")["spec"]["selector"]["matchLabels"]
    assert policy["policyTypes"] == ["Ingress", "Egress"]
    assert policy["ingress"] == [
        {
            "from": [
                {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}, "podSelector": {}}
            ],
            "ports": [{"port": "http-metrics", "protocol": "TCP"}],
        }
    ]
    dns, api_server, azure = policy["egress"]
    assert dns["ports"] == [{"port": 53, "protocol": "UDP"}, {"port": 53, "protocol": "TCP"}]
    assert api_server == {
        "ports": [{"port": 443, "protocol": "TCP"}, {"port": 6443, "protocol": "TCP"}],
        "to": [{"ipBlock": {"cidr": "10.0.0.1/32"}}, {"ipBlock": {"cidr": "192.168.10.0/24"}}],
    }
    assert azure == {"to": [{"ipBlock": {"cidr": "10.20.0.0/16"}}], "ports": [{"port": 443, "protocol": "TCP"}]}

    pdb = one(objects, "PodDisruptionBudget")["spec"]
    assert pdb == {
        "selector": {"matchLabels": one(objects, "Deployment")["spec"]["selector"]["matchLabels"]},
        "maxUnavailable": 1,
        "unhealthyPodEvictionPolicy": "AlwaysAllow",
    }
    assert not by_kind(objects, "ServiceMonitor")


def test_network_policy_defaults_allow_any_api_server_address(helm):
    policy = one(helm.render("--set", "networkPolicy.enabled=true"), "NetworkPolicy")["spec"]
    api_server = policy["egress"][1]
    assert "to" not in api_server
    assert policy["egress"][2]["to"] == [{"ipBlock": {"cidr": "0.0.0.0/0"}}, {"ipBlock": {"cidr": "::/0"}}]


def test_json_logs_settings_and_secret_ca_bundle(helm):
    objects = helm.render(*_values_args("json-logs.yaml"))
    container = _container(objects)
    assert container["args"] == ["run", "--log-format=json", "--liveness=http://0.0.0.0:8080/healthz", "--verbose"]
    env = _env(container)
    assert env["SYNAPSE_SCIM_DIRECTORY_POLL_INTERVAL"] == "1m30s"
    assert env["SYNAPSE_SCIM_WRITE_CONCURRENCY"] == "4"
    assert env["SYNAPSE_SCIM_READ_CONCURRENCY"] == "16"
    assert env["SYNAPSE_SCIM_FINALIZER_WAIT"] == "2m"
    assert env["SYNAPSE_SCIM_AZURE_CA_BUNDLE"] == "/etc/synapse-scim/azure-ca/bundle.pem"
    assert env["HTTPS_PROXY"] == "http://proxy.internal:3128"
    pod = one(objects, "Deployment")["spec"]["template"]
    assert {
        "name": "azure-ca",
        "secret": {"secretName": "azure-ca", "items": [{"key": "bundle.pem", "path": "bundle.pem"}]},
    } in pod["spec"]["volumes"]
    assert pod["metadata"]["annotations"] == {"example.com/team": "platform"}


def test_service_monitor_on_another_port(helm):
    objects = helm.render(*_values_args("servicemonitor.yaml"), namespace="ops")
    monitor = one(objects, "ServiceMonitor")
    assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
    assert monitor["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    assert monitor["spec"]["endpoints"] == [
        {
            "port": "http-metrics",
            "path": "/metrics",
            "honorLabels": True,
            "interval": "15s",
            "scrapeTimeout": "10s",
        }
    ]
    assert monitor["spec"]["namespaceSelector"] == {"matchNames": ["ops"]}
    service = one(objects, "Service")
    assert all(service["metadata"]["labels"][k] == v for k, v in monitor["spec"]["selector"]["matchLabels"].items())
    assert service["spec"]["ports"][0]["port"] == 9191
    assert _env(_container(objects))["SYNAPSE_SCIM_METRICS_PORT"] == "9191"


# -- SCIM endpoint (scim.*) ----------------------------------------------------------------------


def _scim_traces(objects: list[dict[str, Any]]) -> list[str]:
    """Everything in a rendering that would expose or grant the SCIM endpoint."""
    found = []
    container = _container(objects)
    found += [a for a in container["args"] if "scim-port" in a]
    found += [n for n in _env(container) if n.startswith("SYNAPSE_SCIM_SCIM_")]
    found += [p["name"] for p in container["ports"] if p["name"] not in ("healthz", "http-metrics")]
    found += [m["name"] for m in container["volumeMounts"] if "scim" in m["name"]]
    found += [
        o["metadata"]["name"]
        for o in objects
        if o["kind"] in ("Service", "Ingress", "Certificate")
        and "scim" in o["metadata"].get("labels", {}).get("app.kubernetes.io/component", "")
    ]
    found += [o["kind"] for o in objects if o["kind"] in ("Ingress", "Certificate")]
    for role in by_kind(objects, "ClusterRole") + by_kind(objects, "Role"):
        found += [r for rule in role["rules"] for r in rule["resources"] if r.startswith("scim")]
    for policy in by_kind(objects, "NetworkPolicy"):
        found += [
            str(p["port"]) for rule in policy["spec"]["ingress"] for p in rule["ports"] if p["port"] != "http-metrics"
        ]
    return found


@pytest.mark.parametrize(
    "args",
    [
        [],
        ["--set", "networkPolicy.enabled=true"],
        ["--set-json", 'watchNamespaces=["team-a"]', "--set", "networkPolicy.enabled=true"],
        # scim.* settings without scim.enabled change nothing.
        [
            "--set",
            "networkPolicy.enabled=true",
            "--set",
            "scim.ingress.enabled=true",
            "--set",
            "scim.ingress.host=scim.example.com",
            "--set",
            "scim.tls.certificate.enabled=true",
        ],
    ],
    ids=["default", "network-policy", "namespaced", "scim-settings-but-disabled"],
)
def test_scim_disabled_exposes_and_grants_nothing(helm, args):
    objects = helm.render(*args)
    assert _scim_traces(objects) == []
    assert [s["metadata"]["name"] for s in by_kind(objects, "Service")] == ["scim-synapse-scim-metrics"]


def test_scim_enabled_serves_on_every_replica_with_the_tls_secret(helm):
    objects = helm.render(*SCIM_ON, "--set", "replicaCount=3", release="scim", namespace="ops")
    deployment = one(objects, "Deployment")
    assert deployment["spec"]["replicas"] == 3
    container = _container(objects)
    assert container["args"] == [
        "run",
        "--log-format=text",
        "--liveness=http://0.0.0.0:8080/healthz",
        "--scim-port=8443",
    ]
    env = _env(container)
    assert {k: v for k, v in env.items() if k.startswith("SYNAPSE_SCIM_SCIM_")} == {
        "SYNAPSE_SCIM_SCIM_TLS_DIR": "/etc/synapse-scim/scim-tls",
        # No Ingress, no scim.baseUrl: the Service's DNS name (port 443 implied).
        "SYNAPSE_SCIM_SCIM_BASE_URL": "https://scim-synapse-scim-scim.ops.svc",
        "SYNAPSE_SCIM_SCIM_RATE": "50",
        "SYNAPSE_SCIM_SCIM_BURST": "100",
        "SYNAPSE_SCIM_SCIM_REQUEST_TIMEOUT": "30s",
    }
    # Leader election stays on: it gates kopf only, the endpoint runs on standbys too (controller/scim.py).
    assert env["SYNAPSE_SCIM_LEADER_ELECTION"] == "on"
    assert {"name": "scim", "containerPort": 8443, "protocol": "TCP"} in container["ports"]
    assert {"name": "scim-tls", "mountPath": "/etc/synapse-scim/scim-tls", "readOnly": True} in container[
        "volumeMounts"
    ]
    volumes = deployment["spec"]["template"]["spec"]["volumes"]
    assert {
        "name": "scim-tls",
        "secret": {
            "secretName": "scim-tls",
            "defaultMode": 0o440,
            "items": [{"key": "tls.crt", "path": "tls.crt"}, {"key": "tls.key", "path": "tls.key"}],
        },
    } in volumes
    service = next(s for s in by_kind(objects, "Service") if s["metadata"]["name"] == "scim-synapse-scim-scim")
    assert service["spec"]["type"] == "ClusterIP"
    assert service["spec"]["selector"] == deployment["spec"]["selector"]["matchLabels"]
    assert service["spec"]["ports"] == [
        {"name": "https", "port": 443, "targetPort": "scim", "protocol": "TCP", "appProtocol": "https"}
    ]
    assert not by_kind(objects, "Ingress") and not by_kind(objects, "Certificate")
    # The root filesystem stays read-only; the pod keeps its hardening.
    assert container["securityContext"]["readOnlyRootFilesystem"] is True


def test_scim_rbac_is_exactly_the_store_and_provider_verbs(helm):
    cluster_wide = helm.render(*SCIM_ON, release="scim", namespace="ops")
    assert one(cluster_wide, "ClusterRole")["rules"] == NAMESPACED_RULES + SCIM_RULES + CLUSTER_RULES
    _leader_election_role(cluster_wide, "scim", "ops")  # unchanged by SCIM
    namespaced = helm.render(*SCIM_ON, "--set-json", 'watchNamespaces=["team-a","team-b"]')
    assert not by_kind(namespaced, "ClusterRole")
    roles = [r for r in by_kind(namespaced, "Role") if not r["metadata"]["name"].endswith("-leader-election")]
    assert [r["metadata"]["namespace"] for r in roles] == ["team-a", "team-b"]
    for role in roles:
        assert role["rules"] == NAMESPACED_RULES + SCIM_RULES


def test_scim_ingress_derives_the_base_url_and_a_certificate_is_optional(helm):
    objects = helm.render(*_values_args("scim.yaml"), release="scim", namespace="ops")
    assert _env(_container(objects))["SYNAPSE_SCIM_SCIM_BASE_URL"] == "https://scim.example.com"
    ingress = one(objects, "Ingress")
    assert ingress["metadata"]["annotations"] == {
        "cert-manager.io/cluster-issuer": "letsencrypt-prod",
        "nginx.ingress.kubernetes.io/backend-protocol": "HTTPS",
    }
    assert ingress["spec"] == {
        "ingressClassName": "nginx",
        "tls": [{"hosts": ["scim.example.com"], "secretName": "scim-synapse-scim-scim-public-tls"}],
        "rules": [
            {
                "host": "scim.example.com",
                "http": {
                    "paths": [
                        {
                            "path": "/scim/v2",
                            "pathType": "Prefix",
                            "backend": {"service": {"name": "scim-synapse-scim-scim", "port": {"name": "https"}}},
                        }
                    ]
                },
            }
        ],
    }
    assert not by_kind(objects, "Certificate")
    # scim.baseUrl wins over the Ingress host.
    explicit = helm.render(*_values_args("scim.yaml"), "--set", "scim.baseUrl=https://idp-facing.example.org:8443")
    assert _env(_container(explicit))["SYNAPSE_SCIM_SCIM_BASE_URL"] == "https://idp-facing.example.org:8443"
    # A Service on another port: the derived URL names it.
    other = helm.render(*SCIM_ON, "--set", "scim.service.port=9443", namespace="ops")
    assert _env(_container(other))["SYNAPSE_SCIM_SCIM_BASE_URL"] == "https://scim-synapse-scim-scim.ops.svc:9443"

    certified = helm.render(
        "--set",
        "scim.enabled=true",
        "--set",
        "scim.tls.certificate.enabled=true",
        "--set",
        "scim.tls.certificate.issuerRef.name=internal-ca",
        "--set-json",
        'scim.tls.certificate.dnsNames=["scim.internal.example.com"]',
        release="scim",
        namespace="ops",
    )
    certificate = one(certified, "Certificate")
    assert certificate["apiVersion"] == "cert-manager.io/v1"
    assert certificate["spec"]["secretName"] == "scim-synapse-scim-scim-tls"
    assert certificate["spec"]["issuerRef"] == {
        "name": "internal-ca",
        "kind": "ClusterIssuer",
        "group": "cert-manager.io",
    }
    assert certificate["spec"]["dnsNames"] == [
        "scim-synapse-scim-scim",
        "scim-synapse-scim-scim.ops",
        "scim-synapse-scim-scim.ops.svc",
        "scim-synapse-scim-scim.ops.svc.cluster.local",
        "scim.internal.example.com",
    ]
    volume = next(
        v for v in one(certified, "Deployment")["spec"]["template"]["spec"]["volumes"] if v["name"] == "scim-tls"
    )
    assert volume["secret"]["secretName"] == "scim-synapse-scim-scim-tls"  # what the Certificate writes


def test_network_policy_opens_only_the_scim_port_and_metrics(helm):
    objects = helm.render(*_values_args("scim.yaml"))
    policy = one(objects, "NetworkPolicy")["spec"]
    assert policy["ingress"] == [
        {
            "from": [
                {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}, "podSelector": {}}
            ],
            "ports": [{"port": "http-metrics", "protocol": "TCP"}],
        },
        {
            "ports": [{"port": "scim", "protocol": "TCP"}],
            "from": [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "ingress-nginx"}}}],
        },
    ]
    # The named ports resolve to the container's ports, and there are no others (healthz is probed by the
    # kubelet, which NetworkPolicies do not govern).
    ports = {p["name"]: p["containerPort"] for p in _container(objects)["ports"]}
    assert ports == {"healthz": 8080, "http-metrics": 9090, "scim": 8443}
    # Egress is untouched by SCIM (the endpoint only answers).
    plain = one(helm.render("--set", "networkPolicy.enabled=true"), "NetworkPolicy")["spec"]
    assert policy["egress"] == plain["egress"]
    # Metrics off: the SCIM port alone; no networkPolicyFrom: any source, on that port only.
    alone = one(
        helm.render(*SCIM_ON, "--set", "networkPolicy.enabled=true", "--set", "metrics.enabled=false"), "NetworkPolicy"
    )
    assert alone["spec"]["ingress"] == [{"ports": [{"port": "scim", "protocol": "TCP"}]}]


# -- against the API server ------------------------------------------------------------------------


@pytest.mark.parametrize("values", VALUES_FILES)
def test_rendered_objects_pass_server_side_dry_run(helm, cluster, namespace, make_namespace, values):
    args = _values_args(values)
    if values == "namespaced.yaml":  # Roles need existing namespaces
        args += ["--set-json", f"watchNamespaces={json.dumps([namespace, make_namespace()])}"]
    manifest = helm.render_text(*args, release=f"scim-{namespace[2:]}", namespace=namespace).stdout
    if values == "servicemonitor.yaml":
        with cluster.api_client() as api:
            install_crds(api, MONITORING_CRDS)
        try:
            out = cluster.kubectl("apply", "--dry-run=server", "-o", "name", "-f", "-", input=manifest)
        finally:
            with cluster.api_client() as api:
                for crd in MONITORING_CRDS:
                    client.ApiextensionsV1Api(api).delete_custom_resource_definition(crd["metadata"]["name"])
    else:
        out = cluster.kubectl("apply", "--dry-run=server", "-o", "name", "-f", "-", input=manifest)
    applied = out.stdout.split()
    if values == "servicemonitor.yaml":
        assert any(name.startswith("servicemonitor.monitoring.coreos.com/") for name in applied)
        assert any(name.startswith("prometheusrule.monitoring.coreos.com/") for name in applied)
    assert len(applied) == len([d for d in yaml.safe_load_all(manifest) if d])
    assert any(name.startswith("deployment.apps/") for name in applied)


def test_install_upgrade_uninstall(cluster, namespace):
    release = f"scim-{namespace[2:]}"
    name = fullname(release)
    install_chart(cluster, namespace, release)
    with cluster.api_client() as api:
        apps, core, rbac = client.AppsV1Api(api), client.CoreV1Api(api), client.RbacAuthorizationV1Api(api)
        deployment = apps.read_namespaced_deployment(name, namespace)
        assert "--log-format=text" in deployment.spec.template.spec.containers[0].args
        core.read_namespaced_service_account(name, namespace)
        core.read_namespaced_service(f"{name}-metrics", namespace)
        stored = rbac.read_cluster_role(name)
        assert [api.sanitize_for_serialization(r) for r in stored.rules] == NAMESPACED_RULES + CLUSTER_RULES
        rbac.read_cluster_role_binding(name)

        cluster.helm(
            "upgrade",
            release,
            str(CHART),
            "--namespace",
            namespace,
            "--skip-crds",
            "--reuse-values",
            "--set",
            "logFormat=json",
            "--set",
            "operator.writeConcurrency=3",
        )
        deployment = apps.read_namespaced_deployment(name, namespace)
        container = deployment.spec.template.spec.containers[0]
        assert "--log-format=json" in container.args and "--log-format=text" not in container.args
        assert {e.name: e.value for e in container.env}["SYNAPSE_SCIM_WRITE_CONCURRENCY"] == "3"
        status = json.loads(cluster.helm("status", release, "--namespace", namespace, "-o", "json").stdout)
        assert status["version"] == 2 and status["info"]["status"] == "deployed"

        cluster.helm("uninstall", release, "--namespace", namespace)
        assert gone(lambda: apps.read_namespaced_deployment(name, namespace))
        assert gone(lambda: core.read_namespaced_service_account(name, namespace))
        assert gone(lambda: core.read_namespaced_service(f"{name}-metrics", namespace))
        assert gone(lambda: rbac.read_cluster_role(name))
        assert gone(lambda: rbac.read_cluster_role_binding(name))
        # The CRDs stay (Helm never deletes crds/; the session's other tests rely on them too).
        ext = client.ApiextensionsV1Api(api)
        assert CRD_NAMES <= {c.metadata.name for c in ext.list_custom_resource_definition().items}


def _can(
    api: client.ApiClient,
    verb: str,
    resource: str,
    namespace: str | None = None,
    *,
    group: str = "",
    subresource: str | None = None,
    name: str | None = None,
) -> bool:
    review = client.V1SelfSubjectAccessReview(
        spec=client.V1SelfSubjectAccessReviewSpec(
            resource_attributes=client.V1ResourceAttributes(
                verb=verb, group=group, resource=resource, subresource=subresource, namespace=namespace, name=name
            )
        )
    )
    return client.AuthorizationV1Api(api).create_self_subject_access_review(review).status.allowed


def test_service_account_kubeconfig_has_exactly_the_cluster_wide_grants(cluster, namespace, make_namespace, tmp_path):
    release = f"scim-{namespace[2:]}"
    install_chart(cluster, namespace, release)
    elsewhere = make_namespace()
    kubeconfig = service_account_kubeconfig(cluster, namespace, release, tmp_path / "sa.kubeconfig")
    try:
        with cluster.api_client(kubeconfig) as api:
            for ns in (namespace, elsewhere, None):
                for verb in ("get", "list", "watch", "patch"):
                    assert _can(api, verb, "synapseworkspaces", ns, group=GROUP)
                    assert _can(api, verb, "synapserolebindings", ns, group=GROUP)
                for verb in ("create", "update", "delete", "deletecollection"):
                    assert not _can(api, verb, "synapserolebindings", ns, group=GROUP)
                assert _can(api, "patch", "synapseworkspaces", ns, group=GROUP, subresource="status")
                assert not _can(api, "update", "synapseworkspaces", ns, group=GROUP, subresource="status")
                assert _can(api, "create", "events", ns)
                assert not _can(api, "create", "events", ns, group="events.k8s.io")
            assert _can(api, "get", "secrets", elsewhere)
            assert _can(api, "patch", "secrets", elsewhere)
            for verb in ("list", "watch", "create", "update", "delete"):
                assert not _can(api, verb, "secrets", elsewhere)
            assert _can(api, "list", "customresourcedefinitions", group="apiextensions.k8s.io")
            assert _can(api, "watch", "customresourcedefinitions", group="apiextensions.k8s.io")
            assert not _can(api, "get", "customresourcedefinitions", group="apiextensions.k8s.io")
            assert not _can(api, "list", "namespaces")
            for verb in ("create", "patch"):
                assert _can(api, verb, "configmaps", namespace)
            for verb in ("get", "list", "watch", "update", "delete", "deletecollection"):
                assert not _can(api, verb, "configmaps", namespace)
            assert not _can(api, "create", "pods", namespace)
            # Leader election: its own Lease in the release namespace, nothing more.
            lease, coordination = fullname(release), "coordination.k8s.io"
            assert _can(api, "create", "leases", namespace, group=coordination)
            for verb in ("get", "update"):
                assert _can(api, verb, "leases", namespace, group=coordination, name=lease)
                assert not _can(api, verb, "leases", namespace, group=coordination, name="another-lease")
                assert not _can(api, verb, "leases", elsewhere, group=coordination, name=lease)
            for verb in ("list", "watch", "patch", "delete"):
                assert not _can(api, verb, "leases", namespace, group=coordination, name=lease)
            # The token really works: the kinds are listable across the cluster.
            client.CustomObjectsApi(api).list_cluster_custom_object(GROUP, "v1alpha1", "synapseworkspaces")
    finally:
        cluster.helm("uninstall", release, "--namespace", namespace)


def test_namespaced_install_grants_only_the_watched_namespaces(cluster, namespace, make_namespace, tmp_path):
    release = f"scim-{namespace[2:]}"
    team_a, team_b, other = make_namespace(), make_namespace(), make_namespace()
    install_chart(cluster, namespace, release, "--set-json", f'watchNamespaces=["{team_a}","{team_b}"]')
    kubeconfig = service_account_kubeconfig(cluster, namespace, release, tmp_path / "sa.kubeconfig")
    try:
        with cluster.api_client(kubeconfig) as api:
            for ns in (team_a, team_b):
                assert _can(api, "watch", "synapserolebindings", ns, group=GROUP)
                assert _can(api, "get", "secrets", ns)
                assert _can(api, "create", "events", ns)
            for ns in (other, namespace, None):
                assert not _can(api, "list", "synapserolebindings", ns, group=GROUP)
                assert not _can(api, "get", "secrets", ns)
            assert not _can(api, "list", "customresourcedefinitions", group="apiextensions.k8s.io")
        with cluster.api_client() as api:
            deployment = client.AppsV1Api(api).read_namespaced_deployment(fullname(release), namespace)
            args = deployment.spec.template.spec.containers[0].args
            assert args[:3] == ["run", f"--namespace={team_a}", f"--namespace={team_b}"]
    finally:
        cluster.helm("uninstall", release, "--namespace", namespace)


def test_values_files_are_documented_in_the_readme():
    readme = (CHART / "README.md").read_text()
    values = yaml.safe_load((CHART / "values.yaml").read_text())

    def leaves(prefix: str, node: Any) -> list[str]:
        # Selectors and annotations are one value (a map), documented as a whole.
        if isinstance(node, dict) and node and not prefix.endswith(("Selector.", "annotations.")):
            return [k for key, sub in node.items() for k in leaves(f"{prefix}{key}.", sub)]
        return [prefix.rstrip(".")]

    missing = [key for key in leaves("", values) if f"`{key}`" not in readme]
    assert not missing, f"values missing from charts/synapse-scim/README.md: {missing}"


def test_schema_covers_every_default_value():
    schema = json.loads((CHART / "values.schema.json").read_text())
    values = yaml.safe_load((CHART / "values.yaml").read_text())

    def walk(node_schema: dict[str, Any], node: Any, path: str) -> None:
        if isinstance(node, dict) and "properties" in node_schema:
            for key, sub in node.items():
                assert key in node_schema["properties"], f"{path}{key} has no schema"
                walk(node_schema["properties"][key], sub, f"{path}{key}.")

    walk(schema, values, "")
    assert schema["additionalProperties"] is False
    assert schema["properties"]["logFormat"]["enum"] == ["text", "json"]


def test_notes_render_for_both_modes(cluster):
    # NOTES.txt is only rendered by install/upgrade; --dry-run=server for the cluster's version (the
    # chart's kubeVersion refuses helm's offline default), which creates nothing.
    for args, where in (([], "<namespace>"), (_values_args("namespaced.yaml"), "team-a")):
        out = cluster.helm(
            "install", "scim", str(CHART), "--dry-run=server", "--skip-crds", "--namespace", "ops", *args
        ).stdout
        notes = out[out.index("NOTES:") :]
        assert "kubectl -n ops rollout status deployment/scim-synapse-scim" in notes
        assert f"kubectl apply -n {where} -f - <<'EOF'" in notes
        assert "kubectl get synapseworkspaces,synapserolebindings -A -o wide" in notes
        assert "SCIM" not in notes
    out = cluster.helm(
        "install",
        "scim",
        str(CHART),
        "--dry-run=server",
        "--skip-crds",
        "--namespace",
        "ops",
        *_values_args("scim.yaml"),
    ).stdout
    notes = out[out.index("NOTES:") :]
    assert "every replica serves it at https://scim.example.com/scim/v2/<namespace>/<provider>" in notes
    assert "kubectl get scimproviders -A" in notes

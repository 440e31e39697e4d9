"""`plan --cluster` / `explain --cluster`: the cluster's workspace (its credential Secret, its status) and
bindings join the manifests, which replace cluster objects of the same name, so the plan is what the
operator would do after the merge. No Azure identity in the environment: the Secret is what works."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import pytest
import scenario
import yaml
from cli_helpers import Cli, assert_golden, writes
from kubernetes import client

from synapse_scim.core.model import Grant, assignment_id

GROUP, VERSION = "synapse-scim.io", "v1alpha1"


def _create(
    objects: client.CustomObjectsApi,
    namespace: str,
    plural: str,
    body: dict[str, Any],
    status: dict[str, Any] | None = None,
) -> None:
    objects.create_namespaced_custom_object(GROUP, VERSION, namespace, plural, body)
    if status:
        objects.patch_namespaced_custom_object_status(
            GROUP, VERSION, namespace, plural, body["metadata"]["name"], {"status": status}
        )


@pytest.fixture
def in_cluster(cli: Cli, cluster: Any, namespace: str, objects: client.CustomObjectsApi, tmp_path: Path) -> Path:
    """The cluster after earlier syncs: workspace analytics (credential in a Secret; ivan's Synapse Compute
    Operator left orphaned by a deleted binding), binding spark-operators, and binding data-engineers which
    last granted Synapse Artifact User (its status claims it). The pull request changes data-engineers to
    Synapse Contributor."""
    sb = cli.sb
    with cluster.api_client() as api:
        secret = sb.client("synapse-scim-operator").secret
        client.CoreV1Api(api).create_namespaced_secret(
            namespace,
            {"metadata": {"name": "synapse-sp"}, "data": {"clientSecret": base64.b64encode(secret.encode()).decode()}},
        )
    sparkpool = "workspaces/analytics/bigDataPools/sparkpool"
    scenario.owned(sb, "analytics", "Synapse Compute Operator", scenario.upn("ivan"), scope=sparkpool)
    scenario.owned(sb, "analytics", "Synapse Artifact User", scenario.upn("alice"))
    ivan = str(sb.state.directory.resolve(scenario.upn("ivan"), kinds=("user",)).id).lower()
    orphan = assignment_id(Grant(scenario.ROLES["Synapse Compute Operator"], ivan, sparkpool))
    _create(
        objects,
        namespace,
        "synapseworkspaces",
        scenario.workspace(sb, "analytics", namespace=namespace),
        status={"orphanedAssignments": [orphan]},
    )
    _create(
        objects,
        namespace,
        "synapserolebindings",
        scenario.binding(
            "spark-operators",
            "analytics",
            ["Synapse Compute Operator"],
            [{"kind": "Group", "name": "Spark Team"}],
            namespace=namespace,
            scope={"bigDataPool": "sparkpool"},
        ),
    )
    _create(
        objects,
        namespace,
        "synapserolebindings",
        scenario.binding(
            "data-engineers",
            "analytics",
            ["Synapse Artifact User"],
            [{"kind": "Group", "name": "Data Engineers"}],
            namespace=namespace,
        ),
        status={"claims": [{"roleId": scenario.ROLES["Synapse Artifact User"], "scope": "workspaces/analytics"}]},
    )
    pr = tmp_path / "pr"
    pr.mkdir()
    (pr / "data-engineers.yaml").write_text(
        yaml.safe_dump(
            scenario.binding(
                "data-engineers",
                "analytics",
                ["Synapse Contributor"],
                [{"kind": "Group", "name": "Data Engineers"}],
                namespace=None,
            )
        )
    )
    return pr


def _args(cluster: Any, namespace: str, *args: str) -> list[str]:
    return [*args, "-f", "pr", "--cluster", "--kubeconfig", str(cluster.kubeconfig), "-n", namespace]


def test_plan_with_the_cluster(cli: Cli, cluster: Any, namespace: str, in_cluster: Path) -> None:
    result = cli(*_args(cluster, namespace, "plan"), identity=False)
    assert result.rc == 2, result.stdout + result.stderr
    assert result.stderr == ""
    assert_golden("plan-cluster.txt", result.stdout, {namespace: "t-##########"})
    assert writes(cli.sb) == {}


def test_prune_plans_cluster_bindings_missing_from_the_manifests_as_deleted(
    cli: Cli, cluster: Any, namespace: str, in_cluster: Path
) -> None:
    doc = json.loads(cli(*_args(cluster, namespace, "plan", "--prune", "-o", "json"), identity=False).stdout)
    changes = doc["workspaces"][0]["changes"]
    assert {c["role"]["name"] for c in changes if c["action"] == "grant"} == {"Synapse Contributor"}
    assert [b["name"] for b in doc["workspaces"][0]["bindings"]] == [f"{namespace}/data-engineers"]


def test_explain_with_the_cluster(cli: Cli, cluster: Any, namespace: str, in_cluster: Path) -> None:
    bob = cli(*_args(cluster, namespace, "explain", scenario.upn("alice")), identity=False)
    assert bob.rc == 0, bob.stdout + bob.stderr
    assert_golden("explain-cluster-alice.txt", bob.stdout, {namespace: "t-##########"})
    ivan = json.loads(
        cli(*_args(cluster, namespace, "explain", scenario.upn("ivan"), "-o", "json"), identity=False).stdout
    )
    held = {
        (a["role"]["name"], a["status"], tuple(r["kind"] for r in a["reasons"]))
        for a in ivan["workspaces"][0]["assignments"]
    }
    assert ("Synapse Compute Operator", "held", ("orphaned",)) in held


def test_cluster_alone_plans_what_is_there(cli: Cli, cluster: Any, namespace: str, in_cluster: Path) -> None:
    """No manifests: the workspaces of the namespace as they are (data-engineers still wants Artifact User)."""
    result = cli(
        "plan", "--cluster", "--kubeconfig", str(cluster.kubeconfig), "-n", namespace, "-o", "json", identity=False
    )
    assert result.rc == 2, result.stdout + result.stderr
    changes = json.loads(result.stdout)["workspaces"][0]["changes"]
    assert {(c["action"], c["role"]["name"]) for c in changes} == {
        ("grant", "Synapse Compute Operator"),
        ("grant", "Synapse Artifact User"),
    }

"""`report --cluster`: what only the cluster knows. An orphaned assignment (the workspace's
status.orphanedAssignments), removals the guard holds with their plan id, and who approved: the field
manager Kubernetes recorded in managedFields for the approval annotation (a program such as
kubectl-annotate, or the name given with --field-manager), and its time; and the grant times of the
operator's grant ledger (ConfigMaps <workspace>-grants-<hex>)."""

from __future__ import annotations

import base64
import json
from typing import Any

import scenario
from cli_helpers import Cli, writes
from kubernetes import client

from synapse_scim.adapters.grant_ledger import shard_name, shard_of
from synapse_scim.core.model import Grant, assignment_id
from synapse_scim.core.objects import APPROVE_ANNOTATION
from synapse_scim.review.report import approval_of

GROUP, VERSION = "synapse-scim.io", "v1alpha1"


def test_report_with_the_cluster(cli: Cli, cluster: Any, namespace: str, objects: client.CustomObjectsApi) -> None:
    sb = cli.sb
    with cluster.api_client() as api:
        secret = sb.client("synapse-scim-operator").secret
        client.CoreV1Api(api).create_namespaced_secret(
            namespace,
            {"metadata": {"name": "synapse-sp"}, "data": {"clientSecret": base64.b64encode(secret.encode()).decode()}},
        )
    sparkpool = "workspaces/analytics/bigDataPools/sparkpool"
    scenario.owned(sb, "analytics", "Synapse Compute Operator", scenario.upn("ivan"), scope=sparkpool)
    ivan = str(sb.state.directory.resolve(scenario.upn("ivan"), kinds=("user",)).id).lower()
    orphan = assignment_id(Grant(scenario.ROLES["Synapse Compute Operator"], ivan, sparkpool))
    ws = scenario.workspace(sb, "analytics", namespace=namespace, removalGuard={"maxRemovals": 1})
    objects.create_namespaced_custom_object(GROUP, VERSION, namespace, "synapseworkspaces", ws)
    objects.patch_namespaced_custom_object_status(
        GROUP, VERSION, namespace, "synapseworkspaces", "analytics", {"status": {"orphanedAssignments": [orphan]}}
    )
    binding = scenario.binding(
        "analysts", "analytics", ["Synapse User"], [{"kind": "Group", "name": "Analysts"}], namespace=namespace
    )
    objects.create_namespaced_custom_object(GROUP, VERSION, namespace, "synapserolebindings", binding)
    # An approval of an older plan, set by someone who named themselves (kubectl --field-manager=jane.doe).
    objects.patch_namespaced_custom_object(
        GROUP,
        VERSION,
        namespace,
        "synapseworkspaces",
        "analytics",
        {"metadata": {"annotations": {APPROVE_ANNOTATION: "0123456789ab"}}},
        field_manager="jane.doe",
    )
    # The operator's grant ledger records when it granted heidi's Synapse User (as controller/
    # grant_ledger.py writes it): the report shows that time; every other row stays unknown.
    heidi = str(sb.state.directory.resolve(scenario.upn("heidi"), kinds=("user",)).id).lower()
    heidi_user = assignment_id(Grant(scenario.ROLES["Synapse User"], heidi, "workspaces/analytics"))
    with cluster.api_client() as api:
        client.CoreV1Api(api).create_namespaced_config_map(
            namespace,
            {
                "metadata": {"name": shard_name("analytics", shard_of(heidi_user))},
                "data": {heidi_user: "2026-11-30T08:15:00Z"},
            },
        )
    result = cli(
        "report", "--cluster", "--kubeconfig", str(cluster.kubeconfig), "-n", namespace, "-o", "json", identity=False
    )
    assert result.rc == 0, result.stdout + result.stderr
    doc = json.loads(result.stdout)
    rows = {(a["principal"]["display"], a["role"]["name"]): a for a in doc["assignments"]}
    assert rows[scenario.upn("heidi"), "Synapse User"]["granted"] == "2026-11-30T08:15:00Z"
    assert [a for a in doc["assignments"] if a["granted"]] == [rows[scenario.upn("heidi"), "Synapse User"]]
    assert rows[scenario.upn("ivan"), "Synapse Compute Operator"]["status"] == "orphaned"
    held = [a for a in doc["assignments"] if a["status"] == "held by the guard"]
    assert {a["principal"]["display"] for a in held} == {scenario.upn("heidi"), scenario.upn("ivan")}
    (workspace,) = doc["workspaces"]
    assert workspace["planId"] and workspace["planId"] != "0123456789ab"
    for a in held:
        assert a["planId"] == workspace["planId"]
        assert a["approval"]["value"] == "0123456789ab"
        assert (a["approval"]["manager"], a["approval"]["operation"]) == ("jane.doe", "Update")
        assert a["approval"]["time"]
    csv_text = cli(
        "report", "--cluster", "--kubeconfig", str(cluster.kubeconfig), "-n", namespace, "-o", "csv", identity=False
    ).stdout
    assert f",2026-11-30T08:15:00Z,{heidi_user}" in csv_text
    assert "approved 0123456789ab (not plan " in csv_text and "by field manager jane.doe (Update, " in csv_text
    assert writes(sb) == {}


def test_approval_of_reads_the_latest_manager_of_the_annotation() -> None:
    key = f"f:{APPROVE_ANNOTATION}"
    body = {
        "metadata": {
            "annotations": {APPROVE_ANNOTATION: "abc"},
            "managedFields": [
                {
                    "manager": "kopf",
                    "operation": "Update",
                    "time": "2026-12-01T10:00:00Z",
                    "fieldsV1": {"f:status": {}},
                },
                {
                    "manager": "kubectl-annotate",
                    "operation": "Update",
                    "time": "2026-12-01T09:00:00Z",
                    "fieldsV1": {"f:metadata": {"f:annotations": {key: {}}}},
                },
                {
                    "manager": "kubectl-client-side-apply",
                    "operation": "Update",
                    "time": "2026-12-01T11:00:00Z",
                    "fieldsV1": {"f:metadata": {"f:annotations": {key: {}, "f:other": {}}}},
                },
            ],
        }
    }
    found = approval_of(body)
    assert found is not None
    assert (found.value, found.manager, found.time) == ("abc", "kubectl-client-side-apply", "2026-12-01T11:00:00Z")
    body["metadata"]["managedFields"] = []
    assert approval_of(body) == type(found)("abc", None, None, None)
    assert approval_of({"metadata": {}}) is None

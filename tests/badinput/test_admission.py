"""Malformed resources the real kube-apiserver rejects at admission, naming the field. These extend
tests/integration/test_crd_validation.py (whose cases the catalogue table references, not repeats)
with oversized specs and hostile strings."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import pytest
from kubernetes.client.exceptions import ApiException

GROUP, VERSION = "synapse-scim.io", "v1alpha1"
PLURAL = {"SynapseWorkspace": "synapseworkspaces", "SynapseRoleBinding": "synapserolebindings"}
W, B = "SynapseWorkspace", "SynapseRoleBinding"
GUID = "6c8b2f0e-4d0a-4f0c-9a8e-0f3e4b5c6d7e"


def ws(**changes: Any) -> dict[str, Any]:
    return {"endpoint": "https://contoso.dev.azuresynapse.net", "tenantId": GUID, **changes}


def rb(**changes: Any) -> dict[str, Any]:
    return {
        "workspaceRef": {"name": "analytics"},
        "roles": ["Synapse User"],
        "subjects": [{"kind": "Group", "name": "Data Engineers"}],
        **changes,
    }


def secret_ref(**ref: str) -> dict[str, Any]:
    return {"clientSecret": {"clientId": GUID, "secretRef": ref}}


@dataclass(frozen=True)
class Rejected:
    id: str
    kind: str
    spec: dict[str, Any]
    field: str  # the field path the API server must name
    says: str  # a fragment of what it says about that field


CASES = [
    Rejected(
        "rb-thousands-of-subjects",
        B,
        rb(subjects=[{"kind": "User", "name": f"user{i}@contoso.com"} for i in range(5000)]),
        "spec.subjects",
        "must have at most 256 items",
    ),
    Rejected("rb-role-name-too-long", B, rb(roles=["R" * 129]), "spec.roles[0]", "Too long"),
    Rejected(
        "rb-workspace-ref-shell-string",
        B,
        rb(workspaceRef={"name": "analytics; $(id)"}),
        "spec.workspaceRef.name",
        "should match",
    ),
    Rejected(
        "rb-workspace-ref-too-long", B, rb(workspaceRef={"name": "a" * 254}), "spec.workspaceRef.name", "Too long"
    ),
    Rejected("rb-scope-unicode-name", B, rb(scope={"bigDataPool": "pööl"}), "spec.scope.bigDataPool", "should match"),
    Rejected(
        "rb-scope-newline-name",
        B,
        rb(scope={"linkedService": "datalake\nother"}),
        "spec.scope.linkedService",
        "should match",
    ),
    Rejected(
        "rb-subject-kind-lowercase",
        B,
        rb(subjects=[{"kind": "group", "name": "Data Engineers"}]),
        "spec.subjects[0].kind",
        'supported values: "Group", "User", "ServicePrincipal"',
    ),
    Rejected(
        "ws-secret-ref-name-shell-string",
        W,
        ws(credential=secret_ref(name="synapse-sp; $(id)")),
        "spec.credential.clientSecret.secretRef.name",
        "should match",
    ),
    Rejected(
        "ws-secret-ref-key-path",
        W,
        ws(credential=secret_ref(name="synapse-sp", key="../../etc/passwd")),
        "spec.credential.clientSecret.secretRef.key",
        "should match",
    ),
    Rejected("ws-workspace-name-too-long", W, ws(workspaceName="a" * 51), "spec.workspaceName", "Too long"),
    Rejected("ws-tenant-odata-quote", W, ws(tenantId="contoso'.com"), "spec.tenantId", "should match"),
    Rejected(
        "ws-endpoint-javascript-url",
        W,
        ws(endpoint="javascript:alert(1)//https://x"),
        "spec.endpoint",
        "must be an https:// URL",
    ),
]


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_rejected_at_admission(objects, namespace, case: Rejected):
    body = {"apiVersion": f"{GROUP}/{VERSION}", "kind": case.kind, "metadata": {"name": "x"}, "spec": case.spec}
    with pytest.raises(ApiException) as err:
        objects.create_namespaced_custom_object(
            GROUP, VERSION, namespace, PLURAL[case.kind], body, field_validation="Strict"
        )
    answer = json.loads(err.value.body)
    assert err.value.status == 422 and answer["reason"] == "Invalid", answer
    causes = [(c.get("field"), c["message"]) for c in answer["details"]["causes"]]
    assert any(f == case.field and case.says in m for f, m in causes), causes
    assert f"{case.field}: " in answer["message"], "the one-line message (what kubectl prints) names the field"
    # Nothing was stored.
    listed = objects.list_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL[case.kind])
    assert listed["items"] == []

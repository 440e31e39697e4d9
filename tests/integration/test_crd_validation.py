"""The CRDs in crds/ against the real kube-apiserver: invalid objects are rejected with a message that
names the field and says the fix, valid ones are stored with their defaults, and kubectl shows the
printer columns, short names, category and descriptions."""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass
from typing import Any

import pytest
from kubernetes import client
from kubernetes.client.exceptions import ApiException

GROUP = "synapse-scim.io"
VERSION = "v1alpha1"
PLURAL = {"SynapseWorkspace": "synapseworkspaces", "SynapseRoleBinding": "synapserolebindings"}
TENANT = "11111111-2222-3333-4444-555555555555"
GUID = "6c8b2f0e-4d0a-4f0c-9a8e-0f3e4b5c6d7e"
DROP = object()  # marks a key to remove in `spec(...)`

WORKSPACE_SPEC: dict[str, Any] = {
    "endpoint": "https://contoso.dev.azuresynapse.net",
    "tenantId": TENANT,
}
BINDING_SPEC: dict[str, Any] = {
    "workspaceRef": {"name": "analytics"},
    "roles": ["Synapse Contributor"],
    "subjects": [{"kind": "Group", "name": "Data Engineers"}],
}


def spec(base: dict[str, Any], **changes: Any) -> dict[str, Any]:
    out = copy.deepcopy(base)
    for key, value in changes.items():
        if value is DROP:
            out.pop(key, None)
        else:
            out[key] = value
    return out


def manifest(kind: str, name: str, body_spec: dict[str, Any] | None) -> dict[str, Any]:
    obj: dict[str, Any] = {"apiVersion": f"{GROUP}/{VERSION}", "kind": kind, "metadata": {"name": name}}
    if body_spec is not None:
        obj["spec"] = body_spec
    return obj


def create(
    objects: client.CustomObjectsApi,
    namespace: str,
    kind: str,
    body_spec: dict[str, Any] | None,
    name: str = "x",
    strict: bool = True,
) -> dict[str, Any]:
    return objects.create_namespaced_custom_object(
        GROUP,
        VERSION,
        namespace,
        PLURAL[kind],
        manifest(kind, name, body_spec),
        field_validation="Strict" if strict else None,
    )


# -- invalid objects ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Invalid:
    id: str
    kind: str
    spec: dict[str, Any] | None
    field: str  # the field path the API server must name
    says: str  # a fragment of the message for that field (the fix, or what is wrong)
    status: int = 422


def ws(**changes: Any) -> dict[str, Any]:
    return spec(WORKSPACE_SPEC, **changes)


def rb(**changes: Any) -> dict[str, Any]:
    return spec(BINDING_SPEC, **changes)


def subjects(*items: dict[str, Any]) -> list[dict[str, Any]]:
    return list(items)


SECRET = {"clientId": GUID, "secretRef": {"name": "synapse-sp"}}
W, B = "SynapseWorkspace", "SynapseRoleBinding"

INVALID = [
    # SynapseWorkspace
    Invalid(
        "ws-endpoint-http",
        W,
        ws(endpoint="http://contoso.dev.azuresynapse.net"),
        "spec.endpoint",
        "must be an https:// URL",
    ),
    Invalid(
        "ws-endpoint-no-scheme",
        W,
        ws(endpoint="contoso.dev.azuresynapse.net"),
        "spec.endpoint",
        "must be an https:// URL",
    ),
    Invalid("ws-endpoint-missing", W, ws(endpoint=DROP), "spec.endpoint", "Required value"),
    Invalid("ws-endpoint-too-long", W, ws(endpoint="https://" + "a" * 2048), "spec.endpoint", "Too long"),
    Invalid("ws-tenant-bad", W, ws(tenantId="not a tenant"), "spec.tenantId", "should match"),
    Invalid("ws-tenant-missing", W, ws(tenantId=DROP), "spec.tenantId", "Required value"),
    Invalid("ws-workspace-name-uppercase", W, ws(workspaceName="Contoso"), "spec.workspaceName", "should match"),
    Invalid(
        "ws-two-credentials",
        W,
        ws(credential={"workloadIdentity": {"clientId": GUID}, "clientSecret": SECRET}),
        "spec.credential",
        "set exactly one of workloadIdentity, clientSecret or certificate",
    ),
    Invalid(
        "ws-empty-credential",
        W,
        ws(credential={}),
        "spec.credential",
        "omit credential to use the operator's own identity",
    ),
    Invalid(
        "ws-client-id-not-guid",
        W,
        ws(credential={"workloadIdentity": {"clientId": "my-app"}}),
        "spec.credential.workloadIdentity.clientId",
        "should match",
    ),
    Invalid(
        "ws-secret-ref-without-name",
        W,
        ws(credential={"clientSecret": {"clientId": GUID, "secretRef": {"key": "password"}}}),
        "spec.credential.clientSecret.secretRef.name",
        "Required value",
    ),
    Invalid(
        "ws-certificate-without-client-id",
        W,
        ws(credential={"certificate": {"secretRef": {"name": "synapse-cert"}}}),
        "spec.credential.certificate.clientId",
        "Required value",
    ),
    Invalid(
        "ws-cloud-authority-http",
        W,
        ws(cloud={"authorityHost": "http://login.microsoftonline.us"}),
        "spec.cloud.authorityHost",
        "must be an https:// URL",
    ),
    Invalid(
        "ws-cloud-graph-http",
        W,
        ws(cloud={"graphEndpoint": "http://graph.microsoft.us"}),
        "spec.cloud.graphEndpoint",
        "must be an https:// URL",
    ),
    Invalid(
        "ws-cloud-audience-not-url",
        W,
        ws(cloud={"synapseAudience": "dev.azuresynapse.usgovcloudapi.net"}),
        "spec.cloud.synapseAudience",
        "must be an https:// URL",
    ),
    Invalid(
        "ws-sync-interval-words",
        W,
        ws(syncInterval="10 minutes"),
        "spec.syncInterval",
        "is not a Go duration between 30s and 24h; write e.g. 10m",
    ),
    Invalid("ws-sync-interval-below-min", W, ws(syncInterval="1s"), "spec.syncInterval", "between 30s and 24h"),
    Invalid("ws-sync-interval-above-max", W, ws(syncInterval="25h"), "spec.syncInterval", "between 30s and 24h"),
    Invalid("ws-sync-interval-negative", W, ws(syncInterval="-10m"), "spec.syncInterval", "between 30s and 24h"),
    Invalid(
        "ws-max-percent-150",
        W,
        ws(removalGuard={"maxPercent": 150}),
        "spec.removalGuard.maxPercent",
        "less than or equal to 100",
    ),
    Invalid(
        "ws-max-removals-negative",
        W,
        ws(removalGuard={"maxRemovals": -1}),
        "spec.removalGuard.maxRemovals",
        "greater than or equal to 0",
    ),
    Invalid("ws-suspend-not-bool", W, ws(suspend="yes"), "spec.suspend", "must be of type boolean"),
    Invalid("ws-unknown-spec-field", W, ws(tenant=TENANT), "spec.tenant", "unknown field", status=400),
    Invalid("ws-missing-spec", W, None, "spec", "Required value"),
    # SynapseRoleBinding
    Invalid("rb-missing-workspace-ref", B, rb(workspaceRef=DROP), "spec.workspaceRef", "Required value"),
    Invalid("rb-workspace-ref-without-name", B, rb(workspaceRef={}), "spec.workspaceRef.name", "Required value"),
    Invalid("rb-missing-roles", B, rb(roles=DROP), "spec.roles", "Required value"),
    Invalid("rb-empty-roles", B, rb(roles=[]), "spec.roles", "should have at least 1 items"),
    Invalid(
        "rb-duplicate-roles",
        B,
        rb(roles=["Synapse Contributor", "Synapse Contributor"]),
        "spec.roles[1]",
        "Duplicate value",
    ),
    Invalid(
        "rb-empty-role-name",
        B,
        rb(roles=["Synapse Contributor", ""]),
        "spec.roles[1]",
        "should be at least 1 chars long",
    ),
    Invalid(
        "rb-role-id-not-name",
        B,
        rb(roles=["7af0c69a-a548-47d6-aea3-d00e69bd83aa"]),
        "spec.roles[0]",
        "write the role name instead",
    ),
    Invalid(
        "rb-too-many-roles", B, rb(roles=[f"Role {i}" for i in range(21)]), "spec.roles", "must have at most 20 items"
    ),
    Invalid(
        "rb-two-scope-kinds",
        B,
        rb(scope={"bigDataPool": "p1", "linkedService": "ls1"}),
        "spec.scope",
        "set at most one of bigDataPool, integrationRuntime, linkedService, credential or "
        "scopePool (leave scope empty for the whole workspace); found: bigDataPool linkedService",
    ),
    Invalid("rb-unknown-scope-key", B, rb(scope={"sqlPool": "dw1"}), "spec.scope.sqlPool", "unknown field", status=400),
    Invalid(
        "rb-scope-name-with-slash",
        B,
        rb(scope={"bigDataPool": "p1/../../other"}),
        "spec.scope.bigDataPool",
        "should match",
    ),
    Invalid("rb-missing-subjects", B, rb(subjects=DROP), "spec.subjects", "Required value"),
    Invalid("rb-empty-subjects", B, rb(subjects=[]), "spec.subjects", "should have at least 1 items"),
    Invalid(
        "rb-subject-name-and-id",
        B,
        rb(subjects=subjects({"kind": "User", "name": "alice@contoso.com", "id": GUID})),
        "spec.subjects[0]",
        "set only one of name, id and externalId",
    ),
    Invalid(
        "rb-subject-neither-name-nor-id",
        B,
        rb(subjects=subjects({"kind": "Group"})),
        "spec.subjects[0]",
        "set either name (the display name, user principal name or app id) or id",
    ),
    Invalid(
        "rb-subject-without-kind",
        B,
        rb(subjects=subjects({"name": "Data Engineers"})),
        "spec.subjects[0].kind",
        "Required value",
    ),
    Invalid(
        "rb-subject-kind-robot",
        B,
        rb(subjects=subjects({"kind": "Robot", "name": "r2d2"})),
        "spec.subjects[0].kind",
        'supported values: "Group", "User", "ServicePrincipal", "ScimGroup"',
    ),
    Invalid(
        "rb-scim-group-without-provider",
        B,
        rb(subjects=subjects({"kind": "ScimGroup", "name": "Data Engineers"})),
        "spec.subjects[0]",
        "a ScimGroup subject needs provider: the name of a ScimProvider in this namespace",
    ),
    Invalid(
        "rb-provider-on-a-group",
        B,
        rb(subjects=subjects({"kind": "Group", "name": "Data Engineers", "provider": "okta"})),
        "spec.subjects[0]",
        "provider applies to kind ScimGroup only; remove it from this Group subject",
    ),
    Invalid(
        "rb-external-id-on-a-user",
        B,
        rb(subjects=subjects({"kind": "User", "externalId": "00u1"})),
        "spec.subjects[0].externalId",
        "externalId applies to kind ScimGroup only; use name or id for this User subject",
    ),
    Invalid(
        "rb-scim-group-name-and-external-id",
        B,
        rb(
            subjects=subjects({"kind": "ScimGroup", "provider": "okta", "name": "Data Engineers", "externalId": "00g1"})
        ),
        "spec.subjects[0]",
        "set only one of name, id and externalId",
    ),
    Invalid(
        "rb-duplicate-scim-groups",
        B,
        rb(
            subjects=subjects(
                {"kind": "ScimGroup", "provider": "okta", "name": "Data Engineers"},
                {"kind": "ScimGroup", "provider": "entra", "name": "Data Engineers"},  # another provider: fine
                {"kind": "Group", "name": "Data Engineers"},  # an Entra group: fine
                {"kind": "ScimGroup", "provider": "okta", "name": "data engineers"},
            )
        ),
        "spec.subjects",
        "list each subject once",
    ),
    Invalid(
        "rb-expand-on-user",
        B,
        rb(
            subjects=subjects(
                {"kind": "Group", "name": "Data Engineers", "expand": False},
                {"kind": "User", "name": "alice@contoso.com", "expand": True},
            )
        ),
        "spec.subjects[1].expand",
        "expand applies to kind Group only; remove it from this User subject",
    ),
    Invalid(
        "rb-subject-id-not-guid",
        B,
        rb(subjects=subjects({"kind": "Group", "id": "data-engineers"})),
        "spec.subjects[0].id",
        "should match",
    ),
    Invalid(
        "rb-subject-name-too-long",
        B,
        rb(subjects=subjects({"kind": "Group", "name": "g" * 257})),
        "spec.subjects[0].name",
        "Too long",
    ),
    Invalid(
        "rb-duplicate-subject-names",
        B,
        rb(
            subjects=subjects(
                {"kind": "Group", "name": "Data Engineers"},
                {"kind": "User", "name": "Data Engineers"},  # another kind: fine
                {"kind": "Group", "name": "data engineers"},
            )
        ),
        "spec.subjects",
        "list each subject once",
    ),
    Invalid(
        "rb-duplicate-subject-ids",
        B,
        rb(
            subjects=subjects(
                {"kind": "ServicePrincipal", "id": GUID}, {"kind": "ServicePrincipal", "id": GUID.upper()}
            )
        ),
        "spec.subjects",
        "remove the repeated entry",
    ),
    Invalid(
        "rb-too-many-subjects",
        B,
        rb(subjects=[{"kind": "User", "name": f"user{i}@contoso.com"} for i in range(257)]),
        "spec.subjects",
        "must have at most 256 items",
    ),
    Invalid(
        "rb-management-policy-maybe",
        B,
        rb(managementPolicy="Maybe"),
        "spec.managementPolicy",
        'supported values: "Enforce", "Observe"',
    ),
    Invalid(
        "rb-deletion-policy-keep",
        B,
        rb(deletionPolicy="Keep"),
        "spec.deletionPolicy",
        'supported values: "Delete", "Orphan"',
    ),
    Invalid("rb-unknown-spec-field", B, rb(workspace="analytics"), "spec.workspace", "unknown field", status=400),
    Invalid(
        "rb-unknown-subject-field",
        B,
        rb(subjects=subjects({"kind": "Group", "name": "x", "nested": True})),
        "spec.subjects[0].nested",
        "unknown field",
        status=400,
    ),
]


def test_enough_invalid_variants():
    assert len(INVALID) >= 25
    assert len({case.id for case in INVALID}) == len(INVALID)


@pytest.mark.parametrize("case", INVALID, ids=[case.id for case in INVALID])
def test_invalid_object_is_rejected_naming_the_field(objects, namespace, case: Invalid):
    with pytest.raises(ApiException) as err:
        create(objects, namespace, case.kind, case.spec)
    body = json.loads(err.value.body)
    assert err.value.status == case.status, body
    if case.status == 400:
        # fieldValidation=Strict: an unknown field is a BadRequest naming the full path.
        assert body["reason"] == "BadRequest"
        assert f'unknown field "{case.field}"' in body["message"]
        return
    assert body["reason"] == "Invalid"
    causes = {c.get("field"): c["message"] for c in body["details"]["causes"]}
    assert case.field in causes, body["message"]
    assert case.says in causes[case.field], causes[case.field]
    # The one-line message (what kubectl prints) names the field too.
    assert f"{case.field}: " in body["message"]


def test_unknown_fields_are_pruned_without_strict_validation(objects, namespace):
    stored = create(objects, namespace, B, rb(workspace="typo", scope={"sqlPool": "dw1"}), strict=False)
    assert "workspace" not in stored["spec"]
    assert stored["spec"]["scope"] == {}


# -- valid objects and defaults ----------------------------------------------------------------------


def test_minimal_workspace_gets_defaults(objects, namespace):
    stored = create(objects, namespace, W, WORKSPACE_SPEC, name="analytics")
    assert stored["spec"] == {
        **WORKSPACE_SPEC,
        "syncInterval": "10m",
        "removalGuard": {"maxRemovals": 50, "maxPercent": 20},
        "suspend": False,
    }


def test_credential_and_cloud_defaults(objects, namespace):
    stored = create(
        objects,
        namespace,
        W,
        ws(
            credential={"certificate": {"clientId": GUID, "secretRef": {"name": "synapse-cert"}}},
            cloud={"authorityHost": "https://login.microsoftonline.us"},
            removalGuard={"maxPercent": 5},
        ),
    )
    assert stored["spec"]["credential"] == {
        "certificate": {
            "clientId": GUID,
            "secretRef": {"name": "synapse-cert", "key": "tls.pem"},
            "sendCertificateChain": False,
        }
    }
    assert stored["spec"]["cloud"] == {
        "authorityHost": "https://login.microsoftonline.us",
        "graphEndpoint": "https://graph.microsoft.com",
        "synapseAudience": "https://dev.azuresynapse.net",
    }
    assert stored["spec"]["removalGuard"] == {"maxRemovals": 50, "maxPercent": 5}
    secret = create(objects, namespace, W, ws(credential={"clientSecret": SECRET}), name="y")
    assert secret["spec"]["credential"]["clientSecret"]["secretRef"] == {"name": "synapse-sp", "key": "clientSecret"}


@pytest.mark.parametrize("interval", ["30s", "90s", "10m", "1h30m", "1.5h", "24h", "86400s"])
def test_sync_interval_bounds_accepted(objects, namespace, interval):
    assert create(objects, namespace, W, ws(syncInterval=interval))["spec"]["syncInterval"] == interval


@pytest.mark.parametrize("tenant", [TENANT, TENANT.upper(), "contoso.onmicrosoft.com", "contoso.com"])
def test_tenant_id_forms_accepted(objects, namespace, tenant):
    create(objects, namespace, W, ws(tenantId=tenant))


def test_sandbox_style_endpoint_accepted(objects, namespace):
    # The local Azure sandbox serves HTTPS on loopback with a port.
    create(objects, namespace, W, ws(endpoint="https://127.0.0.1:8443", workspaceName="sandbox"))


def test_minimal_binding_gets_defaults(objects, namespace):
    stored = create(objects, namespace, B, BINDING_SPEC, name="data-engineers")
    assert stored["spec"] == {
        **BINDING_SPEC,
        "scope": {},
        "managementPolicy": "Enforce",
        "deletionPolicy": "Delete",
        "suspend": False,
    }


def test_design_example_binding_is_accepted(objects, namespace):
    example = {
        "workspaceRef": {"name": "analytics"},
        "roles": ["Synapse Contributor", "Synapse Artifact Publisher"],
        "scope": {"bigDataPool": "p1"},
        "subjects": [
            {"kind": "Group", "name": "Data Engineers"},
            {"kind": "Group", "name": "Contractors", "expand": False},
            {"kind": "Group", "id": GUID, "expand": True},
            {"kind": "User", "name": "alice@contoso.com"},
            {"kind": "ServicePrincipal", "name": "etl-pipeline"},
            # the same name under another kind is another subject
            {"kind": "User", "name": "Data Engineers"},
            # groups an identity provider pushed, by name, SCIM id or externalId
            {"kind": "ScimGroup", "provider": "okta", "name": "Data Engineers"},
            {"kind": "ScimGroup", "provider": "okta", "id": GUID},
            {"kind": "ScimGroup", "provider": "entra-provisioning", "externalId": "00g1abcd"},
        ],
        "managementPolicy": "Observe",
        "deletionPolicy": "Orphan",
        "suspend": True,
    }
    assert create(objects, namespace, B, example)["spec"] == example


@pytest.mark.parametrize(
    "scope",
    [
        {"integrationRuntime": "AutoResolveIntegrationRuntime"},
        {"linkedService": "ls_blob_storage"},
        {"credential": "WorkspaceSystemIdentity"},
        {"scopePool": "sp-1"},
    ],
)
def test_each_scope_kind_accepted(objects, namespace, scope):
    assert create(objects, namespace, B, rb(scope=scope))["spec"]["scope"] == scope


def test_largest_binding_stays_within_the_cel_runtime_budget(objects, namespace):
    # 256 subjects with 256-character names: the worst case for the uniqueness rule's runtime cost.
    many = [{"kind": "Group", "name": f"{i:03d}" + "g" * 253} for i in range(256)]
    roles = [f"Role {i:02d} " + "r" * 120 for i in range(20)]
    stored = create(objects, namespace, B, rb(subjects=many, roles=roles))
    assert len(stored["spec"]["subjects"]) == 256
    # The same worst case with ScimGroup subjects, whose rule also reads the provider.
    scim = [{"kind": "ScimGroup", "provider": "p" * 253, "name": f"{i:03d}" + "g" * 253} for i in range(256)]
    assert len(create(objects, namespace, B, rb(subjects=scim, roles=roles), name="scim")["spec"]["subjects"]) == 256
    # ...and the same list with one duplicate is still rejected, not cut off by the budget.
    with pytest.raises(ApiException) as err:
        create(objects, namespace, B, rb(subjects=[*many[:255], many[0]], roles=roles), name="dup")
    assert err.value.status == 422
    assert "spec.subjects: Invalid value: list each subject once" in json.loads(err.value.body)["message"]


# -- status subresource ------------------------------------------------------------------------------


def _condition(type_: str, status: str, reason: str, message: str = "") -> dict[str, Any]:
    return {
        "type": type_,
        "status": status,
        "reason": reason,
        "message": message,
        "lastTransitionTime": "2025-01-01T00:00:00Z",
        "observedGeneration": 1,
    }


def test_binding_status_is_a_subresource_with_an_explicit_schema(objects, namespace):
    create(objects, namespace, B, BINDING_SPEC, name="b")
    item = {
        "principal": "alice@contoso.com",
        "principalId": GUID,
        "role": "Synapse Contributor",
        "roleId": "7af0c69a-a548-47d6-aea3-d00e69bd83aa",
        "scope": "workspaces/contoso",
        "managed": True,
    }
    status = {
        "observedGeneration": 1,
        "conditions": [
            _condition("Ready", "False", "Drift", "2 missing"),
            _condition("Reconciling", "True", "Syncing"),
            _condition("Stalled", "False", "Healthy"),
        ],
        "summary": {"desired": 118, "inSync": 116, "missing": 2, "pendingRemoval": 0, "unmanaged": 1},
        "drift": {"missing": [item], "unexpected": [{**item, "managed": False}], "truncated": False},
        "unresolved": [{"kind": "Group", "name": "Ghosts", "reason": "NotFound", "message": "no such group"}],
        "claims": [{"roleId": item["roleId"], "scope": "workspaces/contoso"}],
        "lastSyncTime": "2025-01-01T00:00:00Z",
        "workspace": "contoso",
    }
    patched = objects.patch_namespaced_custom_object_status(
        GROUP, VERSION, namespace, PLURAL[B], "b", {"status": status}
    )
    assert patched["status"] == status
    # The main resource ignores status; the status subresource ignores spec.
    objects.patch_namespaced_custom_object(
        GROUP, VERSION, namespace, PLURAL[B], "b", {"status": {"workspace": "other"}, "spec": {"suspend": True}}
    )
    objects.patch_namespaced_custom_object_status(
        GROUP, VERSION, namespace, PLURAL[B], "b", {"spec": {"suspend": False}}
    )
    current = objects.get_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL[B], "b")
    assert current["status"]["workspace"] == "contoso"
    assert current["spec"]["suspend"] is True
    # The status schema is enforced too.
    with pytest.raises(ApiException) as err:
        objects.patch_namespaced_custom_object_status(
            GROUP,
            VERSION,
            namespace,
            PLURAL[B],
            "b",
            {"status": {"conditions": [_condition("Ready", "Maybe", "Drift")]}},
        )
    assert err.value.status == 422
    assert "status.conditions[0].status" in err.value.body


def test_workspace_status_accepts_what_the_operator_writes(objects, namespace):
    create(objects, namespace, W, WORKSPACE_SPEC, name="w")
    status = {
        "observedGeneration": 1,
        "conditions": [
            _condition("Ready", "False", "RemovalsHeld", "60 removals held"),
            _condition("Stalled", "True", "RemovalsHeld", "approve with synapse-scim.io/approve-removals"),
        ],
        "reachable": True,
        "roleDefinitions": 11,
        "assignments": {"managed": 118, "unmanaged": 3},
        "lastSyncTime": "2025-01-01T00:00:00Z",
        "heldPlan": {"id": "p-1a2b3c", "removals": 60, "since": "2025-01-01T00:00:00Z"},
        "orphanedAssignments": [GUID],
    }
    patched = objects.patch_namespaced_custom_object_status(
        GROUP, VERSION, namespace, PLURAL[W], "w", {"status": status}
    )
    assert patched["status"] == status


# -- kubectl -----------------------------------------------------------------------------------------


def test_kubectl_explain_teaches_the_subjects(cluster):
    out = cluster.kubectl("explain", "synapserolebinding.spec.subjects").stdout
    for text in (
        "Who gets the roles",
        "kind",
        "name",
        "id",
        "expand",
        "userPrincipalName",
        "transitive member",
        "Group, User or ServicePrincipal",
        "ScimGroup",
        "provider",
        "externalId",
    ):
        assert text in out, out
    deep = cluster.kubectl("explain", "synapseworkspace.spec.removalGuard.maxPercent").stdout
    assert "Defaults to 20" in deep


def test_kubectl_printer_columns_short_names_and_category(cluster, objects, namespace):
    create(objects, namespace, W, WORKSPACE_SPEC, name="analytics")
    create(objects, namespace, B, BINDING_SPEC, name="data-engineers")
    objects.patch_namespaced_custom_object_status(
        GROUP,
        VERSION,
        namespace,
        PLURAL[B],
        "data-engineers",
        {
            "status": {
                "conditions": [_condition("Ready", "False", "Drift")],
                "summary": {"desired": 118, "inSync": 116, "missing": 2},
            }
        },
    )

    rb_out = cluster.kubectl("get", "synrb", "-n", namespace).stdout.splitlines()
    assert rb_out[0].split() == ["NAME", "READY", "REASON", "WORKSPACE", "DESIRED", "MISSING", "AGE"]
    assert rb_out[1].split()[:6] == ["data-engineers", "False", "Drift", "analytics", "118", "2"]
    wide = cluster.kubectl("get", "synrb", "-n", namespace, "-o", "wide").stdout.splitlines()
    assert wide[0].split() == ["NAME", "READY", "REASON", "WORKSPACE", "DESIRED", "MISSING", "MODE", "AGE"]
    assert wide[1].split()[6] == "Enforce"

    ws_out = cluster.kubectl("get", "synws", "-n", namespace, "-o", "wide").stdout.splitlines()
    assert ws_out[0].split() == ["NAME", "READY", "REASON", "ENDPOINT", "MANAGED", "UNMANAGED", "AGE"]
    assert WORKSPACE_SPEC["endpoint"] in ws_out[1]

    category = cluster.kubectl("get", "synapse-scim", "-n", namespace, "-o", "name").stdout.split()
    assert sorted(category) == [
        "synapserolebinding.synapse-scim.io/data-engineers",
        "synapseworkspace.synapse-scim.io/analytics",
    ]
    # Not in the "all" category.
    everything = cluster.kubectl("get", "all", "-n", namespace, "-o", "name").stdout
    assert "synapse-scim.io" not in everything


def test_kubectl_shows_the_cel_message(cluster, namespace):
    bad = json.dumps(manifest(B, "bad", rb(subjects=[{"kind": "User", "name": "alice@contoso.com", "id": GUID}])))
    proc = cluster.kubectl("apply", "-n", namespace, "-f", "-", input=bad, check=False)
    assert proc.returncode != 0
    assert "spec.subjects[0]: Invalid value: set only one of name, id and externalId" in proc.stderr

"""Static checks of the CRD manifests in crds/ (no cluster needed).

The CRDs are the single source of truth for the API (the Helm chart ships the same files), so the
conventions that `kubectl explain`, the printer columns and the operator rely on are pinned here.
What the API server does with them is tested in test_crd_validation.py.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

CRD_DIR = Path(__file__).resolve().parents[2] / "crds"
GROUP = "synapse-scim.io"
VERSION = "v1alpha1"

FILES = {
    "SynapseWorkspace": "synapse-scim.io_synapseworkspaces.yaml",
    "SynapseRoleBinding": "synapse-scim.io_synapserolebindings.yaml",
    "ScimProvider": "synapse-scim.io_scimproviders.yaml",
    "ScimUser": "synapse-scim.io_scimusers.yaml",
    "ScimGroup": "synapse-scim.io_scimgroups.yaml",
    "ScimGroupMembers": "synapse-scim.io_scimgroupmembers.yaml",
}
NAMES = {
    "SynapseWorkspace": ("synapseworkspaces", "synapseworkspace", ["synws"]),
    "SynapseRoleBinding": ("synapserolebindings", "synapserolebinding", ["synrb"]),
    "ScimProvider": ("scimproviders", "scimprovider", ["scimp"]),
    "ScimUser": ("scimusers", "scimuser", ["scimu"]),
    "ScimGroup": ("scimgroups", "scimgroup", ["scimg"]),
    "ScimGroupMembers": ("scimgroupmembers", "scimgroupmembers", ["scimgm"]),
}
# The SCIM endpoint's storage kinds (docs/scim.md): written by the operator only, no status, and
# spec.attributes keeps the SCIM resource as sent (the one subtree where unknown fields are kept).
STORAGE_KINDS = {"ScimUser", "ScimGroup", "ScimGroupMembers"}
PRESERVED = {"ScimUser": {".spec.attributes"}, "ScimGroup": {".spec.attributes"}, "ScimGroupMembers": set()}
PRINTER_COLUMNS = {
    "SynapseWorkspace": {
        "Ready": '.status.conditions[?(@.type=="Ready")].status',
        "Reason": '.status.conditions[?(@.type=="Ready")].reason',
        "Endpoint": ".spec.endpoint",
        "Managed": ".status.assignments.managed",
        "Unmanaged": ".status.assignments.unmanaged",
        "Age": ".metadata.creationTimestamp",
    },
    "SynapseRoleBinding": {
        "Ready": '.status.conditions[?(@.type=="Ready")].status',
        "Reason": '.status.conditions[?(@.type=="Ready")].reason',
        "Workspace": ".spec.workspaceRef.name",
        "Desired": ".status.summary.desired",
        "Missing": ".status.summary.missing",
        "Age": ".metadata.creationTimestamp",
        "Mode": ".spec.managementPolicy",
    },
    "ScimProvider": {
        "Ready": '.status.conditions[?(@.type=="Ready")].status',
        "Users": ".status.users",
        "Groups": ".status.groups",
        "Age": ".metadata.creationTimestamp",
        "Endpoint": ".status.endpoint",
        "Reason": '.status.conditions[?(@.type=="Ready")].reason',
        "Rejected": ".status.rejectedTotal",
    },
    "ScimUser": {
        "UserName": ".spec.attributes.userName",
        "DisplayName": ".spec.attributes.displayName",
        "Active": ".spec.attributes.active",
        "Age": ".metadata.creationTimestamp",
        "Provider": ".metadata.labels.synapse-scim\\.io/scim-provider",
        "ExternalId": ".spec.attributes.externalId",
    },
    "ScimGroup": {
        "DisplayName": ".spec.attributes.displayName",
        "Members": ".spec.memberCount",
        "Age": ".metadata.creationTimestamp",
        "Provider": ".metadata.labels.synapse-scim\\.io/scim-provider",
        "Shards": ".spec.shardSet",
    },
    "ScimGroupMembers": {
        "Group": ".spec.group",
        "Shard": ".spec.shard",
        "Members": ".spec.memberCount",
        "Age": ".metadata.creationTimestamp",
        "Provider": ".metadata.labels.synapse-scim\\.io/scim-provider",
    },
}
WIDE_ONLY = {"Endpoint", "Mode", "Provider", "ExternalId", "Shards", "Rejected"}

# The field names the operator code reads and writes: a change here is an API change.
SPEC_FIELDS = {
    "SynapseWorkspace": {
        "endpoint",
        "workspaceName",
        "tenantId",
        "credential",
        "cloud",
        "syncInterval",
        "removalGuard",
        "suspend",
    },
    "SynapseRoleBinding": {
        "workspaceRef",
        "roles",
        "scope",
        "subjects",
        "managementPolicy",
        "deletionPolicy",
        "suspend",
    },
    "ScimProvider": {"tokenSecretRef", "principalMatching"},
    "ScimUser": {"attributes", "created", "lastModified"},
    "ScimGroup": {"attributes", "created", "lastModified", "members", "memberCount", "shardSet"},
    "ScimGroupMembers": {"group", "shardSet", "shard", "memberCount", "members"},
}
STATUS_FIELDS = {
    "SynapseWorkspace": {
        "observedGeneration",
        "conditions",
        "reachable",
        "roleDefinitions",
        "assignments",
        "lastSyncTime",
        "heldPlan",
        "orphanedAssignments",
    },
    "SynapseRoleBinding": {
        "observedGeneration",
        "conditions",
        "summary",
        "drift",
        "unresolved",
        "claims",
        "lastSyncTime",
        "workspace",
        "scim",
    },
    "ScimProvider": {
        "observedGeneration",
        "conditions",
        "endpoint",
        "users",
        "groups",
        "lastRequestTime",
        "rejected",
        "rejectedTotal",
        "rejectedByReplica",
    },
}


def load(kind: str) -> dict:
    docs = [d for d in yaml.safe_load_all((CRD_DIR / FILES[kind]).read_text()) if d]
    assert len(docs) == 1, "one CRD per file (the Helm chart's crds/ reuses these files)"
    return docs[0]


def schema(kind: str) -> dict:
    return load(kind)["spec"]["versions"][0]["schema"]["openAPIV3Schema"]


def walk(node: dict, path: str) -> Iterator[tuple[str, dict]]:
    """Every schema node below `node`: properties and list items."""
    for name, prop in (node.get("properties") or {}).items():
        yield f"{path}.{name}", prop
        yield from walk(prop, f"{path}.{name}")
    if "items" in node:
        yield f"{path}[*]", node["items"]
        yield from walk(node["items"], f"{path}[*]")


KINDS = list(FILES)
API_KINDS = [kind for kind in KINDS if kind not in STORAGE_KINDS]  # with a status people read


def test_crds_directory_holds_exactly_these_crds():
    assert sorted(p.name for p in CRD_DIR.glob("*.yaml")) == sorted(FILES.values())


@pytest.mark.parametrize("kind", KINDS)
def test_crd_identity(kind):
    crd = load(kind)
    plural, singular, short = NAMES[kind]
    assert crd["apiVersion"] == "apiextensions.k8s.io/v1"
    assert crd["kind"] == "CustomResourceDefinition"
    assert crd["metadata"]["name"] == f"{plural}.{GROUP}"
    spec = crd["spec"]
    assert spec["group"] == GROUP
    assert spec["scope"] == "Namespaced"
    assert spec["names"]["kind"] == kind
    assert spec["names"]["plural"] == plural
    assert spec["names"]["singular"] == singular
    assert spec["names"]["shortNames"] == short
    assert spec["names"]["categories"] == ["synapse-scim"]  # not "all": kubectl get all stays quiet
    [version] = spec["versions"]
    assert (version["name"], version["served"], version["storage"]) == (VERSION, True, True)


@pytest.mark.parametrize("kind", API_KINDS)
def test_status_subresource(kind):
    [version] = load(kind)["spec"]["versions"]
    assert version["subresources"] == {"status": {}}
    assert set(schema(kind)["properties"]["status"]["properties"]) == STATUS_FIELDS[kind]


@pytest.mark.parametrize("kind", KINDS)
def test_spec_fields_are_the_agreed_api(kind):
    assert set(schema(kind)["properties"]["spec"]["properties"]) == SPEC_FIELDS[kind]


@pytest.mark.parametrize("kind", KINDS)
def test_every_property_has_a_description(kind):
    root = schema(kind)
    assert root.get("description")
    missing = []
    for path, node in walk(root, ""):
        if path == ".metadata":
            # The API server forbids anything but `type: object` there; explain uses ObjectMeta's docs.
            assert node == {"type": "object"}
            continue
        if not (node.get("description") or "").strip():
            missing.append(path)
    assert missing == []


@pytest.mark.parametrize("kind", KINDS)
def test_unknown_fields_are_pruned_everywhere(kind):
    # x-kubernetes-preserve-unknown-fields may only be `true` (the API server rejects `false`); leaving
    # it out everywhere means every unknown field is pruned, or rejected with fieldValidation=Strict.
    # The one exception: a stored SCIM resource's attributes (validated by the endpoint instead).
    preserved = set()
    for path, node in [("", schema(kind)), *walk(schema(kind), "")]:
        if "x-kubernetes-preserve-unknown-fields" in node:
            preserved.add(path)
            assert node["x-kubernetes-preserve-unknown-fields"] is True
            assert not node.get("properties"), path  # nothing below it is validated: say so by having nothing
        assert "additionalProperties" not in node, path
    assert preserved == PRESERVED.get(kind, set())


@pytest.mark.parametrize("kind", sorted(STORAGE_KINDS))
def test_storage_kinds_have_no_status(kind):
    [version] = load(kind)["spec"]["versions"]
    assert "subresources" not in version
    assert "status" not in schema(kind)["properties"]


@pytest.mark.parametrize("kind", KINDS)
def test_printer_columns(kind):
    [version] = load(kind)["spec"]["versions"]
    columns = {c["name"]: c for c in version["additionalPrinterColumns"]}
    assert {n: c["jsonPath"] for n, c in columns.items()} == PRINTER_COLUMNS[kind]
    for name, column in columns.items():
        assert column.get("description"), name
        assert column.get("priority", 0) == (1 if name in WIDE_ONLY else 0), name
    assert columns["Age"]["type"] == "date"
    # The default (not -o wide) view, in order.
    assert [n for n in columns if n not in WIDE_ONLY] == [n for n in PRINTER_COLUMNS[kind] if n not in WIDE_ONLY]


@pytest.mark.parametrize("kind", API_KINDS)
def test_cel_rules_have_fix_it_messages(kind):
    rules = [
        (path, r)
        for path, node in [("", schema(kind)), *walk(schema(kind), "")]
        for r in node.get("x-kubernetes-validations", [])
    ]
    if kind.startswith("Synapse"):  # ScimProvider's one field needs no rule beyond its pattern
        assert rules
    for path, rule in rules:
        # Without message/messageExpression the user reads "failed rule: <CEL>".
        assert rule.get("message") or rule.get("messageExpression"), path
        for text in (rule.get("message", ""), rule.get("messageExpression", "")):
            assert "\n" not in text, path
        assert rule.get("reason", "FieldValueInvalid") in {
            "FieldValueInvalid",
            "FieldValueForbidden",
            "FieldValueRequired",
            "FieldValueDuplicate",
        }
        if "fieldPath" in rule:
            assert rule["fieldPath"].startswith("."), path


@pytest.mark.parametrize("kind", KINDS)
def test_strings_read_by_cel_are_bounded(kind):
    # The API server estimates CEL cost from maxLength/maxItems; an unbounded string or list under a
    # rule multiplies the estimate by the 3 MiB request size. Keep every spec string and list bounded.
    for path, node in walk(schema(kind)["properties"]["spec"], ".spec"):
        if node.get("type") == "string":
            assert "maxLength" in node, path  # enums too: the estimator ignores enum
        if node.get("type") == "array":
            assert "maxItems" in node, path


def test_defaults():
    ws = schema("SynapseWorkspace")["properties"]["spec"]["properties"]
    assert ws["syncInterval"]["default"] == "10m"
    assert ws["removalGuard"]["default"] == {}
    assert ws["removalGuard"]["properties"]["maxRemovals"]["default"] == 50
    assert ws["removalGuard"]["properties"]["maxPercent"]["default"] == 20
    assert ws["suspend"]["default"] is False
    assert "default" not in ws["workspaceName"]  # derived by the operator from the endpoint
    cred = ws["credential"]["properties"]
    assert cred["clientSecret"]["properties"]["secretRef"]["properties"]["key"]["default"] == "clientSecret"
    assert cred["certificate"]["properties"]["secretRef"]["properties"]["key"]["default"] == "tls.pem"
    assert cred["certificate"]["properties"]["sendCertificateChain"]["default"] is False
    cloud = ws["cloud"]["properties"]
    assert cloud["authorityHost"]["default"] == "https://login.microsoftonline.com"
    assert cloud["graphEndpoint"]["default"] == "https://graph.microsoft.com"
    assert cloud["synapseAudience"]["default"] == "https://dev.azuresynapse.net"

    rb = schema("SynapseRoleBinding")["properties"]["spec"]["properties"]
    assert rb["scope"]["default"] == {}
    assert rb["managementPolicy"]["default"] == "Enforce"
    assert rb["deletionPolicy"]["default"] == "Delete"
    assert rb["suspend"]["default"] is False
    assert "default" not in rb["subjects"]["items"]["properties"]["expand"]  # only valid on Groups
    assert rb["roles"]["x-kubernetes-list-type"] == "set"
    assert (rb["roles"]["minItems"], rb["roles"]["maxItems"]) == (1, 20)
    assert (rb["subjects"]["minItems"], rb["subjects"]["maxItems"]) == (1, 256)


@pytest.mark.parametrize("kind", API_KINDS)
def test_conditions_are_a_map_keyed_by_type(kind):
    conditions = schema(kind)["properties"]["status"]["properties"]["conditions"]
    assert conditions["x-kubernetes-list-type"] == "map"
    assert conditions["x-kubernetes-list-map-keys"] == ["type"]
    assert set(conditions["items"]["properties"]) == {
        "type",
        "status",
        "reason",
        "message",
        "lastTransitionTime",
        "observedGeneration",
    }


# -- docs/api.md: the field reference, rendered from the CRDs ------------------------------------------

API_DOC = CRD_DIR.parent / "docs" / "api.md"


def _type(node: dict) -> str:
    kind = node.get("type", "")
    if kind == "array":
        return f"[]{_type(node['items'])}"
    return kind


def _rules(node: dict, required: bool) -> str:
    out = ["**required**"] if required else []
    if "enum" in node:
        out.append("one of " + ", ".join(f"`{v}`" for v in node["enum"]))
    for key, label in (
        ("minLength", "min length"),
        ("maxLength", "max length"),
        ("minItems", "min items"),
        ("maxItems", "max items"),
        ("minimum", "min"),
        ("maximum", "max"),
    ):
        if key in node and not (key == "maxLength" and "enum" in node):
            out.append(f"{label} {node[key]}")
    if node.get("x-kubernetes-list-type") == "set":
        out.append("unique items")
    if "pattern" in node:
        out.append(f"pattern `{node['pattern']}`")
    for rule in node.get("x-kubernetes-validations", []):
        out.append(f"rule: {rule['message']}" if "message" in rule else f"CEL `{' '.join(rule['rule'].split())}`")
    return "; ".join(out).replace("|", "\\|")


def _rows(node: dict, path: str) -> Iterator[str]:
    required = set(node.get("required", []))
    for name, prop in (node.get("properties") or {}).items():
        field = f"{path}.{name}" if path else name
        default = f"`{json.dumps(prop['default'])}`" if "default" in prop else ""
        description = " ".join(prop.get("description", "").split()).replace("|", "\\|")
        yield (f"| `{field}` | {_type(prop)} | {default} | {description} | {_rules(prop, name in required)} |")
        child = prop["items"] if prop.get("type") == "array" else prop
        yield from _rows(child, f"{field}[]" if prop.get("type") == "array" else field)


def render_api_doc() -> str:
    lines = [
        "# API reference: `synapse-scim.io/v1alpha1`",
        "",
        "<!-- Generated from crds/ by tests/integration/test_crd_schema.py; do not edit. Regenerate with",
        "     SYNAPSE_SCIM_UPDATE_DOCS=1 .venv/bin/pytest tests/integration/test_crd_schema.py -->",
        "",
        "The CRDs in `crds/` are the source; `kubectl explain <kind>.<field>` prints the same descriptions.",
        "Unknown fields are rejected by kubectl (its default field validation is Strict) and silently",
        "pruned for clients that do not ask for strict validation.",
    ]
    for kind in KINDS:
        crd = load(kind)
        names = crd["spec"]["names"]
        [version] = crd["spec"]["versions"]
        root = version["schema"]["openAPIV3Schema"]
        lines += [
            "",
            f"## {kind}",
            "",
            " ".join(root["description"].split()),
            "",
            f"Namespaced; short name `{names['shortNames'][0]}`; category `{names['categories'][0]}`; "
            + (
                "status subresource." if "status" in root["properties"] else "no status (written by the operator only)."
            ),
            "",
            "Columns of `kubectl get` (`-o wide` adds the starred ones): "
            + ", ".join(c["name"] + ("*" if c.get("priority") else "") for c in version["additionalPrinterColumns"])
            + ".",
        ]
        for part in ("spec", "status") if "status" in root["properties"] else ("spec",):
            lines += [
                "",
                f"### {part}",
                "",
                "| Field | Type | Default | Description | Validation |",
                "| --- | --- | --- | --- | --- |",
            ]
            lines += list(_rows(root["properties"][part], part))
    return "\n".join(lines) + "\n"


def test_api_doc_is_current():
    text = render_api_doc()
    if os.environ.get("SYNAPSE_SCIM_UPDATE_DOCS"):
        API_DOC.parent.mkdir(exist_ok=True)
        API_DOC.write_text(text)
    assert API_DOC.read_text() == text, "docs/api.md is stale: regenerate it (see its header)"

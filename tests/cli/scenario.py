"""The organisation, the sandbox state and the GitOps manifests the plan/explain tests run on.

Ids are the sandbox's stable ids (uuid5 of the names), so the outputs are the same on every run.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml

from synapse_scim.core.model import Grant, assignment_id

DOMAIN = "contoso.com"
NS = "data-platform"
ROLES = {
    r["name"]: r["id"]
    for r in json.loads(
        (Path(__file__).resolve().parents[2] / "sandbox/synapse_scim_sandbox/data/builtin-roles.json").read_text()
    )
}


def upn(name: str) -> str:
    return f"{name}@{DOMAIN}"


def org() -> dict[str, Any]:
    """Data Engineers > Spark Team > Platform Core > Data Engineers is a cycle three groups deep; dave is
    disabled; heidi holds a manual Synapse Administrator; the group Contractors holds a manual Synapse User."""
    return {
        "tenant": {"domain": DOMAIN},
        "apps": [{"name": "synapse-scim-operator", "secret": "operator-secret-1"}],
        "users": [
            {"userPrincipalName": upn(u), "accountEnabled": u != "dave"}
            for u in ("alice", "bob", "carol", "dave", "erin", "frank", "grace", "heidi", "ivan")
        ],
        "servicePrincipals": [{"displayName": "etl-pipeline"}],
        "groups": [
            {"displayName": "Data Engineers", "members": [upn("alice"), {"group": "Spark Team"}]},
            {"displayName": "Spark Team", "members": [upn("bob"), {"group": "Platform Core"}]},
            {"displayName": "Platform Core", "members": [upn("carol"), {"group": "Data Engineers"}]},
            {"displayName": "Analysts", "members": [upn("erin"), upn("frank"), upn("dave")]},
            {"displayName": "Contractors", "members": [upn("grace")]},
        ],
        "workspaces": [
            {
                "name": "analytics",
                "bigDataPools": ["sparkpool"],
                "linkedServices": ["datalake"],
                "assignments": [
                    {"role": "Synapse Administrator", "principal": upn("heidi")},
                    {"role": "Synapse User", "principal": "Contractors"},
                ],
            },
            {"name": "reporting"},
        ],
    }


def owned(sb: Any, workspace: str, role: str, principal: str, kind: str = "user", scope: str | None = None) -> None:
    """An assignment as the operator makes it (its deterministic id): what an earlier sync left behind."""
    pid = str(sb.state.directory.resolve(principal, kinds=(kind,)).id).lower()
    grant = Grant(ROLES[role], pid, scope or f"workspaces/{workspace}")
    sb.admin.add_assignment(workspace, role, pid, grant.scope, id=assignment_id(grant))


def seed_history(sb: Any) -> None:
    """Analytics: erin's Synapse User is in sync; heidi's and ivan's are no longer wanted, two removals
    where the workspace's removal guard allows one. Reporting: grace's is no longer wanted (revoked)."""
    owned(sb, "analytics", "Synapse User", upn("erin"))
    owned(sb, "analytics", "Synapse User", upn("heidi"))
    owned(sb, "analytics", "Synapse User", upn("ivan"))
    owned(sb, "reporting", "Synapse User", upn("grace"))


def workspace(sb: Any, name: str, namespace: str | None = NS, **spec: Any) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name}
    if namespace:
        meta["namespace"] = namespace
    return {
        "apiVersion": "synapse-scim.io/v1alpha1",
        "kind": "SynapseWorkspace",
        "metadata": meta,
        "spec": {
            "endpoint": sb.workspace_endpoint(name),
            "workspaceName": name,
            "tenantId": sb.tenant_id,
            "credential": {
                "clientSecret": {
                    "clientId": sb.client("synapse-scim-operator").client_id,
                    "secretRef": {"name": "synapse-sp"},
                }
            },
            "cloud": {"authorityHost": sb.authority_host, "graphEndpoint": sb.graph_url.removesuffix("/v1.0")},
            **spec,
        },
    }


def binding(
    name: str, workspace: str, roles: list[str], subjects: list[dict[str, Any]], namespace: str | None = NS, **spec: Any
) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name}
    if namespace:
        meta["namespace"] = namespace
    return {
        "apiVersion": "synapse-scim.io/v1alpha1",
        "kind": "SynapseRoleBinding",
        "metadata": meta,
        "spec": {"workspaceRef": {"name": workspace}, "roles": roles, "subjects": subjects, **spec},
    }


def write_repo(sb: Any, root: Path) -> Path:
    """A GitOps repository: workspaces with a Secret in one multi-document file, bindings in a subdirectory
    (one without a namespace: -n gives it), and a README that is not a manifest."""
    repo = root / "repo"
    (repo / "bindings").mkdir(parents=True, exist_ok=True)
    secret = {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": "synapse-sp", "namespace": NS},
        "stringData": {"clientSecret": "not-read-by-plan"},
    }
    docs = [secret, workspace(sb, "analytics", removalGuard={"maxRemovals": 1}), workspace(sb, "reporting")]
    (repo / "workspaces.yaml").write_text(yaml.safe_dump_all(docs, sort_keys=False))
    bindings = {
        "data-engineers.yaml": [
            binding(
                "data-engineers", "analytics", ["Synapse Contributor"], [{"kind": "Group", "name": "Data Engineers"}]
            )
        ],
        "analysts.yaml": [
            binding("analysts", "analytics", ["Synapse User"], [{"kind": "Group", "name": "Analysts"}]),
            binding(
                "reporting-readers",
                "reporting",
                ["Synapse User"],
                [{"kind": "Group", "name": "Analysts"}],
                namespace=None,
            ),
        ],
        "etl.yaml": [
            binding(
                "etl-pipeline",
                "analytics",
                ["Synapse Credential User"],
                [{"kind": "ServicePrincipal", "name": "etl-pipeline"}],
                scope={"linkedService": "datalake"},
            )
        ],
        "contractors.yaml": [
            binding(
                "contractors",
                "analytics",
                ["Synapse Artifact User"],
                [{"kind": "Group", "name": "Contractors", "expand": False}],
                managementPolicy="Observe",
            )
        ],
    }
    for file, items in bindings.items():
        (repo / "bindings" / file).write_text(yaml.safe_dump_all(items, sort_keys=False))
    (repo / "README.md").write_text("not a manifest\n")
    return repo

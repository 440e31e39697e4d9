"""The controller's orchestration as the in-process tests (tests/controller) drive it, imported in one
place.

Also the custom resources' bodies as the API server would hand them to the operator, pointed at a sandbox.
"""

from __future__ import annotations

from typing import Any

from synapse_scim.controller.reconcile import run_sync
from synapse_scim.controller.sync import SyncResult, sync_workspace
from synapse_scim.core.objects import APPROVE_ANNOTATION, BindingObject, WorkspaceObject

__all__ = [
    "APPROVE_ANNOTATION",
    "SECRET",
    "BindingObject",
    "SyncResult",
    "WorkspaceObject",
    "binding_body",
    "condition",
    "run_sync",
    "sync_workspace",
    "workspace_body",
    "workspace_spec",
]

GROUP_VERSION = "synapse-scim.io/v1alpha1"
SECRET = "synapse-sp"  # the Secret workspace_spec names, key clientSecret


def workspace_spec(sb: Any, workspace: str = "analytics", **spec: Any) -> dict[str, Any]:
    """A SynapseWorkspace spec pointed at the sandbox, signing in as the operator's app with a client
    secret from the Secret `synapse-sp`."""
    return {
        "endpoint": sb.workspace_endpoint(workspace),
        "workspaceName": workspace,
        "tenantId": sb.tenant_id,
        "credential": {
            "clientSecret": {"clientId": sb.client("synapse-scim-operator").client_id, "secretRef": {"name": SECRET}}
        },
        "cloud": {"authorityHost": sb.authority_host, "graphEndpoint": sb.graph_url.removesuffix("/v1.0")},
        **spec,
    }


def workspace_body(
    sb: Any,
    namespace: str,
    name: str = "analytics",
    *,
    annotations: dict[str, str] | None = None,
    status: dict[str, Any] | None = None,
    generation: int = 1,
    **spec: Any,
) -> dict[str, Any]:
    return {
        "apiVersion": GROUP_VERSION,
        "kind": "SynapseWorkspace",
        "metadata": {
            "namespace": namespace,
            "name": name,
            "generation": generation,
            "uid": f"uid-ws-{name}",
            "annotations": dict(annotations or {}),
        },
        "spec": workspace_spec(sb, name, **spec),
        "status": dict(status or {}),
    }


def binding_body(
    namespace: str,
    name: str,
    roles: list[str],
    subjects: list[dict[str, Any]],
    *,
    workspace: str = "analytics",
    status: dict[str, Any] | None = None,
    generation: int = 1,
    deleting: bool = False,
    **spec: Any,
) -> dict[str, Any]:
    metadata: dict[str, Any] = {"namespace": namespace, "name": name, "generation": generation, "uid": f"uid-{name}"}
    if deleting:
        metadata["deletionTimestamp"] = "2025-01-01T00:00:00Z"
    return {
        "apiVersion": GROUP_VERSION,
        "kind": "SynapseRoleBinding",
        "metadata": metadata,
        "spec": {"workspaceRef": {"name": workspace}, "roles": roles, "subjects": subjects, **spec},
        "status": dict(status or {}),
    }


def condition(status: dict[str, Any], type_: str = "Ready") -> dict[str, Any]:
    """One condition of a status (AssertionError naming the types there are, if it is not there)."""
    found = {c["type"]: c for c in status.get("conditions") or ()}
    assert type_ in found, f"no condition {type_} in {sorted(found)}"
    return found[type_]

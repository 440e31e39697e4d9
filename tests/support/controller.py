"""The controller's orchestration as the in-process tests (tests/controller) drive it, imported in one
place.

Also the custom resources' bodies as the API server would hand them to the operator, pointed at a sandbox.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

from synapse_scim.adapters.credentials import CredentialError
from synapse_scim.adapters.kube import WORKSPACES
from synapse_scim.controller.reconcile import run_sync
from synapse_scim.controller.sync import SyncResult, sync_workspace
from synapse_scim.core.objects import APPROVE_ANNOTATION, BindingObject, WorkspaceObject

__all__ = [
    "APPROVE_ANNOTATION",
    "SECRET",
    "BindingObject",
    "FakeKube",
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


class FakeKube:
    """The Kube adapter's calls run_sync makes, on dicts. patch_status stores `new` as the status, which
    is what Kube.patch_status's merge patch makes of it (keys that disappeared are deleted explicitly)."""

    def __init__(self) -> None:
        self.workspaces: dict[tuple[str, str], dict[str, Any]] = {}
        self.bindings: dict[tuple[str, str], dict[str, Any]] = {}
        self.secrets: dict[tuple[str, str], dict[str, bytes]] = {}
        self.patches: list[tuple[str, str, str, dict[str, Any]]] = []
        self.finalizers_added: list[tuple[str, str]] = []  # (plural, name): what add_finalizer put on
        self.finalizers_removed: list[tuple[str, str]] = []  # (plural, name): what remove_finalizer took off
        # ConfigMaps (the grant ledger): (namespace, name) -> {"metadata": ..., "data": ...}
        self.configmaps: dict[tuple[str, str], dict[str, Any]] = {}
        self.configmap_writes: list[tuple[str, str, dict[str, str | None]]] = []
        self.configmap_error: Exception | None = None  # raised by every ConfigMap write when set

    def add(self, body: dict[str, Any]) -> None:
        meta = body["metadata"]
        store = self.workspaces if body["kind"] == "SynapseWorkspace" else self.bindings
        store[(meta["namespace"], meta["name"])] = body

    async def get_workspace(self, namespace: str, name: str) -> dict[str, Any] | None:
        found = self.workspaces.get((namespace, name))
        return copy.deepcopy(found) if found is not None else None

    async def list_bindings(self, namespace: str, workspace: str) -> list[dict[str, Any]]:
        return [
            copy.deepcopy(b)
            for (ns, _), b in self.bindings.items()
            if ns == namespace and b["spec"]["workspaceRef"]["name"] == workspace
        ]

    async def add_finalizer(self, plural: str, body: Mapping[str, Any], finalizer: str) -> bool:
        """As Kube.add_finalizer, without the resourceVersion guard: the stored object gets it."""
        meta = body.get("metadata") or {}
        store = self.workspaces if plural == WORKSPACES else self.bindings
        stored = store.get((meta.get("namespace"), meta.get("name")))
        if stored is None:
            return False
        finalizers = stored["metadata"].setdefault("finalizers", [])
        if finalizer not in finalizers:
            finalizers.append(finalizer)
            self.finalizers_added.append((plural, str(meta.get("name"))))
        return True

    async def remove_finalizer(self, plural: str, namespace: str, name: str, uid: str, finalizer: str) -> bool:
        """As Kube.remove_finalizer: off the stored object being deleted; one with no finalizer left is gone."""
        store = self.workspaces if plural == WORKSPACES else self.bindings
        stored = store.get((namespace, name))
        meta = stored["metadata"] if stored is not None else {}
        if meta.get("uid") != uid or not meta.get("deletionTimestamp") or finalizer not in meta.get("finalizers", ()):
            return False
        meta["finalizers"].remove(finalizer)
        self.finalizers_removed.append((plural, name))
        if not meta["finalizers"]:
            del store[(namespace, name)]
        return True

    async def patch_status(
        self, plural: str, namespace: str, name: str, old: Mapping[str, Any] | None, new: Mapping[str, Any]
    ) -> None:
        self.patches.append((plural, namespace, name, copy.deepcopy(dict(new))))
        store = self.workspaces if plural == WORKSPACES else self.bindings
        if (namespace, name) in store:
            store[(namespace, name)]["status"] = copy.deepcopy(dict(new))

    async def read_secret(self, namespace: str, name: str, key: str) -> bytes:
        data = self.secrets.get((namespace, name))
        if data is None or key not in data:
            raise CredentialError("SecretNotFound", f"Secret {namespace}/{name} has no key {key!r}")
        return data[key]

    async def merge_patch_configmap(
        self, namespace: str, name: str, data: Mapping[str, str | None], metadata: Mapping[str, Any]
    ) -> None:
        """As Kube.merge_patch_configmap: a None value deletes its key; created with `metadata` if missing."""
        if self.configmap_error is not None:
            raise self.configmap_error
        self.configmap_writes.append((namespace, name, dict(data)))
        cm = self.configmaps.setdefault(
            (namespace, name), {"metadata": {**copy.deepcopy(dict(metadata)), "name": name}, "data": {}}
        )
        for key, value in data.items():
            if value is None:
                cm["data"].pop(key, None)
            else:
                cm["data"][key] = value

    async def get_configmap_data(self, namespace: str, name: str) -> dict[str, str] | None:
        found = self.configmaps.get((namespace, name))
        return dict(found["data"]) if found is not None else None

    def status(self, plural: str, namespace: str, name: str) -> dict[str, Any]:
        store = self.workspaces if plural == WORKSPACES else self.bindings
        return store[(namespace, name)]["status"]

"""The two custom resources as the planner's callers see them, built from Kubernetes bodies (dicts).

Pure: no client here. The operator gets the bodies from the API server, `plan` from manifests.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from synapse_scim.core.model import BindingKey, RemovalGuard

# A person approves held removals by setting this annotation of the SynapseWorkspace to the plan id.
APPROVE_ANNOTATION = "synapse-scim.io/approve-removals"


def approve_command(namespace: str, workspace: str, plan_id: str | None) -> str:
    """The kubectl command that approves a held plan, complete enough to paste as it is (status
    messages and `plan` print it)."""
    return f"kubectl annotate synapseworkspace {workspace} -n {namespace} {APPROVE_ANNOTATION}={plan_id} --overwrite"


@dataclass(frozen=True)
class BindingObject:
    key: BindingKey
    spec: Mapping[str, Any]
    status: Mapping[str, Any]
    generation: int
    deleting: bool
    uid: str = ""

    @classmethod
    def from_body(cls, body: Mapping[str, Any]) -> BindingObject:
        meta = body.get("metadata", {})
        return cls(
            key=BindingKey(meta["namespace"], meta["name"]),
            spec=body.get("spec") or {},
            status=body.get("status") or {},
            generation=int(meta.get("generation") or 0),
            deleting=bool(meta.get("deletionTimestamp")),
            uid=str(meta.get("uid") or ""),
        )

    @property
    def label(self) -> str:
        return str(self.key)

    @property
    def suspended(self) -> bool:
        return bool(self.spec.get("suspend"))


@dataclass(frozen=True)
class WorkspaceObject:
    namespace: str
    name: str
    spec: Mapping[str, Any]
    status: Mapping[str, Any]
    annotations: Mapping[str, str]
    generation: int

    @classmethod
    def from_body(cls, body: Mapping[str, Any]) -> WorkspaceObject:
        meta = body.get("metadata", {})
        return cls(
            namespace=meta["namespace"],
            name=meta["name"],
            spec=body.get("spec") or {},
            status=body.get("status") or {},
            annotations=meta.get("annotations") or {},
            generation=int(meta.get("generation") or 0),
        )

    @property
    def suspended(self) -> bool:
        return bool(self.spec.get("suspend"))

    @property
    def approved_plan_id(self) -> str | None:
        return self.annotations.get(APPROVE_ANNOTATION)

    @property
    def orphaned_ids(self) -> frozenset[str]:
        return frozenset(self.status.get("orphanedAssignments") or ())

    @property
    def removal_guard(self) -> RemovalGuard:
        g = self.spec.get("removalGuard") or {}
        return RemovalGuard(max_removals=int(g.get("maxRemovals", 50)), max_percent=int(g.get("maxPercent", 20)))

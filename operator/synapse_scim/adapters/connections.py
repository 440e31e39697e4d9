"""Per-workspace Azure clients (Graph directory + Synapse workspace), rebuilt when the credential changes."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from azure.core.credentials_async import AsyncTokenCredential

from synapse_scim.adapters.credentials import Cloud, CredentialCache, SecretReader, azure_ca_bundle
from synapse_scim.adapters.directory import Directory, graph_client
from synapse_scim.adapters.throttle import AdaptiveLimit
from synapse_scim.adapters.workspace import Workspace, access_control_client
from synapse_scim.core.scope import workspace_name_from_endpoint


@dataclass
class Clients:
    credential: AsyncTokenCredential
    directory: Directory
    workspace: Workspace
    tenant: tuple[str, str]  # (tenant id, Graph endpoint): the scope of one Graph delta watch

    async def close(self) -> None:
        await self.workspace.close()
        await self.directory.close()


def workspace_name(spec: dict[str, Any]) -> str:
    """spec.workspaceName, else the first label of spec.endpoint's host (ValueError if neither works)."""
    return spec.get("workspaceName") or workspace_name_from_endpoint(spec["endpoint"])


class Connections:
    def __init__(self, read_secret: SecretReader, write_concurrency: int = 8) -> None:
        self.credentials = CredentialCache(read_secret)
        self.write_concurrency = write_concurrency
        self._clients: dict[str, tuple[int, str, Clients]] = {}

    async def get(self, namespace: str, name: str, spec: dict[str, Any]) -> Clients:
        """The clients of SynapseWorkspace namespace/name with this spec."""
        key = f"{namespace}/{name}"
        cloud = Cloud.from_spec(spec.get("cloud"))
        credential = await self.credentials.get(key, namespace, spec["tenantId"], spec.get("credential"), cloud)
        ws_name = workspace_name(spec)
        target = repr((spec["endpoint"], ws_name, cloud))
        cached = self._clients.get(key)
        if cached and cached[0] == id(credential) and cached[1] == target:
            return cached[2]
        if cached:
            await cached[2].close()
        limit = AdaptiveLimit(self.write_concurrency)
        clients = Clients(
            credential=credential,
            directory=Directory(graph_client(credential, cloud, verify=azure_ca_bundle())),
            workspace=Workspace(
                access_control_client(credential, spec["endpoint"], cloud, limit=limit), ws_name, limit=limit
            ),
            tenant=(spec["tenantId"].lower(), cloud.graph_endpoint),
        )
        self._clients[key] = (id(credential), target, clients)
        return clients

    async def drop(self, namespace: str, name: str) -> None:
        await self._drop(f"{namespace}/{name}")

    async def _drop(self, key: str) -> None:
        cached = self._clients.pop(key, None)
        if cached:
            await cached[2].close()
        await self.credentials.drop(key)

    async def close(self) -> None:
        for key in list(self._clients):
            await self._drop(key)
        await self.credentials.close()

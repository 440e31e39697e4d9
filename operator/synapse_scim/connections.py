"""Per-workspace Azure clients (Graph directory + Synapse workspace), rebuilt when the credential changes."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

from azure.core.credentials_async import AsyncTokenCredential

from .credentials import Cloud, CredentialCache, SecretReader
from .directory import Directory, graph_client
from .scope import workspace_name_from_endpoint
from .workspace import Workspace, access_control_client


@dataclass
class Clients:
    credential: AsyncTokenCredential
    directory: Directory
    workspace: Workspace


def workspace_name(spec: dict[str, Any]) -> str:
    """spec.workspaceName, else the first label of spec.endpoint's host (ValueError if neither works)."""
    return spec.get("workspaceName") or workspace_name_from_endpoint(spec["endpoint"])


class Connections:
    def __init__(self, read_secret: SecretReader) -> None:
        self.credentials = CredentialCache(read_secret)
        self._clients: dict[str, tuple[int, str, Clients]] = {}

    async def get(self, key: str, namespace: str, spec: dict[str, Any]) -> Clients:
        cloud = Cloud.from_spec(spec.get("cloud"))
        credential = await self.credentials.get(key, namespace, spec["tenantId"], spec.get("credential"), cloud)
        name = workspace_name(spec)
        cached = self._clients.get(key)
        if cached and cached[0] == id(credential) and cached[1] == repr((spec["endpoint"], name, cloud)):
            return cached[2]
        if cached:
            await cached[2].workspace.close()
            await cached[2].directory.close()
        clients = Clients(
            credential=credential,
            directory=Directory(graph_client(credential, cloud, verify=os.environ.get("SYNAPSE_SCIM_AZURE_CA_BUNDLE"))),
            workspace=Workspace(access_control_client(credential, spec["endpoint"], cloud), name),
        )
        self._clients[key] = (id(credential), repr((spec["endpoint"], name, cloud)), clients)
        return clients

    async def drop(self, key: str) -> None:
        cached = self._clients.pop(key, None)
        if cached:
            await cached[2].workspace.close()
            await cached[2].directory.close()
        await self.credentials.drop(key)

    async def close(self) -> None:
        for key in list(self._clients):
            await self.drop(key)
        await self.credentials.close()

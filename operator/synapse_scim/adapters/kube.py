"""Kubernetes adapter: Secrets, the two custom resources, and their status subresources.

The official client is synchronous; every call runs in a worker thread so the operator's event loop
never blocks on the API server.
"""

from __future__ import annotations

import asyncio
import base64
from collections.abc import Mapping
from typing import Any, cast

from kubernetes import client
from kubernetes.client.exceptions import ApiException

from synapse_scim.adapters.credentials import CredentialError
from synapse_scim.core.reasons import Reason

GROUP = "synapse-scim.io"
VERSION = "v1alpha1"
WORKSPACES = "synapseworkspaces"
BINDINGS = "synapserolebindings"


class Kube:
    def __init__(self, api: client.ApiClient) -> None:
        self.api = api
        self.core = client.CoreV1Api(api)
        self.custom = client.CustomObjectsApi(api)

    async def read_secret(self, namespace: str, name: str, key: str) -> bytes:
        """One key of a Secret, decoded. Errors name the Secret, the key and the fix (never the value)."""
        try:
            secret = await asyncio.to_thread(self.core.read_namespaced_secret, name, namespace)
        except ApiException as exc:
            if exc.status == 404:
                raise CredentialError(
                    Reason.SECRET_NOT_FOUND, f"Secret {namespace}/{name} does not exist: create it with the key {key!r}"
                ) from None
            if exc.status == 403:
                raise CredentialError(
                    Reason.SECRET_NOT_FOUND,
                    f"the operator may not read Secret {namespace}/{name} (403): grant it get on "
                    "secrets in this namespace",
                ) from None
            raise
        data = secret.data or {}
        if key not in data:
            raise CredentialError(
                Reason.SECRET_KEY_MISSING,
                f"Secret {namespace}/{name} has no key {key!r} (it has: {', '.join(sorted(data)) or 'none'})",
            )
        return base64.b64decode(data[key])

    async def list_bindings(self, namespace: str, workspace: str) -> list[dict[str, Any]]:
        # The custom-objects API answers untyped JSON (declared `object`).
        found = cast(
            dict[str, Any],
            await asyncio.to_thread(self.custom.list_namespaced_custom_object, GROUP, VERSION, namespace, BINDINGS),
        )
        return [
            b for b in found.get("items", []) if (b.get("spec") or {}).get("workspaceRef", {}).get("name") == workspace
        ]

    async def list_workspaces(self, namespace: str) -> list[dict[str, Any]]:
        found = await asyncio.to_thread(
            self.custom.list_namespaced_custom_object, GROUP, VERSION, namespace, WORKSPACES
        )
        return list(cast(dict[str, Any], found).get("items", []))

    def close(self) -> None:
        self.api.close()  # type: ignore[no-untyped-call]

    async def get_workspace(self, namespace: str, name: str) -> dict[str, Any] | None:
        try:
            found = await asyncio.to_thread(
                self.custom.get_namespaced_custom_object, GROUP, VERSION, namespace, WORKSPACES, name
            )
            return cast(dict[str, Any], found)
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise

    async def patch_status(
        self, plural: str, namespace: str, name: str, old: Mapping[str, Any] | None, new: Mapping[str, Any]
    ) -> None:
        """Merge-patch the status subresource; keys that disappeared are deleted explicitly."""
        body = {"status": {**{k: None for k in (old or {}) if k not in new}, **new}}
        try:
            await asyncio.to_thread(
                self.custom.patch_namespaced_custom_object_status, GROUP, VERSION, namespace, plural, name, body
            )
        except ApiException as exc:
            if exc.status != 404:  # deleted meanwhile: nothing to report on
                raise


def kubeconfig_client(config_file: str | None = None, context: str | None = None) -> client.ApiClient:
    """A client from a kubeconfig (default: $KUBECONFIG or ~/.kube/config) and one of its contexts."""
    from kubernetes import config

    found: client.ApiClient = config.new_client_from_config(  # type: ignore[no-untyped-call]
        config_file=config_file, context=context
    )
    return found


def api_client() -> client.ApiClient:
    """The in-cluster configuration (a pod's ServiceAccount), else the kubeconfig."""
    from kubernetes import config

    try:
        config.load_incluster_config()  # type: ignore[no-untyped-call]
        return client.ApiClient()
    except config.ConfigException:
        return kubeconfig_client()

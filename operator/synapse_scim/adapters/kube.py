"""Kubernetes adapter: Secrets, the two custom resources, their status subresources, and ConfigMaps
(the grant ledger, adapters/grant_ledger.py).

The official client is synchronous; every call runs in a worker thread so the operator's event loop
never blocks on the API server.
"""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import os
from collections.abc import Mapping
from typing import Any, cast

import yaml
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from synapse_scim.adapters.credentials import CredentialError
from synapse_scim.core.reasons import Reason

GROUP = "synapse-scim.io"
VERSION = "v1alpha1"
WORKSPACES = "synapseworkspaces"
BINDINGS = "synapserolebindings"
# kopf's finalizer on both kinds (controller/runtime.py configures kopf with it).
FINALIZER = "synapse-scim.io/finalizer"


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

    async def add_secret_finalizer(self, namespace: str, name: str, finalizer: str) -> bool:
        """Put `finalizer` on a Secret, so that it outlives a namespace's deletion until the operator
        takes it off. False when the Secret does not exist or is being deleted already (the API server
        accepts no new finalizer then). A JSON patch guarded by the resourceVersion: never a merge
        patch of the whole list, which would drop a finalizer someone else added meanwhile."""
        for _ in range(3):
            secret = await self._secret_meta(namespace, name)
            if secret is None:
                return False
            meta = secret.metadata
            present = list(meta.finalizers or [])
            if finalizer in present:
                return True
            if meta.deletion_timestamp is not None:
                return False
            add = (
                {"op": "add", "path": "/metadata/finalizers/-", "value": finalizer}
                if present
                else {"op": "add", "path": "/metadata/finalizers", "value": [finalizer]}
            )
            if await self._json_patch_secret(namespace, name, meta.resource_version, [add]):
                return True
        return False

    async def remove_secret_finalizer(self, namespace: str, name: str, finalizer: str) -> None:
        """Take `finalizer` off a Secret (nothing when it is not there, or the Secret is gone)."""
        for _ in range(3):
            secret = await self._secret_meta(namespace, name)
            if secret is None:
                return
            present = list(secret.metadata.finalizers or [])
            if finalizer not in present:
                return
            at = present.index(finalizer)
            ops = [
                {"op": "test", "path": f"/metadata/finalizers/{at}", "value": finalizer},
                {"op": "remove", "path": f"/metadata/finalizers/{at}"},
            ]
            if await self._json_patch_secret(namespace, name, secret.metadata.resource_version, ops):
                return
        raise RuntimeError(f"Secret {namespace}/{name} kept changing: finalizer {finalizer} not removed yet")

    async def _secret_meta(self, namespace: str, name: str) -> Any:
        try:
            return await asyncio.to_thread(self.core.read_namespaced_secret, name, namespace)
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise

    async def _json_patch_secret(
        self, namespace: str, name: str, resource_version: str, ops: list[dict[str, Any]]
    ) -> bool:
        """Apply `ops` only to `resource_version`; False when the Secret changed meanwhile (read again)."""
        body = [{"op": "test", "path": "/metadata/resourceVersion", "value": resource_version}, *ops]
        try:
            await asyncio.to_thread(
                self.core.patch_namespaced_secret, name, namespace, body, _content_type="application/json-patch+json"
            )
        except ApiException as exc:
            if exc.status in (409, 422):  # a failed test: someone else wrote it first
                return False
            if exc.status == 404:
                return True  # gone: nothing left to protect or release
            raise
        return True

    async def add_finalizer(self, plural: str, body: Mapping[str, Any], finalizer: str) -> bool:
        """Put `finalizer` on a custom object (a body as listed), guarded by its resourceVersion as a
        JSON patch: never a merge patch of the whole list. False when the object changed or went
        meanwhile (the next look sees it again)."""
        meta = body.get("metadata") or {}
        present = list(meta.get("finalizers") or [])
        if finalizer in present:
            return True
        add = (
            {"op": "add", "path": "/metadata/finalizers/-", "value": finalizer}
            if present
            else {"op": "add", "path": "/metadata/finalizers", "value": [finalizer]}
        )
        ops = [{"op": "test", "path": "/metadata/resourceVersion", "value": meta.get("resourceVersion")}, add]
        try:
            await asyncio.to_thread(
                self.custom.patch_namespaced_custom_object,
                GROUP,
                VERSION,
                str(meta.get("namespace")),
                plural,
                str(meta.get("name")),
                ops,
                _content_type="application/json-patch+json",
            )
        except ApiException as exc:
            if exc.status in (404, 409, 422):  # gone, or changed: a failed test
                return False
            raise
        return True

    async def remove_finalizer(self, plural: str, namespace: str, name: str, uid: str, finalizer: str) -> bool:
        """Take `finalizer` off a custom object that is being deleted, the object `uid` (not one created
        again under its name). A JSON patch testing the uid and the finalizer at its index, so that a
        finalizer someone else put on or took off meanwhile stays as they left it. True when taken off
        here; False when it was not there, or the object is gone, another one, or not being deleted."""
        for _ in range(3):
            try:
                found = await asyncio.to_thread(
                    self.custom.get_namespaced_custom_object, GROUP, VERSION, namespace, plural, name
                )
            except ApiException as exc:
                if exc.status == 404:
                    return False
                raise
            meta = cast(dict[str, Any], found).get("metadata") or {}
            present = list(meta.get("finalizers") or [])
            if meta.get("uid") != uid or not meta.get("deletionTimestamp") or finalizer not in present:
                return False
            at = present.index(finalizer)
            ops = [
                {"op": "test", "path": "/metadata/uid", "value": uid},
                {"op": "test", "path": f"/metadata/finalizers/{at}", "value": finalizer},
                {"op": "remove", "path": f"/metadata/finalizers/{at}"},
            ]
            try:
                await asyncio.to_thread(
                    self.custom.patch_namespaced_custom_object,
                    GROUP,
                    VERSION,
                    namespace,
                    plural,
                    name,
                    ops,
                    _content_type="application/json-patch+json",
                )
            except ApiException as exc:
                if exc.status == 404:
                    return False
                if exc.status in (409, 422):  # changed meanwhile: look again
                    continue
                raise
            return True
        return False

    async def post_event(self, involved: Mapping[str, Any], type_: str, reason: str, message: str) -> bool:
        """A core/v1 Event on `involved` (a body). False when the API server refuses it because the
        namespace is being deleted (it accepts no new object then): the caller logs instead. kopf's own
        posting would retry that refusal nine times, logging an error each time."""
        meta = involved.get("metadata") or {}
        now = dt.datetime.now(dt.UTC)
        event = client.CoreV1Event(
            metadata=client.V1ObjectMeta(generate_name=f"{meta.get('name')}.", namespace=meta.get("namespace")),
            involved_object=client.V1ObjectReference(
                api_version=involved.get("apiVersion"),
                kind=involved.get("kind"),
                name=meta.get("name"),
                namespace=meta.get("namespace"),
                uid=meta.get("uid"),
            ),
            type=type_,
            reason=reason,
            message=message[:1024],
            first_timestamp=now,
            last_timestamp=now,
            count=1,
            source=client.V1EventSource(component="synapse-scim"),
        )
        try:
            await asyncio.to_thread(self.core.create_namespaced_event, str(meta.get("namespace")), event)
        except ApiException as exc:
            if exc.status in (403, 404):
                return False
            raise
        return True

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
        self,
        plural: str,
        namespace: str,
        name: str,
        old: Mapping[str, Any] | None,
        new: Mapping[str, Any],
        resource_version: str | None = None,
    ) -> None:
        """Merge-patch the status subresource; keys that disappeared are deleted explicitly. With a
        `resource_version`, the patch applies only to that version (else 409 Conflict, raised)."""
        body: dict[str, Any] = {"status": {**{k: None for k in (old or {}) if k not in new}, **new}}
        if resource_version:
            body["metadata"] = {"resourceVersion": resource_version}
        try:
            await asyncio.to_thread(
                self.custom.patch_namespaced_custom_object_status, GROUP, VERSION, namespace, plural, name, body
            )
        except ApiException as exc:
            if exc.status != 404:  # deleted meanwhile: nothing to report on
                raise

    async def get_configmap_data(self, namespace: str, name: str) -> dict[str, str] | None:
        """A ConfigMap's data by name (get, never list); None when it does not exist."""
        try:
            found = await asyncio.to_thread(self.core.read_namespaced_config_map, name, namespace)
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise
        return dict(found.data or {})

    async def merge_patch_configmap(
        self, namespace: str, name: str, data: Mapping[str, str | None], metadata: Mapping[str, Any]
    ) -> None:
        """One JSON merge patch of a ConfigMap's data (a None value deletes its key); when the ConfigMap
        does not exist, it is created with `metadata` (labels, ownerReferences) and the non-None keys.
        Needs only patch and create (no get, no list). Raises ApiException otherwise."""
        body = {"data": dict(data)}
        for attempt in range(2):
            try:
                await asyncio.to_thread(
                    self.core.patch_namespaced_config_map,
                    name,
                    namespace,
                    body,
                    _content_type="application/merge-patch+json",
                )
                return
            except ApiException as exc:
                if exc.status != 404 or attempt:
                    raise
            created: dict[str, Any] = {
                "apiVersion": "v1",
                "kind": "ConfigMap",
                "metadata": {**metadata, "name": name, "namespace": namespace},
                "data": {k: v for k, v in data.items() if v is not None},
            }
            try:
                await asyncio.to_thread(self.core.create_namespaced_config_map, namespace, cast(Any, created))
                return
            except ApiException as exc:
                if exc.status != 409:  # created meanwhile (another replica's last sync): patch it
                    raise


def kubeconfig_client(config_file: str | None = None, context: str | None = None) -> client.ApiClient:
    """A client from a kubeconfig (default: $KUBECONFIG or ~/.kube/config) and one of its contexts."""
    from kubernetes import config

    found: client.ApiClient = config.new_client_from_config(  # type: ignore[no-untyped-call]
        config_file=config_file, context=context
    )
    return found


def api_client() -> client.ApiClient:
    """The in-cluster configuration (a pod's ServiceAccount), else the kubeconfig (check_config says
    beforehand, in one line, why neither is usable)."""
    from kubernetes import config

    try:
        config.load_incluster_config()  # type: ignore[no-untyped-call]
        return client.ApiClient()
    except config.ConfigException:
        return kubeconfig_client()


class KubeConfigMissing(Exception):
    """No usable Kubernetes configuration. The message is one line: what is missing, and the fix."""


def check_config() -> None:
    """Raise KubeConfigMissing unless api_client() will find a configuration.

    It looks where api_client() looks, in the same order, and so does kopf's own login
    (kopf.login_via_client): the in-cluster configuration (a pod's ServiceAccount), else the
    kubeconfig ($KUBECONFIG, a list of files, else ~/.kube/config; its current context). Both are
    loaded into throw-away configurations. Loading reads files and talks to no API server: a
    cluster that is down passes, and kopf retries it."""
    from kubernetes import config
    from kubernetes.config import kube_config

    try:
        config.load_incluster_config(client_configuration=client.Configuration())  # type: ignore[no-untyped-call]
        return
    except config.ConfigException as exc:
        in_cluster = _one_line(exc)
    try:
        config.load_kube_config(client_configuration=client.Configuration())  # type: ignore[no-untyped-call]
        return
    except (config.ConfigException, OSError, ValueError, yaml.YAMLError) as exc:
        problem = _one_line(exc)
    # The location the client uses: $KUBECONFIG as it was when the client was imported.
    location: str = kube_config.KUBE_CONFIG_DEFAULT_LOCATION
    raise KubeConfigMissing(config_problem(location, "KUBECONFIG" in os.environ, problem, in_cluster))


def config_problem(location: str, named: bool, problem: str, in_cluster: str) -> str:
    """The one-line message of check_config: `location` is $KUBECONFIG (`named`) or ~/.kube/config,
    `problem` why loading it failed, `in_cluster` why the in-cluster configuration did."""
    paths = [path for path in location.split(os.pathsep) if path]
    existing = [path for path in paths if os.path.exists(os.path.expanduser(path))]
    where = f"KUBECONFIG={location}" if named else location
    if existing:
        what = f"no usable Kubernetes configuration: {where}: {problem}"
        fix = "fix it, or set KUBECONFIG to another kubeconfig file"
    else:
        if not named:
            what = f"no Kubernetes configuration: KUBECONFIG is not set and {location} does not exist"
        elif not paths:
            what = "no Kubernetes configuration: KUBECONFIG is empty"
        elif len(paths) == 1:
            what = f"no Kubernetes configuration: {where} does not exist"
        else:
            what = f"no Kubernetes configuration: none of the files in {where} exists"
        fix = "set KUBECONFIG to a kubeconfig file, or run in a cluster"
    if os.environ.get("KUBERNETES_SERVICE_HOST"):  # in a pod, whose own configuration failed too
        what += f"; in the cluster: {in_cluster} (is the ServiceAccount token mounted?)"
    return f"{what}; {fix}"


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__

"""The SCIM CRDs in the real kube-apiserver: a ScimProvider needs its Secret's name; the storage kinds
keep a SCIM resource's attributes (also extension URNs) and prune the rest; kubectl get shows userName,
displayName, active and the members count."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import pytest
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from synapse_scim.adapters.kube import Kube
from synapse_scim.adapters.scim.kube_store import KubeScimStore
from synapse_scim.core.scim.resources import Kind

GROUP, VERSION = "synapse-scim.io", "v1alpha1"
ENTERPRISE = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"


def _provider(objects: client.CustomObjectsApi, namespace: str, spec: dict[str, Any]) -> Any:
    return objects.create_namespaced_custom_object(
        GROUP,
        VERSION,
        namespace,
        "scimproviders",
        {"apiVersion": f"{GROUP}/{VERSION}", "kind": "ScimProvider", "metadata": {"name": "okta"}, "spec": spec},
    )


@pytest.mark.parametrize(
    ("spec", "field"),
    [({}, "spec.tokenSecretRef"), ({"tokenSecretRef": {"name": "Not_A_Name"}}, "spec.tokenSecretRef.name")],
)
def test_a_provider_needs_a_valid_secret_name(
    objects: client.CustomObjectsApi, namespace: str, spec: dict[str, Any], field: str
) -> None:
    with pytest.raises(ApiException) as refused:
        _provider(objects, namespace, spec)
    assert refused.value.status == 422 and field in refused.value.body


def test_kubectl_get_shows_the_stored_users_and_groups(
    cluster: Any, objects: client.CustomObjectsApi, namespace: str
) -> None:
    _provider(objects, namespace, {"tokenSecretRef": {"name": "okta-token"}})

    async def write() -> tuple[str, str]:
        store = KubeScimStore(objects, namespace, "okta")
        user = await store.create(
            Kind.USER,
            {"userName": "ada@example.com", "displayName": "Ada", "active": True, ENTERPRISE: {"department": "R&D"}},
        )
        group = await store.create(Kind.GROUP, {"displayName": "Data Engineers"}, (user.id,))
        return user.id, group.id

    user_id, group_id = asyncio.run(write())
    stored = objects.get_namespaced_custom_object(GROUP, VERSION, namespace, "scimusers", user_id)
    assert stored["spec"]["attributes"][ENTERPRISE] == {"department": "R&D"}  # extension URNs are kept
    users = cluster.kubectl("get", "scimusers", "-n", namespace).stdout.splitlines()
    assert users[0].split() == ["NAME", "USERNAME", "DISPLAYNAME", "ACTIVE", "AGE"]
    assert users[1].split()[:4] == [user_id, "ada@example.com", "Ada", "true"]
    groups = cluster.kubectl("get", "scimgroups", "-n", namespace, "-o", "wide").stdout.splitlines()
    assert groups[0].split() == ["NAME", "DISPLAYNAME", "MEMBERS", "AGE", "PROVIDER", "SHARDS"]
    assert groups[1].split()[:2] == [group_id, "Data"] and groups[1].split()[3] == "1"
    providers = cluster.kubectl("get", "synapse-scim", "-n", namespace).stdout
    assert "scimprovider.synapse-scim.io/okta" in providers  # the category lists them all
    # Fields outside the schema are pruned (only spec.attributes is free-form).
    body = dict(stored)
    body["spec"] = {**stored["spec"], "password": "secret"}
    objects.replace_namespaced_custom_object(GROUP, VERSION, namespace, "scimusers", user_id, body)
    again = objects.get_namespaced_custom_object(GROUP, VERSION, namespace, "scimusers", user_id)
    assert "password" not in again["spec"]
    assert str(uuid.UUID(user_id)) == user_id


def test_a_provider_status_with_rejected_requests_and_the_write_guarded_by_its_resource_version(
    cluster: Any, objects: client.CustomObjectsApi, namespace: str
) -> None:
    created = _provider(objects, namespace, {"tokenSecretRef": {"name": "okta-token"}})
    items = [{"reason": "401 invalid token", "count": 3, "lastTime": "2026-12-01T10:00:00Z"}]
    entry = {"pod": "synapse-scim-0", "time": "2026-12-01T10:00:05Z", "total": 3, "rejected": items}
    status = {"rejected": items, "rejectedTotal": 3, "rejectedByReplica": [entry]}
    version = created["metadata"]["resourceVersion"]
    asyncio.run(Kube(objects.api_client).patch_status("scimproviders", namespace, "okta", {}, status, version))
    stored = objects.get_namespaced_custom_object(GROUP, VERSION, namespace, "scimproviders", "okta")
    assert {k: stored["status"][k] for k in status} == status  # nothing pruned
    wide = cluster.kubectl("get", "scimproviders", "-n", namespace, "-o", "wide").stdout.splitlines()
    header = wide[0].split()
    assert header[-1] == "REJECTED" and wide[1].split()[-1] == "3"
    # A replica that read the object before this write cannot overwrite it: 409, nothing changed.
    with pytest.raises(ApiException) as refused:
        asyncio.run(
            Kube(objects.api_client).patch_status(
                "scimproviders", namespace, "okta", status, {"rejected": [], "rejectedTotal": 0}, version
            )
        )
    assert refused.value.status == 409
    again = objects.get_namespaced_custom_object(GROUP, VERSION, namespace, "scimproviders", "okta")
    assert again["status"]["rejectedTotal"] == 3

"""A workspace's credential Secret deleted and created again under the same name (its finalizer taken off
by hand first, as `kubectl patch` would, or a tool that replaces Secrets): the new Secret is a new object
without the operator's finalizer, and must get it again at the next full sync, or a later `kubectl
delete namespace` would take the credential before the revocations that need it. Nothing is revoked
meanwhile."""

from __future__ import annotations

from kubernetes.client.exceptions import ApiException

from support.harness import RB_PLURAL

CREDENTIAL_FINALIZER = "synapse-scim.io/credential-in-use"
SECRET = "synapse-sp"  # Harness.workspace's default credential Secret


def finalizers(h) -> list[str] | None:
    try:
        return list(h.core.read_namespaced_secret(SECRET, h.namespace).metadata.finalizers or [])
    except ApiException as exc:
        if exc.status == 404:
            return None
        raise


def test_a_recreated_credential_secret_gets_the_finalizer_again(harness):
    h = harness
    h.start_operator()
    h.workspace(syncInterval="30s")  # the smallest full-sync interval the schema allows
    h.binding("analysts", ["Synapse Contributor"], [{"kind": "Group", "name": "Analysts"}])
    h.wait_condition(RB_PLURAL, "analysts")
    h.wait_for(lambda: CREDENTIAL_FINALIZER in (finalizers(h) or []), "the credential Secret's finalizer")
    granted = {a["id"] for a in h.assignments()}
    data = h.core.read_namespaced_secret(SECRET, h.namespace).data

    h.core.patch_namespaced_secret(SECRET, h.namespace, {"metadata": {"finalizers": None}})
    h.core.delete_namespaced_secret(SECRET, h.namespace)
    h.wait_for(lambda: finalizers(h) is None, "the Secret to be gone")
    h.core.create_namespaced_secret(h.namespace, {"metadata": {"name": SECRET}, "data": data})
    assert finalizers(h) == [], "created without the finalizer"

    h.wait_for(
        lambda: CREDENTIAL_FINALIZER in (finalizers(h) or []),
        "the recreated Secret's finalizer (at the next full sync)",
        timeout=90,
    )
    assert granted <= {a["id"] for a in h.assignments()}
    assert h.sb.admin.request_log(service="synapse", operation="deleteRoleAssignment") == []

"""The pure parts of a workspace's deletion (controller/deletion.py, credential_guard.py): which Secret
a credential names, what the status says remains, and the force commands. The flow itself runs against
a real namespace controller in tests/e2e/test_namespace_deletion.py."""

from __future__ import annotations

from synapse_scim.controller.credential_guard import credential_secret
from synapse_scim.controller.deletion import force_commands, remaining
from synapse_scim.core.objects import BindingObject


def binding(name: str, *, deleting: bool, policy: str | None = None) -> BindingObject:
    meta = {"namespace": "team", "name": name, **({"deletionTimestamp": "2026-01-01T00:00:00Z"} if deleting else {})}
    spec = {"workspaceRef": {"name": "ws"}, **({"deletionPolicy": policy} if policy else {})}
    return BindingObject.from_body({"metadata": meta, "spec": spec})


def test_the_secret_a_credential_names() -> None:
    secret = {"credential": {"clientSecret": {"clientId": "x", "secretRef": {"name": "sp"}}}}
    cert = {"credential": {"certificate": {"clientId": "x", "secretRef": {"name": "cert", "key": "tls.pem"}}}}
    assert credential_secret(secret) == "sp"
    assert credential_secret(cert) == "cert"
    assert credential_secret({"credential": {"workloadIdentity": {"clientId": "x"}}}) is None
    assert credential_secret({}) is None and credential_secret(None) is None


def test_what_remains_names_each_binding_and_what_it_waits_for() -> None:
    text = remaining(
        [
            binding("b-live", deleting=False),
            binding("a-del", deleting=True),
            binding("c-orph", deleting=True, policy="Orphan"),
        ],
        None,
    )
    assert text == (
        "3 binding(s): a-del (Delete: revoking); b-live (not deleted: delete it first); "
        "c-orph (Orphan: recording its assignments)"
    )


def test_force_commands_are_one_line_and_name_the_objects() -> None:
    cmd = force_commands("team", "analytics", "synapse-sp")
    assert "\n" not in cmd
    assert "kubectl -n team patch synapseworkspace analytics --type=merge" in cmd
    assert "kubectl -n team patch secret synapse-sp --type=json" in cmd
    assert "patch secret" not in force_commands("team", "analytics", None)

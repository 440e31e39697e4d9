"""Bad input in what a workspace points at: Secrets, credentials, tenants, endpoints, and identities
the services refuse (403 from Synapse and Graph). One operator for the module; each case has its own
sandbox workspace. Credentials that fail after a binding was Ready must revoke nothing."""

from __future__ import annotations

import trustme
from catalogue import expect, start, start_healthy

from support.harness import WS_PLURAL
from support.orgs import upn
from synapse_scim_sandbox.devcluster import free_port

WORKSPACES = [
    "secret-missing",
    "secret-key-missing",
    "secret-key-empty",
    "secret-wrong",
    "client-id-unknown",
    "tenant-unknown",
    "cert-not-pem",
    "cert-ec-key",
    "cert-unregistered",
    "workload-identity-unavailable",
    "endpoint-unreachable",
    "endpoint-host-misspelled",
    "endpoint-workspace-unknown",
    "authority-unreachable",
    "graph-endpoint-wrong",
    "graph-reset",
    "synapse-403-reader",
    "synapse-403-none",
    "graph-403",
]
UNKNOWN_GUID = "0badc0de-0000-4000-8000-00000000dead"
GROUP = [{"kind": "Group", "name": "Analysts"}]


def secret_credential(h, secret: str, key: str | None = None) -> dict:
    ref = {"name": secret, **({"key": key} if key else {})}
    return {"clientSecret": {"clientId": h.app.client_id, "secretRef": ref}}


def dead_url() -> str:
    return f"https://127.0.0.1:{free_port()}"


# -- Secrets and credentials ------------------------------------------------------------------------


def test_secret_missing(bad):
    guard = start(
        bad,
        "secret-missing",
        ["Synapse User"],
        GROUP,
        workspace={"client_id": bad.app.client_id, "credential": secret_credential(bad, "absent")},
    )
    expect(
        bad,
        "secret-missing",
        "SecretNotFound",
        f"Secret {bad.namespace}/absent does not exist",
        "create it with the key 'clientSecret'",
    )
    expect(bad, "secret-missing", "SecretNotFound", "absent", plural=WS_PLURAL)
    guard.check()


def test_secret_key_missing(bad):
    bad.secret("secret-key-missing", {"password": bad.app.secret})
    guard = start(
        bad,
        "secret-key-missing",
        ["Synapse User"],
        GROUP,
        workspace={"client_id": bad.app.client_id, "credential": secret_credential(bad, "secret-key-missing")},
    )
    ready = expect(bad, "secret-key-missing", "SecretKeyMissing", "has no key 'clientSecret'", "(it has: password)")
    assert bad.app.secret not in str(bad.get(WS_PLURAL, "secret-key-missing")) + str(ready)
    guard.check()


def test_secret_key_empty(bad):
    bad.secret("secret-key-empty", {"clientSecret": "  \n"})
    guard = start(
        bad,
        "secret-key-empty",
        ["Synapse User"],
        GROUP,
        workspace={"client_id": bad.app.client_id, "credential": secret_credential(bad, "secret-key-empty")},
    )
    expect(bad, "secret-key-empty", "SecretKeyEmpty", "'secret-key-empty'", "put the client secret there")
    guard.check()


def test_secret_wrong_after_grants(bad):
    guard = start_healthy(bad, "secret-wrong", "Doomed")
    bad.secret("secret-wrong-sp", {"clientSecret": "not-the-secret"})
    bad.patch(WS_PLURAL, "secret-wrong", {"metadata": {"annotations": {"example.com/rotated": "1"}}})
    try:
        ready = expect(bad, "secret-wrong", "AuthenticationFailed", "AADSTS7000215")
        assert "not-the-secret" not in str(ready)
        guard.check()
    finally:  # the watcher retries a failing credential every second: stop that for the next cases
        bad.secret("secret-wrong-sp", {"clientSecret": bad.app.secret})


def test_client_id_unknown(bad):
    bad.secret("client-id-unknown", {"clientSecret": bad.app.secret})
    credential = {"clientSecret": {"clientId": UNKNOWN_GUID, "secretRef": {"name": "client-id-unknown"}}}
    guard = start(
        bad,
        "client-id-unknown",
        ["Synapse User"],
        GROUP,
        workspace={"client_id": UNKNOWN_GUID, "credential": credential},
    )
    expect(bad, "client-id-unknown", "AuthenticationFailed", "AADSTS700016", UNKNOWN_GUID)
    guard.check()


def test_tenant_unknown(bad):
    guard = start(bad, "tenant-unknown", ["Synapse User"], GROUP, workspace={"tenantId": UNKNOWN_GUID})
    expect(bad, "tenant-unknown", "AuthenticationFailed", UNKNOWN_GUID)
    guard.check()


def test_certificate_not_pem(bad):
    bad.secret("cert-not-pem", {"tls.pem": "this is not a certificate"})
    credential = {"certificate": {"clientId": bad.app.client_id, "secretRef": {"name": "cert-not-pem"}}}
    guard = start(
        bad,
        "cert-not-pem",
        ["Synapse User"],
        GROUP,
        workspace={"client_id": bad.app.client_id, "credential": credential},
    )
    expect(
        bad,
        "cert-not-pem",
        "CertificateInvalid",
        "'cert-not-pem'",
        "'tls.pem'",
        "must hold a PEM private key and certificate",
    )
    guard.check()


def test_certificate_with_ec_key(bad):
    """azure-identity signs with RS256 only: an EC key is refused before any request is made."""
    leaf = trustme.CA().issue_cert("ec.example")  # trustme's default key type is ECDSA
    pem = (leaf.private_key_pem.bytes() + leaf.cert_chain_pems[0].bytes()).decode()
    bad.secret("cert-ec-key", {"tls.pem": pem})
    credential = {"certificate": {"clientId": bad.app.client_id, "secretRef": {"name": "cert-ec-key"}}}
    guard = start(
        bad,
        "cert-ec-key",
        ["Synapse User"],
        GROUP,
        workspace={"client_id": bad.app.client_id, "credential": credential},
    )
    expect(bad, "cert-ec-key", "CredentialInvalid", "spec.credential", "RSA private key", "Secret")
    guard.check()


def test_certificate_not_registered(bad):
    rogue = trustme.CA(key_type=trustme.KeyType.RSA).issue_cert("rogue.example", key_type=trustme.KeyType.RSA)
    pem = (rogue.private_key_pem.bytes() + rogue.cert_chain_pems[0].bytes()).decode()
    bad.secret("cert-unregistered", {"tls.pem": pem})
    credential = {"certificate": {"clientId": bad.app.client_id, "secretRef": {"name": "cert-unregistered"}}}
    guard = start(
        bad,
        "cert-unregistered",
        ["Synapse User"],
        GROUP,
        workspace={"client_id": bad.app.client_id, "credential": credential},
    )
    expect(bad, "cert-unregistered", "AuthenticationFailed", "AADSTS")
    guard.check()


def test_workload_identity_unavailable(bad):
    credential = {"workloadIdentity": {"clientId": bad.app.client_id}}
    guard = start(
        bad,
        "workload-identity-unavailable",
        ["Synapse User"],
        GROUP,
        workspace={"client_id": bad.app.client_id, "credential": credential},
    )
    expect(
        bad,
        "workload-identity-unavailable",
        "WorkloadIdentityUnavailable",
        "spec.credential.workloadIdentity",
        "azure.workload.identity/use=true",
    )
    guard.check()


# -- endpoints --------------------------------------------------------------------------------------


def test_endpoint_unreachable_after_grants(bad):
    guard = start_healthy(bad, "endpoint-unreachable", "Vanishing")
    bad.patch(WS_PLURAL, "endpoint-unreachable", {"spec": {"endpoint": dead_url()}})
    expect(bad, "endpoint-unreachable", "WorkspaceUnreachable", "spec.endpoint", stalled=False, timeout=120)
    guard.check()


def test_endpoint_host_misspelled(bad):
    guard = start(
        bad,
        "endpoint-host-misspelled",
        ["Synapse User"],
        GROUP,
        workspace={"endpoint": "https://endpoint-host-misspelled.dev.azuresynapse.invalid"},
    )
    expect(bad, "endpoint-host-misspelled", "WorkspaceUnreachable", "spec.endpoint", stalled=False, timeout=120)
    guard.check()


def test_endpoint_workspace_unknown(bad):
    guard = start(
        bad,
        "endpoint-workspace-unknown",
        ["Synapse User"],
        GROUP,
        workspace={"endpoint": bad.sb.workspace_endpoint("no-such-workspace")},
    )
    expect(bad, "endpoint-workspace-unknown", "WorkspaceNotFound", "404", "check spec.endpoint")
    guard.check()


def test_authority_unreachable(bad):
    guard = start(
        bad,
        "authority-unreachable",
        ["Synapse User"],
        GROUP,
        workspace={"cloud": {"authorityHost": dead_url(), "graphEndpoint": bad.sb.graph_url.removesuffix("/v1.0")}},
    )
    expect(bad, "authority-unreachable", "WorkspaceUnreachable", "spec.cloud.authorityHost", stalled=False, timeout=120)
    guard.check()


def test_graph_endpoint_wrong(bad):
    guard = start(
        bad,
        "graph-endpoint-wrong",
        ["Synapse User"],
        GROUP,
        workspace={"cloud": {"authorityHost": bad.sb.authority_host, "graphEndpoint": dead_url()}},
    )
    expect(bad, "graph-endpoint-wrong", "AuthenticationFailed", "AADSTS500011", "check spec.cloud.graphEndpoint")
    guard.check()


def test_graph_connection_reset(bad):
    carol = bad.user_id(upn("carol"))
    rule = bad.sb.admin.inject_fault(
        {"service": "graph", "operation": "getUser", "match": {"user": carol}, "kind": "reset"}
    )
    try:
        guard = start(bad, "graph-reset", ["Synapse User"], [{"kind": "User", "id": carol}])
        expect(bad, "graph-reset", "DirectoryReadFailed", "check spec.cloud.graphEndpoint", stalled=False)
        guard.check()
    finally:
        bad.sb.admin.remove_fault(rule["id"])


# -- identities the services refuse --------------------------------------------------------------------


def test_synapse_403_on_grant_for_a_reader(bad):
    guard = start_healthy(bad, "synapse-403-reader", "Growing")
    bad.sb.admin.set_access("synapse-403-reader", "synapse-scim-operator", "reader")
    bad.sb.admin.add_member("Growing", upn("heidi"))  # the watcher sees it; the grant gets a 403
    expect(bad, "synapse-403-reader", "AccessDenied", "403", "Synapse Administrator")
    guard.check()


def test_synapse_403_on_every_call(bad):
    # Only a full sync reads everything fresh (a poke uses the caches): the shortest interval allowed.
    guard = start_healthy(bad, "synapse-403-none", "Locked Out", syncInterval="30s")
    bad.sb.admin.set_access("synapse-403-none", "synapse-scim-operator", "none")
    expect(bad, "synapse-403-none", "AccessDenied", "403", "Synapse Administrator", timeout=120)
    expect(bad, "synapse-403-none", "AccessDenied", "Synapse Administrator", plural=WS_PLURAL)
    guard.check()


def test_graph_403(bad):
    heidi = bad.user_id(upn("heidi"))
    rule = bad.sb.admin.inject_fault(
        {
            "service": "graph",
            "operation": "getUser",
            "match": {"user": heidi},
            "status": 403,
            "code": "Authorization_RequestDenied",
        }
    )
    try:
        guard = start(bad, "graph-403", ["Synapse User"], [{"kind": "User", "id": heidi}])
        expect(bad, "graph-403", "DirectoryAccessDenied", "403", "GroupMember.Read.All", "User.Read.All")
        guard.check()
    finally:
        bad.sb.admin.remove_fault(rule["id"])

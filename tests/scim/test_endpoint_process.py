"""The SCIM endpoint as `synapse-scim run` serves it, against the real kube-apiserver: objects survive a
SIGKILL with the same ids; two replicas (leader election on: one is a standby) serve the same objects;
a provider's token opens only its own URL; token rotation and a new TLS certificate are picked up
without a restart; the ScimProvider's status."""

from __future__ import annotations

import json
import ssl
import time
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from support.scim import GROUP, VERSION, wait_for
from support.scim import ScimOperator as Operator

OKTA_TOKEN = "okta-" + "1" * 40
OKTA_NEXT = "okta-" + "2" * 40
ENTRA_TOKEN = "entra-" + "3" * 40


@pytest.fixture
def operator(cluster: Any, namespace: str, tmp_path: Path) -> Iterator[Operator]:
    found = Operator(cluster, namespace, tmp_path)
    try:
        yield found
    finally:
        found.close()


def _serving(operator: Operator, token: str, provider: str = "okta", replica: str = "a") -> bool:
    return operator.serving(token, provider, replica)


def _push(operator: Operator, http: httpx.Client, base: str) -> dict[str, Any]:
    """An Okta-style sequence: users created, a group pushed, members added and removed, a deactivation."""
    ids = []
    for i, name in enumerate(("ada", "grace", "edsger")):
        answer = http.post(
            f"{base}/Users",
            json={
                "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
                "userName": f"{name}@example.com",
                "externalId": f"00u{i}",
                "name": {"givenName": name.title(), "familyName": "Example"},
                "displayName": f"{name.title()} Example",
                "emails": [{"primary": True, "value": f"{name}@example.com", "type": "work"}],
                "active": True,
            },
        )
        assert answer.status_code == 201, answer.text
        ids.append(answer.json()["id"])
    answer = http.post(
        f"{base}/Groups",
        json={
            "schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"],
            "displayName": "Data Engineers",
            "members": [],
        },
    )
    assert answer.status_code == 201, answer.text
    gid = answer.json()["id"]
    patch = {"schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"]}
    answer = http.patch(
        f"{base}/Groups/{gid}",
        json={**patch, "Operations": [{"op": "add", "path": "members", "value": [{"value": i} for i in ids]}]},
    )
    assert answer.status_code == 204, answer.text
    answer = http.patch(
        f"{base}/Groups/{gid}",
        json={**patch, "Operations": [{"op": "remove", "path": f'members[value eq "{ids[2]}"]'}]},
    )
    assert answer.status_code == 204, answer.text
    answer = http.patch(
        f"{base}/Users/{ids[1]}", json={**patch, "Operations": [{"op": "replace", "value": {"active": False}}]}
    )
    assert answer.status_code == 200 and answer.json()["active"] is False, answer.text
    return {"users": ids, "group": gid}


def _snapshot(http: httpx.Client, base: str, written: dict[str, Any]) -> dict[str, Any]:
    out = {}
    for uid in written["users"]:
        out[uid] = http.get(f"{base}/Users/{uid}").json()
    out[written["group"]] = http.get(f"{base}/Groups/{written['group']}").json()
    out["users"] = http.get(f"{base}/Users", params={"count": 50}).json()
    out["filter"] = http.get(f"{base}/Users", params={"filter": 'userName eq "ADA@example.com"'}).json()
    return out


def test_objects_survive_sigkill_with_their_ids_and_status_reports_them(operator: Operator) -> None:
    operator.secret("okta-token", {"token": OKTA_TOKEN})
    operator.secret("entra-token", {"token": ENTRA_TOKEN})
    operator.provider("okta", "okta-token")
    operator.provider("entra", "entra-token")
    operator.start("a")
    wait_for(lambda: _serving(operator, OKTA_TOKEN), "the okta provider served", operator=operator)
    base = operator.base()
    with operator.http(OKTA_TOKEN) as http:
        written = _push(operator, http, base)
        before = _snapshot(http, base, written)
    assert before[written["group"]]["members"] == [
        {"value": uid, "$ref": f"{base}/Users/{uid}", "type": "User", "display": before[uid]["displayName"]}
        for uid in written["users"][:2]
    ]
    assert before["filter"]["totalResults"] == 1

    # A token opens only its own provider's URL, both ways; the objects are not there for the other.
    with operator.http(ENTRA_TOKEN) as http:
        assert http.get(f"{base}/Users/{written['users'][0]}").status_code == 401
        assert http.post(f"{base}/Users", json={"userName": "intruder"}).status_code == 401
        assert http.delete(f"{base}/Users/{written['users'][0]}").status_code == 401
        answer = http.patch(
            f"{base}/Groups/{written['group']}",
            json={"Operations": [{"op": "remove", "path": "members", "value": [{"value": written["users"][0]}]}]},
        )
        assert answer.status_code == 401
        assert http.get(f"{operator.base('entra')}/Users").json()["totalResults"] == 0
    with operator.http(OKTA_TOKEN) as http:
        assert http.get(f"{operator.base('entra')}/Users").status_code == 401

    # The provider's status: Ready, the endpoint, the numbers, the last request.
    def reported() -> dict[str, Any]:
        status = operator.provider_status("okta")
        assert status.get("users") == 3 and status.get("groups") == 1, status
        return status

    status = wait_for(reported, "the okta status", operator=operator)
    [ready] = status["conditions"]
    assert (ready["type"], ready["status"], ready["reason"]) == ("Ready", "True", "Serving")
    assert status["endpoint"] == base
    assert status["lastRequestTime"]

    # The requests rejected in the last hour, by reason: the four 401s of the Entra token above, a token
    # that is no token, an invalid filter, an oversized body. The token itself is nowhere in the status.
    with operator.http("not-a-token-of-anyone") as http:
        assert http.get(f"{base}/Users").status_code == 401
    with operator.http(OKTA_TOKEN) as http:
        assert http.get(f"{base}/Users", params={"filter": 'userName zz "x"'}).status_code == 400
        assert http.post(f"{base}/Users", content=b"x" * (1024 * 1024 + 1)).status_code == 413

    def rejected() -> dict[str, Any]:
        status = operator.provider_status("okta")
        assert status.get("rejectedTotal") == 7, status
        return status

    status = wait_for(rejected, "the okta status's rejected requests", operator=operator)
    assert {item["reason"]: item["count"] for item in status["rejected"]} == {
        "401 invalid token": 5,
        "400 invalidFilter": 1,
        "413 body too large": 1,
    }
    [mine] = status["rejectedByReplica"]
    assert mine["total"] == 7 and mine["rejected"] == status["rejected"]
    assert "not-a-token-of-anyone" not in json.dumps(status) and OKTA_TOKEN not in json.dumps(status)
    assert "not-a-token-of-anyone" not in operator.replica_log("a")
    # The other provider: the one 401 of the Okta token on its URL.
    entra = wait_for(lambda: operator.provider_status("entra").get("rejected"), "entra's rejected", operator=operator)
    assert entra == [{"reason": "401 invalid token", "count": 1, "lastTime": entra[0]["lastTime"]}]

    # SIGKILL: nothing is flushed, nothing said goodbye; a new process reads everything back.
    operator.kill("a")
    operator.start("a")
    wait_for(lambda: _serving(operator, OKTA_TOKEN), "the okta provider served again", operator=operator)
    with operator.http(OKTA_TOKEN) as http:
        after = _snapshot(http, base, written)
    assert after == before


def test_two_replicas_write_through_one_read_through_the_other(operator: Operator) -> None:
    operator.secret("okta-token", {"token": OKTA_TOKEN})
    operator.provider("okta", "okta-token")
    election = {"SYNAPSE_SCIM_LEADER_ELECTION": "on", "SYNAPSE_SCIM_LEASE_NAMESPACE": operator.namespace}
    # One public URL for both, as behind a Service or an Ingress: replicas with different base URLs
    # would each write their own status.endpoint.
    shared = {**election, "SYNAPSE_SCIM_SCIM_BASE_URL": "https://scim.example.test"}
    operator.start("a", POD_NAME="replica-a", **shared)
    operator.start("b", POD_NAME="replica-b", **shared)
    for replica in ("a", "b"):  # the standby serves too: the endpoint is no kopf handler
        wait_for(lambda r=replica: _serving(operator, OKTA_TOKEN, replica=r), f"replica {replica}", operator=operator)
    wait_for(
        lambda: sorted("acquired Lease" in operator.replica_log(r) for r in ("a", "b")) == [False, True],
        "one leader and one standby",
        operator=operator,
    )
    with operator.http(OKTA_TOKEN) as http:
        written = _push(operator, http, operator.base(replica="a"))
        through_a = _snapshot(http, operator.base(replica="a"), written)

        def same_through_b() -> bool:
            through_b = _snapshot(http, operator.base(replica="b"), written)
            # Locations name the URL each was asked through (its base URL): compare the rest.
            return _strip(through_b, operator.ports["b"]) == _strip(through_a, operator.ports["a"])

        wait_for(same_through_b, "replica b reads what replica a wrote", operator=operator)
        # And back: a write through b is read through a.
        answer = http.patch(
            f"{operator.base(replica='b')}/Groups/{written['group']}",
            json={"Operations": [{"op": "remove", "path": "members", "value": [{"value": written["users"][0]}]}]},
        )
        assert answer.status_code == 204

        def removed_through_a() -> bool:
            group = http.get(f"{operator.base(replica='a')}/Groups/{written['group']}").json()
            return [m["value"] for m in group.get("members", [])] == [written["users"][1]]

        wait_for(removed_through_a, "replica a reads what replica b wrote", operator=operator)

    # Rejected requests: each replica writes its own entry, the sum covers both, and once it is written
    # neither rewrites the status (no flapping between two views).
    with operator.http("not-a-token") as http:
        for _ in range(2):
            assert http.get(f"{operator.base(replica='a')}/Users").status_code == 401
        assert http.get(f"{operator.base(replica='b')}/Groups").status_code == 401

    def both_entries() -> dict[str, Any]:
        status = operator.provider_status("okta")
        entries = {e["pod"]: e["total"] for e in status.get("rejectedByReplica", [])}
        assert entries == {"replica-a": 2, "replica-b": 1} and status["rejectedTotal"] == 3, status
        return status

    status = wait_for(both_entries, "both replicas' rejections in the status", operator=operator)
    assert status["rejected"] == [
        {
            "reason": "401 invalid token",
            "count": 3,
            "lastTime": max(e["rejected"][0]["lastTime"] for e in status["rejectedByReplica"]),
        }
    ]
    version = operator.custom.get_namespaced_custom_object(GROUP, VERSION, operator.namespace, "scimproviders", "okta")[
        "metadata"
    ]["resourceVersion"]
    time.sleep(5)  # two status ticks of each replica, five status intervals
    again = operator.custom.get_namespaced_custom_object(GROUP, VERSION, operator.namespace, "scimproviders", "okta")
    changed = {k: (status.get(k), v) for k, v in again["status"].items() if status.get(k) != v}
    assert again["metadata"]["resourceVersion"] == version, changed


def _strip(snapshot: Any, port: int) -> str:
    return repr(snapshot).replace(f"127.0.0.1:{port}", "HOST")


def test_rotation_tls_reload_and_a_missing_secret(operator: Operator) -> None:
    operator.provider("okta", "okta-token")  # its Secret does not exist yet
    operator.start("a")

    def not_ready() -> dict[str, Any]:
        [ready] = operator.provider_status("okta")["conditions"]
        assert (ready["status"], ready["reason"]) == ("False", "SecretNotFound"), ready
        assert "okta-token" in ready["message"]
        return ready

    wait_for(not_ready, "Ready False, SecretNotFound", operator=operator)
    operator.secret("okta-token", {"old": OKTA_TOKEN})
    wait_for(lambda: _serving(operator, OKTA_TOKEN), "the token, once the Secret exists", operator=operator)
    wait_for(
        lambda: operator.provider_status("okta")["conditions"][0]["status"] == "True",
        "Ready True",
        operator=operator,
    )

    # Rotation: add the new token, then remove the old one; no restart.
    operator.secret("okta-token", {"old": OKTA_TOKEN, "new": OKTA_NEXT})
    wait_for(lambda: _serving(operator, OKTA_NEXT), "the new token accepted", operator=operator)
    assert _serving(operator, OKTA_TOKEN)
    operator.secret("okta-token", {"new": OKTA_NEXT})
    wait_for(lambda: not _serving(operator, OKTA_TOKEN), "the old token refused", operator=operator)
    with operator.http(OKTA_TOKEN) as http:
        answer = http.get(f"{operator.base()}/Users")
        assert answer.status_code == 401 and answer.headers["WWW-Authenticate"].startswith("Bearer")
    assert OKTA_TOKEN not in operator.log() and OKTA_NEXT not in operator.log()  # fingerprints only

    # TLS: a new certificate (another CA) replaces the files; new connections get it, no restart.
    old_ca = operator.pki.ca
    new_ca = operator.pki.issue()

    def new_certificate() -> bool:
        with operator.http(OKTA_NEXT, new_ca) as http:
            return http.get(f"{operator.base()}/ServiceProviderConfig").status_code == 200

    wait_for(new_certificate, "the new certificate served", operator=operator)
    with pytest.raises(httpx.ConnectError), operator.http(OKTA_NEXT, old_ca) as http:
        http.get(f"{operator.base()}/ServiceProviderConfig")
    # TLS 1.2 at least: a client that offers only TLS 1.1 (allowed on its side) is refused by the server.
    context = operator.pki.client_context(new_ca)
    context.set_ciphers("DEFAULT:@SECLEVEL=0")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # ssl.TLSVersion.TLSv1_1 is deprecated: that is the point
        context.minimum_version = context.maximum_version = ssl.TLSVersion.TLSv1_1
    # (asyncio's TLS ends the handshake without the alert: the client sees an EOF.)
    with (
        pytest.raises(httpx.ConnectError, match=r"PROTOCOL_VERSION|UNEXPECTED_EOF"),
        httpx.Client(verify=context) as http,
    ):
        http.get(f"{operator.base()}/ServiceProviderConfig")
    context.maximum_version = ssl.TLSVersion.TLSv1_2  # the same client, TLS 1.2: served
    with httpx.Client(verify=context, headers={"Authorization": f"Bearer {OKTA_NEXT}"}) as http:
        assert http.get(f"{operator.base()}/ServiceProviderConfig").status_code == 200
    assert operator.processes["a"].poll() is None  # the same process all along

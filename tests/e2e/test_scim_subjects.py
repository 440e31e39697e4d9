"""ScimGroup subjects end to end: identity providers push users and groups to the SCIM endpoint of a
running `synapse-scim run` (two replicas, leader election on, TLS), a SynapseRoleBinding names a pushed
group, and the Synapse sandbox's role assignments follow.

The requests are the ones Okta and Entra provisioning send (their own payloads, op spellings and
values: docs/scim.md, "Replayed provider sequences"), sent by scim2-client 0.13.2, which checks the
answers. Each step asserts the whole set of assignments in the workspace (what was granted or revoked,
and that nothing else moved), the binding's status.scim and status.unresolved.

One control plane, one sandbox and one pair of replicas serve the whole module: every test uses its own
Entra accounts, pushed users and groups, so the tests do not depend on each other's order. A
background binding (the Entra group "Everyone", 12 members) and a manual assignment are the "others"
every step proves untouched; they also keep each single revocation far below the removal guard's
default 20 % (the revocations go through the guard, they are not approved).
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from support.harness import RB_PLURAL, WS_PLURAL, Harness, running_harness
from support.kube import new_namespace
from support.scim import ScimOperator

DOMAIN = "contoso.onmicrosoft.com"
OKTA_TOKEN = "okta-e2e-" + "7" * 40
ENTRA_TOKEN = "entra-e2e-" + "8" * 40
STRICT_TOKEN = "strict-e2e-" + "9" * 40
WS_SCOPE = "workspaces/analytics"
ROLE = "Synapse Contributor"  # what the SCIM bindings grant (the background binding grants Synapse User)
# The stalled bindings' role: an incomplete binding holds every removal in its (role, scope) pairs,
# whoever granted them (docs/architecture.md, rule 3), so it must not share ROLE with the other tests.
HELD_ROLE = "Synapse Artifact User"

USER_SCHEMA = "urn:ietf:params:scim:schemas:core:2.0:User"
ENTERPRISE = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"
GROUP_SCHEMA = "urn:ietf:params:scim:schemas:core:2.0:Group"
PATCH_OP = "urn:ietf:params:scim:api:messages:2.0:PatchOp"

TIMEOUT = 45.0
BULK = 8  # members removed in one request: more than the guard's 20 % of the workspace's managed grants


def upn(name: str) -> str:
    return f"{name}@{DOMAIN}"


GUEST = "carol_fabrikam.com#EXT#@" + DOMAIN  # carol@fabrikam.com, invited as a guest


def seed() -> dict[str, Any]:
    everyone = [f"staff{i:02d}" for i in range(12)]
    users: list[dict[str, Any]] = [{"userPrincipalName": upn(u)} for u in everyone]
    users += [
        # the Okta lifecycle
        {"userPrincipalName": upn("alice")},  # matched by externalId (her object id)
        {"userPrincipalName": upn("bob")},  # matched by userName, pushed in other case
        {"userPrincipalName": upn("ivan")},  # pushed under another userName, fixed by a PUT
        # the matching cases
        {"userPrincipalName": GUEST, "displayName": "Carol (Fabrikam)"},  # a guest: the #EXT# form
        {"userPrincipalName": upn("dave.k"), "mail": "dave@corp.example"},  # matched by e-mail
        {"userPrincipalName": upn("eve"), "accountEnabled": False},  # matched, disabled: gets nothing
        {"userPrincipalName": upn("twin1"), "mail": "twin@corp.example"},  # two accounts, one mail:
        {"userPrincipalName": upn("twin2"), "mail": "twin@corp.example"},  # ambiguous, gets nothing
        {"userPrincipalName": upn("walter")},  # a GUID externalId that is no Entra object: then userName
        # Entra provisioning
        {"userPrincipalName": upn("frank")},
        {"userPrincipalName": upn("grace")},
        {"userPrincipalName": upn("judy")},
        # the group deleted in the identity provider
        {"userPrincipalName": upn("oscar")},
        {"userPrincipalName": upn("peggy")},
        # found by mail only, under a provider whose rules change
        {"userPrincipalName": upn("mallory"), "mail": "mallory@corp.example"},
        # pushed through the standby replica
        {"userPrincipalName": upn("trent")},
        {"userPrincipalName": upn("victor")},
        # a mass removal the removal guard holds
        *({"userPrincipalName": upn(f"bulk{i}")} for i in range(BULK)),
    ]
    return {
        "tenant": {"domain": DOMAIN},
        "apps": [{"name": "synapse-scim-operator", "secret": "operator-secret-1"}],
        "users": users,
        "groups": [{"displayName": "Everyone", "members": [upn(u) for u in everyone]}],
        "workspaces": [
            {
                "name": "analytics",
                "assignments": [{"role": "Synapse Administrator", "principal": upn("staff00")}],  # manual
            }
        ],
    }


class ScimHarness(Harness):
    """The e2e Harness whose operator is the ScimOperator's replicas."""

    scim: ScimOperator

    def operator_log(self) -> str:
        return self.scim.log(3000)


@dataclass
class World:
    h: ScimHarness
    op: ScimOperator
    leader: str
    standby: str


@pytest.fixture(scope="module")
def shared_world(cluster: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    tmp = tmp_path_factory.mktemp("scim-e2e")
    with (
        new_namespace(cluster, "scim-e2e") as namespace,
        running_harness(cluster, namespace, seed(), tmp, cls=ScimHarness) as h,
    ):
        op = h.scim = ScimOperator(cluster, namespace, tmp, env=h.operator_env())
        try:
            op.provider_with_token("okta", OKTA_TOKEN)
            op.provider_with_token("entra", ENTRA_TOKEN)
            h.workspace("analytics")
            h.binding("everyone", ["Synapse User"], [{"kind": "Group", "name": "Everyone"}])
            # One public URL for both, as behind a Service: each replica writes the providers' status.
            op.start_elected(("a", "b"), SYNAPSE_SCIM_SCIM_BASE_URL="https://scim.example.test")
            for replica in ("a", "b"):  # the standby serves SCIM too
                h.wait_for(lambda r=replica: _serving(op, r), f"replica {replica} serves SCIM", timeout=TIMEOUT)
            leader = h.wait_for(lambda: op.leader(("a", "b")), "one replica leads", timeout=TIMEOUT)
            h.wait_condition(RB_PLURAL, "everyone", timeout=TIMEOUT)
            yield World(h, op, leader, "b" if leader == "a" else "a")
        finally:
            op.close()


@pytest.fixture
def world(shared_world: World, request: pytest.FixtureRequest) -> Iterator[World]:
    """The module's world, its replicas' logs shown when the test failed."""
    world = shared_world
    yield world
    rep = getattr(request.node, "rep_call", None)
    if rep is not None and rep.failed:
        print("--- operator logs ---\n" + world.op.log(8000))
    assert not world.op.exited(), f"a replica exited: {world.op.exited()}\n{world.op.log()}"


def _serving(op: ScimOperator, replica: str) -> bool:
    return _serving_provider(op, "okta", OKTA_TOKEN, replica) and _serving_provider(op, "entra", ENTRA_TOKEN, replica)


def _serving_provider(op: ScimOperator, provider: str, token: str, replica: str) -> bool:
    try:
        return op.serving(token, provider, replica)
    except (httpx.HTTPError, OSError):  # not listening yet
        return False


# -- the workspace and the binding, as the tests check them ----------------------------------------


Assignment = tuple[str, str, str]  # (principal id, role definition id, scope)


def snapshot(h: Harness) -> frozenset[Assignment]:
    return frozenset((a["principalId"].lower(), a["roleDefinitionId"].lower(), a["scope"]) for a in h.assignments())


def role_id(h: Harness, name: str = ROLE) -> str:
    return str(h.sb.state.roles.resolve(name).id).lower()


def grants(h: Harness, *principals: str, role: str = ROLE) -> frozenset[Assignment]:
    """The assignments the SCIM bindings make for these accounts (UPNs)."""
    return frozenset((h.user_id(p), role_id(h, role), WS_SCOPE) for p in principals)


def settle(h: Harness, expected: frozenset[Assignment], what: str) -> None:
    """Wait until the workspace holds exactly `expected`: what the step should change, and nothing else."""

    def exactly() -> bool:
        return snapshot(h) == expected

    try:
        h.wait_for(exactly, what, timeout=TIMEOUT)
    except AssertionError:
        now = snapshot(h)
        raise AssertionError(
            f"{what}: missing {sorted(expected - now)}, unexpected {sorted(now - expected)}\n{h.operator_log()}"
        ) from None


def binding_status(h: Harness, name: str) -> dict[str, Any]:
    return (h.get(RB_PLURAL, name) or {}).get("status") or {}


def counts(groups: int, members: int, matched: int, unmatched: int = 0, inactive: int = 0, disabled: int = 0) -> dict:
    return {
        "groups": groups,
        "members": members,
        "matched": matched,
        "unmatched": unmatched,
        "inactive": inactive,
        "disabled": disabled,
    }


def expect_status(
    h: Harness,
    name: str,
    scim: dict[str, int],
    unresolved: dict[str, str] | None = None,
    *,
    ready: str = "True",
    reason: str = "InSync",
    stalled: bool = False,
) -> dict[str, Any]:
    """Wait until the binding's status says this: status.scim, status.unresolved as {name: reason}, and
    its Ready condition (of its current generation)."""
    unresolved = unresolved or {}
    last: dict[str, Any] = {}

    def check() -> dict[str, Any] | None:
        nonlocal last
        obj = h.get(RB_PLURAL, name) or {}
        status = last = obj.get("status") or {}
        conditions = {c["type"]: c for c in status.get("conditions") or ()}
        ready_c = conditions.get("Ready") or {}
        if (
            status.get("scim") == scim
            and {u.get("name"): u["reason"] for u in status.get("unresolved") or ()} == unresolved
            and ready_c.get("status") == ready
            and ready_c.get("reason") == reason
            and ready_c.get("observedGeneration") == obj["metadata"]["generation"]
            and (conditions.get("Stalled") or {}).get("status", "False") == ("True" if stalled else "False")
        ):
            return status
        return None

    try:
        return h.wait_for(check, f"binding {name}: scim {scim}, unresolved {unresolved}, Ready {ready}", TIMEOUT)
    except AssertionError as exc:
        raise AssertionError(f"{exc}\n--- last status ---\n{json.dumps(last, indent=2)}") from None


def scim_binding(h: Harness, name: str, subject: dict[str, Any], role: str = ROLE) -> None:
    h.binding(name, [role], [{"kind": "ScimGroup", **subject}])


# -- the identity providers' requests, through scim2-client -----------------------------------------


class Provider:
    """One identity provider's SCIM traffic, through scim2-client on one replica: the payloads are the
    provider's own (sent as they are, `check_request_payload=False`); the client checks the answers."""

    def __init__(self, op: ScimOperator, name: str, token: str, replica: str) -> None:
        self.client = op.scim_client(name, token, replica)
        self.user_model = self.client.get_resource_model("User")
        self.group_model = self.client.get_resource_model("Group")

    def close(self) -> None:
        self.client.client.close()

    def create(self, endpoint: str, payload: dict[str, Any]) -> dict[str, Any]:
        created = self.client.create(payload, check_request_payload=False, check_response_payload=False, url=endpoint)
        assert isinstance(created, dict) and created.get("id"), created
        return created

    def replace(self, endpoint: str, payload: dict[str, Any]) -> dict[str, Any]:
        answer = self.client.replace(payload, check_request_payload=False, check_response_payload=False, url=endpoint)
        assert isinstance(answer, dict) and answer.get("id"), answer
        return answer

    def patch(self, model: Any, resource_id: str, operations: list[dict[str, Any]]) -> Any:
        return self.client.modify(model, resource_id, {"schemas": [PATCH_OP], "Operations": operations})

    def find_user(self, user_name: str) -> int:
        found = self.client.query(
            self.user_model,
            query_parameters={"filter": f'userName eq "{user_name}"', "startIndex": 1, "count": 100},
        )
        return int(found.total_results or 0)

    def delete_user(self, user_id: str) -> None:
        self.client.delete(self.user_model, user_id)

    def delete_group(self, group_id: str) -> None:
        self.client.delete(self.group_model, group_id)


class Okta(Provider):
    """Okta's requests (Okta "SCIM 2.0 protocol reference"; tests/scim/replays/okta.json)."""

    def __init__(self, op: ScimOperator, replica: str, name: str = "okta", token: str = OKTA_TOKEN) -> None:
        super().__init__(op, name, token, replica)

    def push_user(self, user_name: str, external_id: str, given: str, email: str | None = None) -> str:
        assert self.find_user(user_name) == 0  # Okta asks first, by the unique identifier field
        return self.create("Users", self.user_body(user_name, external_id, given, email))["id"]

    @staticmethod
    def user_body(user_name: str, external_id: str, given: str, email: str | None = None) -> dict[str, Any]:
        return {
            "schemas": [USER_SCHEMA],
            "userName": user_name,
            "name": {"givenName": given, "familyName": "Okta"},
            "emails": [{"primary": True, "value": email or user_name, "type": "work"}],
            "displayName": f"{given} Okta",
            "locale": "en-US",
            "externalId": external_id,
            "groups": [],
            "active": True,
        }

    def push_group(self, name: str, members: dict[str, str]) -> str:
        """Push Groups: the group created empty, then its members in Okta's PATCH (the group's id and
        name replaced, the members added)."""
        gid = self.create("Groups", {"schemas": [GROUP_SCHEMA], "displayName": name, "members": []})["id"]
        self.patch(
            self.group_model,
            gid,
            [
                {"op": "replace", "value": {"id": gid, "displayName": name}},
                {"op": "add", "path": "members", "value": [{"value": i, "display": d} for d, i in members.items()]},
            ],
        )
        return gid

    def put_user(self, user_id: str, body: dict[str, Any]) -> dict[str, Any]:
        return self.replace(f"Users/{user_id}", {**body, "id": user_id})

    def set_active(self, user_id: str, active: bool) -> None:
        answer = self.patch(self.user_model, user_id, [{"op": "replace", "value": {"active": active}}])
        assert answer.active is active


class Entra(Provider):
    """Entra provisioning's requests (Microsoft "Develop and plan provisioning for a SCIM endpoint";
    tests/scim/replays/entra.json): capitalised ops, "False" as a string, value-list member removal."""

    def __init__(self, op: ScimOperator, replica: str) -> None:
        super().__init__(op, "entra", ENTRA_TOKEN, replica)

    def provision_user(self, user_principal_name: str, nickname: str) -> str:
        assert self.find_user(user_principal_name) == 0  # Entra matches on userName first
        body = {
            "schemas": [USER_SCHEMA, ENTERPRISE],
            "externalId": nickname,  # Entra's default mapping: mailNickname
            "userName": user_principal_name,
            "active": True,
            "displayName": nickname.title(),
            "emails": [{"primary": True, "type": "work", "value": f"{nickname}@mail.example"}],
            "meta": {"resourceType": "User"},
            "name": {"formatted": nickname.title(), "familyName": "Entra", "givenName": nickname.title()},
            "roles": [],
        }
        return self.create("Users", body)["id"]

    def provision_group(self, name: str, external_id: str, member_ids: list[str]) -> str:
        gid = self.create(
            "Groups",
            {
                "schemas": [GROUP_SCHEMA],
                "externalId": external_id,
                "displayName": name,
                "members": [],
                "meta": {"resourceType": "Group"},
            },
        )["id"]
        self.patch(
            self.group_model, gid, [{"op": "Add", "path": "members", "value": [{"value": i} for i in member_ids]}]
        )
        return gid

    def remove_member(self, group_id: str, user_id: str) -> None:
        self.patch(self.group_model, group_id, [{"op": "Remove", "path": "members", "value": [{"value": user_id}]}])

    def soft_delete(self, user_id: str) -> None:
        answer = self.patch(self.user_model, user_id, [{"op": "Replace", "path": "active", "value": "False"}])
        assert answer.active is False


@pytest.fixture
def okta(world: World) -> Iterator[Okta]:
    found = Okta(world.op, world.leader)
    yield found
    found.close()


@pytest.fixture
def entra(world: World) -> Iterator[Entra]:
    found = Entra(world.op, world.leader)
    yield found
    found.close()


# -- the tests -------------------------------------------------------------------------------------


def test_okta_push_put_deactivate_and_reactivate(world: World, okta: Okta) -> None:
    h = world.h
    before = snapshot(h)
    # The binding comes first: the group is not pushed yet, so it is Stalled and grants nothing.
    scim_binding(h, "okta-engineers", {"provider": "okta", "name": "Data Engineers"})
    expect_status(
        h,
        "okta-engineers",
        counts(0, 0, 0),
        {"ScimGroup okta/Data Engineers": "ScimGroupNotFound"},
        ready="False",
        reason="ScimGroupNotFound",
        stalled=True,
    )
    assert snapshot(h) == before

    alice_id = h.user_id(upn("alice"))
    members = {
        "alice": okta.push_user("alice@okta-users.example", alice_id, "Alice"),  # externalId: her object id
        "bob": okta.push_user("Bob@Contoso.OnMicrosoft.com", "00u-bob", "Bob"),  # her UPN, other case
        "ivan": okta.push_user("ivan.old@okta-users.example", "00u-ivan", "Ivan"),  # matches nothing yet
        "nobody": okta.push_user("nobody@okta-users.example", "00u-nobody", "Nobody"),  # no account at all
    }
    okta.push_group("Data Engineers", {f"{k}@okta": v for k, v in members.items()})
    settle(h, before | grants(h, upn("alice"), upn("bob")), "alice and bob granted once the group is pushed")
    expect_status(
        h,
        "okta-engineers",
        counts(1, 4, 2, unmatched=2),
        {
            "ScimUser okta/ivan.old@okta-users.example": "PrincipalNotMatched",
            "ScimUser okta/nobody@okta-users.example": "PrincipalNotMatched",
        },
    )

    # Push Profile Updates: a PUT of the whole user, with the userName now the account's UPN.
    ivan = Okta.user_body(upn("ivan"), "00u-ivan", "Ivan")
    assert okta.put_user(members["ivan"], ivan)["userName"] == upn("ivan")
    settle(h, before | grants(h, upn("alice"), upn("bob"), upn("ivan")), "ivan granted after the PUT")
    status = expect_status(
        h,
        "okta-engineers",
        counts(1, 4, 3, unmatched=1),
        {"ScimUser okta/nobody@okta-users.example": "PrincipalNotMatched"},
    )
    [nobody] = status["unresolved"]
    assert "matches no Entra account" in nobody["message"] and "userName" in nobody["message"]
    ready = next(c for c in status["conditions"] if c["type"] == "Ready")
    assert "1 pushed user(s) match no single Entra account" in ready["message"]
    # The closing note of the change quotes this status: a ScimGroup subject and one unmatched user.
    print("--- status of okta-engineers (one unmatched pushed user) ---\n" + json.dumps(status, indent=2))

    # Deactivation (Okta: a PATCH replacing active) revokes; reactivation grants again.
    okta.set_active(members["bob"], False)
    settle(h, before | grants(h, upn("alice"), upn("ivan")), "bob revoked when Okta deactivates him")
    expect_status(
        h,
        "okta-engineers",
        counts(1, 4, 2, unmatched=1, inactive=1),
        {"ScimUser okta/nobody@okta-users.example": "PrincipalNotMatched"},
    )
    okta.set_active(members["bob"], True)
    settle(h, before | grants(h, upn("alice"), upn("bob"), upn("ivan")), "bob granted again on reactivation")
    expect_status(
        h,
        "okta-engineers",
        counts(1, 4, 3, unmatched=1),
        {"ScimUser okta/nobody@okta-users.example": "PrincipalNotMatched"},
    )

    # Entra disables alice's account: the matched, disabled account gets nothing.
    h.sb.admin.disable_user(upn("alice"))
    settle(h, before | grants(h, upn("bob"), upn("ivan")), "alice revoked once her Entra account is disabled")
    expect_status(
        h,
        "okta-engineers",
        counts(1, 4, 2, unmatched=1, disabled=1),
        {"ScimUser okta/nobody@okta-users.example": "PrincipalNotMatched"},
    )

    # An Entra account appears with the unmatched user's e-mail as its mail: users/delta reports it, the
    # cached "no account" answer is dropped, and the user matches.
    h.sb.admin.add_user(upn("nora"), "Nora", mail="nobody@okta-users.example")
    settle(h, before | grants(h, upn("bob"), upn("ivan"), upn("nora")), "nora granted once her account exists")
    expect_status(h, "okta-engineers", counts(1, 4, 3, disabled=1))


def test_matching_a_guest_by_email_a_disabled_account_and_an_ambiguous_user(world: World, okta: Okta) -> None:
    h = world.h
    before = snapshot(h)
    members = {
        "carol": okta.push_user("carol@fabrikam.com", "00u-carol", "Carol"),  # the guest's #EXT# UPN
        "dave": okta.push_user("dave@okta-users.example", "00u-dave", "Dave", email="DAVE@corp.example"),
        "eve": okta.push_user(upn("eve"), "00u-eve", "Eve"),  # her account is disabled in Entra
        "twin": okta.push_user("twin@okta-users.example", "00u-twin", "Twin", email="twin@corp.example"),
        "walter": okta.push_user(upn("walter"), str(uuid.uuid4()), "Walter"),
    }
    gid = okta.push_group("Matching Cases", members)
    scim_binding(h, "okta-matching", {"provider": "okta", "id": gid})
    matched = (GUEST, upn("dave.k"), upn("walter"))
    settle(h, before | grants(h, *matched), "the guest, the e-mail and the userName matches granted, nobody else")
    status = expect_status(
        h,
        "okta-matching",
        counts(1, 5, 3, unmatched=1, disabled=1),
        {"ScimUser okta/twin@okta-users.example": "PrincipalAmbiguous"},
    )
    [twin] = status["unresolved"]
    assert "matches 2 Entra accounts by email" in twin["message"], twin

    # Entra enables eve's account: users/delta reports it, and the tenant watch pokes the workspace.
    h.sb.admin.enable_user(upn("eve"))
    settle(h, before | grants(h, *matched, upn("eve")), "eve granted once her account is enabled")
    expect_status(
        h,
        "okta-matching",
        counts(1, 5, 4, unmatched=1),
        {"ScimUser okta/twin@okta-users.example": "PrincipalAmbiguous"},
    )

    # dave's mail changes in Entra: the cached match is dropped, and he matches nothing any more.
    h.sb.admin.update_user(upn("dave.k"), mail="dave.k@corp.example")
    settle(h, before | grants(h, GUEST, upn("walter"), upn("eve")), "dave revoked once his mail changed")
    expect_status(
        h,
        "okta-matching",
        counts(1, 5, 3, unmatched=2),
        {
            "ScimUser okta/twin@okta-users.example": "PrincipalAmbiguous",
            "ScimUser okta/dave@okta-users.example": "PrincipalNotMatched",
        },
    )


def test_the_providers_matching_rules_decide_and_a_change_of_them_applies(world: World) -> None:
    h, op = world.h, world.op
    before = snapshot(h)
    op.provider_with_token("strict", STRICT_TOKEN, rules=["userName"])
    h.wait_for(lambda: _serving_provider(op, "strict", STRICT_TOKEN, world.leader), "provider strict served")
    strict = Okta(op, world.leader, "strict", STRICT_TOKEN)
    try:
        # mallory's account is found only by her mail: under [userName] she matches nothing.
        mallory = strict.push_user("mallory@okta-users.example", "00u-mallory", "Mallory", email="mallory@corp.example")
        gid = strict.push_group("Strict Group", {"mallory": mallory})
    finally:
        strict.close()
    scim_binding(h, "strict-group", {"provider": "strict", "id": gid}, HELD_ROLE)  # stalled below
    expect_status(
        h,
        "strict-group",
        counts(1, 1, 0, unmatched=1),
        {"ScimUser strict/mallory@okta-users.example": "PrincipalNotMatched"},
    )
    assert snapshot(h) == before
    op.custom.patch_namespaced_custom_object(
        "synapse-scim.io",
        "v1alpha1",
        h.namespace,
        "scimproviders",
        "strict",
        {"spec": {"principalMatching": {"rules": ["userName", "email"]}}},
    )
    granted = before | grants(h, upn("mallory"), role=HELD_ROLE)
    settle(h, granted, "mallory granted once the rules include email")
    expect_status(h, "strict-group", counts(1, 1, 1))

    # The ScimProvider deleted (its pushed objects stay): the binding is Stalled, mallory's grant held.
    op.custom.delete_namespaced_custom_object("synapse-scim.io", "v1alpha1", h.namespace, "scimproviders", "strict")
    status = expect_status(
        h,
        "strict-group",
        counts(0, 0, 0),
        {f"ScimGroup strict/id {gid}": "ScimProviderNotFound"},
        ready="False",
        reason="ScimProviderNotFound",
        stalled=True,
    )
    assert snapshot(h) == granted, "nothing revoked while the provider is missing"
    assert "does not exist" in status["unresolved"][0]["message"]
    # Created again: it serves the same objects, with the same ids, and the binding resolves.
    op.provider("strict", "strict-scim-token", rules=["userName", "email"])
    expect_status(h, "strict-group", counts(1, 1, 1))
    assert snapshot(h) == granted


def test_entra_provisioning_remove_by_value_soft_and_hard_delete(world: World, entra: Entra) -> None:
    h = world.h
    before = snapshot(h)
    ids = {name: entra.provision_user(upn(name), name) for name in ("frank", "grace", "judy")}
    external = str(uuid.uuid4())  # Entra pushes the group's object id as its externalId
    gid = entra.provision_group("Entra Engineers", external, list(ids.values()))
    scim_binding(h, "entra-engineers", {"provider": "entra", "externalId": external})
    everyone = grants(h, upn("frank"), upn("grace"), upn("judy"))
    settle(h, before | everyone, "the three provisioned members granted")
    expect_status(h, "entra-engineers", counts(1, 3, 3))

    # Unassigned in Entra: the value-list remove of one member; the others stay.
    entra.remove_member(gid, ids["grace"])
    settle(h, before | grants(h, upn("frank"), upn("judy")), "grace revoked when removed from the group")
    expect_status(h, "entra-engineers", counts(1, 2, 2))

    # Soft delete: active "False" (a string, as Entra sends it) revokes; the membership stays.
    entra.soft_delete(ids["frank"])
    settle(h, before | grants(h, upn("judy")), "frank revoked on the soft delete")
    expect_status(h, "entra-engineers", counts(1, 2, 1, inactive=1))

    # Hard delete: the user goes, and with it its membership.
    entra.delete_user(ids["judy"])
    settle(h, before, "judy revoked on the hard delete")
    expect_status(h, "entra-engineers", counts(1, 1, 0, inactive=1))


def test_a_group_deleted_in_scim_holds_its_grants_and_stalls_the_binding(world: World, okta: Okta) -> None:
    h, op = world.h, world.op
    before = snapshot(h)
    members = {name: okta.push_user(upn(name), f"00u-{name}", name.title()) for name in ("oscar", "peggy")}
    gid = okta.push_group("Doomed", members)
    scim_binding(h, "okta-doomed", {"provider": "okta", "name": "doomed"}, HELD_ROLE)  # the name without case
    scim_binding(h, "ghost-provider", {"provider": "ghost", "name": "Doomed"}, HELD_ROLE)
    held = before | grants(h, upn("oscar"), upn("peggy"), role=HELD_ROLE)
    settle(h, held, "oscar and peggy granted")
    expect_status(h, "okta-doomed", counts(1, 2, 2))
    expect_status(
        h,
        "ghost-provider",
        counts(0, 0, 0),
        {"ScimGroup ghost/Doomed": "ScimProviderNotFound"},
        ready="False",
        reason="ScimProviderNotFound",
        stalled=True,
    )

    # The provider appears (no group pushed yet): the binding now waits for the group, not the provider.
    op.provider_with_token("ghost", "ghost-e2e-" + "6" * 40)
    expect_status(
        h,
        "ghost-provider",
        counts(0, 0, 0),
        {"ScimGroup ghost/Doomed": "ScimGroupNotFound"},
        ready="False",
        reason="ScimGroupNotFound",
        stalled=True,
    )

    okta.delete_group(gid)
    status = expect_status(
        h,
        "okta-doomed",
        counts(0, 0, 0),
        {"ScimGroup okta/doomed": "ScimGroupNotFound"},
        ready="False",
        reason="ScimGroupNotFound",
        stalled=True,
    )
    assert "held, not revoked" in status["unresolved"][0]["message"]
    # The sync that wrote this status saw the group gone and revoked nothing: the grants are held.
    assert snapshot(h) == held


def test_a_push_to_the_standby_reaches_the_leader(world: World) -> None:
    h, op = world.h, world.op
    before = snapshot(h)
    standby = Okta(op, world.standby)
    try:
        trent = standby.push_user(upn("trent"), "00u-trent", "Trent")
        gid = standby.push_group("Standby Pushed", {"trent": trent})
        scim_binding(h, "standby-pushed", {"provider": "okta", "id": gid})
        settle(h, before | grants(h, upn("trent")), "trent granted from a push to the standby")
        expect_status(h, "standby-pushed", counts(1, 1, 1))
        # A later change through the standby: the leader's index hears it through its watch and syncs.
        standby.set_active(trent, False)
        settle(h, before, "trent revoked after a deactivation sent to the standby")
        expect_status(h, "standby-pushed", counts(1, 1, 0, inactive=1))
    finally:
        standby.close()
    assert op.leader(("a", "b")) == world.leader, "the leadership did not move"
    assert "acquired Lease" not in op.replica_log(world.standby)
    assert "sync of" not in op.replica_log(world.standby), "the standby reconciled"


def test_a_mass_removal_pushed_in_one_request_waits_for_the_removal_guards_approval(world: World, okta: Okta) -> None:
    h = world.h
    before = snapshot(h)
    names = [f"bulk{i}" for i in range(BULK)]
    ids = {name: okta.push_user(upn(name), f"00u-{name}", name.title()) for name in names}
    gid = okta.push_group("Bulk", ids)
    scim_binding(h, "bulk", {"provider": "okta", "id": gid})
    everyone = before | grants(h, *(upn(n) for n in names))
    settle(h, everyone, "the bulk group granted")
    expect_status(h, "bulk", counts(1, BULK, BULK))

    # One PATCH (Okta's form: one remove per member) empties the group: one change, one sync, which
    # would revoke more than the guard allows. Nothing is revoked; the workspace asks for approval.
    okta.patch(okta.group_model, gid, [{"op": "remove", "path": f'members[value eq "{i}"]'} for i in ids.values()])
    held_plan = h.wait_for(
        lambda: ((h.get(WS_PLURAL, "analytics") or {}).get("status") or {}).get("heldPlan"),
        "the removal guard holds the removals",
        timeout=TIMEOUT,
    )
    assert held_plan["removals"] == BULK, held_plan
    expect_status(h, "bulk", counts(1, 0, 0), ready="False", reason="RemovalsHeld", stalled=True)
    assert snapshot(h) == everyone, "nothing revoked before the approval"

    h.patch(
        WS_PLURAL, "analytics", {"metadata": {"annotations": {"synapse-scim.io/approve-removals": held_plan["id"]}}}
    )
    settle(h, before, "the approved removals done")
    expect_status(h, "bulk", counts(1, 0, 0))


def test_a_change_pushed_while_the_leader_is_dead_is_applied_by_the_standby_once_it_leads(world: World) -> None:
    """Last in the module: it kills the leader (the default 15 s Lease: the standby takes over after it)."""
    h, op = world.h, world.op
    before = snapshot(h)
    survivor = Okta(op, world.standby)
    try:
        victor = survivor.push_user(upn("victor"), "00u-victor", "Victor")
        gid = survivor.push_group("Failover", {"victor": victor})
        scim_binding(h, "failover", {"provider": "okta", "id": gid})
        settle(h, before | grants(h, upn("victor")), "victor granted")
        expect_status(h, "failover", counts(1, 1, 1))

        op.kill(world.leader)  # SIGKILL: the Lease is not released
        # Okta goes on pushing to the replica that is left, which does not lead yet: nothing is revoked
        # until it does, and then its first sync reads what was pushed meanwhile.
        survivor.set_active(victor, False)
        h.wait_for(lambda: "acquired Lease" in op.replica_log(world.standby), "the standby takes the Lease", timeout=60)
        settle(h, before, "victor revoked by the new leader")
        expect_status(h, "failover", counts(1, 1, 0, inactive=1))
        survivor.set_active(victor, True)
        settle(h, before | grants(h, upn("victor")), "victor granted again through the new leader")
        expect_status(h, "failover", counts(1, 1, 1))
    finally:
        survivor.close()

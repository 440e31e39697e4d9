"""Seed loading: the example organisation, stable ids, synthetic organisations, and clear errors
(file, line and key) for malformed seeds."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from synapse_scim_sandbox import SeedError, load_seed, stable_id, synthetic_org

from .conftest import ORG


def test_example_org_loads() -> None:
    state = load_seed(ORG)
    d = state.directory
    assert len(d.users) == 10 and len(d.groups) == 6
    assert {s.display_name for s in d.service_principals.values()} == {"etl-pipeline", "synapse-scim-operator"}
    assert d.user("judy@contoso.com").account_enabled is False
    engineers = d.groups_named("Data Engineers")[0]
    names = {d.get(m).display_name for m in d.transitive_members(engineers.id)}
    assert names == {"Alice Andersen", "Bob Baker", "Spark Team", "etl-pipeline", "Carol Chen", "Dave Diaz"}
    ops = d.groups_named("Platform Ops")[0]
    assert {d.get(m).display_name for m in d.transitive_members(ops.id)} == {
        "Heidi Hansen",
        "Platform On-Call",
        "Ivan Ivanov",
    }
    ws = state.workspaces["analytics"]
    assert ws.items["bigDataPools"] == {"sparkpool"} and len(ws.assignments) == 2
    app = next(iter(state.apps.values()))
    assert app.secret and app.certificate is not None and app.federated_token


def test_ids_are_stable_and_derived_from_names() -> None:
    a, b = load_seed(ORG), load_seed(ORG)
    assert a.tenant_id == b.tenant_id == stable_id("tenant", "contoso.onmicrosoft.com")
    assert set(a.directory.users) == set(b.directory.users)
    assert a.directory.user("alice@contoso.com").id == stable_id("user", "alice@contoso.com")
    ids = [[x.id for x in s.workspaces["analytics"].assignments] for s in (a, b)]
    assert ids[0] == ids[1]


def test_explicit_ids_and_typed_members() -> None:
    state = load_seed(
        {
            "tenant": {"id": "11111111-2222-3333-4444-555555555555"},
            "users": [{"upn": "a@x.com", "id": "AAAAAAAA-0000-0000-0000-000000000001"}],
            "servicePrincipals": [{"displayName": "Twin"}],
            "groups": [{"displayName": "Twin", "members": [{"user": "a@x.com"}, {"servicePrincipal": "Twin"}]}],
        }
    )
    assert state.tenant_id == "11111111-2222-3333-4444-555555555555"
    assert "aaaaaaaa-0000-0000-0000-000000000001" in state.directory.users
    group = state.directory.groups_named("Twin")[0]
    assert len(group.members) == 2


def test_guests_and_mail_come_from_the_seed() -> None:
    """A guest is seeded with its UPN as Entra writes it (`#EXT#`); mail is indexed without case."""
    state = load_seed(
        {
            "users": [
                {"upn": "bob_fabrikam.com#EXT#@contoso.onmicrosoft.com", "mail": "Bob@Fabrikam.com"},
                {"upn": "bob@contoso.com", "mail": "bob@fabrikam.com", "accountEnabled": False},
            ],
            "groups": [{"displayName": "Guests", "members": ["bob_fabrikam.com#EXT#@contoso.onmicrosoft.com"]}],
        }
    )
    d = state.directory
    assert [u.user_principal_name for u in d.users_with_upn_prefix("BOB_fabrikam.com#ext#@")] == [
        "bob_fabrikam.com#EXT#@contoso.onmicrosoft.com"
    ]
    assert [u.user_principal_name for u in d.users_by_mail("BOB@fabrikam.com")] == [
        "bob_fabrikam.com#EXT#@contoso.onmicrosoft.com",
        "bob@contoso.com",
    ]


def test_synthetic_org_is_deterministic_and_loads() -> None:
    seed = synthetic_org(users=300, groups=40, members_per_group=15, nesting=0.5, cycles=2, assignments=500)
    assert seed == synthetic_org(users=300, groups=40, members_per_group=15, nesting=0.5, cycles=2, assignments=500)
    state = load_seed(seed)
    assert len(state.directory.users) == 300 and len(state.directory.groups) == 40
    assert len(state.workspaces["synthetic"].assignments) == 500
    for gid in state.directory.groups:  # cycles terminate
        assert gid not in state.directory.transitive_members(gid)


def test_synthetic_org_with_several_workspaces() -> None:
    seed = synthetic_org(users=50, groups=5, workspaces=["ws-a", "ws-b", "ws-c"], pools=2, assignments=20)
    state = load_seed(seed)
    assert list(state.workspaces) == ["ws-a", "ws-b", "ws-c"]
    for name in ("ws-b", "ws-c"):  # manual assignments only in the first
        ws = state.workspaces[name]
        assert ws.items["bigDataPools"] == {"bigDataPool0", "bigDataPool1"} and len(ws.assignments) == 0
    assert len(state.workspaces["ws-a"].assignments) == 20
    assert {a.scope.split("/")[1] for a in state.workspaces["ws-a"].assignments} == {"ws-a"}


def _err(text: str, tmp_path: Path) -> str:
    path = tmp_path / "org.yaml"
    path.write_text(textwrap.dedent(text).lstrip())
    with pytest.raises(SeedError) as info:
        load_seed(path)
    return str(info.value)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("users: [a, b\n", ["org.yaml:2:", "YAML syntax error"]),
        ("user:\n  - upn: a@x.com\n", ["org.yaml:1:", "unknown key 'user'", "did you mean 'users'"]),
        ("users:\n  - displayName: A\n", ["org.yaml:2:", "users[0]", "required key 'userPrincipalName'"]),
        ("users:\n  - {upn: a@x.com}\n  - {upn: nobody}\n", ["org.yaml:3:", "users[1].upn", "not a userPrincipalName"]),
        ("users:\n  - upn: a@x.com\n    id: 1234\n", ["org.yaml:3:", "users[0].id", "not a GUID"]),
        (
            "users:\n  - upn: a@x.com\n    acountEnabled: false\n",
            ["org.yaml:3:", "users[0].acountEnabled", "did you mean 'accountEnabled'"],
        ),
        ("users:\n  - upn: a@x.com\n    accountEnabled: nope\n", ["org.yaml:3:", "accountEnabled", "true or false"]),
        ("users:\n  - {upn: a@x.com}\n  - {upn: A@x.com}\n", ["org.yaml:3:", "users[1]", "already exists"]),
        (
            "users:\n  - {upn: a@x.com}\ngroups:\n  - displayName: G\n"
            "    members:\n      - a@x.com\n      - bob@x.com\n",
            ["org.yaml:7:", "groups[0].members[1]", "unknown member 'bob@x.com'"],
        ),
        (
            "groups:\n  - displayName: G\n    members: a@x.com\n",
            ["org.yaml:3:", "groups[0].members", "expected a list"],
        ),
        (
            "servicePrincipals:\n  - displayName: Twin\ngroups:\n  - displayName: Twin\n  - displayName: H\n"
            "    members: [Twin]\n",
            ["org.yaml:6:", "groups[1].members[0]", "ambiguous"],
        ),
        ("groups:\n  - displayName: G\n    members: [{robot: x}]\n", ["org.yaml:3:", "typed member"]),
        ("users:\n  - upn: a@x.com\n  - upn: b@x.com\n    upn: c@x.com\n", ["org.yaml:4:", "duplicate key 'upn'"]),
        (
            "workspaces:\n  - name: ws\n    assignments:\n      - role: Synapse Admin\n        principal: x\n",
            ["org.yaml:4:", "workspaces[0].assignments[0].role", "unknown Synapse role", "Synapse Administrator"],
        ),
        (
            "users: [{upn: a@x.com}]\nworkspaces:\n  - name: ws\n    assignments:\n      - role: Synapse User\n"
            "        principal: a@x.com\n        scope: workspace/ws\n",
            ["org.yaml:7:", "assignments[0].scope", "not valid"],
        ),
        (
            "users: [{upn: a@x.com}]\nworkspaces:\n  - name: ws\n    assignments:\n      - role: Synapse User\n"
            "        principal: a@x.com\n        scope: workspaces/ws/bigDataPools/nope\n",
            ["org.yaml:7:", "assignments[0].scope", "no bigDataPools named 'nope'"],
        ),
        (
            "users: [{upn: a@x.com}]\nworkspaces:\n  - name: ws\n    bigDataPools: [p]\n    assignments:\n"
            "      - role: Synapse Artifact User\n        principal: a@x.com\n"
            "        scope: workspaces/ws/bigDataPools/p\n",
            ["org.yaml:8:", "cannot be assigned at scope"],
        ),
        (
            "workspaces:\n  - name: ws\n    assignments:\n      - role: Synapse User\n        principal: ghost@x.com\n",
            ["org.yaml:5:", "assignments[0].principal", "ghost@x.com"],
        ),
        (
            "workspaces:\n  - name: ws\n    access: {default: superuser}\n",
            ["org.yaml:3:", "access.default", "unknown access level"],
        ),
        ("workspaces:\n  - name: ws\n    access: {someone: admin}\n", ["org.yaml:3:", "access.someone", "unknown key"]),
        ("apps:\n  - name: op\n", ["org.yaml:2:", "apps[0]", "at least one of secret"]),
        (
            "apps:\n  - name: op\n    secret: s\n    graphPermissions: [Mail.Read]\n",
            ["org.yaml:4:", "graphPermissions[0]", "unknown permission 'Mail.Read'"],
        ),
        ("- just\n- a list\n", ["org.yaml:1:", "expected a mapping"]),
    ],
)
def test_malformed_seed_names_line_and_key(text: str, expected: list[str], tmp_path: Path) -> None:
    message = _err(text, tmp_path)
    for part in expected:
        assert part in message, message


def test_dict_seed_errors_name_the_key() -> None:
    with pytest.raises(SeedError, match=r"<seed>: groups\[0\]\.members\[0\]: unknown member 'nobody'"):
        load_seed({"groups": [{"displayName": "G", "members": ["nobody"]}]})


def test_missing_seed_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(SeedError, match=r"missing\.yaml: cannot read seed file"):
        load_seed(tmp_path / "missing.yaml")

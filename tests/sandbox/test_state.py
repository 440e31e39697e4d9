"""The in-memory model on its own: transitive expansion with cycles and cache invalidation, the delta
change log, role-assignment indexes and paging, and the OData filter parser."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from synapse_scim_sandbox.directory import Directory, DirectoryError
from synapse_scim_sandbox.odata import FilterError, parse_filter
from synapse_scim_sandbox.state import stable_id
from synapse_scim_sandbox.workspaces import AssignmentStore


def _dir() -> Directory:
    d = Directory()
    for name in "abcdef":
        d.add_user(uid(name), f"{name}@x.com", name.upper())
    for name in ("G1", "G2", "G3"):
        d.add_group(stable_id("group", name), name)
    return d


def uid(name: str) -> str:
    return stable_id("user", name)


def gid(name: str) -> str:
    return stable_id("group", name)


def test_transitive_members_with_cycle_and_invalidation() -> None:
    d = _dir()
    d.add_member(gid("G1"), uid("a"))
    d.add_member(gid("G1"), gid("G2"))
    d.add_member(gid("G2"), uid("b"))
    d.add_member(gid("G2"), gid("G3"))
    d.add_member(gid("G3"), gid("G1"))  # cycle G1 -> G2 -> G3 -> G1
    assert d.transitive_members(gid("G1")) == (uid("a"), gid("G2"), uid("b"), gid("G3"))
    assert set(d.transitive_members(gid("G3"))) == {gid("G1"), uid("a"), gid("G2"), uid("b")}
    d.add_member(gid("G3"), uid("c"))  # a change deep down reaches every ancestor's cached expansion
    assert uid("c") in d.transitive_members(gid("G1"))
    assert uid("c") in d.transitive_members(gid("G2"))
    d.remove_member(gid("G2"), gid("G3"))
    assert d.transitive_members(gid("G1")) == (uid("a"), gid("G2"), uid("b"))
    assert d.parents(gid("G3")) == []


def test_delete_group_and_user_detach_everywhere() -> None:
    d = _dir()
    d.add_member(gid("G1"), gid("G2"))
    d.add_member(gid("G2"), uid("a"))
    d.add_member(gid("G1"), uid("a"))
    assert d.transitive_members(gid("G1")) == (gid("G2"), uid("a"))
    d.delete_group(gid("G2"))
    assert d.transitive_members(gid("G1")) == (uid("a"),)
    d.delete_user(uid("a"))
    assert d.transitive_members(gid("G1")) == ()
    with pytest.raises(DirectoryError):
        d.add_member(gid("G2"), uid("b"))


def test_delta_aggregates_net_changes() -> None:
    d = _dir()
    d.changes.compact()
    start = d.changes.seq
    d.add_member(gid("G1"), uid("a"))
    d.add_member(gid("G1"), uid("b"))
    d.remove_member(gid("G1"), uid("a"))
    d.rename_group(gid("G2"), "Renamed")
    d.add_member(gid("G3"), uid("c"))
    d.delete_group(gid("G3"))
    changes = {c.group_id: c for c in d.delta(start, d.changes.seq)}
    assert changes[gid("G1")].members == {uid("a"): (False, "user"), uid("b"): (True, "user")}
    assert changes[gid("G2")].members == {} and not changes[gid("G2")].deleted
    assert changes[gid("G3")].deleted
    assert d.delta(d.changes.seq, d.changes.seq) == []
    d.changes.compact()
    with pytest.raises(DirectoryError):
        d.delta(start, d.changes.seq)


def test_resolve_by_name_id_upn_and_app_id() -> None:
    d = _dir()
    sp = d.add_service_principal(stable_id("sp", "s"), stable_id("app", "s"), "G1")
    assert d.resolve("a@x.com").id == uid("a")
    assert d.resolve(uid("a").upper()).id == uid("a")
    assert d.resolve(sp.app_id).id == sp.id
    with pytest.raises(DirectoryError, match="ambiguous"):
        d.resolve("G1")
    assert d.resolve("G1", ("group",)).id == gid("G1")


ROLES = ["r1", "r2", "r3"]
PRINCIPALS = [f"p{i}" for i in range(6)]
SCOPES = ["workspaces/w", "workspaces/w/bigDataPools/p", "workspaces/w/bigDataPools/p2"]


@settings(max_examples=60, deadline=None)
@given(
    ops=st.lists(
        st.tuples(st.booleans(), st.sampled_from(ROLES), st.sampled_from(PRINCIPALS), st.sampled_from(SCOPES)),
        max_size=60,
    ),
    filters=st.tuples(
        st.none() | st.sampled_from(ROLES), st.none() | st.sampled_from(PRINCIPALS), st.none() | st.sampled_from(SCOPES)
    ),
    limit=st.integers(1, 7),
)
def test_assignment_paging_matches_brute_force(
    ops: list[tuple[bool, str, str, str]], filters: tuple[str | None, str | None, str | None], limit: int
) -> None:
    store = AssignmentStore()
    for n, (add, role, principal, scope) in enumerate(ops):
        existing = store.find(role, principal, scope)
        if add and existing is None:
            store.add(f"id{n}", role, principal, scope)
        elif not add and existing is not None:
            store.remove(existing.id)
    role, principal, scope = filters
    expected = [
        a.id
        for a in store
        if (role is None or a.role_id == role)
        and (principal is None or a.principal_id == principal)
        and (scope is None or scope == a.scope or scope.startswith(a.scope + "/"))  # or an enclosing scope
    ]
    got: list[str] = []
    after = 0
    for _ in range(100):
        items, nxt = store.page(role_id=role, principal_id=principal, scope=scope, after=after, limit=limit)
        got += [a.id for a in items]
        assert len(items) <= limit
        if nxt is None:
            break
        assert len(items) == limit
        after = nxt
    assert got == expected


def test_paging_is_stable_across_deletes_between_pages() -> None:
    store = AssignmentStore()
    for i in range(10):
        store.add(f"a{i}", "r", f"p{i}", "workspaces/w")
    first, nxt = store.page(after=0, limit=4)
    store.remove("a2")  # already returned
    store.remove("a5")  # not yet returned
    store.add("late", "r", "late", "workspaces/w")
    rest: list[str] = []
    while nxt is not None:
        items, nxt = store.page(after=nxt, limit=4)
        rest += [a.id for a in items]
    assert [a.id for a in first] == ["a0", "a1", "a2", "a3"]
    assert rest == ["a4", "a6", "a7", "a8", "a9", "late"]


@pytest.mark.parametrize(
    ("text", "obj", "result"),
    [
        ("displayName eq 'Data Engineers'", {"displayName": "data engineers"}, True),
        ("displayName eq 'O''Brien'", {"displayName": "O'Brien"}, True),
        (
            "startswith(displayName,'dat') and not (mailNickname eq 'x')",
            {"displayName": "Data", "mailNickname": "y"},
            True,
        ),
        ("accountEnabled eq false or userType eq 'Guest'", {"accountEnabled": True, "userType": "Member"}, False),
        ("id in ('a', 'b')", {"id": "B"}, True),
    ],
)
def test_filter_parser(text: str, obj: dict[str, object], result: bool) -> None:
    allowed = ["displayName", "mailNickname", "accountEnabled", "userType", "id"]
    assert parse_filter(text, allowed).predicate(obj) is result


def test_filter_lookup_and_errors() -> None:
    assert parse_filter("appId eq 'x'", ["appId"]).lookup == ("appId", ("x",))
    assert parse_filter("id eq 'a' or id eq 'b'", ["id"]).lookup == ("id", ("a", "b"))
    assert parse_filter("id in ('a','b')", ["id"]).lookup == ("id", ("a", "b"))
    assert parse_filter("startswith(id,'a')", ["id"]).lookup is None
    with pytest.raises(FilterError, match="does not exist"):
        parse_filter("color eq 'red'", ["id"])
    with pytest.raises(FilterError):
        parse_filter("displayName eq", ["displayName"])

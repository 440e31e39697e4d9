"""Which pushed changes poke which workspaces (controller/scim_pokes.py), and their coalescing."""

from __future__ import annotations

import asyncio

from synapse_scim.controller.registry import WorkspaceKey
from synapse_scim.controller.scim_pokes import Interest, ScimPokes
from synapse_scim.core.scim.resources import Kind

OKTA = ("data-platform", "okta")
WS: WorkspaceKey = ("data-platform", "analytics")


def pokes_of(interest: Interest) -> tuple[ScimPokes, list[WorkspaceKey]]:
    poked: list[WorkspaceKey] = []
    pokes = ScimPokes(poked.append, quiet=0.01, most=0.05)
    pokes.interests[WS] = interest
    return pokes, poked


async def test_a_user_pushed_while_a_subject_is_unresolved_pokes_nobody():
    """An identity provider's initial push POSTs every user before its groups: a user cannot resolve a
    ScimGroup subject, so those requests make no sync (they made one a second during the push)."""
    pokes, poked = pokes_of(Interest(providers=frozenset({OKTA}), waiting=frozenset({OKTA})))
    for i in range(20):
        pokes.changed(OKTA, Kind.USER, f"user-{i}", set())
    await asyncio.sleep(0.1)
    assert poked == [] and pokes.pokes == 0


async def test_a_group_pushed_while_a_subject_is_unresolved_pokes_once():
    pokes, poked = pokes_of(Interest(providers=frozenset({OKTA}), waiting=frozenset({OKTA})))
    pokes.changed(OKTA, Kind.GROUP, "any-new-group", set())
    pokes.changed(OKTA, Kind.GROUP, "any-new-group", set())
    await asyncio.sleep(0.1)
    assert poked == [WS] and pokes.pokes == 1


async def test_a_member_of_a_bound_group_pokes_and_others_do_not():
    bound = frozenset({(*OKTA, "g1")})
    pokes, poked = pokes_of(Interest(groups=bound, providers=frozenset({OKTA})))
    pokes.changed(OKTA, Kind.USER, "outsider", {"g2"})
    pokes.changed(("other", "okta"), Kind.USER, "elsewhere", {"g1"})
    await asyncio.sleep(0.1)
    assert poked == []
    pokes.changed(OKTA, Kind.USER, "member", {"g1", "g2"})
    await asyncio.sleep(0.1)
    assert poked == [WS]
    pokes.changed(OKTA, None, "", set())  # the ScimProvider itself (its rules) changed
    await asyncio.sleep(0.1)
    assert poked == [WS, WS]

"""controller/scim_pokes.py: a pushed change pokes only the workspaces that use it, coalesced.

The clock and the event loop's timers are real; the waits are the module's own (0.15 s quiet, 1 s at
most), made shorter here, and the test asserts counts and order, never durations."""

from __future__ import annotations

import asyncio

import pytest

from synapse_scim.controller.scim_pokes import ScimPokes
from synapse_scim.core.model import Problem
from synapse_scim.core.reasons import Reason
from synapse_scim.core.scim.resources import Kind
from synapse_scim.reads.scim_reads import ScimGroupRead, ScimResolution

NS = "data-platform"
OKTA = (NS, "okta")
WS_A = (NS, "analytics")
WS_B = (NS, "finance")


def resolution(*groups: tuple[str, str], unresolved: str | None = None) -> ScimResolution:
    found: ScimResolution = ScimResolution()
    for provider, gid in groups:
        found.groups[(NS, provider, "displayName", gid)] = ScimGroupRead(provider, gid, gid, ())
    if unresolved is not None:
        found.groups[(NS, unresolved, "displayName", "missing")] = Problem(Reason.SCIM_GROUP_NOT_FOUND, "gone")
    return found


async def settle(pokes: ScimPokes) -> None:
    """Until every pending poke fired (or 5 s: a poke that never fires fails the test)."""
    for _ in range(500):
        if not pokes.pending:
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"pokes still pending: {sorted(pokes.pending)}")


@pytest.fixture
def poked() -> list[tuple[str, str]]:
    return []


async def test_a_group_change_pokes_only_the_workspaces_that_use_the_group(poked: list[tuple[str, str]]) -> None:
    pokes = ScimPokes(poked.append, quiet=0.01, most=0.05)
    pokes.subscribe(WS_A, resolution(("okta", "g1")))
    pokes.subscribe(WS_B, resolution(("okta", "g2")))
    pokes.changed(OKTA, Kind.GROUP, "g1", set())
    await settle(pokes)
    assert poked == [WS_A]


async def test_a_user_change_pokes_the_workspaces_of_its_groups(poked: list[tuple[str, str]]) -> None:
    pokes = ScimPokes(poked.append, quiet=0.01, most=0.05)
    pokes.subscribe(WS_A, resolution(("okta", "g1")))
    pokes.subscribe(WS_B, resolution(("okta", "g2")))
    pokes.changed(OKTA, Kind.USER, "u1", {"g2", "g3"})
    await settle(pokes)
    assert poked == [WS_B]
    pokes.changed(OKTA, Kind.USER, "u2", {"g9"})  # in no bound group
    await settle(pokes)
    assert poked == [WS_B]


async def test_another_providers_change_pokes_nobody(poked: list[tuple[str, str]]) -> None:
    pokes = ScimPokes(poked.append, quiet=0.01, most=0.05)
    pokes.subscribe(WS_A, resolution(("okta", "g1")))
    pokes.changed((NS, "entra"), Kind.GROUP, "g1", set())
    pokes.changed(("other-namespace", "okta"), Kind.GROUP, "g1", set())
    await settle(pokes)
    assert poked == []


async def test_a_subject_that_did_not_resolve_is_poked_by_any_group_of_its_provider(
    poked: list[tuple[str, str]],
) -> None:
    pokes = ScimPokes(poked.append, quiet=0.01, most=0.05)
    pokes.subscribe(WS_A, resolution(unresolved="okta"))
    pokes.changed(OKTA, Kind.GROUP, "a-new-group", set())
    await settle(pokes)
    assert poked == [WS_A]


async def test_a_provider_change_pokes_every_workspace_that_names_it(poked: list[tuple[str, str]]) -> None:
    pokes = ScimPokes(poked.append, quiet=0.01, most=0.05)
    pokes.subscribe(WS_A, resolution(("okta", "g1")))
    pokes.subscribe(WS_B, resolution(("entra", "g1")))
    pokes.changed(OKTA, None, "", set())
    await settle(pokes)
    assert poked == [WS_A]


async def test_a_burst_of_changes_makes_one_poke(poked: list[tuple[str, str]]) -> None:
    pokes = ScimPokes(poked.append, quiet=0.01, most=0.05)
    pokes.subscribe(WS_A, resolution(("okta", "g1")))
    for _ in range(1000):
        pokes.changed(OKTA, Kind.GROUP, "g1", set())
    await settle(pokes)
    assert poked == [WS_A]


async def test_the_poke_waits_for_a_pause_but_never_longer_than_most_after_the_first_change(
    poked: list[tuple[str, str]],
) -> None:
    now = [100.0]
    pokes = ScimPokes(poked.append, quiet=0.15, most=1.0, clock=lambda: now[0])
    pokes.subscribe(WS_A, resolution(("okta", "g1")))
    loop = asyncio.get_running_loop()

    def delay() -> float:
        handle = pokes.pending[WS_A].handle
        assert handle is not None
        return handle.when() - loop.time()

    pokes.changed(OKTA, Kind.GROUP, "g1", set())
    assert delay() == pytest.approx(0.15, abs=0.02)  # a single change waits only the quiet interval
    now[0] = 100.5
    pokes.changed(OKTA, Kind.GROUP, "g1", set())
    assert delay() == pytest.approx(0.15, abs=0.02)  # changes keep coming: wait for a pause...
    now[0] = 100.95
    pokes.changed(OKTA, Kind.GROUP, "g1", set())
    assert delay() == pytest.approx(0.05, abs=0.02)  # ...but not past 1 s after the burst's first change
    pokes.close()
    assert poked == []


async def test_an_unsubscribed_workspace_is_not_poked_by_a_pending_change(poked: list[tuple[str, str]]) -> None:
    pokes = ScimPokes(poked.append, quiet=0.05, most=0.2)
    pokes.subscribe(WS_A, resolution(("okta", "g1")))
    pokes.changed(OKTA, Kind.GROUP, "g1", set())
    pokes.unsubscribe(WS_A)
    await asyncio.sleep(0.1)
    assert poked == []


async def test_a_sync_that_used_no_pushed_group_unsubscribes(poked: list[tuple[str, str]]) -> None:
    pokes = ScimPokes(poked.append, quiet=0.01, most=0.05)
    pokes.subscribe(WS_A, resolution(("okta", "g1")))
    pokes.subscribe(WS_A, ScimResolution())
    pokes.changed(OKTA, Kind.GROUP, "g1", set())
    await settle(pokes)
    assert poked == [] and WS_A not in pokes.interests


async def test_a_user_pushed_while_a_subject_is_unresolved_pokes_nobody(poked: list[tuple[str, str]]) -> None:
    """An identity provider's initial push POSTs every user before its groups: a user cannot resolve a
    ScimGroup subject, so those requests make no sync (they made one a second during the push)."""
    pokes = ScimPokes(poked.append, quiet=0.01, most=0.05)
    pokes.subscribe(WS_A, resolution(unresolved="okta"))
    for i in range(20):
        pokes.changed(OKTA, Kind.USER, f"u{i}", set())
    await settle(pokes)
    assert poked == [] and pokes.pokes == 0
    pokes.changed(OKTA, Kind.GROUP, "a-new-group", set())
    await settle(pokes)
    assert poked == [WS_A]

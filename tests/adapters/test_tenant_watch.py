"""tenant.py's watch against the sandbox: one delta round pair per poll for the whole tenant, pokes
only the workspaces a change concerns (their groups, the accounts they name, the principal lookups of
their pushed users), and loses trust (and its caches) when Graph forgets its link."""

from __future__ import annotations

import asyncio

import pytest

from support.sandbox import graph_calls
from synapse_scim.adapters.directory import Directory, Expansion
from synapse_scim.adapters.principal_lookups import find_accounts
from synapse_scim.controller.tenant import Tenants
from synapse_scim.core.matching import LookupAttribute
from synapse_scim_sandbox import Sandbox

TENANT = ("tenant", "https://graph")


async def watched(sb: Sandbox, directory: Directory) -> tuple[Tenants, list[str], dict[str, str]]:
    tenants = Tenants(interval=3600)  # polled by hand below
    poked: list[str] = []
    gids = {name: sb.state.directory.groups_named(name)[0].id for name in ("Data Engineers", "Spark Team", "Analysts")}
    for ws in ("engineering", "analytics"):
        await tenants.subscribe(TENANT, ("ns", ws), directory, lambda ws=ws: poked.append(ws))
    watch = tenants.watches[TENANT]
    watch.subscribers[("ns", "engineering")].groups = frozenset({gids["Data Engineers"], gids["Spark Team"]})
    watch.subscribers[("ns", "analytics")].groups = frozenset({gids["Analysts"]})
    bob = sb.state.directory.user("bob@contoso.com").id
    watch.subscribers[("ns", "analytics")].users = frozenset({bob})
    watch.cache.keep_expansion(
        gids["Data Engineers"],
        Expansion((), frozenset({gids["Data Engineers"], gids["Spark Team"]})),
        watch.cache.epoch,
    )
    watch.cache.keep_expansion(gids["Analysts"], Expansion((), frozenset({gids["Analysts"]})), watch.cache.epoch)
    return tenants, poked, gids


async def test_subscribing_primes_one_watch_per_tenant(sb: Sandbox, directory: Directory):
    tenants, _, _ = await watched(sb, directory)
    try:
        assert list(tenants.watches) == [TENANT] and tenants.watches[TENANT].trusted
        assert await graph_calls(sb) == {"graph.batch.200": 1}, "the second workspace reuses the first's links"
        inner = sorted(e["operation"] for e in await sb.admin.request_log(service="graph") if e["batched"])
        assert inner == ["groupsDelta", "servicePrincipalsDelta", "usersDelta"]
    finally:
        await tenants.close()


async def test_a_poll_pokes_only_the_workspaces_whose_groups_changed(sb: Sandbox, directory: Directory):
    tenants, poked, gids = await watched(sb, directory)
    watch = tenants.watches[TENANT]
    try:
        assert len(watch.cache.expansions) == 2
        assert await watch.poll() == set() and poked == []
        await sb.admin.add_member("Spark Team", "erin@contoso.com")
        assert await watch.poll() == {("ns", "engineering")} and poked == ["engineering"]
        assert watch.cache.expansion(gids["Data Engineers"]) is None  # via the changed child
        assert watch.cache.expansion(gids["Analysts"]) is not None
        await sb.admin.disable_user("bob@contoso.com")  # bob is named directly by an analytics binding
        assert await watch.poll() == {("ns", "analytics")}
        assert await graph_calls(sb) == {"graph.batch.200": 4}, "one round trip per poll, priming included"
    finally:
        await tenants.close()


async def test_an_expired_link_empties_the_cache_and_the_next_poll_resyncs_everyone(sb: Sandbox, directory: Directory):
    tenants, poked, _ = await watched(sb, directory)
    watch = tenants.watches[TENANT]
    try:
        await sb.admin.add_member("Analysts", "alice@contoso.com")
        await sb.admin.compact_change_log()
        assert await watch.poll() == set()
        assert not watch.trusted and not watch.cache.expansions
        assert await watch.poll() == {("ns", "engineering"), ("ns", "analytics")}
        assert sorted(poked) == ["analytics", "engineering"] and watch.trusted
    finally:
        await tenants.close()


async def test_the_last_workspace_leaving_ends_the_watch(sb: Sandbox, directory: Directory):
    tenants, _, _ = await watched(sb, directory)
    task = tenants.watches[TENANT].task
    tenants.unsubscribe(("ns", "engineering"))
    assert TENANT in tenants.watches
    tenants.unsubscribe(("ns", "analytics"))
    assert TENANT not in tenants.watches
    assert task is not None
    await asyncio.gather(task, return_exceptions=True)
    assert task.cancelled()


# ---------------------------------------------------------------- issue 13, findings 12 and 13


async def test_a_throttled_poll_stops_vouching_honours_retry_after_and_then_catches_up(
    sb: Sandbox, directory: Directory
):
    tenants, poked, gids = await watched(sb, directory)
    watch = tenants.watches[TENANT]
    try:
        await sb.admin.add_member("Analysts", "alice@contoso.com")  # made while the watch cannot see it
        await sb.admin.set_throttle(rate=0.5, burst=1)  # one inner request of three goes through
        assert await watch.poll() == set()
        assert not watch.trusted, "a failed poll leaves the cache trusted: syncs would not see the change"
        assert watch.cache.expansion(gids["Analysts"]) is not None, "kept, to know whom a catch-up concerns"
        await sb.admin.clear_throttle()
        calls = await graph_calls(sb)
        assert await watch.poll() == set() and await graph_calls(sb) == calls, "asked again before Retry-After"
        await asyncio.sleep(watch.retry_at - asyncio.get_running_loop().time())
        assert await watch.poll() == {("ns", "analytics")} and poked == ["analytics"]
        assert watch.trusted and watch.cache.expansion(gids["Analysts"]) is None
    finally:
        await tenants.close()


async def test_a_poll_that_fails_otherwise_stops_vouching_too(sb: Sandbox, directory: Directory):
    tenants, _, _ = await watched(sb, directory)
    watch = tenants.watches[TENANT]
    try:
        await sb.admin.inject_fault({"service": "graph", "operation": "batch", "status": 500, "count": 1})
        assert await watch.poll() == set()
        assert not watch.trusted and watch.retry_at is None
        assert await watch.poll() == set() and watch.trusted, "the next poll catches up from the same links"
    finally:
        await tenants.close()


@pytest.mark.parametrize("status", [400, 410])
async def test_an_expired_link_in_either_form_empties_the_cache(sb: Sandbox, directory: Directory, status: int):
    tenants, _, _ = await watched(sb, directory)
    watch = tenants.watches[TENANT]
    try:
        await sb.admin.disable_user("erin@contoso.com")
        await sb.admin.compact_change_log(status=status)
        assert await watch.poll() == set()
        assert not watch.trusted and not watch.cache.expansions
        assert await watch.poll() == {("ns", "engineering"), ("ns", "analytics")}
    finally:
        await tenants.close()


async def test_a_disabled_or_deleted_service_principal_pokes_the_workspaces_it_is_in(sb: Sandbox, directory: Directory):
    tenants, poked, gids = await watched(sb, directory)
    watch = tenants.watches[TENANT]
    etl = sb.state.directory.sps_named("etl-pipeline")[0].id
    watch.cache.keep_expansion(
        gids["Data Engineers"],
        Expansion((), frozenset({gids["Data Engineers"], gids["Spark Team"]}), frozenset({etl})),
        watch.cache.epoch,
    )
    try:
        await sb.admin.disable_service_principal("etl-pipeline")
        assert await watch.poll() == {("ns", "engineering")} and poked == ["engineering"]
        assert watch.cache.expansion(gids["Data Engineers"]) is None
        watch.subscribers[("ns", "analytics")].users = frozenset({etl})  # named directly by a binding there
        await sb.admin.delete_service_principal("etl-pipeline")
        assert ("ns", "analytics") in await watch.poll()
    finally:
        await tenants.close()


# ---------------------------------------------------------------- principal lookups of pushed SCIM users


async def test_user_changes_invalidate_the_lookups_and_poke_the_workspaces_that_made_them(
    sb: Sandbox, directory: Directory
):
    tenants, poked, _ = await watched(sb, directory)
    watch = tenants.watches[TENANT]
    carol = (LookupAttribute.USER_PRINCIPAL_NAME, "carol@contoso.com")
    team, newcomer = (LookupAttribute.MAIL, "team@contoso.com"), (LookupAttribute.MAIL, "erin.new@contoso.com")
    try:
        await sb.admin.update_user("frank@contoso.com", mail="Team@Contoso.com")
        assert await watch.poll() == set(), "nobody looks anything up yet"
        watch.subscribers[("ns", "engineering")].lookups = frozenset({carol, team})
        watch.subscribers[("ns", "analytics")].lookups = frozenset({newcomer})
        found = await find_accounts(directory, [carol, team, newcomer], watch.lookups)
        assert [len(found[k]) for k in (carol, team, newcomer)] == [1, 1, 0] and len(watch.lookups) == 3

        await sb.admin.update_user("erin@contoso.com", mail="Erin.New@contoso.com")  # now found by a cached miss
        assert await watch.poll() == {("ns", "analytics")} and poked == ["analytics"]
        assert watch.lookups.get(newcomer) is None and len(watch.lookups) == 2

        await sb.admin.update_user("frank@contoso.com", mail="frank@contoso.com")  # no longer found by `team`
        assert await watch.poll() == {("ns", "engineering")}, "the cached answer held frank: its key is gone"
        assert watch.lookups.get(team) is None

        await sb.admin.disable_user("carol@contoso.com")
        assert await watch.poll() == {("ns", "engineering")}
        assert watch.lookups.get(carol) is None and len(watch.lookups) == 0
        assert await graph_calls(sb) == {"graph.batch.200": 6}, "priming, 4 polls, 1 lookup batch"
    finally:
        await tenants.close()


async def test_the_lookup_cache_goes_with_the_group_cache(sb: Sandbox, directory: Directory):
    tenants, _, _ = await watched(sb, directory)
    watch = tenants.watches[TENANT]
    try:
        await find_accounts(directory, [(LookupAttribute.USER_PRINCIPAL_NAME, "alice@contoso.com")], watch.lookups)
        assert len(watch.lookups) == 1
        await sb.admin.disable_user("erin@contoso.com")
        await sb.admin.compact_change_log()
        assert await watch.poll() == set() and not watch.trusted
        assert len(watch.lookups) == 0 and not watch.cache.expansions
        await find_accounts(directory, [(LookupAttribute.USER_PRINCIPAL_NAME, "alice@contoso.com")], watch.lookups)
        epoch = watch.lookups.epoch
        await watch.poll()  # primes again: the cache is emptied once more
        assert watch.trusted and len(watch.lookups) == 0 and watch.lookups.epoch > epoch
    finally:
        await tenants.close()


async def test_a_refused_token_pokes_the_workspace_whose_credential_it_was(sb: Sandbox, directory: Directory):
    """A Graph 401 (a token expired early or revoked) is not cured by polling again with the same cached
    token: the workspace's sync must run now, which signs in afresh (controller/reconcile.py). Before,
    only a failure to get a token poked it, and a leader's watch repeated the 401 for a minute (the
    replica soak), until the next full sync."""
    tenants, poked, _ = await watched(sb, directory)
    watch = tenants.watches[TENANT]
    try:
        assert (await sb.admin.expire_tokens())["expired"] >= 1
        assert await watch.poll() == {("ns", "engineering")} and poked == ["engineering"]
        assert watch.behind and not watch.trusted
        # Starting the watch again (after Graph forgot its links) with the refused token pokes too.
        watch.forget()
        watch.retry_at = None
        poked.clear()
        assert await watch.poll() == {("ns", "analytics")} and poked == ["analytics"], "the next credential"
    finally:
        await tenants.close()

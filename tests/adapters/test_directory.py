"""directory.py against the sandbox: member pages read as raw JSON, delta links taken without an
initial listing, group, user and service principal changes reported, an expired link named as such in
every form Graph uses, an inner 429's Retry-After kept, and no member counted as enabled unless Graph
says so."""

from __future__ import annotations

import pytest

from support.sandbox import gid, graph_calls, uid
from synapse_scim.adapters.directory import DeltaLinks, Directory, DirectoryError
from synapse_scim_sandbox import Sandbox


async def test_expand_follows_nesting_and_sets_disabled_accounts_apart(sb: Sandbox, directory: Directory):
    await sb.admin.disable_user("bob@contoso.com")
    group = await directory.resolve("Group", name="Data Engineers")
    expansion = await directory.expand(group)
    displays = {p.display for p in expansion.principals}
    assert displays == {"alice@contoso.com", "carol@contoso.com", "dave@contoso.com", "etl-pipeline"}
    assert {p.type for p in expansion.principals} == {"User", "ServicePrincipal"}
    assert expansion.disabled_ids == {uid(sb, "bob@contoso.com")} and expansion.disabled == 1
    assert gid(sb, "Spark Team") in expansion.groups and group.id in expansion.groups
    assert uid(sb, "bob@contoso.com") in expansion.members
    # page_size is 3 in this sandbox and $top=999 asks for more: one page per group
    assert (await sb.admin.counters()).get("graph.transitiveMembers.200") == 1


async def test_a_first_delta_takes_only_a_link(sb: Sandbox, directory: Directory):
    groups = await directory.delta(None)
    users = await directory.user_delta(None)
    assert groups.link and users.link and not groups.changed_groups and not users.changed_groups
    log = await sb.admin.request_log(service="graph")
    assert [e["operation"] for e in log] == ["groupsDelta", "usersDelta"]
    assert all("%24deltatoken=latest" in e["path"] or "$deltatoken=latest" in e["path"] for e in log), log


async def test_group_delta_reports_membership_renames_and_deletions(sb: Sandbox, directory: Directory):
    link = (await directory.delta(None)).link
    assert (await directory.delta(link)).changed_groups == set()
    await sb.admin.add_member("Spark Team", "erin@contoso.com")
    await sb.admin.rename_group("Analysts", "Business Analysts")
    on_call = gid(sb, "Platform On-Call")
    await sb.admin.delete_group("Platform On-Call")
    result = await directory.delta(link)
    assert gid(sb, "Spark Team") in result.changed_groups and on_call in result.changed_groups
    assert result.names[gid(sb, "Business Analysts")] == "Business Analysts"
    assert result.link and result.link != link


async def test_every_round_in_one_batch_round_trip(sb: Sandbox, directory: Directory):
    first = await directory.deltas(DeltaLinks(None, None, None))
    await sb.admin.add_member("Spark Team", "erin@contoso.com")
    await sb.admin.disable_user("bob@contoso.com")
    second = await directory.deltas(first.links)
    assert second.groups.changed_groups == {gid(sb, "Spark Team")}
    assert second.users.changed_groups == {uid(sb, "bob@contoso.com")}
    assert await graph_calls(sb) == {"graph.batch.200": 2}
    inner = [(e["operation"], e["batched"]) for e in await sb.admin.request_log(service="graph") if e["batched"]]
    assert sorted(inner) == sorted(
        [("groupsDelta", "groups"), ("usersDelta", "users"), ("servicePrincipalsDelta", "servicePrincipals")] * 2
    )
    await sb.admin.add_member("Spark Team", "frank@contoso.com")
    await sb.admin.compact_change_log()
    with pytest.raises(DirectoryError) as info:
        await directory.deltas(second.links)
    assert info.value.reason == "DeltaExpired"


async def test_user_delta_reports_disabled_enabled_and_deleted_accounts(sb: Sandbox, directory: Directory):
    link = (await directory.user_delta(None)).link
    await sb.admin.disable_user("bob@contoso.com")
    first = await directory.user_delta(link)
    assert first.changed_groups == {uid(sb, "bob@contoso.com")}
    erin = uid(sb, "erin@contoso.com")
    await sb.admin.enable_user("bob@contoso.com")
    await sb.admin.delete_user("erin@contoso.com")
    second = await directory.user_delta(first.link)
    assert second.changed_groups == {uid(sb, "bob@contoso.com"), erin}
    assert (await directory.user_delta(second.link)).changed_groups == set()


@pytest.mark.parametrize("kind", ["groups", "users"])
async def test_a_link_graph_forgot_is_reported_as_expired(sb: Sandbox, directory: Directory, kind: str):
    ask = directory.delta if kind == "groups" else directory.user_delta
    link = (await ask(None)).link
    await sb.admin.add_member("Spark Team", "erin@contoso.com")
    await sb.admin.disable_user("bob@contoso.com")
    await sb.admin.compact_change_log()
    with pytest.raises(DirectoryError) as info:
        await ask(link)
    assert info.value.reason == "DeltaExpired" and not info.value.definitive


async def test_a_missing_group_is_definitive_and_a_throttled_read_is_not(sb: Sandbox, directory: Directory):
    from synapse_scim.core.model import Principal

    with pytest.raises(DirectoryError) as missing:
        await directory.expand(Principal("00000000-0000-0000-0000-000000000001", "Group", "Gone"))
    assert missing.value.reason == "SubjectNotFound" and missing.value.definitive
    await sb.admin.inject_fault({"service": "graph", "operation": "transitiveMembers", "status": 503, "retry_after": 0})
    with pytest.raises(DirectoryError) as busy:
        await directory.expand(await directory.resolve("Group", name="Analysts"))
    assert busy.value.reason == "DirectoryReadFailed" and not busy.value.definitive


async def test_a_disabled_user_named_directly_is_refused(sb: Sandbox, directory: Directory):
    # accountEnabled is not a default Graph property: the adapter must ask for it.
    assert (await directory.resolve("User", name="bob@contoso.com")).type == "User"
    await sb.admin.disable_user("bob@contoso.com")
    with pytest.raises(DirectoryError) as info:
        await directory.resolve("User", name="bob@contoso.com")
    assert info.value.reason == "SubjectDisabled" and info.value.definitive


# ---------------------------------------------------------------- issue 13, findings 12 and 13


async def test_service_principal_changes_come_in_the_same_batch(sb: Sandbox, directory: Directory):
    first = await directory.deltas(DeltaLinks(None, None, None))
    assert all(r.link for r in first) and not any(r.changed_groups for r in first)
    etl = sb.state.directory.sps_named("etl-pipeline")[0].id
    await sb.admin.disable_service_principal("etl-pipeline")
    then = await directory.deltas(first.links)
    assert then.service_principals.changed_groups == {etl} and not then.users.changed_groups
    assert await graph_calls(sb) == {"graph.batch.200": 2}, "one round trip per round, three resources"
    inner = sorted(e["operation"] for e in await sb.admin.request_log(service="graph") if e["batched"])
    assert inner == sorted(["groupsDelta", "usersDelta", "servicePrincipalsDelta"] * 2)
    await sb.admin.delete_service_principal("etl-pipeline")
    gone = await directory.deltas(then.links)
    assert gone.service_principals.changed_groups == {etl}


async def test_an_inner_429_carries_its_retry_after(sb: Sandbox, directory: Directory):
    links = (await directory.deltas(DeltaLinks(None, None, None))).links
    await sb.admin.set_throttle(rate=0.2, burst=1)  # one of the three inner requests goes through
    with pytest.raises(DirectoryError) as info:
        await directory.deltas(links)
    assert info.value.reason == "DirectoryReadFailed" and not info.value.definitive
    assert info.value.retry_after is not None and info.value.retry_after >= 4, "Retry-After of the inner 429"
    assert "429" in info.value.message


@pytest.mark.parametrize(
    "how", ["400 syncStateNotFound", "400 resyncRequired", "410 on a follow-up page", "400 on a follow-up page"]
)
async def test_every_documented_form_of_an_expired_link_is_reported_as_expired(
    sb: Sandbox, directory: Directory, how: str
):
    links = (await directory.deltas(DeltaLinks(None, None, None))).links
    status, form = how.split(" ", 1)
    if form == "on a follow-up page":
        for user in ("bob@contoso.com", "erin@contoso.com", "frank@contoso.com", "grace@contoso.com"):
            await sb.admin.disable_user(user)
        sb.settings.graph_page_size = 2  # the users round needs a follow-up page
        await sb.admin.inject_fault(
            {
                "service": "graph",
                "operation": "usersDelta",
                "status": int(status),
                "code": "syncStateNotFound",
                "skip": 1,
                "count": 1,
            }
        )
    elif form == "syncStateNotFound":
        await sb.admin.disable_user("bob@contoso.com")
        await sb.admin.compact_change_log(status=400)
    else:
        await sb.admin.inject_fault(
            {"service": "graph", "operation": "groupsDelta", "status": 400, "code": "resyncRequired", "count": 1}
        )
    with pytest.raises(DirectoryError) as info:
        await directory.deltas(links)
    assert info.value.reason == "DeltaExpired", info.value.message


async def test_members_whose_account_state_is_missing_are_read_explicitly(sb: Sandbox, directory: Directory):
    await sb.admin.disable_user("bob@contoso.com")
    await sb.admin.disable_service_principal("etl-pipeline")
    await sb.admin.inject_fault(
        {"service": "graph", "operation": "transitiveMembers", "kind": "omit", "omit": ["accountEnabled"]}
    )
    group = await directory.resolve("Group", name="Data Engineers")
    expansion = await directory.expand(group)
    etl = sb.state.directory.sps_named("etl-pipeline")[0].id
    assert {p.display for p in expansion.principals} == {"alice@contoso.com", "carol@contoso.com", "dave@contoso.com"}
    assert expansion.disabled_ids == {uid(sb, "bob@contoso.com"), etl}
    log = await sb.admin.request_log(service="graph")
    explicit = [e for e in log if e["batched"] and e["operation"] in ("getUser", "getServicePrincipal")]
    assert len(explicit) == 5, "each member Graph left accountEnabled out for is read once, in a batch"
    assert [e["operation"] for e in log if not e["batched"]].count("batch") == 1


async def test_a_member_whose_account_state_stays_unknown_fails_the_expansion(sb: Sandbox, directory: Directory):
    await sb.admin.inject_fault(
        {"service": "graph", "operation": "transitiveMembers", "kind": "omit", "omit": ["accountEnabled"]}
    )
    await sb.admin.inject_fault(
        {"service": "graph", "operation": "getUser", "kind": "omit", "omit": ["accountEnabled"]}
    )
    with pytest.raises(DirectoryError) as unknown:
        await directory.expand(await directory.resolve("Group", name="Analysts"))
    assert unknown.value.reason == "DirectoryReadFailed" and not unknown.value.definitive
    assert "accountEnabled" in unknown.value.message
    await sb.admin.clear_faults()
    await sb.admin.inject_fault(
        {"service": "graph", "operation": "transitiveMembers", "kind": "omit", "omit": ["accountEnabled"]}
    )
    await sb.admin.inject_fault({"service": "graph", "operation": "getUser", "status": 429, "retry_after": 2})
    with pytest.raises(DirectoryError) as throttled:
        await directory.expand(await directory.resolve("Group", name="Analysts"))
    assert throttled.value.retry_after == 2 and not throttled.value.definitive


async def test_a_disabled_service_principal_named_directly_is_refused(sb: Sandbox, directory: Directory):
    assert (await directory.resolve("ServicePrincipal", name="etl-pipeline")).type == "ServicePrincipal"
    await sb.admin.disable_service_principal("etl-pipeline")
    for ref in ({"name": "etl-pipeline"}, {"id": sb.state.directory.sps_named("etl-pipeline")[0].id}):
        with pytest.raises(DirectoryError) as info:
            await directory.resolve("ServicePrincipal", **ref)
        assert info.value.reason == "SubjectDisabled" and info.value.definitive


# ---------------------------------------------------------------- principal lookups: what users/delta says


async def test_user_delta_reports_the_lookups_a_change_concerns(sb: Sandbox, directory: Directory):
    from synapse_scim.core.matching import LookupAttribute as A

    first = await directory.deltas(DeltaLinks(None, None, None))
    assert first.users.lookup_keys == frozenset()
    alice, erin = uid(sb, "alice@contoso.com"), uid(sb, "erin@contoso.com")
    await sb.admin.update_user("alice@contoso.com", mail="Alice.A@Contoso.com")
    await sb.admin.add_user("bob_fabrikam.com#EXT#@contoso.onmicrosoft.com", mail="bob@fabrikam.com")
    await sb.admin.delete_user("erin@contoso.com")
    guest = uid(sb, "bob_fabrikam.com#EXT#@contoso.onmicrosoft.com")
    then = await directory.deltas(first.links)
    assert then.users.changed_groups == {alice, guest, erin}
    assert then.users.lookup_keys == {
        (A.ID, alice),
        (A.USER_PRINCIPAL_NAME, "alice@contoso.com"),
        (A.MAIL, "alice.a@contoso.com"),
        (A.ID, guest),
        (A.USER_PRINCIPAL_NAME, "bob_fabrikam.com#ext#@contoso.onmicrosoft.com"),
        (A.GUEST_PREFIX, "bob_fabrikam.com#ext#@"),
        (A.MAIL, "bob@fabrikam.com"),
        (A.ID, erin),  # removed: by its id only
    }
    assert then.groups.lookup_keys == then.service_principals.lookup_keys == frozenset()
    await sb.admin.update_user("bob@contoso.com", user_principal_name="robert@contoso.com")
    assert (A.USER_PRINCIPAL_NAME, "robert@contoso.com") in (await directory.user_delta(then.users.link)).lookup_keys

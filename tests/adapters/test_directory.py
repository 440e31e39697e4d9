"""directory.py against the sandbox: member pages read as raw JSON, delta links taken without an
initial listing, group and user changes reported, an expired link named as such."""

from __future__ import annotations

import pytest

from support.sandbox import gid, graph_calls, uid
from synapse_scim.adapters.directory import Directory, DirectoryError
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


async def test_both_rounds_in_one_batch_round_trip(sb: Sandbox, directory: Directory):
    groups, users = await directory.deltas(None, None)
    await sb.admin.add_member("Spark Team", "erin@contoso.com")
    await sb.admin.disable_user("bob@contoso.com")
    groups2, users2 = await directory.deltas(groups.link, users.link)
    assert groups2.changed_groups == {gid(sb, "Spark Team")} and users2.changed_groups == {uid(sb, "bob@contoso.com")}
    assert await graph_calls(sb) == {"graph.batch.200": 2}
    inner = [(e["operation"], e["batched"]) for e in await sb.admin.request_log(service="graph") if e["batched"]]
    assert sorted(inner) == [("groupsDelta", "groups")] * 2 + [("usersDelta", "users")] * 2
    await sb.admin.add_member("Spark Team", "frank@contoso.com")
    await sb.admin.compact_change_log()
    with pytest.raises(DirectoryError) as info:
        await directory.deltas(groups2.link, users2.link)
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

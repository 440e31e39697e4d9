"""Microsoft Graph v1.0 through msgraph-sdk: groups, members and transitiveMembers (polymorphic, paged),
users, service principals, directory objects, delta (all spellings, after changes), errors, 401 on
expiry and retry after a 429 with Retry-After."""

from __future__ import annotations

import ssl
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from kiota_abstractions.base_request_configuration import RequestConfiguration
from msgraph import GraphRequestAdapter, GraphServiceClient
from msgraph.generated.directory_objects.get_by_ids.get_by_ids_post_request_body import GetByIdsPostRequestBody
from msgraph.generated.groups.delta.delta_request_builder import DeltaRequestBuilder
from msgraph.generated.groups.groups_request_builder import GroupsRequestBuilder
from msgraph.generated.groups.item.members.members_request_builder import MembersRequestBuilder
from msgraph.generated.groups.item.transitive_members.transitive_members_request_builder import (
    TransitiveMembersRequestBuilder,
)
from msgraph.generated.models.group import Group
from msgraph.generated.models.o_data_errors.o_data_error import ODataError
from msgraph.generated.models.service_principal import ServicePrincipal
from msgraph.generated.models.user import User
from msgraph.generated.service_principals.service_principals_request_builder import ServicePrincipalsRequestBuilder
from msgraph.generated.users.item.user_item_request_builder import UserItemRequestBuilder
from msgraph_core.tasks.page_iterator import PageIterator

from support.sandbox import gid
from synapse_scim_sandbox import AdminClient, Sandbox, synthetic_org

from .conftest import close_graph_http_client, graph_client, secret_credential


@pytest.fixture
async def gc(sb: Sandbox) -> AsyncIterator[Any]:
    async with secret_credential(sb) as cred:
        yield graph_client(sb, cred)


@pytest.fixture
async def big(tmp_path: Path) -> AsyncIterator[Sandbox]:
    # msgraph-sdk needs ~8 ms of CPU to deserialise one directory object: keep the big group modest
    seed = synthetic_org(users=150, groups=2, members_per_group=130, nesting=0.0, service_principals=5)
    async with Sandbox(seed=seed, cert_dir=tmp_path) as sandbox:
        yield sandbox


def members_config(**kw: Any) -> RequestConfiguration:
    return RequestConfiguration(query_parameters=MembersRequestBuilder.MembersRequestBuilderGetQueryParameters(**kw))


async def test_get_group_and_404(sb: Sandbox, gc: Any) -> None:
    group = await gc.groups.by_group_id(gid(sb, "Data Engineers")).get()
    assert group.display_name == "Data Engineers" and group.security_enabled is True
    with pytest.raises(ODataError) as info:
        await gc.groups.by_group_id(str(uuid.uuid4())).get()
    err = info.value
    assert err.response_status_code == 404 and err.error.code == "Request_ResourceNotFound"
    assert err.error.inner_error.request_id


async def test_list_groups_filter_select_top(sb: Sandbox, gc: Any) -> None:
    q = GroupsRequestBuilder.GroupsRequestBuilderGetQueryParameters(
        filter="displayName eq 'spark team'", select=["id", "displayName"]
    )
    res = await gc.groups.get(request_configuration=RequestConfiguration(query_parameters=q))
    assert [(g.id, g.display_name) for g in res.value] == [(gid(sb, "Spark Team"), "Spark Team")]
    assert res.value[0].description is None and res.value[0].security_enabled is None  # not selected
    q = GroupsRequestBuilder.GroupsRequestBuilderGetQueryParameters(top=2, select=["displayName"])
    page = await gc.groups.get(request_configuration=RequestConfiguration(query_parameters=q))
    names = [g.display_name for g in page.value]
    while page.odata_next_link:
        page = await gc.groups.with_url(page.odata_next_link).get()
        names += [g.display_name for g in page.value]
    assert names == ["Data Engineers", "Spark Team", "Analysts", "Contractors", "Platform Ops", "Platform On-Call"]


async def test_members_are_polymorphic(sb: Sandbox, gc: Any) -> None:
    res = await gc.groups.by_group_id(gid(sb, "Data Engineers")).members.get(
        request_configuration=members_config(select=["id", "displayName", "userPrincipalName", "accountEnabled"])
    )
    kinds = {m.display_name: type(m) for m in res.value}
    assert kinds == {"Alice Andersen": User, "Bob Baker": User, "Spark Team": Group, "etl-pipeline": ServicePrincipal}
    alice = next(m for m in res.value if m.display_name == "Alice Andersen")
    assert alice.user_principal_name == "alice@contoso.com" and alice.account_enabled is True
    users = await gc.groups.by_group_id(gid(sb, "Data Engineers")).members.graph_user.get()
    assert {u.display_name for u in users.value} == {"Alice Andersen", "Bob Baker"}


async def test_default_user_properties_leave_out_account_enabled(sb: Sandbox, gc: Any) -> None:
    res = await gc.groups.by_group_id(gid(sb, "Analysts")).members.get()
    judy = next(m for m in res.value if m.display_name == "Judy Jones")
    assert judy.account_enabled is None and judy.user_principal_name == "judy@contoso.com"


async def test_transitive_members_nesting_and_cycle(sb: Sandbox, gc: Any) -> None:
    res = await gc.groups.by_group_id(gid(sb, "Data Engineers")).transitive_members.get()
    assert {m.display_name for m in res.value} == {
        "Alice Andersen",
        "Bob Baker",
        "Spark Team",
        "etl-pipeline",
        "Carol Chen",
        "Dave Diaz",
    }
    q = TransitiveMembersRequestBuilder.TransitiveMembersRequestBuilderGetQueryParameters(select=["displayName"])
    res = await gc.groups.by_group_id(gid(sb, "Platform Ops")).transitive_members.get(
        request_configuration=RequestConfiguration(query_parameters=q)
    )
    assert sorted(m.display_name for m in res.value) == ["Heidi Hansen", "Ivan Ivanov", "Platform On-Call"]


async def test_member_pages_default_100_top_999_and_next_links(big: Sandbox) -> None:
    group = next(g for g in big.state.directory.groups.values() if len(g.members) > 130)
    async with secret_credential(big) as cred:
        gc = graph_client(big, cred)
        first = await gc.groups.by_group_id(group.id).members.get()
        assert len(first.value) == 100 and first.odata_next_link.startswith(big.graph_url)
        ids = [m.id for m in first.value]
        page = first
        while page.odata_next_link:
            page = await gc.groups.by_group_id(group.id).members.with_url(page.odata_next_link).get()
            ids += [m.id for m in page.value]
        assert ids == list(group.members)  # every member once, in order, across 2 pages
        full = await gc.groups.by_group_id(group.id).transitive_members.get(
            request_configuration=RequestConfiguration(
                query_parameters=TransitiveMembersRequestBuilder.TransitiveMembersRequestBuilderGetQueryParameters(
                    top=999
                )
            )
        )
        assert len(full.value) == len(group.members) and full.odata_next_link is None
        collected: list[str] = []
        it = PageIterator(
            await gc.groups.by_group_id(group.id).members.get(request_configuration=members_config(top=40)),
            gc.request_adapter,
        )
        await it.iterate(lambda m: collected.append(m.id) or True)
        assert collected == list(group.members)
        with pytest.raises(ODataError) as info:
            await gc.groups.by_group_id(group.id).members.get(request_configuration=members_config(top=1000))
        assert info.value.response_status_code == 400


async def test_paging_is_consistent_while_membership_changes(big: Sandbox) -> None:
    group = next(g for g in big.state.directory.groups.values() if len(g.members) > 130)
    before = list(group.members)
    async with secret_credential(big) as cred:
        gc = graph_client(big, cred)
        page = await gc.groups.by_group_id(group.id).members.get(request_configuration=members_config(top=50))
        await big.admin.remove_member(group.id, before[120])
        ids = [m.id for m in page.value]
        while page.odata_next_link:
            page = await gc.groups.by_group_id(group.id).members.with_url(page.odata_next_link).get()
            ids += [m.id for m in page.value]
    assert ids == before  # the listing that started before the change is served from its snapshot


async def test_count_needs_consistency_level(sb: Sandbox, gc: Any) -> None:
    config = members_config(count=True)
    with pytest.raises(ODataError) as info:
        await gc.groups.by_group_id(gid(sb, "Analysts")).members.get(request_configuration=config)
    assert info.value.response_status_code == 400
    config.headers.add("ConsistencyLevel", "eventual")
    res = await gc.groups.by_group_id(gid(sb, "Analysts")).members.get(request_configuration=config)
    assert res.odata_count == 4
    count_config = RequestConfiguration()
    count_config.headers.add("ConsistencyLevel", "eventual")
    assert await gc.groups.by_group_id(gid(sb, "Analysts")).members.count.get(request_configuration=count_config) == 4


async def test_users_by_id_and_percent_encoded_upn(sb: Sandbox, gc: Any) -> None:
    q = UserItemRequestBuilder.UserItemRequestBuilderGetQueryParameters(select=["id", "displayName", "accountEnabled"])
    judy = await gc.users.by_user_id("judy@contoso.com").get(
        request_configuration=RequestConfiguration(query_parameters=q)
    )
    assert judy.display_name == "Judy Jones" and judy.account_enabled is False
    again = await gc.users.by_user_id(judy.id).get()
    assert again.user_principal_name == "judy@contoso.com"
    log = await sb.admin.request_log(service="graph", operation="getUser")
    assert log[0]["path"].startswith("/v1.0/users/judy%40contoso.com")
    with pytest.raises(ODataError) as info:
        await gc.users.by_user_id("nobody@contoso.com").get()
    assert info.value.response_status_code == 404


async def test_service_principals_by_id_app_id_and_filters(sb: Sandbox, gc: Any) -> None:
    etl = sb.state.directory.sps_named("etl-pipeline")[0]
    sp = await gc.service_principals.by_service_principal_id(etl.id).get()
    assert sp.app_id == etl.app_id and sp.display_name == "etl-pipeline"
    for flt in (f"appId eq '{etl.app_id}'", "displayName eq 'etl-pipeline'"):
        q = ServicePrincipalsRequestBuilder.ServicePrincipalsRequestBuilderGetQueryParameters(filter=flt)
        res = await gc.service_principals.get(request_configuration=RequestConfiguration(query_parameters=q))
        assert [s.id for s in res.value] == [etl.id]
    by_app = await gc.service_principals_with_app_id(etl.app_id).get()
    assert by_app.id == etl.id


async def test_directory_objects_and_get_by_ids(sb: Sandbox, gc: Any) -> None:
    alice = sb.state.directory.user("alice@contoso.com")
    obj = await gc.directory_objects.by_directory_object_id(gid(sb, "Analysts")).get()
    assert isinstance(obj, Group)
    body = GetByIdsPostRequestBody(ids=[alice.id, gid(sb, "Analysts"), str(uuid.uuid4())], types=["user"])
    res = await gc.directory_objects.get_by_ids.post(body)
    assert [(type(o), o.id) for o in res.value] == [(User, alice.id)]


async def test_missing_token_is_401_and_unsupported_options_400(sb: Sandbox) -> None:
    from kiota_abstractions.authentication import AnonymousAuthenticationProvider
    from msgraph_core import GraphClientFactory

    client = httpx.AsyncClient(verify=ssl.create_default_context(cafile=str(sb.ca_path)))
    adapter = GraphRequestAdapter(
        AnonymousAuthenticationProvider(), client=GraphClientFactory.create_with_default_middleware(client=client)
    )
    adapter.base_url = sb.graph_url
    try:
        with pytest.raises(ODataError) as info:
            await GraphServiceClient(request_adapter=adapter).groups.get()
    finally:
        await close_graph_http_client(client)
    assert info.value.response_status_code == 401 and info.value.error.message == "Access token is empty."
    async with secret_credential(sb) as cred:
        gc = graph_client(sb, cred)
        q = GroupsRequestBuilder.GroupsRequestBuilderGetQueryParameters(orderby=["displayName"])
        with pytest.raises(ODataError) as info:
            await gc.groups.get(request_configuration=RequestConfiguration(query_parameters=q))
        assert info.value.response_status_code == 400 and "$orderby" in info.value.error.message


async def test_expand_members_and_delta_latest(sb: Sandbox, gc: Any, admin: AdminClient) -> None:
    from msgraph.generated.groups.item.group_item_request_builder import GroupItemRequestBuilder

    q = GroupItemRequestBuilder.GroupItemRequestBuilderGetQueryParameters(expand=["members"])
    group = await gc.groups.by_group_id(gid(sb, "Spark Team")).get(
        request_configuration=RequestConfiguration(query_parameters=q)
    )
    assert {type(m) for m in group.members} == {User} and len(group.members) == 2
    latest = await gc.groups.delta.with_url(f"{sb.graph_url}/groups/delta?$deltatoken=latest").get()
    assert latest.value == [] and latest.odata_delta_link
    await admin.add_member("Analysts", "bob@contoso.com")
    values, _ = await _round(gc, await gc.groups.delta.with_url(latest.odata_delta_link).get())
    assert [v.display_name for v in values] == ["Analysts"]


async def test_missing_graph_permission_is_403(tmp_path: Path) -> None:
    seed = {"apps": [{"name": "no-graph", "secret": "s", "graphPermissions": []}], "groups": [{"displayName": "G"}]}
    async with Sandbox(seed=seed, cert_dir=tmp_path) as sb:
        async with secret_credential(sb, "no-graph") as cred:
            with pytest.raises(ODataError) as info:
                await graph_client(sb, cred).groups.get()
    assert info.value.response_status_code == 403 and info.value.error.code == "Authorization_RequestDenied"


def _delta_state(values: list[Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for g in values:
        extra = g.additional_data or {}
        if "@removed" in extra:
            out[str(g.id)] = "removed"
            continue
        entry = out.setdefault(str(g.id), {"name": g.display_name, "added": set(), "removed": set()})
        for m in extra.get("members@delta", []):
            (entry["removed"] if "@removed" in m else entry["added"]).add(str(m["id"]))
    return out


async def _round(gc: Any, first: Any) -> tuple[list[Any], str]:
    values, page = list(first.value), first
    while page.odata_next_link:
        page = await gc.groups.delta.with_url(page.odata_next_link).get()
        values += page.value
    return values, page.odata_delta_link


async def test_delta_initial_round_then_only_changes(sb: Sandbox, gc: Any, admin: AdminClient) -> None:
    q = DeltaRequestBuilder.DeltaRequestBuilderGetQueryParameters(select=["displayName", "members"])
    config = RequestConfiguration(query_parameters=q)
    config.headers.add("Prefer", "odata.maxpagesize=2")  # $top is refused on delta, as by Graph
    values, link = await _round(gc, await gc.groups.delta.get(request_configuration=config))
    initial = _delta_state(values)
    assert len(initial) == 6 and len(values) == 6  # 3 pages of 2
    engineers = gid(sb, "Data Engineers")
    assert len(initial[engineers]["added"]) == 4 and initial[engineers]["name"] == "Data Engineers"
    log = await admin.request_log(service="graph", operation="groupsDelta")
    assert log[0]["path"].startswith("/v1.0/groups/delta()")
    # nothing changed: an empty round
    values, link2 = await _round(gc, await gc.groups.delta.with_url(link).get())
    assert values == [] and link2
    alice = sb.state.directory.user("alice@contoso.com").id
    erin = sb.state.directory.user("erin@contoso.com").id
    await admin.remove_member("Data Engineers", "alice@contoso.com")
    await admin.add_member("Spark Team", "erin@contoso.com")
    await admin.rename_group("Analysts", "Business Analysts")
    await admin.delete_group("Platform On-Call")
    await admin.disable_user("bob@contoso.com")  # not a group change
    values, link3 = await _round(gc, await gc.groups.delta.with_url(link2).get())
    changes = _delta_state(values)
    assert changes[engineers]["removed"] == {alice} and changes[engineers]["added"] == set()
    assert changes[gid(sb, "Spark Team")]["added"] == {erin}
    assert changes[gid(sb, "Business Analysts")] == {"name": "Business Analysts", "added": set(), "removed": set()}
    on_call = [k for k, v in changes.items() if v == "removed"]
    assert len(on_call) == 1 and on_call[0] not in sb.state.directory.groups
    # Platform Ops lost its member Platform On-Call when that group was deleted
    assert changes[gid(sb, "Platform Ops")]["removed"] == {on_call[0]}
    assert set(changes) == {
        engineers,
        gid(sb, "Spark Team"),
        gid(sb, "Business Analysts"),
        gid(sb, "Platform Ops"),
        on_call[0],
    }
    # the older link still answers everything since it was issued
    values, _ = await _round(gc, await gc.groups.delta.with_url(link).get())
    assert set(_delta_state(values)) == set(changes)
    values, _ = await _round(gc, await gc.groups.delta.with_url(link3).get())
    assert values == []


@pytest.mark.parametrize("spelling", ["delta", "delta()", "microsoft.graph.delta", "/delta"])
async def test_delta_spellings_and_double_slashes(sb: Sandbox, gc: Any, spelling: str) -> None:
    res = await gc.groups.delta.with_url(f"{sb.graph_url}/groups/{spelling}").get()
    assert len(res.value) == 6 and res.odata_delta_link


async def test_trailing_slash_base_url_gives_double_slash_paths(sb: Sandbox) -> None:
    async with secret_credential(sb) as cred:
        gc = graph_client(sb, cred, base_url=sb.graph_url + "/")
        group = await gc.groups.by_group_id(gid(sb, "Analysts")).get()
    assert group.display_name == "Analysts"
    assert "//groups" in (await sb.admin.request_log(service="graph"))[-1]["path"]


async def test_delta_splits_large_groups_across_pages(tmp_path: Path) -> None:
    seed = synthetic_org(users=30, groups=2, members_per_group=25, nesting=0.0, service_principals=0)
    async with Sandbox(seed=seed, cert_dir=tmp_path, delta_member_chunk=10) as sb:
        async with secret_credential(sb) as cred:
            gc = graph_client(sb, cred)
            values, link = await _round(gc, await gc.groups.delta.get())
    first = [v for v in values if v.display_name == "Group 0"]
    assert len(first) == 3 and link
    members = [m["id"] for v in first for m in v.additional_data["members@delta"]]
    assert [str(m) for m in members] == list(sb.state.directory.groups_named("Group 0")[0].members)


async def test_delta_filter_by_id_and_410_after_compaction(sb: Sandbox, gc: Any, admin: AdminClient) -> None:
    q = DeltaRequestBuilder.DeltaRequestBuilderGetQueryParameters(filter=f"id eq '{gid(sb, 'Analysts')}'")
    values, link = await _round(
        gc, await gc.groups.delta.get(request_configuration=RequestConfiguration(query_parameters=q))
    )
    assert [v.display_name for v in values] == ["Analysts"]
    await admin.add_member("Spark Team", "erin@contoso.com")
    values, link = await _round(gc, await gc.groups.delta.with_url(link).get())
    assert values == []  # a change to another group
    await admin.remove_member("Spark Team", "erin@contoso.com")
    await admin.compact_change_log()  # forgets the change made after `link` was issued
    with pytest.raises(ODataError) as info:
        await gc.groups.delta.with_url(link).get()
    assert info.value.response_status_code == 410


async def test_expired_token_is_401(sb: Sandbox, gc: Any, admin: AdminClient) -> None:
    await gc.groups.by_group_id(gid(sb, "Analysts")).get()
    await admin.advance_clock(3700)  # the SDK still trusts its cached token; the service does not
    with pytest.raises(ODataError) as info:
        await gc.groups.by_group_id(gid(sb, "Analysts")).get()
    assert info.value.response_status_code == 401
    assert info.value.error.code == "InvalidAuthenticationToken" and "expired" in info.value.error.message


async def test_retry_after_429(sb: Sandbox, gc: Any, admin: AdminClient) -> None:
    rule = await admin.inject_fault(
        {
            "service": "graph",
            "operation": "transitiveMembers",
            "match": {"group": "Data Engineers"},
            "status": 429,
            "retry_after": 1,
            "count": 1,
        }
    )
    assert rule["match"]["group"] == gid(sb, "Data Engineers")
    await gc.groups.by_group_id(gid(sb, "Analysts")).transitive_members.get()  # another group: no fault
    res = await gc.groups.by_group_id(gid(sb, "Data Engineers")).transitive_members.get()
    assert len(res.value) == 6
    log = await admin.request_log(service="graph", operation="transitiveMembers")
    assert [e["status"] for e in log] == [200, 429, 200]
    assert log[2]["headers"]["retry-attempt"] == "1"
    assert log[2]["time"] - log[1]["time"] >= 0.9  # the SDK waited for Retry-After
    counters = await admin.counters()
    assert counters["graph.transitiveMembers.429"] == 1 and counters["graph.transitiveMembers.200"] == 2
    assert await admin.faults() == []  # count exhausted


async def test_429_when_retries_run_out_surfaces_in_graph_shape(sb: Sandbox, gc: Any, admin: AdminClient) -> None:
    from kiota_http.middleware.options import RetryHandlerOption

    await admin.inject_fault({"service": "graph", "operation": "getGroup", "status": 429, "retry_after": 1})
    config = RequestConfiguration(options=[RetryHandlerOption(max_retries=0)])
    with pytest.raises(ODataError) as info:
        await gc.groups.by_group_id(gid(sb, "Analysts")).get(request_configuration=config)
    assert info.value.response_status_code == 429 and info.value.error.code == "TooManyRequests"


async def test_users_delta_initial_round_pages_then_reports_account_changes(
    sb: Sandbox, gc: Any, admin: AdminClient
) -> None:
    from msgraph.generated.users.delta.delta_request_builder import DeltaRequestBuilder as UsersDelta

    q = UsersDelta.DeltaRequestBuilderGetQueryParameters(select=["id", "accountEnabled"])
    config = RequestConfiguration(query_parameters=q)
    config.headers.add("Prefer", "odata.maxpagesize=2")
    page = await gc.users.delta.get(request_configuration=config)
    users, pages = list(page.value), 1
    while page.odata_next_link:
        page = await gc.users.delta.with_url(page.odata_next_link).get()
        users += page.value
        pages += 1
    assert {str(u.id) for u in users} == set(sb.state.directory.users) and pages > 1
    link = page.odata_delta_link
    await admin.disable_user("bob@contoso.com")
    changed = await gc.users.delta.with_url(link).get()
    assert [(str(u.id), u.account_enabled) for u in changed.value] == [
        (sb.state.directory.user("bob@contoso.com").id, False)
    ]
    latest = await gc.users.delta.with_url(f"{sb.graph_url}/users/delta?$deltatoken=latest").get()
    assert latest.value == [] and latest.odata_delta_link
    await admin.delete_user("erin@contoso.com")
    gone = await gc.users.delta.with_url(latest.odata_delta_link).get()
    assert len(gone.value) == 1 and "@removed" in (gone.value[0].additional_data or {})

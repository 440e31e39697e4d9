"""The sandbox's Graph is no kinder than Graph where the operator's change tracking is concerned:
batch answers in any order, 429 inside a 200 batch from its throttling model, both forms of an
expired delta link (410, and 400 syncStateNotFound) on a first or a follow-up page, $top refused on
delta, only the $select-ed properties' changes reported, servicePrincipals/delta with admin routes
to disable, enable and delete a service principal, and a fault that leaves accountEnabled out."""

from __future__ import annotations

import ssl
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from support.sandbox import gid, uid
from synapse_scim_sandbox import AdminClient, AdminError, Sandbox

from .conftest import GRAPH_SCOPE, secret_credential

ETL = "etl-pipeline"


class Graph:
    """Raw HTTPS calls to the sandbox's Graph with the operator app's token (no SDK retries)."""

    def __init__(self, sb: Sandbox, http: httpx.AsyncClient, token: str) -> None:
        self.sb, self.http, self.token = sb, http, token

    async def get(self, path: str, **headers: str) -> httpx.Response:
        url = path if path.startswith("https://") else f"{self.sb.graph_url}{path}"
        return await self.http.get(url, headers={"Authorization": f"Bearer {self.token}", **headers})

    async def batch(self, urls: list[str]) -> tuple[httpx.Response, dict[str, dict[str, Any]]]:
        body = {"requests": [{"id": str(i), "method": "GET", "url": u} for i, u in enumerate(urls)]}
        r = await self.http.post(
            f"{self.sb.graph_url}/$batch", json=body, headers={"Authorization": f"Bearer {self.token}"}
        )
        return r, {x["id"]: x for x in r.json()["responses"]}

    async def round(self, link: str, **headers: str) -> tuple[list[dict[str, Any]], str]:
        """Every page of one delta round from `link`: its items and the next delta link."""
        items: list[dict[str, Any]] = []
        while True:
            r = await self.get(link, **headers)
            assert r.status_code == 200, r.text
            page = r.json()
            items += page["value"]
            if "@odata.deltaLink" in page:
                return items, page["@odata.deltaLink"]
            link = page["@odata.nextLink"]


@pytest.fixture
async def graph(sb: Sandbox) -> AsyncIterator[Graph]:
    async with secret_credential(sb) as cred:
        token = (await cred.get_token(GRAPH_SCOPE)).token
    async with httpx.AsyncClient(verify=ssl.create_default_context(cafile=str(sb.ca_path)), timeout=30) as http:
        yield Graph(sb, http, token)


def sp_id(sb: Sandbox, name: str = ETL) -> str:
    return sb.state.directory.sps_named(name)[0].id


async def latest(graph: Graph, resource: str, select: str) -> str:
    r = await graph.get(f"/{resource}/delta?$select={select}&$deltatoken=latest")
    assert r.status_code == 200 and r.json()["value"] == [], r.text
    return str(r.json()["@odata.deltaLink"])


async def test_batch_responses_come_in_any_order_matched_by_id(sb: Sandbox, graph: Graph):
    ids = sorted(sb.state.directory.users)[:10]
    urls = [f"/users/{i}?$select=id" for i in ids] * 2
    orders = []
    for _ in range(3):
        r, by_id = await graph.batch(urls)
        assert r.status_code == 200
        assert {k: v["body"]["id"] for k, v in by_id.items()} == {str(n): u for n, u in enumerate(ids * 2)}
        orders.append([x["id"] for x in r.json()["responses"]])
    assert any(o != [str(n) for n in range(20)] for o in orders), "twenty answers, always in request order"


async def test_throttling_answers_429_with_retry_after_inside_a_200_batch(
    sb: Sandbox, admin: AdminClient, graph: Graph
):
    assert await admin.set_throttle(rate=0.25, burst=2) == {"rate": 0.25, "burst": 2.0}
    r, by_id = await graph.batch(["/users/delta?$deltatoken=latest", "/groups/delta?$deltatoken=latest"] * 2)
    assert r.status_code == 200, "the batch is not throttled as such"
    statuses = sorted(x["status"] for x in by_id.values())
    assert statuses == [200, 200, 429, 429]
    throttled = [x for x in by_id.values() if x["status"] == 429]
    assert all(x["body"]["error"]["code"] == "TooManyRequests" for x in throttled)
    assert all(int(x["headers"]["Retry-After"]) >= 1 for x in throttled)
    alone = await graph.get(f"/users/{uid(sb, 'bob@contoso.com')}")
    assert alone.status_code == 429 and int(alone.headers["Retry-After"]) >= 1
    counters = await admin.counters()
    assert counters["graph.batch.200"] == 1 and counters["graph.getUser.429"] == 1
    assert await admin.clear_throttle() == {"cleared": True}
    assert (await graph.get(f"/users/{uid(sb, 'bob@contoso.com')}")).status_code == 200
    with pytest.raises(AdminError) as refused:
        await admin.set_throttle(rate=1, burst=1, service="synapse")
    assert refused.value.status == 400


@pytest.mark.parametrize(("status", "code"), [(410, "SyncStateNotFound"), (400, "syncStateNotFound")])
async def test_an_expired_link_is_410_or_400_sync_state_not_found(
    sb: Sandbox, admin: AdminClient, graph: Graph, status: int, code: str
):
    links = [
        await latest(graph, "groups", "id,displayName,members"),
        await latest(graph, "users", "id,accountEnabled"),
        await latest(graph, "servicePrincipals", "id,accountEnabled"),
    ]
    await admin.add_member("Spark Team", "erin@contoso.com")
    await admin.disable_user("bob@contoso.com")
    await admin.disable_service_principal(ETL)
    await admin.compact_change_log(status=status)  # forgets the changes made after the links were issued
    for link in links:
        r = await graph.get(link)
        assert (r.status_code, r.json()["error"]["code"]) == (status, code), link


async def test_a_compaction_during_a_round_expires_its_next_page(sb: Sandbox, admin: AdminClient, graph: Graph):
    link = await latest(graph, "users", "id,accountEnabled")
    for user in ("bob@contoso.com", "erin@contoso.com", "frank@contoso.com"):
        await admin.disable_user(user)
    first = await graph.get(link, Prefer="odata.maxpagesize=1")
    assert first.status_code == 200 and len(first.json()["value"]) == 1
    await admin.compact_change_log()
    follow_up = await graph.get(first.json()["@odata.nextLink"])
    assert follow_up.status_code == 410 and follow_up.json()["error"]["code"] == "SyncStateNotFound"


@pytest.mark.parametrize("resource", ["groups", "users", "servicePrincipals"])
async def test_top_is_refused_on_delta(graph: Graph, resource: str):
    r = await graph.get(f"/{resource}/delta?$top=2")
    assert r.status_code == 400 and r.json()["error"]["code"] == "Request_UnsupportedQuery"
    assert "maxpagesize" in r.json()["error"]["message"]
    paged = await graph.get(f"/{resource}/delta", Prefer="odata.maxpagesize=1")
    assert paged.status_code == 200 and len(paged.json()["value"]) == 1 and "@odata.nextLink" in paged.json()


async def test_delta_reports_only_changes_of_the_selected_properties(sb: Sandbox, admin: AdminClient, graph: Graph):
    names_only = await latest(graph, "users", "id,displayName")
    enabled = await latest(graph, "users", "id,accountEnabled")
    groups_members = await latest(graph, "groups", "id,members")
    groups_names = await latest(graph, "groups", "id,displayName")
    await admin.disable_user("bob@contoso.com")
    await admin.rename_group("Analysts", "Business Analysts")
    await admin.add_member("Spark Team", "erin@contoso.com")
    assert (await graph.round(names_only))[0] == []
    assert (await graph.round(enabled))[0] == [{"id": uid(sb, "bob@contoso.com"), "accountEnabled": False}]
    assert [g["id"] for g in (await graph.round(groups_members))[0]] == [gid(sb, "Spark Team")]
    assert (await graph.round(groups_names))[0] == [
        {"id": gid(sb, "Business Analysts"), "displayName": "Business Analysts"}
    ]


async def test_service_principals_disabled_enabled_and_deleted_through_admin_and_delta(
    sb: Sandbox, admin: AdminClient, graph: Graph
):
    etl = sp_id(sb)
    link = await latest(graph, "servicePrincipals", "id,accountEnabled")
    assert (await admin.disable_service_principal(ETL))["accountEnabled"] is False
    got = await graph.get(f"/servicePrincipals/{etl}?$select=id,accountEnabled")
    assert got.json()["accountEnabled"] is False
    items, link = await graph.round(link)
    assert items == [{"id": etl, "accountEnabled": False}]
    assert (await admin.enable_service_principal(etl))["accountEnabled"] is True
    items, link = await graph.round(link)
    assert items == [{"id": etl, "accountEnabled": True}]
    members = await graph.get(f"/groups/{gid(sb, 'Data Engineers')}/members?$select=id")
    assert etl in {m["id"] for m in members.json()["value"]}
    assert (await admin.delete_service_principal(ETL))["id"] == etl
    items, link = await graph.round(link)
    assert items == [{"id": etl, "@removed": {"reason": "changed"}}]
    assert (await graph.get(f"/servicePrincipals/{etl}")).status_code == 404
    members = await graph.get(f"/groups/{gid(sb, 'Data Engineers')}/members?$select=id")
    assert etl not in {m["id"] for m in members.json()["value"]}, "a deleted principal leaves its groups"
    with pytest.raises(AdminError) as missing:
        await admin.disable_service_principal(ETL)
    assert missing.value.status == 404
    # a full round lists every service principal; the operator's own app is one of them
    everything, _ = await graph.round("/servicePrincipals/delta?$select=id,displayName")
    assert {s["id"] for s in everything} == set(sb.state.directory.service_principals)


async def test_an_omit_fault_leaves_account_enabled_out_of_transitive_members(
    sb: Sandbox, admin: AdminClient, graph: Graph
):
    path = f"/groups/{gid(sb, 'Data Engineers')}/transitiveMembers?$select=id,accountEnabled"
    before = (await graph.get(path)).json()["value"]
    assert all("accountEnabled" in m for m in before if m["@odata.type"] != "#microsoft.graph.group")
    rule = await admin.inject_fault(
        {
            "service": "graph",
            "operation": "transitiveMembers",
            "match": {"group": "Data Engineers"},
            "kind": "omit",
            "omit": ["accountEnabled"],
        }
    )
    assert rule["omit"] == ["accountEnabled"] and rule["match"]["group"] == gid(sb, "Data Engineers")
    after = (await graph.get(path)).json()["value"]
    assert [m["id"] for m in after] == [m["id"] for m in before]
    assert not [m for m in after if "accountEnabled" in m]
    one = (await graph.get(f"/users/{uid(sb, 'bob@contoso.com')}?$select=id,accountEnabled")).json()
    assert one["accountEnabled"] is True, "an explicit read still says it"
    for bad in (
        {"service": "graph", "kind": "omit"},
        {"service": "synapse", "kind": "omit", "omit": ["x"]},
        {"service": "graph", "status": 429, "omit": ["x"]},
    ):
        with pytest.raises(AdminError):
            await admin.inject_fault(bad)


# ---------------------------------------------------------------- user lookups: mail, UPN prefixes, without case


def users_filter(condition: str) -> str:
    from urllib.parse import quote

    return f"/users?$filter={quote(condition, safe='')}&$select=id,userPrincipalName,mail,accountEnabled&$top=5"


async def test_users_are_found_by_mail_and_upn_prefix_without_case_alone_and_batched(sb: Sandbox, graph: Graph):
    guest = (await sb.admin.add_user("bob_fabrikam.com#EXT#@contoso.onmicrosoft.com", mail="Bob@Fabrikam.com"))["id"]
    one = (await sb.admin.add_user("sam.one@contoso.com", mail="team@contoso.com"))["id"]
    two = (await sb.admin.add_user("sam.two@contoso.com", mail="TEAM@contoso.com"))["id"]
    asks = {
        "mail eq 'bob@FABRIKAM.com'": [guest],
        "mail eq 'team@contoso.com'": [one, two],
        "startswith(userPrincipalName,'BOB_fabrikam.com#ext#@')": [guest],
        "startswith(userPrincipalName,'sam.')": [one, two],
        "userPrincipalName eq 'ALICE@contoso.com'": [uid(sb, "alice@contoso.com")],
        "mail eq 'nobody@contoso.com'": [],
        "startswith(userPrincipalName,'zz')": [],
    }
    for condition, want in asks.items():
        r = await graph.get(users_filter(condition))
        assert r.status_code == 200, r.text
        assert [u["id"] for u in r.json()["value"]] == want, condition
    r, answers = await graph.batch([users_filter(c) for c in asks])
    assert r.status_code == 200
    assert [[u["id"] for u in answers[str(i)]["body"]["value"]] for i in range(len(asks))] == list(asks.values())
    (found,) = answers["0"]["body"]["value"]
    assert found == {
        "id": guest,
        "userPrincipalName": "bob_fabrikam.com#EXT#@contoso.onmicrosoft.com",
        "mail": "Bob@Fabrikam.com",
        "accountEnabled": True,
    }


async def test_mail_and_upn_changes_are_indexed_and_reported_by_users_delta(sb: Sandbox, graph: Graph):
    _, link = await graph.round("/users/delta?$select=id,accountEnabled,userPrincipalName,mail&$deltatoken=latest")
    alice = uid(sb, "alice@contoso.com")
    await sb.admin.update_user("alice@contoso.com", mail="Alice.A@contoso.com")
    await sb.admin.update_user("bob@contoso.com", user_principal_name="robert@contoso.com")
    items, link = await graph.round(link)
    assert {(u["id"], u["userPrincipalName"], u["mail"]) for u in items} == {
        (alice, "alice@contoso.com", "Alice.A@contoso.com"),
        (uid(sb, "robert@contoso.com"), "robert@contoso.com", None),
    }
    assert [u["id"] for u in (await graph.get(users_filter("mail eq 'alice.a@contoso.com'"))).json()["value"]] == [
        alice
    ]
    assert (await graph.get(users_filter("startswith(userPrincipalName,'bob@')"))).json()["value"] == []
    assert (await graph.get(users_filter("userPrincipalName eq 'Robert@contoso.com'"))).json()["value"]
    await sb.admin.update_user("alice@contoso.com", mail="")
    assert (await graph.get(users_filter("mail eq 'alice.a@contoso.com'"))).json()["value"] == []
    assert [u["mail"] for u in (await graph.round(link))[0]] == [None]
    with pytest.raises(AdminError) as taken:
        await sb.admin.update_user("alice@contoso.com", user_principal_name="ROBERT@contoso.com")
    assert taken.value.status == 409
    _, only_state = await graph.round("/users/delta?$select=id,accountEnabled&$deltatoken=latest")
    await sb.admin.update_user("alice@contoso.com", mail="a@contoso.com")
    assert (await graph.round(only_state))[0] == [], "a mail change is not an accountEnabled change"


def test_user_lookups_by_mail_and_upn_prefix_without_case():
    # How fast they stay at 100k users is a benchmark's question, not a test's (no wall-clock limits here).
    from synapse_scim_sandbox.directory import Directory
    from synapse_scim_sandbox.graph_objects import GETTERS, USER
    from synapse_scim_sandbox.odata import parse_filter

    d = Directory()
    for i in range(10_000):
        d.add_user(
            f"00000000-0000-4000-8000-{i:012d}", f"user{i}@synthetic.example", f"User {i}", mail=f"u{i}@mail.example"
        )
    d.add_user("00000000-0000-4000-9000-000000000001", "x_y.com#EXT#@synthetic.example", "X", mail="U5@mail.example")
    assert [u.user_principal_name for u in d.users_by_mail("u5@MAIL.example")] == [
        "user5@synthetic.example",
        "x_y.com#EXT#@synthetic.example",
    ]
    assert [u.id for u in d.users_with_upn_prefix("X_Y.com#ext#@")] == ["00000000-0000-4000-9000-000000000001"]
    assert len(d.users_with_upn_prefix("user999")) == 11
    flt = parse_filter("startswith(userPrincipalName,'x_y.com#ext#@')", GETTERS[USER])
    assert flt.prefix == ("userPrincipalName", "x_y.com#ext#@") and flt.lookup is None
    assert parse_filter("mail eq 'a@b'", GETTERS[USER]).lookup == ("mail", ("a@b",))
    d.delete_user("00000000-0000-4000-8000-000000000005")
    assert [u.user_principal_name for u in d.users_by_mail("u5@mail.example")] == ["x_y.com#EXT#@synthetic.example"]
    assert d.users_with_upn_prefix("user5@") == []

"""Fault rules (count, skip, match, rate), latency, counters and the request log, in each service's
own error shape. Raw HTTP here: these tests are about the sandbox's fault machinery, the SDK
reactions are covered in test_graph / test_synapse."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest

from support.sandbox import gid
from synapse_scim_sandbox import AdminClient, AdminError, Sandbox
from synapse_scim_sandbox.faults import FaultInjector, FaultRuleError
from synapse_scim_sandbox.tls import client_context

from .conftest import GRAPH_SCOPE, secret_credential


@pytest.fixture
async def http(sb: Sandbox) -> AsyncIterator[Any]:
    async with secret_credential(sb) as cred:
        token = (await cred.get_token(GRAPH_SCOPE)).token
    ssl = client_context(sb.ca_path)
    async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {token}"}) as session:

        async def get(path: str) -> tuple[int, Any, Any]:
            async with session.get(sb.graph_url + path, ssl=ssl) as r:
                return r.status, await r.json(), r.headers

        yield get


async def test_next_n_calls_of_one_operation_for_one_group(sb: Sandbox, admin: AdminClient, http: Any) -> None:
    await admin.inject_fault(
        {
            "service": "graph",
            "operation": "transitiveMembers",
            "match": {"group": "Analysts"},
            "status": 429,
            "retry_after": 7,
            "count": 3,
        }
    )
    other = f"/groups/{gid(sb, 'Spark Team')}/transitiveMembers"
    target = f"/groups/{gid(sb, 'Analysts')}/transitiveMembers"
    assert (await http(other))[0] == 200
    assert (await http(f"/groups/{gid(sb, 'Analysts')}/members"))[0] == 200
    for _ in range(3):
        status, body, headers = await http(target)
        assert status == 429 and headers["Retry-After"] == "7"
        assert body["error"]["code"] == "TooManyRequests" and body["error"]["innerError"]["request-id"]
    assert (await http(target))[0] == 200
    counters = await admin.counters()
    assert counters["graph.transitiveMembers.429"] == 3 and counters["graph.transitiveMembers.200"] == 2
    assert counters["graph.members.200"] == 1


async def test_skip_and_unlimited_rules_and_removal(sb: Sandbox, admin: AdminClient, http: Any) -> None:
    rule = await admin.inject_fault(
        {"service": "graph", "operation": ["getGroup", "listGroups"], "status": 503, "skip": 2}
    )
    path = f"/groups/{gid(sb, 'Analysts')}"
    assert [(await http(path))[0] for _ in range(4)] == [200, 200, 503, 503]
    status, body, headers = await http("/groups")
    assert status == 503 and body["error"]["code"] == "serviceNotAvailable" and "Retry-After" not in headers
    assert [r["hits"] for r in await admin.faults()] == [3]
    await admin.remove_fault(rule["id"])
    assert (await http(path))[0] == 200


async def test_rate_faults_are_reproducible_with_a_seed(sb: Sandbox, admin: AdminClient, http: Any) -> None:
    async def run() -> list[int]:
        await admin.clear_faults()
        await admin.inject_fault({"service": "graph", "rate": 0.3, "kinds": ["429", "500", "503"], "seed": 42})
        return [(await http("/groups"))[0] for _ in range(40)]

    first, second = await run(), await run()
    assert first == second
    assert 4 <= sum(s != 200 for s in first) <= 24 and {s for s in first} <= {200, 429, 500, 503}


async def test_timeout_fault_holds_then_answers_504(sb: Sandbox, admin: AdminClient, http: Any) -> None:
    await admin.inject_fault({"service": "graph", "operation": "getGroup", "kind": "timeout", "hold": 0.2, "count": 1})
    status, body, _ = await http(f"/groups/{gid(sb, 'Analysts')}")
    assert status == 504 and body["error"]["code"] == "gatewayTimeout"
    log = await admin.request_log(service="graph", status="timeout")
    assert log[0]["fault"] == "timeout" and log[0]["duration_ms"] >= 200


async def test_reset_fault_drops_the_connection(sb: Sandbox, admin: AdminClient, http: Any) -> None:
    await admin.inject_fault({"service": "graph", "operation": "listGroups", "kind": "reset", "count": 2})
    with pytest.raises(aiohttp.ClientError):
        await http("/groups")
    assert (await http("/groups"))[0] == 200
    assert (await admin.counters())["graph.listGroups.reset"] == 2


async def test_delay_fault_and_latency(sb: Sandbox, admin: AdminClient, http: Any) -> None:
    await admin.inject_fault(
        {"service": "graph", "operation": "listGroups", "kind": "delay", "delay": 0.15, "count": 1}
    )
    assert (await http("/groups"))[0] == 200
    await admin.set_latency(graph=0.1)
    assert (await http("/groups"))[0] == 200
    await admin.set_latency({"graph": 0.0})
    log = await admin.request_log(service="graph", operation="listGroups")
    assert log[0]["fault"] == "delay" and log[0]["duration_ms"] >= 150
    assert log[1]["fault"] is None and log[1]["duration_ms"] >= 100


async def test_login_and_synapse_faults_use_their_own_shapes(sb: Sandbox, admin: AdminClient) -> None:
    await admin.inject_fault({"service": "login", "operation": "token", "status": 503, "count": 1})
    await admin.inject_fault({"service": "synapse", "status": 429, "count": 1})
    ssl = client_context(sb.ca_path)
    async with aiohttp.ClientSession() as session:
        async with session.post(f"{sb.authority_host}/{sb.tenant_id}/oauth2/v2.0/token", data={}, ssl=ssl) as r:
            body = await r.json()
            assert r.status == 503 and body["error"] == "temporarily_unavailable" and body["error_codes"]
        async with session.get(f"{sb.workspace_endpoint('analytics')}/rbacScopes", ssl=ssl) as r:
            assert r.status == 429 and (await r.json()) == {
                "error": {"code": "TooManyRequests", "message": ("Too many requests. Please try again later.")}
            }


async def test_request_log_counters_reset_and_wait(sb: Sandbox, admin: AdminClient, http: Any) -> None:
    await http("/groups")
    await http("/nonsense")
    log = await admin.request_log()
    assert [(e["service"], e["operation"], e["status"]) for e in log][-2:] == [
        ("graph", "listGroups", 200),
        ("graph", "unknown", 400),
    ]
    assert log[-2]["client_id"] == sb.client("synapse-scim-operator").client_id
    since = log[-1]["seq"]
    await http("/groups")
    assert [e["seq"] for e in await admin.request_log(since=since)] == [since + 1]
    assert len(await admin.wait_for_requests("graph", "listGroups", count=2)) == 2
    assert await admin.wait_for_requests("graph", "getUser", count=1, timeout=0.05) == []
    await admin.reset_counters()
    assert await admin.counters() == {} and await admin.request_log() == []


def test_rule_validation() -> None:
    faults = FaultInjector()
    for bad, message in [
        ({"service": "cosmos", "status": 429}, "service"),
        ({"service": "graph", "operation": "frobnicate", "status": 429}, "unknown operation"),
        ({"service": "graph"}, "needs 'status'"),
        ({"service": "graph", "kind": "explode"}, "unknown fault kind"),
        ({"service": "graph", "status": 429, "rate": 2}, "rate"),
        ({"service": "graph", "status": 429, "count": 0}, "count"),
        ({"service": "graph", "status": 429, "colour": "red"}, "unknown fault rule keys"),
    ]:
        with pytest.raises(FaultRuleError, match=message):
            faults.add(bad)


async def test_admin_rejects_bad_rules(admin: AdminClient) -> None:
    with pytest.raises(AdminError) as info:
        await admin.inject_fault({"service": "synapse", "operation": "transitiveMembers", "status": 429})
    assert info.value.status == 400 and "unknown operation" in info.value.message
    with pytest.raises(AdminError) as info:
        await admin.inject_fault({"service": "graph", "status": 429, "match": {"group": "No Such Group"}})
    assert info.value.status == 404

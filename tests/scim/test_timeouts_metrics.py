"""The endpoint's request timeouts (a slow client holds no worker; a slow store answers 503 while its
write finishes) and its metrics."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import pytest
import urllib3
from aiohttp import web
from kubernetes.client.exceptions import ApiException

from synapse_scim import metrics
from synapse_scim.adapters.scim.server import Provider, Registry, ServerSettings, TokenBucket, make_app
from synapse_scim.core.scim.errors import VersionConflict
from synapse_scim.core.scim.memory import MemoryStore
from synapse_scim.core.scim.resources import Kind
from synapse_scim.core.scim.service import ScimService

from .test_http import call

TOKEN = "timeouts-token-0123456789abcdef0123456789"


class SlowStore(MemoryStore):
    delay = 0.0

    async def create(self, kind: Kind, attributes: dict[str, Any], members: tuple[str, ...] = ()) -> Any:
        await asyncio.sleep(self.delay)
        return await super().create(kind, attributes, members)


@pytest.fixture
async def served() -> AsyncIterator[tuple[str, SlowStore]]:
    store = SlowStore()
    registry = Registry()
    registry.add(Provider("ns", "slow", ScimService(store), lambda: [TOKEN], TokenBucket(1000, 1000)))
    settings = ServerSettings(body_timeout=0.2, request_timeout=0.6)
    runner = web.AppRunner(make_app(registry, settings))
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    try:
        yield f"http://127.0.0.1:{runner.addresses[0][1]}", store
    finally:
        await runner.cleanup()


async def test_a_slow_operation_is_503_and_its_write_still_lands(served: tuple[str, SlowStore]) -> None:
    origin, store = served
    store.delay = 1.5
    status, headers, body = await call("POST", f"{origin}/scim/v2/ns/slow/Users", TOKEN, {"userName": "late"})
    assert status == 503 and headers["Retry-After"] == "5" and body["status"] == "503"
    await asyncio.sleep(1.5)
    assert [r.attributes["userName"] for r in await store.scan(Kind.USER)] == ["late"]  # not cut in the middle


async def test_a_body_that_does_not_arrive_is_408(served: tuple[str, SlowStore]) -> None:
    origin, _ = served
    host, port = origin.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    writer.write(
        (
            "POST /scim/v2/ns/slow/Users HTTP/1.1\r\n"
            f"Host: {host}\r\nAuthorization: Bearer {TOKEN}\r\n"
            "Content-Type: application/scim+json\r\nContent-Length: 100\r\n\r\n{"
        ).encode()
    )
    await writer.drain()
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)  # sent nothing more: answered anyway
    assert head.startswith(b"HTTP/1.1 408")
    writer.close()


def _sample(name: str, **labels: str) -> float:
    value = metrics.REGISTRY.get_sample_value(name, labels)
    return value or 0.0


async def test_requests_are_counted_by_provider_resource_method_and_code(served: tuple[str, SlowStore]) -> None:
    origin, _ = served
    ok = {"provider": "ns/slow", "resource": "Users", "method": "POST", "code": "201"}
    unauthorized = {"provider": "unknown", "resource": "Groups", "method": "GET", "code": "401"}
    before = (
        _sample("synapse_scim_scim_requests_total", **ok),
        _sample("synapse_scim_scim_requests_total", **unauthorized),
    )
    latency = {"provider": "ns/slow", "resource": "Users", "method": "POST"}
    observed = _sample("synapse_scim_scim_request_duration_seconds_count", **latency)
    status, _, body = await call("POST", f"{origin}/scim/v2/ns/slow/Users", TOKEN, {"userName": "counted"})
    assert status == 201, json.dumps(body)
    status, _, _ = await call("GET", f"{origin}/scim/v2/ns/nobody/Groups", TOKEN)
    assert status == 401
    assert _sample("synapse_scim_scim_requests_total", **ok) == before[0] + 1
    assert _sample("synapse_scim_scim_requests_total", **unauthorized) == before[1] + 1
    assert _sample("synapse_scim_scim_request_duration_seconds_count", **latency) == observed + 1
    # No id in any label: a resource's path is its type.
    status, _, _ = await call("GET", f"{origin}/scim/v2/ns/slow/Users/{'0' * 8}", TOKEN)
    assert status == 404
    assert (
        _sample("synapse_scim_scim_requests_total", provider="ns/slow", resource="Users", method="GET", code="404") >= 1
    )


async def test_a_body_sent_in_pieces_is_read_whole(served: tuple[str, SlowStore]) -> None:
    origin, store = served
    host, port = origin.removeprefix("http://").split(":")
    body = json.dumps({"userName": "pieces", "displayName": "x" * 2000}).encode()
    reader, writer = await asyncio.open_connection(host, int(port))
    writer.write(
        (
            "POST /scim/v2/ns/slow/Users HTTP/1.1\r\n"
            f"Host: {host}\r\nAuthorization: Bearer {TOKEN}\r\nConnection: close\r\n"
            f"Content-Type: application/scim+json\r\nContent-Length: {len(body)}\r\n\r\n"
        ).encode()
    )
    for start in range(0, len(body), 500):  # four segments, a little apart
        writer.write(body[start : start + 500])
        await writer.drain()
        await asyncio.sleep(0.02)
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
    assert head.startswith(b"HTTP/1.1 201"), head
    writer.close()
    assert [r.attributes["userName"] for r in await store.scan(Kind.USER)] == ["pieces"]


async def test_a_failing_store_is_a_scim_500_not_a_stack_trace(served: tuple[str, SlowStore]) -> None:
    origin, store = served

    async def broken(kind: Kind) -> Any:
        raise RuntimeError("the API server is away")

    store.scan = broken  # type: ignore[method-assign]
    status, headers, body = await call("GET", f"{origin}/scim/v2/ns/slow/Users", TOKEN)
    assert status == 500 and headers["Content-Type"] == "application/scim+json"
    assert body["status"] == "500" and "API server" not in body["detail"]  # the cause is in the log only


@pytest.mark.parametrize(
    "failure",
    [
        urllib3.exceptions.MaxRetryError(None, "/api", reason=ConnectionRefusedError(111, "Connection refused")),
        urllib3.exceptions.ReadTimeoutError(None, "/api", "Read timed out."),
        ApiException(status=503, reason="Service Unavailable"),
        ApiException(status=429, reason="Too Many Requests"),
    ],
    ids=["refused", "read-timeout", "503", "429"],
)
async def test_a_store_that_cannot_reach_the_api_server_is_a_503_to_retry(
    served: tuple[str, SlowStore], failure: Exception
) -> None:
    """The Kubernetes API away (restarted, paused, overloaded): the identity provider is told to retry."""
    origin, store = served

    async def away(kind: Kind) -> Any:
        raise failure

    store.scan = away  # type: ignore[method-assign]
    status, headers, body = await call("GET", f"{origin}/scim/v2/ns/slow/Users", TOKEN)
    assert status == 503 and headers["Retry-After"] == "5" and body["status"] == "503"


async def test_a_store_refused_for_want_of_permission_stays_a_500(served: tuple[str, SlowStore]) -> None:
    origin, store = served

    async def forbidden(kind: Kind) -> Any:
        raise ApiException(status=403, reason="Forbidden")

    store.scan = forbidden  # type: ignore[method-assign]
    status, _, body = await call("GET", f"{origin}/scim/v2/ns/slow/Users", TOKEN)
    assert status == 500 and body["status"] == "500"


class ConflictOnceStore(MemoryStore):
    """Its first update takes `delay` seconds and then loses to another writer (VersionConflict), as a write
    to a paused API server that resumes after a rival's write landed."""

    delay = 1.0

    def __init__(self) -> None:
        super().__init__()
        self.updates = 0

    async def update(self, record: Any, attributes: dict[str, Any], members: Any, *, expected_version: str) -> Any:
        self.updates += 1
        if self.updates == 1:
            await asyncio.sleep(self.delay)
            raise VersionConflict(record.id)
        return await super().update(record, attributes, members, expected_version=expected_version)


async def test_a_write_whose_client_timed_out_is_not_applied_again_on_a_newer_version() -> None:
    """The client was answered 503 and retries (maybe at another replica) and moves on: a re-application of
    its old request on a fresher version could undo a newer one (a reactivation after a deactivation)."""
    store = ConflictOnceStore()
    registry = Registry()
    registry.add(Provider("ns", "slow", ScimService(store), lambda: [TOKEN], TokenBucket(1000, 1000)))
    runner = web.AppRunner(make_app(registry, ServerSettings(body_timeout=0.2, request_timeout=0.4)))
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    try:
        origin = f"http://127.0.0.1:{runner.addresses[0][1]}"
        user = await store.create(Kind.USER, {"userName": "leaver", "active": True})
        body = {
            "schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
            "Operations": [{"op": "replace", "value": {"active": False}}],
        }
        status, _, _ = await call("PATCH", f"{origin}/scim/v2/ns/slow/Users/{user.id}", TOKEN, body)
        assert status == 503
        await asyncio.sleep(store.delay + 0.3)  # the first attempt lost; nothing may try again now
        assert store.updates == 1, "the request was applied again after its client had been answered"
        assert (await store.get(Kind.USER, user.id)).attributes.get("active") is True
    finally:
        await runner.cleanup()

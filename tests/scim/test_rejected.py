"""The requests a provider's endpoint rejected: the sliding window (an injected clock, no sleeps), the
reason of each answer, what the app counts, and status.rejected written by two replicas without a fight."""

from __future__ import annotations

import time
from typing import Any

from synapse_scim.adapters.scim.server import (
    OTHER_REASON,
    REJECTED_WINDOW,
    Provider,
    RejectionWindow,
    rejection_reason,
)
from synapse_scim.controller.scim import ScimEndpoint, ScimSettings, Served, rejected_summary
from synapse_scim.core.scim.errors import error_body
from synapse_scim.core.scim.memory import MemoryStore
from synapse_scim.core.scim.service import ScimService

from .conftest import OKTA_TOKEN, Endpoint
from .test_http import call


class Clock:
    def __init__(self, now: float = 1_800_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def _figures(window: RejectionWindow) -> dict[str, int]:
    return {each.reason: each.count for each in window.snapshot()}


# -- the window -------------------------------------------------------------------------------------


def test_the_window_counts_by_reason_the_last_hour_and_keeps_the_last_time() -> None:
    clock = Clock()
    window = RejectionWindow(clock)
    start = clock.now
    for _ in range(3):
        window.add("401 invalid token")
    clock.now += 1800
    window.add("400 invalidFilter")
    window.add("401 invalid token")
    found = window.snapshot()
    assert [(each.reason, each.count) for each in found] == [("401 invalid token", 4), ("400 invalidFilter", 1)]
    assert found[0].last == start + 1800 and found[1].last == start + 1800
    assert window.total() == 5
    # An hour and a minute after the first three: they left the window, the later two stay.
    clock.now = start + REJECTED_WINDOW + 60
    assert _figures(window) == {"401 invalid token": 1, "400 invalidFilter": 1}
    # Another hour: nothing left, and the reasons are forgotten.
    clock.now += REJECTED_WINDOW
    assert window.snapshot() == [] and window.total() == 0 and window.reasons == {}


def test_the_window_slides_minute_by_minute() -> None:
    clock = Clock(60_000.0)  # a bucket boundary
    window = RejectionWindow(clock)
    for minute in range(120):
        clock.now = 60_000.0 + minute * 60
        window.add("429 rate limited")
        assert window.total() == min(minute + 1, 60)
    # Buckets are reused in place: memory does not grow with the rate or the time.
    buckets = window.reasons["429 rate limited"]
    assert len(buckets.counts) == len(buckets.numbers) == 60


def test_memory_is_bounded_reasons_past_the_limit_count_as_other() -> None:
    clock = Clock()
    window = RejectionWindow(clock, max_reasons=3)
    for each in ("a", "b", "c", "d", "e"):
        window.add(each)
    for _ in range(10_000):
        window.add("a")
    assert _figures(window) == {"a": 10_001, "b": 1, "c": 1, OTHER_REASON: 2}
    assert window.total() == 10_005
    # Once the old reasons left the window, a new one has room again.
    clock.now += REJECTED_WINDOW + 60
    window.add("f")
    assert _figures(window) == {"f": 1}


def test_the_reason_comes_from_the_answer() -> None:
    def body(status: int, scim_type: str | None = None) -> bytes:
        import json

        return json.dumps(error_body(status, "detail", scim_type)).encode()

    assert rejection_reason(401, body(401)) == "401 invalid token"
    assert rejection_reason(429, body(429)) == "429 rate limited"
    assert rejection_reason(413, body(413)) == "413 body too large"
    assert rejection_reason(404, body(404)) == "404 not found"
    assert rejection_reason(415, body(415, "invalidSyntax")) == "415 invalidSyntax"
    assert rejection_reason(400, body(400, "invalidFilter")) == "400 invalidFilter"
    assert rejection_reason(400, body(400, "invalidSyntax")) == "400 invalidSyntax"
    assert rejection_reason(409, body(409, "uniqueness")) == "409 uniqueness"
    assert rejection_reason(409, body(409)) == "409 conflict"
    assert rejection_reason(400, None) == "400 bad request"
    assert rejection_reason(400, b"not json") == "400 bad request"
    assert rejection_reason(400, b'{"scimType": "a very long value with spaces"}') == "400 bad request"
    assert rejection_reason(599, None) == "599 error"
    assert rejection_reason(503, None) == "503 timeout"


# -- the app counts what it rejects ---------------------------------------------------------------


async def test_the_endpoint_counts_each_rejection_against_its_provider(endpoint: Endpoint) -> None:
    okta = endpoint.registry.get("data-platform", "okta")
    entra = endpoint.registry.get("data-platform", "entra")
    assert okta is not None and entra is not None
    base = endpoint.base()
    assert (await call("GET", base + "/Users", "wrong"))[0] == 401
    assert (await call("GET", base + "/Users", None))[0] == 401
    assert (await call("GET", base + "/Users?filter=userName%20zz%20%22x%22"))[0] == 400
    assert (await call("POST", base + "/Users", raw=b"x" * (64 * 1024 + 1)))[0] == 413
    assert (await call("POST", base + "/Users", raw=b"{not json"))[0] == 400
    assert (await call("GET", base + "/Users/no-such-id"))[0] == 404
    assert (await call("POST", base + "/Users", body={"userName": "ada@example.com"}))[0] == 201
    assert (await call("POST", base + "/Users", body={"userName": "ADA@example.com"}))[0] == 409
    assert (await call("GET", base + "/Users"))[0] == 200  # an answer that is no rejection is not counted
    # A URL naming no provider has nobody to count against.
    assert (await call("GET", endpoint.base("data-platform", "nobody") + "/Users"))[0] == 401
    assert _figures(okta.rejected) == {
        "401 invalid token": 2,
        "400 invalidFilter": 1,
        "413 body too large": 1,
        "400 invalidSyntax": 1,
        "404 not found": 1,
        "409 uniqueness": 1,
    }
    assert entra.rejected.snapshot() == []


# -- status.rejected ---------------------------------------------------------------------------------


class FakeStore:
    is_ready = True

    async def count(self, kind: Any) -> int:
        return 0


class NoProblem:
    problem = None


def _replica(name: str, obj: dict[str, Any], clock: Clock) -> tuple[ScimEndpoint, Served]:
    endpoint = ScimEndpoint.__new__(ScimEndpoint)
    endpoint.settings = ScimSettings(port=8443, service_host="scim.svc", status_interval=30, replica=name)
    provider = Provider("ns", "okta", ScimService(MemoryStore()), lambda: [OKTA_TOKEN])
    provider.rejected = RejectionWindow(clock)
    return endpoint, Served(provider, FakeStore(), NoProblem(), obj)  # type: ignore[arg-type]


async def _tick(replicas: list[tuple[ScimEndpoint, Served]], obj: dict[str, Any], clock: Clock) -> int:
    """Each replica in turn as _write_status does it: computes, writes when different. The writes made."""
    writes = 0
    for endpoint, served in replicas:
        served.obj = obj
        status = await endpoint.desired_status(served, now=clock.now)
        if status != (obj.get("status") or {}):
            obj["status"] = status
            writes += 1
    return writes


async def test_two_replicas_each_write_their_own_entry_and_the_sum_without_a_fight() -> None:
    clock = Clock()
    obj: dict[str, Any] = {"metadata": {"namespace": "ns", "name": "okta", "generation": 1}, "status": {}}
    a, b = _replica("pod-a", obj, clock), _replica("pod-b", obj, clock)
    await _tick([a, b], obj, clock)
    assert obj["status"]["rejected"] == [] and obj["status"]["rejectedTotal"] == 0
    assert "rejectedByReplica" not in obj["status"]

    for _ in range(3):
        a[1].provider.rejected.add("401 invalid token")
    b[1].provider.rejected.add("401 invalid token")
    b[1].provider.rejected.add("400 invalidFilter")
    assert await _tick([a, b], obj, clock) == 2
    status = obj["status"]
    assert [entry["pod"] for entry in status["rejectedByReplica"]] == ["pod-a", "pod-b"]
    assert status["rejectedTotal"] == 5
    last = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(clock.now))
    assert status["rejected"] == [
        {"reason": "401 invalid token", "count": 4, "lastTime": last},
        {"reason": "400 invalidFilter", "count": 1, "lastTime": last},
    ]
    # Nothing new: neither replica writes, in either order.
    assert await _tick([a, b], obj, clock) == 0
    assert await _tick([b, a], obj, clock) == 0

    # New rejections within the status interval are not written yet (no write per request)...
    a[1].provider.rejected.add("429 rate limited")
    clock.now += 10
    assert await _tick([a, b], obj, clock) == 0
    # ...and are once the interval has passed: by the replica that saw them, once.
    clock.now += 20
    assert await _tick([a, b], obj, clock) == 1
    assert obj["status"]["rejectedTotal"] == 6
    assert await _tick([b, a], obj, clock) == 0

    # pod-b goes away: its entry stays until an hour after it last refreshed it; pod-a's counts expire.
    replicas = [a]
    clock.now += REJECTED_WINDOW + 31
    await _tick(replicas, obj, clock)
    assert obj["status"]["rejectedTotal"] == 0 and "rejectedByReplica" not in obj["status"]
    assert await _tick(replicas, obj, clock) == 0


def test_the_sum_adds_up_counts_by_reason_and_keeps_the_latest_time() -> None:
    entries = [
        {"pod": "a", "time": "t", "total": 12, "rejected": [{"reason": "x", "count": 2, "lastTime": "2026-01-01"}]},
        {"pod": "b", "time": "t", "total": 3, "rejected": [{"reason": "x", "count": 3, "lastTime": "2026-02-01"}]},
    ]
    assert rejected_summary(entries) == ([{"reason": "x", "count": 5, "lastTime": "2026-02-01"}], 15)

"""The endpoint under generated requests (support/scim_fuzz.py: bodies, filters, PATCH operations, paths,
query strings, raw and deeply nested bodies): never a 5xx, never a dropped connection, never a hang, every
answer a SCIM error or resource, and a rejected request changes no stored object.

A bounded, derandomized run (the same requests every time, so CI is stable); bench/scim_fuzz.py runs
>= 10,000 over HTTPS."""

from __future__ import annotations

import json
from collections.abc import Iterator

import httpx
import pytest
from hypothesis import HealthCheck, given, settings

from support.scim_fuzz import FuzzRequest, FuzzServer, fuzz_requests, send

# Far above any answer's time here (each is a few ms): only a hang reaches it.
ANSWER_BOUND = 20.0


@pytest.fixture(scope="module")
def server() -> Iterator[FuzzServer]:
    with FuzzServer() as served:
        yield served


@pytest.fixture(scope="module")
def client() -> Iterator[httpx.Client]:
    with httpx.Client() as session:
        yield session


@settings(
    max_examples=300,
    derandomize=True,
    deadline=None,
    database=None,
    # Generated bodies are large on purpose (deep nesting): neither their size nor the time to draw them
    # is a fault of the test.
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.large_base_example],
)
@given(request=fuzz_requests())
def test_generated_requests_are_answered_and_rejections_change_nothing(
    server: FuzzServer, client: httpx.Client, request: FuzzRequest
) -> None:
    server.errors.records.clear()
    before = server.snapshot()
    outcome = send(client, server, request, ANSWER_BOUND)
    assert outcome.failure is None, outcome.failure
    assert outcome.status is not None and outcome.status < 500, (outcome.status, outcome.body[:300])
    assert not server.errors.records, server.errors.describe()
    if outcome.line_too_long:
        assert outcome.status in (400, 414), outcome.status
    elif outcome.status >= 400 and request.method != "HEAD":
        assert outcome.content_type == "application/scim+json", (outcome.status, outcome.body[:300])
        body = json.loads(outcome.body)
        assert body["schemas"] == ["urn:ietf:params:scim:api:messages:2.0:Error"], body
        assert body["status"] == str(outcome.status)
    if outcome.status >= 400:
        assert server.snapshot() == before, "a rejected request changed the store"

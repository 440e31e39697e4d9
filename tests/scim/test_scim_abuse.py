"""The endpoint under abuse, over the network (a real aiohttp server on the loopback, the operator's
runner: server.make_runner): token guessing, slow clients, 100 concurrent clients, oversized and deeply
nested bodies, one provider flooding while another is served. Each test polls or counts; none sleeps a
fixed time or asserts on the wall clock."""

from __future__ import annotations

import ast
import asyncio
import inspect
import json
import logging
import textwrap
import time
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from typing import Any

import aiohttp
import pytest

from synapse_scim.adapters.scim import server as scim_server
from synapse_scim.adapters.scim.server import (
    Provider,
    Registry,
    ServerSettings,
    TokenBucket,
    fingerprint,
    make_runner,
    matching_token,
)
from synapse_scim.core.scim.memory import MemoryStore
from synapse_scim.core.scim.resources import Kind
from synapse_scim.core.scim.service import ScimService

SCIM = "application/scim+json"
ERROR = "urn:ietf:params:scim:api:messages:2.0:Error"
TOKEN = "abuse-token-0123456789abcdef0123456789abcdef"
OTHER_TOKEN = "abuse-other-fedcba9876543210fedcba9876543210"
MAX_BODY = 64 * 1024
IDLE_TIMEOUT = 1.0
GUESS_BURST = 5


@dataclass
class Served:
    origin: str
    stores: dict[str, MemoryStore]

    def base(self, provider: str = "flooded") -> str:
        return f"{self.origin}/scim/v2/ns/{provider}"


def _frozen() -> float:
    return 0.0  # a bucket on this clock never refills: exactly its burst is let through


@pytest.fixture
async def served() -> AsyncIterator[Served]:
    stores = {"flooded": MemoryStore(), "quiet": MemoryStore()}
    registry = Registry()
    # "flooded": 20 requests and no more (a frozen clock); "quiet": no limit in the way.
    registry.add(
        Provider("ns", "flooded", ScimService(stores["flooded"]), lambda: [TOKEN], TokenBucket(1, 20, _frozen))
    )
    registry.add(Provider("ns", "quiet", ScimService(stores["quiet"]), lambda: [OTHER_TOKEN], TokenBucket(1e6, 10**6)))
    settings = ServerSettings(
        max_body=MAX_BODY, idle_timeout=IDLE_TIMEOUT, guess_rate=1e-6, guess_burst=GUESS_BURST
    )  # a guess budget that never refills within a test
    runner = make_runner(registry, settings)
    await runner.setup()
    await aiohttp.web.TCPSite(runner, "127.0.0.1", 0).start()
    try:
        yield Served(f"http://127.0.0.1:{runner.addresses[0][1]}", stores)
    finally:
        await runner.cleanup()


async def call(
    session: aiohttp.ClientSession,
    method: str,
    url: str,
    token: str | None = TOKEN,
    body: Any = None,
    raw: bytes | None = None,
) -> tuple[int, dict[str, str], Any]:
    headers = {"Content-Type": SCIM}
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
    async with session.request(method, url, data=data, headers=headers) as response:
        text = await response.text()
        return response.status, dict(response.headers), (json.loads(text) if text else None)


def assert_scim_error(status: int, headers: dict[str, str], body: Any, expected: int) -> None:
    assert status == expected, (status, body)
    assert headers["Content-Type"] == SCIM
    assert body["schemas"] == [ERROR] and body["status"] == str(expected)


# -- token guessing ----------------------------------------------------------------------------------


async def test_token_guessing_is_rate_limited_per_address_and_audited(
    served: Served, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="synapse_scim.audit")
    async with aiohttp.ClientSession() as session:
        status, _, _ = await call(session, "GET", served.base("quiet") + "/Users", OTHER_TOKEN)
        assert status == 200  # a right token takes nothing from the guess budget
        guesses = [TOKEN[:-1] + "X", "wrong", "", TOKEN, None, OTHER_TOKEN[:-1] + "0"]
        answers = [await call(session, "GET", served.base("quiet") + "/Users", guess) for guess in guesses]
        # Each guess answered 401 (TOKEN is the other provider's) until the budget is spent...
        assert [status for status, _, _ in answers[:GUESS_BURST]] == [401] * GUESS_BURST
        # ...then 429 with Retry-After, for the right token as well: no token is compared any more, so
        # the answer says nothing of what was sent.
        status, headers, body = answers[GUESS_BURST]
        assert_scim_error(status, headers, body, 429)
        assert int(headers["Retry-After"]) >= 1
        status, headers, body = await call(session, "GET", served.base("quiet") + "/Users", OTHER_TOKEN)
        assert_scim_error(status, headers, body, 429)
    audited = [r.audit for r in caplog.records if r.name == "synapse_scim.audit"]  # type: ignore[attr-defined]
    assert [a["operation"] for a in audited] == ["authenticate"] * GUESS_BURST
    assert {a["outcome"] for a in audited} == {"401"} and {a["remote"] for a in audited} == {"127.0.0.1"}
    assert {a["provider"] for a in audited} == {"ns/quiet"}
    assert audited[3]["token"] == fingerprint(TOKEN)  # recognisable: another provider's token
    assert audited[2]["token"] is None  # nothing was sent
    logged = "\n".join(r.getMessage() for r in caplog.records)
    assert TOKEN not in logged and "wrong" not in logged


def test_the_guess_limiter_remembers_a_bounded_number_of_addresses() -> None:
    # A guesser rotating its address gets a fresh budget each time, but cannot grow the server's memory.
    limiter = scim_server.GuessLimiter(rate=1e-6, burst=1, clock=_frozen)
    for n in range(scim_server.GUESS_ADDRESSES + 500):
        limiter.failed(f"10.0.{n // 256}.{n % 256}")
    assert len(limiter.buckets) == scim_server.GUESS_ADDRESSES
    assert limiter.wait("10.0.0.0") == 0  # the oldest forgotten
    assert (
        limiter.wait(f"10.0.{(scim_server.GUESS_ADDRESSES + 499) // 256}.{(scim_server.GUESS_ADDRESSES + 499) % 256}")
        > 0
    )


def test_the_token_comparison_is_constant_time_by_construction() -> None:
    """Code inspection: the presented token is hashed, and digests of equal length are compared with
    hmac.compare_digest; nothing compares tokens with == (which stops at the first differing byte)."""
    tree = ast.parse(textwrap.dedent(inspect.getsource(matching_token)))
    calls = {ast.unparse(node.func) for node in ast.walk(tree) if isinstance(node, ast.Call)}
    assert "hmac.compare_digest" in calls and "hashlib.sha256" in calls
    equalities = [
        ast.unparse(node)
        for node in ast.walk(tree)
        if isinstance(node, ast.Compare) and any(isinstance(op, (ast.Eq, ast.NotEq)) for op in node.ops)
    ]
    assert equalities == []
    authenticate = inspect.getsource(Provider.authenticate)
    assert "matching_token(" in authenticate and "==" not in authenticate


def _slower_share(compare: Callable[[str, Sequence[str]], object], near: str, far: str, tokens: list[str]) -> float:
    """The share of interleaved pairs in which checking `near` took longer than checking `far`: about
    half when their timings are alike, whatever the machine's speed or load (a sign test on paired
    samples, their order alternated so that neither always runs first)."""
    pairs, slower = 2000, 0
    clock = time.perf_counter_ns
    for n in range(pairs):
        timings = {}
        for guess in (near, far) if n % 2 else (far, near):
            started = clock()
            for _ in range(5):
                compare(guess, tokens)
            timings[guess] = clock() - started
        slower += timings[near] > timings[far]
    return slower / pairs


def _leaky(presented: str, tokens: Sequence[str]) -> str | None:
    """A comparison that stops at the first differing character: what the check below must catch."""
    for token in tokens:
        if len(presented) == len(token) and all(a == b for a, b in zip(presented, token, strict=True)):
            return token
    return None


def test_a_near_miss_takes_as_long_as_a_wrong_token() -> None:
    token = "t" * 2048
    near_miss = token[:-1] + "u"  # differs in the last character only
    wrong = "u" + token[1:]  # differs in the first
    # The check has the power to see a leak: a comparison stopping at the first difference is caught.
    assert _slower_share(_leaky, near_miss, wrong, [token]) > 0.9
    # The endpoint's comparison: near-miss and wrong alike. Not 5 standard deviations of a fair coin
    # (0.5 +- 0.056 for 2,000 pairs): that assumes independent pairs, and on a loaded machine the
    # scheduler's noise is not (a full `make test` drew 0.5975; alone it stays near 0.5). A comparison that leaks
    # the first difference draws above 0.9 (above); halfway between is where a leak starts.
    assert abs(_slower_share(matching_token, near_miss, wrong, [token]) - 0.5) < 0.2


# -- slow clients ------------------------------------------------------------------------------------


async def test_a_client_dribbling_its_headers_is_cut_off_while_others_are_served(served: Served) -> None:
    host, port = served.origin.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    head = f"GET /scim/v2/ns/quiet/Users HTTP/1.1\r\nHost: {host}\r\n" + "X-Pad: slowloris\r\n" * 500
    sent = 0
    served_meanwhile = 0
    async with aiohttp.ClientSession() as session:
        # One byte, then one whole request from another client, until the server closes the dribbler:
        # the requests pace the dribble (no sleeping), and each must be answered while it goes on.
        for byte in head.encode():
            if reader.at_eof() or writer.is_closing():
                break
            try:
                writer.write(bytes([byte]))
                await writer.drain()
            except ConnectionError:
                break
            sent += 1
            status, _, body = await call(session, "GET", served.base("quiet") + "/Users", OTHER_TOKEN)
            assert status == 200 and body["totalResults"] == 0
            served_meanwhile += 1
            if not reader.at_eof():
                # Give the loop one turn to deliver a close that is already on its way.
                await asyncio.sleep(0)
    assert sent < len(head), "the dribbling client was never cut off"
    assert served_meanwhile > 0
    # Closed without an answer (it never sent a whole request): an end of stream, or a reset when the
    # server closed with a byte of ours unread.
    try:
        rest = await reader.read()
    except ConnectionError:
        rest = b""
    assert rest == b""
    writer.close()


# -- many clients ------------------------------------------------------------------------------------


async def test_a_hundred_concurrent_clients_are_all_served(served: Served) -> None:
    async def client(n: int) -> tuple[str, str]:
        async with aiohttp.ClientSession() as session:  # a connection of its own
            status, _, created = await call(
                session, "POST", served.base("quiet") + "/Users", OTHER_TOKEN, {"userName": f"user{n}@example.com"}
            )
            assert status == 201, created
            status, _, found = await call(session, "GET", served.base("quiet") + f"/Users/{created['id']}", OTHER_TOKEN)
            assert status == 200
            return created["id"], found["userName"]

    results = await asyncio.gather(*(client(n) for n in range(100)))
    assert sorted(name for _, name in results) == sorted(f"user{n}@example.com" for n in range(100))
    assert len({resource_id for resource_id, _ in results}) == 100
    stored = await served.stores["quiet"].scan(Kind.USER)
    assert sorted(r.attributes["userName"] for r in stored) == sorted(name for _, name in results)


async def test_a_flooding_provider_is_limited_while_another_is_served(served: Served) -> None:
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as session:
        flood = [call(session, "GET", served.base("flooded") + "/Users") for _ in range(200)]
        quiet = [call(session, "GET", served.base("quiet") + "/Users", OTHER_TOKEN) for _ in range(50)]
        answers = await asyncio.gather(*flood, *quiet)
    flooded, others = answers[:200], answers[200:]
    assert sorted(status for status, _, _ in flooded) == [200] * 20 + [429] * 180  # its burst, then refused
    assert all(int(headers["Retry-After"]) >= 1 for status, headers, _ in flooded if status == 429)
    assert [status for status, _, _ in others] == [200] * 50


# -- oversized and deep bodies -----------------------------------------------------------------------


async def _nothing_stored(served: Served) -> None:
    for store in served.stores.values():
        assert await store.count(Kind.USER) == 0 and await store.count(Kind.GROUP) == 0


@pytest.mark.parametrize(
    "raw",
    [
        b"[" * 5000 + b"]" * 5000,  # past json's recursion limit (was a 500 and a traceback)
        b'{"userName": "deep@example.com", "x": ' + b"[" * 20_000 + b"]" * 20_000 + b"}",
        b"[" * 60_000,  # deep and never closed
        b'{"userName": "deep@example.com", "name": ' + b'{"a": ' * 40 + b"1" + b"}" * 41,  # parsable, too deep
    ],
)
async def test_deeply_nested_json_is_a_scim_400(served: Served, raw: bytes) -> None:
    async with aiohttp.ClientSession() as session:
        for path in ("/Users", "/.search"):
            status, headers, body = await call(session, "POST", served.base("quiet") + path, OTHER_TOKEN, raw=raw)
            assert_scim_error(status, headers, body, 400)
            assert body["scimType"] == "invalidSyntax"
    await _nothing_stored(served)


async def test_a_shallow_body_at_the_depth_limit_is_accepted(served: Served) -> None:
    # A real SCIM body is a few levels deep; the limit leaves room for extension attributes.
    value: Any = "x"
    for _ in range(scim_server.MAX_DEPTH - 1):
        value = {"v": value}
    body = {"userName": "limit@example.com", "urn:example:ext": value}
    async with aiohttp.ClientSession() as session:
        status, _, created = await call(session, "POST", served.base("quiet") + "/Users", OTHER_TOKEN, body)
    assert status == 201, created


async def test_an_oversized_body_without_a_length_is_413(served: Served) -> None:
    async def chunks() -> AsyncIterator[bytes]:
        yield b'{"userName": "big@example.com", "displayName": "'
        for _ in range(MAX_BODY // 1024 + 1):
            yield b"x" * 1024
        yield b'"}'

    headers = {"Authorization": f"Bearer {OTHER_TOKEN}", "Content-Type": SCIM}
    async with (
        aiohttp.ClientSession() as session,
        session.post(served.base("quiet") + "/Users", data=chunks(), headers=headers) as response,
    ):
        assert_scim_error(response.status, dict(response.headers), json.loads(await response.text()), 413)
    await _nothing_stored(served)


async def test_a_deeply_nested_filter_is_a_scim_400(served: Served) -> None:
    deep = "(" * 3000 + 'userName eq "a"' + ")" * 3000
    async with aiohttp.ClientSession() as session:
        status, headers, body = await call(
            session, "POST", served.base("quiet") + "/Users/.search", OTHER_TOKEN, {"filter": deep}
        )
    assert_scim_error(status, headers, body, 400)  # the filter parser's own depth limit, not a RecursionError
    assert body["scimType"] == "invalidFilter"


async def test_the_bare_base_url_is_a_scim_404(served: Served) -> None:
    # Was aiohttp's plain-text 404 (the route wanted a slash after the provider).
    async with aiohttp.ClientSession() as session:
        for url in (served.base("quiet"), served.base("quiet") + "/"):
            status, headers, body = await call(session, "GET", url, OTHER_TOKEN)
            assert_scim_error(status, headers, body, 404)


# -- odd strings -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "raw"),
    [
        ("/Users", b'{"userName": "\\ud800"}'),  # found by bench/scim_fuzz.py: was a 500 (the store's encode)
        ("/Users", b'{"userName": "ok@example.com", "\\udfff": 1}'),
        ("/Groups", b'{"displayName": "g\\ud83d"}'),
        ("/.search", b'{"filter": "userName eq \\"\\ud800\\""}'),
    ],
)
async def test_a_lone_surrogate_is_a_scim_400(served: Served, path: str, raw: bytes) -> None:
    async with aiohttp.ClientSession() as session:
        status, headers, body = await call(session, "POST", served.base("quiet") + path, OTHER_TOKEN, raw=raw)
    assert_scim_error(status, headers, body, 400)
    await _nothing_stored(served)


async def test_a_lone_surrogate_in_a_query_is_answered(served: Served) -> None:
    # Its UTF-8 form (ED A0 80) is invalid: the URL's decoding replaces it, so no surrogate reaches a filter
    # or an error's detail (which would fail to encode).
    async with aiohttp.ClientSession() as session:
        for query in ("filter=userName%20eq%20%22%ED%A0%80%22", "filter=%ED%A0%80", "attributes=%ED%A0%80"):
            url = aiohttp.client.URL(served.base("quiet") + "/Users?" + query, encoded=True)
            async with session.get(url, headers={"Authorization": f"Bearer {OTHER_TOKEN}"}) as response:
                assert response.status < 500 and response.headers["Content-Type"] == SCIM
                json.loads(await response.text())


# -- the tokens unreadable ---------------------------------------------------------------------------


async def test_a_replica_that_cannot_read_the_tokens_yet_answers_503_not_401() -> None:
    """The 1-hour soak's three 401s: a replica restarted while the API server was down could not read its
    providers' token Secrets, and refused the identity provider's valid token with 401, which tells an
    identity provider its credentials were revoked (Entra ID quarantines the app). With none read before,
    the request is a 503 with Retry-After, and not a failed guess. The Secret is read by the real
    Kubernetes client from an address where nothing listens (the API server away)."""
    from kubernetes import client

    from synapse_scim.adapters.scim.providers import SecretTokens
    from synapse_scim_sandbox.devcluster import free_port

    configuration = client.Configuration(host=f"https://127.0.0.1:{free_port()}")
    configuration.retries = 0
    with client.ApiClient(configuration) as api:
        tokens = SecretTokens(client.CoreV1Api(api), "ns", "okta-token")
        registry = Registry()
        registry.add(Provider("ns", "okta", ScimService(MemoryStore()), tokens.get, TokenBucket(1e6, 10**6)))
        settings = ServerSettings(max_body=MAX_BODY, idle_timeout=IDLE_TIMEOUT, guess_rate=1e-6, guess_burst=2)
        runner = make_runner(registry, settings)
        await runner.setup()
        await aiohttp.web.TCPSite(runner, "127.0.0.1", 0).start()
        try:
            base = f"http://127.0.0.1:{runner.addresses[0][1]}/scim/v2/ns/okta"
            async with aiohttp.ClientSession() as session:
                for _ in range(4):  # past the guess budget (2): none of them counts as a failed guess
                    status, headers, body = await call(session, "GET", base + "/Users", TOKEN)
                    assert_scim_error(status, headers, body, 503)
                    assert headers["Retry-After"] == "5" and "retry" in body["detail"]
        finally:
            await runner.cleanup()

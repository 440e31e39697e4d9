"""Generated SCIM requests (hypothesis strategies) for fuzzing the endpoint: tests/scim/test_scim_fuzz.py
runs a bounded, derandomized number of them in `make test`; bench/scim_fuzz.py runs >= 10,000 against the
endpoint over HTTPS.

The requests mix the well-formed (so that the service's deeper paths are reached: a valid user, a PATCH
whose path names a real member) with the malformed (wrong types, unknown operations, broken filters,
invalid JSON, deep nesting, odd paths and query strings). Ids are drawn from a fixed set the fuzzing
harness seeds the store with (MemoryStore(new_id=sequential_ids())), so a PATCH or PUT often names an
object that exists."""

from __future__ import annotations

import asyncio
import itertools
import json
import logging
import ssl
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

import httpx
from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError
from hypothesis import strategies as st

from synapse_scim.adapters.scim.server import Provider, Registry, ServerSettings, TokenBucket, make_runner
from synapse_scim.core.scim.memory import MemoryStore
from synapse_scim.core.scim.resources import Kind
from synapse_scim.core.scim.service import ScimService

USER_SCHEMA = "urn:ietf:params:scim:schemas:core:2.0:User"
GROUP_SCHEMA = "urn:ietf:params:scim:schemas:core:2.0:Group"
PATCH_SCHEMA = "urn:ietf:params:scim:api:messages:2.0:PatchOp"
SEARCH_SCHEMA = "urn:ietf:params:scim:api:messages:2.0:SearchRequest"
ENTERPRISE = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"

SEEDED_IDS = [f"id-{n:04d}" for n in range(1, 9)]


def sequential_ids() -> Callable[[], str]:
    """A store's id generator whose first ids are SEEDED_IDS: the ids generated requests name."""
    counter = itertools.count(1)
    return lambda: f"id-{next(counter):04d}"


@dataclass(frozen=True)
class FuzzRequest:
    method: str
    path: str  # after /scim/v2/<namespace>/<provider>, with its leading slash
    query: tuple[tuple[str, str], ...] = ()
    body: bytes | None = None
    content_type: str = "application/scim+json"
    shape: tuple[Any, ...] = field(default=(), compare=False)  # what bench/scim_fuzz.py counts as distinct

    def is_write(self) -> bool:
        return self.method in ("POST", "PUT", "PATCH", "DELETE")


def shape_of(value: Any, depth: int = 0) -> Any:
    """A body's structure without its values: its keys and the types of its leaves (bounded depth)."""
    if depth > 4:
        return "..."
    if isinstance(value, dict):
        return tuple(sorted((str(k)[:20], shape_of(v, depth + 1)) for k, v in value.items()))
    if isinstance(value, list):
        return ("list", tuple(sorted({repr(shape_of(v, depth + 1)) for v in value})))
    return type(value).__name__


def store_snapshot(store: MemoryStore) -> dict[tuple[str, str], tuple[bytes, str, tuple[str, ...]]]:
    """Every stored object, as compared before and after a rejected request (which must change none)."""
    return {
        (kind.value, record.id): (record.encoded, record.version, record.members)
        for kind, records in store._records.items()
        for record in records.values()
    }


# -- values -------------------------------------------------------------------------------------------

_odd_text = st.text(max_size=40)
_name_text = st.one_of(
    st.from_regex(r"[a-z][a-z0-9.]{0,12}@example\.com", fullmatch=True),
    st.sampled_from(["alice@example.com", "ALICE@EXAMPLE.COM", "bob@example.com", "", " ", "x" * 300]),
    _odd_text,
)
_json_leaf = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=False, allow_infinity=False),
    _odd_text,
)
json_value = st.recursive(
    _json_leaf,
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(_odd_text, inner, max_size=4)),
    max_leaves=12,
)
ids = st.one_of(st.sampled_from(SEEDED_IDS), st.sampled_from(["", "..", "%2e%2e", "id-9999", "a" * 300]), _odd_text)


def _maybe(key: str, value: st.SearchStrategy[Any]) -> st.SearchStrategy[dict[str, Any]]:
    return st.one_of(st.just({}), value.map(lambda v: {key: v}))


def _merge(parts: list[dict[str, Any]]) -> dict[str, Any]:
    merged: dict[str, Any] = {}
    for part in parts:
        merged.update(part)
    return merged


_schemas = st.one_of(
    st.just([USER_SCHEMA]),
    st.just([GROUP_SCHEMA]),
    st.just([USER_SCHEMA, ENTERPRISE]),
    st.just([]),
    json_value,
)
_email = st.fixed_dictionaries(
    {"value": _name_text},
    optional={"type": st.sampled_from(["work", "home", "other", 3]), "primary": st.one_of(st.booleans(), json_value)},
)
user_body = st.tuples(
    _maybe("schemas", _schemas),
    _maybe("userName", st.one_of(_name_text, json_value)),
    _maybe("externalId", st.one_of(_odd_text, json_value)),
    _maybe("active", st.one_of(st.booleans(), st.sampled_from(["true", "False", "yes"]), json_value)),
    _maybe("name", st.one_of(st.fixed_dictionaries({"givenName": _odd_text, "familyName": _odd_text}), json_value)),
    _maybe("emails", st.one_of(st.lists(_email, max_size=3), json_value)),
    _maybe("displayName", _odd_text),
    _maybe("id", ids),
    _maybe("meta", json_value),
    _maybe("password", _odd_text),
    _maybe(ENTERPRISE, st.one_of(st.fixed_dictionaries({"department": _odd_text}), json_value)),
    st.dictionaries(_odd_text, json_value, max_size=2),
).map(lambda parts: _merge(list(parts)))
_member = st.one_of(
    st.fixed_dictionaries(
        {"value": ids}, optional={"type": st.sampled_from(["User", "Group", 1]), "display": _odd_text}
    ),
    json_value,
)
group_body = st.tuples(
    _maybe("schemas", _schemas),
    _maybe("displayName", st.one_of(_name_text, json_value)),
    _maybe("externalId", _odd_text),
    _maybe("members", st.one_of(st.lists(_member, max_size=5), json_value)),
    st.dictionaries(_odd_text, json_value, max_size=2),
).map(lambda parts: _merge(list(parts)))

# -- filters ------------------------------------------------------------------------------------------

_attribute = st.sampled_from(
    [
        "userName",
        "USERNAME",
        "externalId",
        "displayName",
        "id",
        "active",
        "emails.value",
        'emails[type eq "work"].value',
        "name.givenName",
        "members.value",
        "members",
        "meta.lastModified",
        f"{USER_SCHEMA}:userName",
        f"{ENTERPRISE}:department",
        "nosuch",
        "",
    ]
)
_operator = st.sampled_from(["eq", "ne", "co", "sw", "ew", "gt", "ge", "lt", "le", "EQ", "xx"])
_literal = st.one_of(
    _odd_text.map(json.dumps),
    st.sampled_from(["true", "false", "null", "12", "-1.5e3", '"2026-01-01T00:00:00Z"', '"unterminated', "'single'"]),
    st.sampled_from(SEEDED_IDS).map(json.dumps),
)
_comparison = st.one_of(
    st.tuples(_attribute, _operator, _literal).map(" ".join),
    _attribute.map(lambda a: f"{a} pr"),
)
filters = st.one_of(
    st.recursive(
        _comparison,
        lambda inner: st.one_of(
            st.tuples(inner, st.sampled_from(["and", "or", "AND"]), inner).map(" ".join),
            inner.map(lambda f: f"not ({f})"),
            inner.map(lambda f: f"({f})"),
            st.tuples(_attribute, inner).map(lambda p: f"{p[0]}[{p[1]}]"),
        ),
        max_leaves=6,
    ),
    _odd_text,
    # Deep nesting: past 8 KB of request line (aiohttp's limit) at the top, yet three of them in one query
    # stay under the 64 KB httpx sends at most.
    st.integers(1, 1500).map(lambda n: "(" * n + 'userName eq "a"' + ")" * n),
    st.integers(1, 1500).map(lambda n: "not (" * n + 'userName eq "a"' + ")" * n),
)

# -- PATCH --------------------------------------------------------------------------------------------

patch_paths = st.one_of(
    _attribute,
    st.sampled_from(SEEDED_IDS).map(lambda i: f'members[value eq "{i}"]'),
    filters.map(lambda f: f"members[{f}]"),
    st.sampled_from(['emails[type eq "work"]', 'emails[value co "@"].primary', "name", "active", "members[", "]"]),
    _odd_text,
)
patch_operation = st.fixed_dictionaries(
    {"op": st.one_of(st.sampled_from(["add", "remove", "replace", "Add", "REPLACE", "move", ""]), json_value)},
    optional={
        "path": st.one_of(patch_paths, json_value),
        "value": st.one_of(
            json_value,
            user_body,
            st.lists(_member, max_size=4),
            st.sampled_from(SEEDED_IDS).map(lambda i: [{"value": i}]),
        ),
    },
)
# PATCH operations as identity providers send them (Okta, Entra): most are accepted, so that generated
# requests reach the writes and the member lists, not only the validation in front of them.
_member_values = st.lists(st.sampled_from(SEEDED_IDS).map(lambda i: {"value": i}), min_size=1, max_size=3)
well_formed_operation = st.one_of(
    st.fixed_dictionaries(
        {"op": st.sampled_from(["add", "Add", "replace"]), "path": st.just("members"), "value": _member_values}
    ),
    st.fixed_dictionaries(
        {"op": st.just("remove"), "path": st.sampled_from(SEEDED_IDS).map(lambda i: f'members[value eq "{i}"]')}
    ),
    st.fixed_dictionaries({"op": st.just("remove"), "path": st.just("members"), "value": _member_values}),
    st.fixed_dictionaries(
        {
            "op": st.just("replace"),
            "value": st.fixed_dictionaries(
                {}, optional={"active": st.booleans(), "displayName": _name_text, "userName": _name_text}
            ),
        }
    ),
    st.fixed_dictionaries(
        {
            "op": st.sampled_from(["replace", "add"]),
            "path": st.sampled_from(
                ["active", "displayName", "name.givenName", "externalId", 'emails[type eq "work"].value']
            ),
            "value": st.one_of(st.booleans(), _name_text),
        }
    ),
)
patch_body = st.one_of(
    st.lists(well_formed_operation, min_size=1, max_size=3).map(
        lambda ops: {"schemas": [PATCH_SCHEMA], "Operations": ops}
    ),
    st.tuples(
        _maybe("schemas", st.one_of(st.just([PATCH_SCHEMA]), _schemas)),
        _maybe(
            "Operations", st.one_of(st.lists(st.one_of(patch_operation, well_formed_operation), max_size=4), json_value)
        ),
    ).map(lambda parts: _merge(list(parts))),
)

search_body = st.tuples(
    _maybe("schemas", st.one_of(st.just([SEARCH_SCHEMA]), _schemas)),
    _maybe("filter", st.one_of(filters, json_value)),
    _maybe("startIndex", st.one_of(st.integers(-5, 10**20), json_value)),
    _maybe("count", st.one_of(st.integers(-5, 10**20), json_value)),
    _maybe("attributes", st.one_of(st.lists(_attribute, max_size=3), json_value)),
    _maybe("excludedAttributes", st.one_of(st.lists(_attribute, max_size=3), json_value)),
    _maybe("sortBy", st.one_of(st.none(), _attribute)),
).map(lambda parts: _merge(list(parts)))

# -- raw bodies ---------------------------------------------------------------------------------------

raw_bodies = st.one_of(
    st.binary(max_size=64),
    st.integers(1, 200_000).map(lambda n: b"[" * n + b"]" * n),  # deep nesting, past the recursion limit
    st.integers(1, 200_000).map(lambda n: b'{"a":' * n + b"1" + b"}" * n),
    st.integers(1, 100_000).map(lambda n: b"[" * n),  # deep and unterminated
    st.sampled_from([b"", b"null", b"[]", b'"x"', b"1e999999", b"-0", b'{"userName": "\\ud800"}', b"\xff\xfe"]),
)

# -- requests -----------------------------------------------------------------------------------------

_queries = st.lists(
    st.one_of(
        st.tuples(st.just("filter"), filters),
        st.tuples(st.sampled_from(["startIndex", "count"]), st.one_of(st.integers(-5, 10**20).map(str), _odd_text)),
        st.tuples(
            st.sampled_from(["attributes", "excludedAttributes"]), st.lists(_attribute, max_size=3).map(",".join)
        ),
        st.tuples(_odd_text, _odd_text),
    ),
    max_size=3,
).map(tuple)

_resource = st.sampled_from(["Users", "Groups", "users", "GROUPS"])
_content_type = st.sampled_from(
    [
        "application/scim+json",
        "application/json",
        "application/json; charset=utf-8",
        "text/plain",
        "",
        "application/x+json",
    ]
)


def _encoded(body: Any) -> bytes:
    return json.dumps(body).encode()


@st.composite
def fuzz_requests(draw: st.DrawFn) -> FuzzRequest:
    """One generated request; its shape is the request's method, path template and body structure."""
    kind = draw(st.sampled_from(["list", "create", "get", "put", "patch", "delete", "search", "discovery", "odd"]))
    resource = draw(_resource)
    body_value: Any = None
    raw: bytes | None = None
    if kind == "list":
        method, path, template = "GET", f"/{resource}", f"/{resource.lower()}"
    elif kind in ("get", "put", "patch", "delete"):
        method = {"get": "GET", "put": "PUT", "patch": "PATCH", "delete": "DELETE"}[kind]
        path, template = f"/{resource}/{draw(ids)}", f"/{resource.lower()}/{{id}}"
    elif kind == "create":
        method, path, template = "POST", f"/{resource}", f"/{resource.lower()}"
    elif kind == "search":
        method = "POST"
        path = draw(st.sampled_from(["/.search", f"/{resource}/.search"]))
        template = path.lower()
    elif kind == "discovery":
        method = draw(st.sampled_from(["GET", "GET", "POST", "DELETE"]))
        path = draw(
            st.sampled_from(
                [
                    "/ServiceProviderConfig",
                    "/ResourceTypes",
                    "/ResourceTypes/User",
                    "/Schemas",
                    f"/Schemas/{USER_SCHEMA}",
                ]
            )
        )
        template = path.lower()
    else:
        method = draw(st.sampled_from(["GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "HEAD"]))
        path = draw(
            st.one_of(
                st.sampled_from(["/", "", "/Users/a/b", "/Me", "/Bulk", "/Users/.search/x", "/%00", "//Users"]),
                st.lists(_odd_text.filter(lambda s: "?" not in s and "#" not in s), max_size=3).map("/".join),
            )
        )
        template = "odd"
    if method in ("POST", "PUT", "PATCH"):
        if draw(st.integers(0, 9)) == 0:
            raw = draw(raw_bodies)
        elif kind == "search":
            body_value = draw(search_body)
        elif method == "PATCH":
            body_value = draw(patch_body)
        elif resource.lower() == "users":
            body_value = draw(st.one_of(user_body, json_value))
        else:
            body_value = draw(st.one_of(group_body, json_value))
    content_type = draw(st.one_of(st.just("application/scim+json"), _content_type))
    query = draw(_queries) if method == "GET" or kind == "odd" else ()
    body = raw if raw is not None else _encoded(body_value) if method in ("POST", "PUT", "PATCH") else None
    body_shape = ("raw", len(raw).bit_length()) if raw is not None else shape_of(body_value)
    shape = (method, template, content_type.split(";")[0], tuple(sorted(k for k, _ in query)), body_shape)
    return FuzzRequest(method, path, query, body, content_type, shape)


def seed_bodies() -> Iterator[tuple[str, dict[str, Any]]]:
    """What the harness creates first, in order (ids SEEDED_IDS): users, then groups of them."""
    for n in range(1, 6):
        yield (
            "Users",
            {
                "schemas": [USER_SCHEMA],
                "userName": f"seed{n}@example.com",
                "externalId": f"ext-{n}",
                "emails": [{"value": f"seed{n}@example.com", "type": "work", "primary": True}],
                "name": {"givenName": f"Seed{n}", "familyName": "Fuzz"},
            },
        )
    for n in range(1, 4):
        yield "Groups", {"schemas": [GROUP_SCHEMA], "displayName": f"group {n}", "members": [{"value": "id-0001"}]}


# -- the harness: the endpoint in a thread of its own, a synchronous client ----------------------------

FUZZ_TOKEN = "fuzz-token-0123456789abcdef0123456789abcdef"
NAMESPACE, PROVIDER = "fuzz", "okta"


class ErrorRecords(logging.Handler):
    """Every ERROR (and worse) the server logs: aiohttp logs a handler's unexpected exception there, the
    endpoint its failed operations. A fuzzed request must cause none."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        exc = record.exc_info[1] if record.exc_info else None
        if isinstance(exc, HttpProcessingError) and 400 <= (exc.code or 0) < 500:
            # aiohttp's HTTP parser refused the request itself (a request line over 8 KB) and answered
            # 400: logged at ERROR by aiohttp, but an answer to the client, not a failure of the endpoint.
            return
        self.records.append(record)

    def describe(self) -> str:
        return "\n".join(logging.Formatter().format(record) for record in self.records)


class FuzzServer:
    """The SCIM endpoint (server.make_app, an in-memory store seeded with seed_bodies()) served on the
    loopback by an event loop in a daemon thread, over TLS when `ssl_context` is given. The store is read
    between requests (the client waits for each answer, so the loop is idle on it then)."""

    def __init__(self, ssl_context: ssl.SSLContext | None = None, request_timeout: float = 10.0) -> None:
        self.store = MemoryStore(new_id=sequential_ids())
        self.service = ScimService(self.store)
        self.ssl_context = ssl_context
        # Failed authentications not limited: a generated path like /../x names another provider (401), and
        # the guess limiter's 429s would hide the requests after them (tests/scim/test_scim_abuse.py covers it).
        self.settings = ServerSettings(request_timeout=request_timeout, guess_rate=1e9, guess_burst=10**9)
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="scim-fuzz-server", daemon=True)
        self.errors = ErrorRecords()
        self.origin = ""
        self._runner: web.AppRunner | None = None

    @property
    def base(self) -> str:
        return f"{self.origin}/scim/v2/{NAMESPACE}/{PROVIDER}"

    def run(self, coroutine: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(timeout=60)

    async def _start(self) -> str:
        for resource, body in seed_bodies():
            await self.service.create(Kind.USER if resource == "Users" else Kind.GROUP, body, "https://seed")
        registry = Registry()
        # The limit out of the way: what is fuzzed is the request handling, not the token bucket.
        registry.add(Provider(NAMESPACE, PROVIDER, self.service, lambda: [FUZZ_TOKEN], TokenBucket(1e9, 10**9)))
        self._runner = make_runner(registry, self.settings)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", 0, ssl_context=self.ssl_context).start()
        scheme = "https" if self.ssl_context else "http"
        return f"{scheme}://127.0.0.1:{self._runner.addresses[0][1]}"

    def __enter__(self) -> FuzzServer:
        logging.getLogger().addHandler(self.errors)
        self.thread.start()
        self.origin = self.run(self._start())
        return self

    def __exit__(self, *exc: object) -> None:
        logging.getLogger().removeHandler(self.errors)
        if self._runner is not None:
            self.run(self._runner.cleanup())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=10)

    def snapshot(self) -> dict[tuple[str, str], tuple[bytes, str, tuple[str, ...]]]:
        return store_snapshot(self.store)


@dataclass
class Outcome:
    status: int | None  # None: no answer (a hang or a dropped connection)
    failure: str | None = None  # "hang", "crash" (connection dropped, no answer) or None
    body: bytes = b""
    content_type: str = ""
    line_too_long: bool = False  # over aiohttp's 8 KB request line: its parser answers 400 in plain text


def send(client: httpx.Client, server: FuzzServer, request: FuzzRequest, timeout: float) -> Outcome:
    """One request; a hang is no answer within `timeout`, a crash an answer that never came."""
    headers = {"Authorization": f"Bearer {FUZZ_TOKEN}"}
    if request.body is not None:
        headers["Content-Type"] = request.content_type
    # The path as generated (odd bytes percent-encoded, nothing else: '..' and '%2e' reach the server).
    url = server.base + quote(request.path, safe="/%.-_~:@!$&'()*+,;=")
    try:
        response = client.request(
            request.method, url, params=list(request.query), content=request.body, headers=headers, timeout=timeout
        )
    except httpx.TimeoutException:
        return Outcome(None, "hang")
    except httpx.TransportError as exc:
        return Outcome(None, f"crash: {type(exc).__name__}: {exc}")
    too_long = len(response.request.url.raw_path) > MAX_LINE
    return Outcome(response.status_code, None, response.content, response.headers.get("Content-Type", ""), too_long)


MAX_LINE = 8190  # aiohttp's max_line_size: a longer request line never reaches the endpoint's handler

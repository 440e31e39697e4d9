"""The SCIM endpoint's bad-input catalogue (docs/troubleshooting.md, section "SCIM endpoint"): each
case is what an identity provider, a script or an attacker may send wrong. Each answers a SCIM error
(the status, `scimType` where RFC 7644 §3.12 defines one, a detail naming the field and the fix) and
changes nothing: both providers' stores are compared, record by record (attributes, members, version),
before and after. tests/scim/test_badinput_catalogue_doc.py keeps the rows and these tests in step."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import aiohttp
import pytest
from aiohttp import web

from synapse_scim.adapters.scim.server import Provider, Registry, ServerSettings, TokenBucket, make_app
from synapse_scim.core.scim.memory import MemoryStore
from synapse_scim.core.scim.resources import Kind
from synapse_scim.core.scim.service import ScimService

SCIM = "application/scim+json"


def cases(*rows: tuple[Any, ...]) -> list[Any]:
    """Parameters named by their first value (the case's name, which is the test id in the table)."""
    return [pytest.param(*row, id=row[0]) for row in rows]


PATCH_SCHEMA = "urn:ietf:params:scim:api:messages:2.0:PatchOp"
ERROR_SCHEMA = "urn:ietf:params:scim:api:messages:2.0:Error"
OKTA_TOKEN = "okta-catalogue-token-0123456789abcdef0123"
OKTA_ROTATED_OUT = "okta-catalogue-old-token-fedcba9876543210"
ENTRA_TOKEN = "entra-catalogue-token-0123456789abcdef012"
MAX_BODY = 64 * 1024


@dataclass
class Seeded:
    """The endpoint with two providers: okta holds alice and bob and the group Engineers (both
    members); entra holds carol. Okta's token was rotated: OKTA_ROTATED_OUT is no longer accepted."""

    origin: str
    registry: Registry
    alice: str
    bob: str
    group: str
    carol: str

    def url(self, path: str, provider: str = "okta") -> str:
        return f"{self.origin}/scim/v2/data-platform/{provider}{path}"

    async def snapshot(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for name in ("okta", "entra"):
            provider = self.registry.get("data-platform", name)
            assert provider is not None
            for kind in Kind:
                records = await provider.service.store.scan(kind)
                out[f"{name}/{kind.value}"] = sorted(
                    (r.id, json.dumps(r.attributes, sort_keys=True), r.version, r.members) for r in records
                )
        return out


async def call(
    method: str,
    url: str,
    body: Any = None,
    *,
    token: str | None = OKTA_TOKEN,
    raw: bytes | None = None,
    content_type: str = SCIM,
    scheme: str = "Bearer",
) -> tuple[int, dict[str, str], Any]:
    headers = {"Content-Type": content_type}
    if token is not None:
        headers["Authorization"] = f"{scheme} {token}"
    data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
    async with aiohttp.ClientSession() as session, session.request(method, url, data=data, headers=headers) as response:
        text = await response.text()
        return response.status, dict(response.headers), json.loads(text) if text else None


@pytest.fixture
async def seeded() -> AsyncIterator[Seeded]:
    registry = Registry()
    okta_tokens = [OKTA_ROTATED_OUT, OKTA_TOKEN]  # the old and the new, while rotating
    for name, tokens in (("okta", okta_tokens), ("entra", [ENTRA_TOKEN])):
        registry.add(
            Provider(
                "data-platform", name, ScimService(MemoryStore()), lambda t=tokens: list(t), TokenBucket(1e6, 10**6)
            )
        )
    runner = web.AppRunner(make_app(registry, ServerSettings(max_body=MAX_BODY)))
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    origin = f"http://127.0.0.1:{runner.addresses[0][1]}"
    try:
        base = f"{origin}/scim/v2/data-platform"
        ids = []
        for user in ("alice@example.com", "bob@example.com"):
            status, _, body = await call("POST", f"{base}/okta/Users", {"userName": user}, token=OKTA_ROTATED_OUT)
            assert status == 201
            ids.append(body["id"])
        members = [{"value": each} for each in ids]
        status, _, group = await call("POST", f"{base}/okta/Groups", {"displayName": "Engineers", "members": members})
        assert status == 201
        status, _, carol = await call(
            "POST", f"{base}/entra/Users", {"userName": "carol@example.com"}, token=ENTRA_TOKEN
        )
        assert status == 201
        okta_tokens.remove(OKTA_ROTATED_OUT)  # rotation done: the old token was accepted until now
        yield Seeded(origin, registry, ids[0], ids[1], group["id"], carol["id"])
    finally:
        await runner.cleanup()


def assert_refused(
    answer: tuple[int, dict[str, str], Any], status: int, scim_type: str | None, *says: str
) -> dict[str, Any]:
    """A SCIM error: the status (also as the body's string), the scimType (or none where the RFC
    defines none), and a detail containing every fragment of `says`."""
    got, headers, body = answer
    assert got == status, body
    assert headers["Content-Type"] == SCIM
    assert body["schemas"] == [ERROR_SCHEMA] and body["status"] == str(status)
    assert body.get("scimType") == scim_type, body
    for fragment in says:
        assert fragment in body["detail"], f"{fragment!r} not in {body['detail']!r}"
    return body


def patch_op(op: str, path: str, value: Any) -> dict[str, Any]:
    return {"schemas": [PATCH_SCHEMA], "Operations": [{"op": op, "path": path, "value": value}]}


async def refused_and_unchanged(
    seeded: Seeded, request: tuple[str, str, Any], status: int, scim_type: str | None, *says: str, **options: Any
) -> tuple[int, dict[str, str], Any]:
    before = await seeded.snapshot()
    method, path, body = request
    answer = await call(method, seeded.url(path, options.pop("provider", "okta")), body, **options)
    assert_refused(answer, status, scim_type, *says)
    assert await seeded.snapshot() == before, "the refused request changed a stored resource"
    return answer


# -- the request body ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("case", "raw"),
    cases(
        ("truncated", b'{"userName": '),
        ("not-utf8", b"\xff\xfe\x00"),
        ("trailing-garbage", b'{"userName": "x@example.com"} }'),
    ),
)
async def test_malformed_json(seeded: Seeded, case: str, raw: bytes) -> None:
    for method, path in (("POST", "/Users"), ("PATCH", f"/Groups/{seeded.group}"), ("PUT", f"/Users/{seeded.alice}")):
        await refused_and_unchanged(
            seeded, (method, path, None), 400, "invalidSyntax", "not valid JSON", "send one JSON object", raw=raw
        )


async def test_a_body_that_is_not_an_object(seeded: Seeded) -> None:
    await refused_and_unchanged(seeded, ("POST", "/Users", None), 400, "invalidSyntax", "JSON object", raw=b"[]")
    await refused_and_unchanged(
        seeded, ("PATCH", f"/Groups/{seeded.group}", None), 400, "invalidSyntax", "JSON object", raw=b'"remove"'
    )


@pytest.mark.parametrize(
    ("case", "content_type"),
    cases(("text", "text/plain"), ("form", "application/x-www-form-urlencoded"), ("xml", "application/xml")),
)
async def test_wrong_content_type(seeded: Seeded, case: str, content_type: str) -> None:
    body = {"schemas": [PATCH_SCHEMA], "Operations": [{"op": "remove", "path": f'members[value eq "{seeded.bob}"]'}]}
    await refused_and_unchanged(
        seeded,
        ("PATCH", f"/Groups/{seeded.group}", None),
        415,
        "invalidSyntax",
        content_type,
        "Content-Type: application/scim+json",
        raw=json.dumps(body).encode(),
        content_type=content_type,
    )


@pytest.mark.parametrize(
    ("case", "path", "body", "says"),
    cases(
        ("user-without-its-schema", "/Users", {"schemas": ["urn:example:unknown"], "userName": "x@example.com"},
         ("schemas", "urn:ietf:params:scim:schemas:core:2.0:User")),
        ("group-without-its-schema", "/Groups", {"schemas": ["urn:example:unknown"], "displayName": "X"},
         ("schemas", "urn:ietf:params:scim:schemas:core:2.0:Group")),
    ),
)  # fmt: skip
async def test_unknown_schemas_on_create(
    seeded: Seeded, case: str, path: str, body: dict[str, Any], says: tuple[str, ...]
) -> None:
    await refused_and_unchanged(seeded, ("POST", path, body), 400, "invalidSyntax", *says)


async def test_a_patch_without_the_patchop_schema(seeded: Seeded) -> None:
    body = {"schemas": ["urn:example:unknown"], "Operations": [{"op": "remove", "path": "members"}]}
    await refused_and_unchanged(seeded, ("PATCH", f"/Groups/{seeded.group}", body), 400, "invalidSyntax", PATCH_SCHEMA)


async def test_oversized_body(seeded: Seeded) -> None:
    user = {"userName": "big@example.com", "displayName": "x" * MAX_BODY}
    await refused_and_unchanged(seeded, ("POST", "/Users", user), 413, None, f"larger than {MAX_BODY} bytes")
    members = [{"value": f"00000000-0000-4000-8000-{n:012d}", "display": "someone"} for n in range(2000)]
    group = {"displayName": "Engineers", "members": members}
    await refused_and_unchanged(seeded, ("PUT", f"/Groups/{seeded.group}", group), 413, None, "several PATCH requests")


# -- filters and paging -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("case", "filter_", "says"),
    cases(
        ("dangling-and", 'userName eq "alice@example.com" and', "invalid syntax"),
        ("unknown-attribute", 'mail eq "alice@example.com"', "mail"),
        ("single-quotes", "userName eq 'alice@example.com'", "invalid syntax"),
        ("members-on-users", 'members[value eq "x"]', "members"),
        ("empty", "", "the filter is empty"),
    ),
)
async def test_invalid_filter(seeded: Seeded, case: str, filter_: str, says: str) -> None:
    for resource in ("/Users", "/Groups"):
        if case == "members-on-users" and resource == "/Groups":
            continue
        await refused_and_unchanged(
            seeded,
            ("GET", f"{resource}?filter={quote(filter_)}", None),
            400,
            "invalidFilter",
            says,
            'userName eq "alice@example.com"',
        )


@pytest.mark.parametrize(
    ("case", "filter_"),
    cases(
        ("close-and-reopen", 'userName eq "nobody") or (userName pr'),
        ("sql-tautology", "userName eq 'nobody' OR 1=1"),
        ("or-true", 'userName eq "nobody" or true'),
        ("too-long", 'userName eq "' + "a" * 3000 + '"'),
    ),
)
async def test_filter_injection_is_refused(seeded: Seeded, case: str, filter_: str) -> None:
    await refused_and_unchanged(
        seeded, ("GET", f"/Users?filter={quote(filter_)}", None), 400, "invalidFilter", "filter", "write a filter"
    )


async def test_filter_injection_inside_a_quoted_value_matches_nothing(seeded: Seeded) -> None:
    """An escaped quote stays inside the string: the filter looks for that odd userName, finds none,
    and lists no one (never every user)."""
    before = await seeded.snapshot()
    for filter_ in ('userName eq "nobody\\" or userName pr \\""', 'userName eq "x\\") or (userName pr"'):
        status, _, body = await call("GET", seeded.url(f"/Users?filter={quote(filter_)}"))
        assert status == 200 and body["totalResults"] == 0 and body["Resources"] == []
    assert await seeded.snapshot() == before


@pytest.mark.parametrize(("case", "count"), cases(("1e9", "1000000000"), ("1e26", "99999999999999999999999999")))
async def test_huge_count_is_capped(seeded: Seeded, case: str, count: str) -> None:
    status, _, body = await call("GET", seeded.url(f"/Users?startIndex=1&count={count}"))
    assert status == 200
    assert body["totalResults"] == 2 and body["itemsPerPage"] == 2 and isinstance(body["itemsPerPage"], int)
    _, _, config = await call("GET", seeded.url("/ServiceProviderConfig"))
    assert config["filter"]["maxResults"] == 200


@pytest.mark.parametrize(("name", "query"), cases(("count", "count=lots"), ("startIndex", "startIndex=1.5")))
async def test_paging_that_is_not_an_integer(seeded: Seeded, name: str, query: str) -> None:
    await refused_and_unchanged(seeded, ("GET", f"/Users?{query}", None), 400, "invalidValue", name, "integer")


# -- members ------------------------------------------------------------------------------------------

GHOST = "00000000-0000-4000-8000-00000000dead"


@pytest.mark.parametrize("case", ["create", "patch-add", "patch-replace", "put", "another-providers-user"])
async def test_unknown_member_ids(seeded: Seeded, case: str) -> None:
    ghost = seeded.carol if case == "another-providers-user" else GHOST
    members = [{"value": seeded.alice}, {"value": ghost}]
    requests = {
        "create": ("POST", "/Groups", {"displayName": "Ghosts", "members": members}),
        "patch-add": ("PATCH", f"/Groups/{seeded.group}",
                      patch_op("add", "members", members)),
        "patch-replace": ("PATCH", f"/Groups/{seeded.group}",
                          patch_op("replace", "members", members)),
        "put": ("PUT", f"/Groups/{seeded.group}", {"displayName": "Engineers", "members": members}),
    }  # fmt: skip
    request = requests.get(case, requests["patch-add"])
    await refused_and_unchanged(
        seeded, request, 400, "invalidValue", ghost, "no user of this provider", "nothing was changed", "POST /Users"
    )


async def test_a_group_as_a_member(seeded: Seeded) -> None:
    body = {
        "schemas": [PATCH_SCHEMA],
        "Operations": [{"op": "add", "path": "members", "value": [{"value": seeded.group, "type": "Group"}]}],
    }
    await refused_and_unchanged(
        seeded, ("PATCH", f"/Groups/{seeded.group}", body), 400, "invalidValue", "nested groups are not supported"
    )


@pytest.mark.parametrize(
    ("case", "operation"),
    cases(
        ("no-value", {"op": "remove", "path": "members"}),
        ("entra-capitalised", {"op": "Remove", "path": "members"}),
        ("null-value", {"op": "remove", "path": "members", "value": None}),
        ("empty-list", {"op": "remove", "path": "members", "value": []}),
        ("urn-path", {"op": "remove", "path": "urn:ietf:params:scim:schemas:core:2.0:Group:members"}),
    ),
)
async def test_the_bare_remove_of_every_member_is_refused(seeded: Seeded, case: str, operation: dict[str, Any]) -> None:
    body = {"schemas": [PATCH_SCHEMA], "Operations": [operation]}
    await refused_and_unchanged(
        seeded,
        ("PATCH", f"/Groups/{seeded.group}", body),
        400,
        "invalidValue",
        "must name the members to remove",
        '[{"value": "<id>"}]',
        "replace of members",
    )


async def test_a_refused_operation_refuses_the_whole_patch(seeded: Seeded) -> None:
    """A valid removal before a bare remove in one PATCH: neither is applied."""
    body = {
        "schemas": [PATCH_SCHEMA],
        "Operations": [
            {"op": "remove", "path": f'members[value eq "{seeded.bob}"]'},
            {"op": "replace", "path": "displayName", "value": "Renamed"},
            {"op": "remove", "path": "members"},
        ],
    }
    await refused_and_unchanged(
        seeded, ("PATCH", f"/Groups/{seeded.group}", body), 400, "invalidValue", "must name the members to remove"
    )


# -- uniqueness ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("case", ["create-same", "create-other-case", "put-onto-another", "patch-onto-another"])
async def test_duplicate_user_name(seeded: Seeded, case: str) -> None:
    taken = "ALICE@example.com" if case != "create-same" else "alice@example.com"
    requests = {
        "create-same": ("POST", "/Users", {"userName": taken}),
        "create-other-case": ("POST", "/Users", {"userName": taken}),
        "put-onto-another": ("PUT", f"/Users/{seeded.bob}", {"userName": taken}),
        "patch-onto-another": ("PATCH", f"/Users/{seeded.bob}",
                               patch_op("replace", "userName", taken)),
    }  # fmt: skip
    await refused_and_unchanged(
        seeded,
        requests[case],
        409,
        "uniqueness",
        f"userName {taken!r} is already taken",
        f'filter=userName eq "{taken}"',
    )


async def test_duplicate_group_display_name(seeded: Seeded) -> None:
    await refused_and_unchanged(
        seeded,
        ("POST", "/Groups", {"displayName": "engineers"}),
        409,
        "uniqueness",
        "displayName",
        "filter=displayName",
    )


async def test_a_user_of_another_provider_is_not_a_duplicate(seeded: Seeded) -> None:
    """Uniqueness is per provider: okta may hold carol@example.com although entra does."""
    status, _, _ = await call("POST", seeded.url("/Users"), {"userName": "carol@example.com"})
    assert status == 201


# -- tokens -------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("case", "options"),
    cases(
        ("missing", {"token": None}),
        ("wrong", {"token": "not-a-token-of-anyone-0123456789abcdef"}),
        ("rotated-out", {"token": OKTA_ROTATED_OUT}),
        ("another-providers", {"token": ENTRA_TOKEN}),
        ("basic-scheme", {"scheme": "Basic"}),
        ("a-prefix-of-the-token", {"token": OKTA_TOKEN[:-1]}),
        ("unknown-provider", {"provider": "okta-typo"}),
    ),
)
async def test_tokens(seeded: Seeded, case: str, options: dict[str, Any]) -> None:
    for request in (
        ("DELETE", f"/Users/{seeded.alice}", None),
        ("PATCH", f"/Groups/{seeded.group}",
         {"schemas": [PATCH_SCHEMA], "Operations": [{"op": "replace", "path": "members", "value": []}]}),
        ("GET", "/Users", None),
    ):  # fmt: skip
        _, headers, body = await refused_and_unchanged(
            seeded, request, 401, None, "bearer token", "Authorization: Bearer", "tokenSecretRef", **dict(options)
        )
        assert headers["WWW-Authenticate"].startswith("Bearer")
        assert seeded.alice not in json.dumps(body)  # nothing read


async def test_a_token_opens_its_own_provider_only(seeded: Seeded) -> None:
    """Entra's valid token on okta's URL is refused (above); on its own URL it cannot see okta's ids."""
    before = await seeded.snapshot()
    status, _, body = await call("GET", seeded.url(f"/Users/{seeded.alice}", "entra"), token=ENTRA_TOKEN)
    assert status == 404 and body["status"] == "404"
    status, _, _ = await call("DELETE", seeded.url(f"/Groups/{seeded.group}", "entra"), token=ENTRA_TOKEN)
    assert status == 404
    assert await seeded.snapshot() == before

"""The endpoint's HTTP edge: tokens, providers kept apart, limits, the SCIM wire format, the audit line.
Each refusal answers a SCIM error and changes nothing."""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from synapse_scim.adapters.scim.server import Provider, Registry, ServerSettings, TokenBucket, fingerprint, make_app
from synapse_scim.core.scim.memory import MemoryStore
from synapse_scim.core.scim.service import ScimService

from .conftest import ENTRA_TOKEN, OKTA_NEXT_TOKEN, OKTA_TOKEN, Endpoint

SCIM = "application/scim+json"
PATCH = "urn:ietf:params:scim:api:messages:2.0:PatchOp"


async def call(
    method: str,
    url: str,
    token: str | None = OKTA_TOKEN,
    body: Any = None,
    raw: bytes | None = None,
    content_type: str = SCIM,
) -> tuple[int, dict[str, str], Any]:
    headers = {"Content-Type": content_type}
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
    async with aiohttp.ClientSession() as session, session.request(method, url, data=data, headers=headers) as response:
        text = await response.text()
        return response.status, dict(response.headers), (json.loads(text) if text else None)


async def users(
    endpoint: Endpoint, namespace: str = "data-platform", provider: str = "okta", token: str = OKTA_TOKEN
) -> int:
    status, _, body = await call("GET", endpoint.base(namespace, provider) + "/Users", token)
    assert status == 200
    return int(body["totalResults"])


def assert_scim_error(
    status: int, headers: dict[str, str], body: Any, expected: int, scim_type: str | None = None
) -> None:
    assert status == expected
    assert headers["Content-Type"] == SCIM
    assert body["schemas"] == ["urn:ietf:params:scim:api:messages:2.0:Error"]
    assert body["status"] == str(expected)
    if scim_type:
        assert body["scimType"] == scim_type


@pytest.mark.parametrize("token", [None, "wrong", ENTRA_TOKEN, "", OKTA_TOKEN + "x"])
async def test_missing_wrong_or_another_providers_token_is_401(endpoint: Endpoint, token: str | None) -> None:
    status, headers, body = await call("POST", endpoint.base() + "/Users", token, {"userName": "x@example.com"})
    assert_scim_error(status, headers, body, 401)
    assert headers["WWW-Authenticate"].startswith("Bearer")
    assert await users(endpoint) == 0


async def test_basic_auth_is_not_a_bearer_token(endpoint: Endpoint) -> None:
    async with (
        aiohttp.ClientSession() as session,
        session.get(endpoint.base() + "/Users", headers={"Authorization": f"Basic {OKTA_TOKEN}"}) as response,
    ):
        assert response.status == 401


async def test_an_unknown_provider_answers_like_a_wrong_token(endpoint: Endpoint) -> None:
    status, headers, body = await call("GET", endpoint.base("data-platform", "nope") + "/Users")
    assert_scim_error(status, headers, body, 401)


async def test_providers_are_kept_apart(endpoint: Endpoint) -> None:
    status, _, created = await call("POST", endpoint.base() + "/Users", OKTA_TOKEN, {"userName": "a@example.com"})
    assert status == 201
    assert await users(endpoint, provider="entra", token=ENTRA_TOKEN) == 0
    status, _, _ = await call("GET", endpoint.base("data-platform", "entra") + f"/Users/{created['id']}", ENTRA_TOKEN)
    assert status == 404
    status, _, _ = await call("DELETE", endpoint.base("data-platform", "entra") + f"/Users/{created['id']}", OKTA_TOKEN)
    assert status == 401
    assert await users(endpoint) == 1


async def test_rotation_takes_effect_without_restart(endpoint: Endpoint) -> None:
    endpoint.okta_tokens.append(OKTA_NEXT_TOKEN)  # add the new
    assert (await call("GET", endpoint.base() + "/Users", OKTA_NEXT_TOKEN))[0] == 200
    assert (await call("GET", endpoint.base() + "/Users", OKTA_TOKEN))[0] == 200
    endpoint.okta_tokens.remove(OKTA_TOKEN)  # remove the old
    assert (await call("GET", endpoint.base() + "/Users", OKTA_TOKEN))[0] == 401
    assert (await call("GET", endpoint.base() + "/Users", OKTA_NEXT_TOKEN))[0] == 200


async def test_every_response_is_scim_json(endpoint: Endpoint) -> None:
    for path in ("/Users", "/Groups", "/ServiceProviderConfig", "/ResourceTypes", "/Schemas", "/Users/nope", "/Nope"):
        status, headers, _ = await call("GET", endpoint.base() + path)
        assert headers["Content-Type"] == SCIM, path
    status, headers, body = await call("GET", endpoint.base() + "/Users/nope")
    assert_scim_error(status, headers, body, 404)


async def test_lower_case_paths_as_microsofts_postman_collection_sends(endpoint: Endpoint) -> None:
    status, _, _ = await call("GET", endpoint.base() + "/users")
    assert status == 200


async def test_discovery_lists_both_schemas_and_resource_types(endpoint: Endpoint) -> None:
    _, _, schemas = await call("GET", endpoint.base() + "/Schemas")
    ids = {each["id"] for each in schemas["Resources"]}
    assert {"urn:ietf:params:scim:schemas:core:2.0:User", "urn:ietf:params:scim:schemas:core:2.0:Group"} <= ids
    status, _, user_type = await call("GET", endpoint.base() + "/ResourceTypes/User")
    assert status == 200 and user_type["endpoint"] == "/Users"


async def test_oversized_body_is_413_and_nothing_is_created(endpoint: Endpoint) -> None:
    body = {"userName": "big@example.com", "displayName": "x" * (70 * 1024)}
    status, headers, answer = await call("POST", endpoint.base() + "/Users", OKTA_TOKEN, body)
    assert_scim_error(status, headers, answer, 413)
    assert await users(endpoint) == 0


@pytest.mark.parametrize(
    ("raw", "content_type", "expected", "scim_type"),
    [
        (b'{"userName": ', SCIM, 400, "invalidSyntax"),
        (b"\xff\xfe", SCIM, 400, "invalidSyntax"),
        (b'{"userName": "x@example.com"}', "text/plain", 415, "invalidSyntax"),
        (b'{"userName": "x@example.com"}', "application/x-www-form-urlencoded", 415, "invalidSyntax"),
        (b"[]", SCIM, 400, "invalidSyntax"),
        (b'{"schemas": ["urn:unknown"], "userName": 5}', SCIM, 400, None),
    ],
)
async def test_bad_bodies(
    endpoint: Endpoint, raw: bytes, content_type: str, expected: int, scim_type: str | None
) -> None:
    status, headers, body = await call("POST", endpoint.base() + "/Users", raw=raw, content_type=content_type)
    assert_scim_error(status, headers, body, expected, scim_type)
    assert await users(endpoint) == 0


async def test_plain_application_json_is_accepted(endpoint: Endpoint) -> None:
    status, _, _ = await call(
        "POST", endpoint.base() + "/Users", body={"userName": "j@example.com"}, content_type="application/json"
    )
    assert status == 201


@pytest.mark.parametrize(
    "query", ['filter=userName co "a" and', "filter=unknown eq 1", 'filter=userName eq "a") or (1 eq 1', "filter="]
)
async def test_invalid_filters_are_400_never_an_unfiltered_list(endpoint: Endpoint, query: str) -> None:
    await call("POST", endpoint.base() + "/Users", body={"userName": "a@example.com"})
    status, headers, body = await call("GET", endpoint.base() + "/Users?" + query)
    assert_scim_error(status, headers, body, 400, "invalidFilter")


async def test_huge_count_is_bounded(endpoint: Endpoint) -> None:
    for index in range(3):
        await call("POST", endpoint.base() + "/Users", body={"userName": f"c{index}@example.com"})
    status, _, body = await call("GET", endpoint.base() + "/Users?count=100000000&startIndex=1")
    assert status == 200 and body["itemsPerPage"] == 3 and isinstance(body["totalResults"], int)
    status, _, body = await call("GET", endpoint.base() + "/Users?count=1&startIndex=2")
    assert body["startIndex"] == 2 and body["itemsPerPage"] == 1 and body["totalResults"] == 3


async def test_rate_limit_is_429_with_retry_after(endpoint: Endpoint) -> None:
    # The default bucket (50/s, bursts of 100) with its clock stopped: no refill, so exactly the burst
    # passes however slowly this machine sends the requests.
    okta = endpoint.registry.get("data-platform", "okta")
    assert okta is not None and (okta.limiter.rate, okta.limiter.burst) == (50, 100)
    okta.limiter = TokenBucket(okta.limiter.rate, okta.limiter.burst, clock=lambda: 0.0)
    codes = []
    for _ in range(130):
        status, headers, body = await call("GET", endpoint.base() + "/ServiceProviderConfig")
        codes.append(status)
        if status == 429:
            assert_scim_error(status, headers, body, 429)
            assert int(headers["Retry-After"]) >= 1
            break
    assert codes == [200] * 100 + [429]
    # the other provider has its own bucket
    assert (await call("GET", endpoint.base("data-platform", "entra") + "/Users", ENTRA_TOKEN))[0] == 200


async def test_group_patch_is_204_and_the_bare_remove_is_refused(endpoint: Endpoint) -> None:
    _, _, user = await call("POST", endpoint.base() + "/Users", body={"userName": "m@example.com"})
    _, _, group = await call(
        "POST", endpoint.base() + "/Groups", body={"displayName": "G", "members": [{"value": user["id"]}]}
    )
    url = endpoint.base() + f"/Groups/{group['id']}"
    status, headers, body = await call(
        "PATCH", url, body={"schemas": [PATCH], "Operations": [{"op": "remove", "path": "members"}]}
    )
    assert_scim_error(status, headers, body, 400, "invalidValue")
    status, _, body = await call("GET", url + "?excludedAttributes=members")
    assert status == 200 and "members" not in body
    status, _, body = await call("GET", url)
    assert [member["value"] for member in body["members"]] == [user["id"]]
    status, _, body = await call(
        "PATCH",
        url,
        body={
            "schemas": [PATCH],
            "Operations": [{"op": "Remove", "path": "members", "value": [{"value": user["id"]}]}],
        },
    )
    assert status == 204 and body is None


async def test_unknown_member_ids_are_400(endpoint: Endpoint) -> None:
    status, headers, body = await call(
        "POST", endpoint.base() + "/Groups", body={"displayName": "G", "members": [{"value": "ghost"}]}
    )
    assert_scim_error(status, headers, body, 400, "invalidValue")
    _, _, listed = await call("GET", endpoint.base() + "/Groups")
    assert listed["totalResults"] == 0


async def test_methods_not_allowed(endpoint: Endpoint) -> None:
    status, headers, body = await call("DELETE", endpoint.base() + "/Users")
    assert_scim_error(status, headers, body, 405)
    status, headers, body = await call("POST", endpoint.base() + "/Schemas", body={})
    assert_scim_error(status, headers, body, 405)


async def test_each_change_has_one_audit_line_with_the_token_fingerprint(
    endpoint: Endpoint, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="synapse_scim.audit")
    status, _, user = await call(
        "POST", endpoint.base() + "/Users", body={"userName": "audit@example.com", "password": "Hunter2!"}
    )
    assert status == 201
    await call("GET", endpoint.base() + "/Users")  # a read is not audited
    await call(
        "PATCH",
        endpoint.base() + f"/Users/{user['id']}",
        body={"schemas": [PATCH], "Operations": [{"op": "replace", "value": {"active": False}}]},
    )
    records = [r for r in caplog.records if r.name == "synapse_scim.audit"]
    assert [r.audit["operation"] for r in records] == ["create", "patch"]  # type: ignore[attr-defined]
    first = records[0].audit  # type: ignore[attr-defined]
    assert first == {
        "provider": "data-platform/okta",
        "operation": "create",
        "resourceType": "User",
        "id": user["id"],
        "name": "audit@example.com",
        "detail": "",
        "outcome": "201",
        "token": fingerprint(OKTA_TOKEN),
    }
    assert records[1].audit["detail"] == "active=false"  # type: ignore[attr-defined]
    logged = "\n".join(r.getMessage() for r in caplog.records)
    assert OKTA_TOKEN not in logged and "Hunter2!" not in logged


async def test_search_by_post(endpoint: Endpoint) -> None:
    await call("POST", endpoint.base() + "/Users", body={"userName": "s@example.com"})
    search = {
        "schemas": ["urn:ietf:params:scim:api:messages:2.0:SearchRequest"],
        "filter": 'userName eq "S@example.com"',
        "count": 10,
    }
    status, _, body = await call("POST", endpoint.base() + "/Users/.search", body=search)
    assert status == 200 and body["totalResults"] == 1
    status, headers, body = await call("POST", endpoint.base() + "/Users/.search", body={"filter": "nope nope"})
    assert_scim_error(status, headers, body, 400, "invalidFilter")


async def test_search_at_the_root_covers_every_resource_type(endpoint: Endpoint) -> None:
    """POST /.search (RFC 7644 §3.4.3): users then groups, paged as one list; an attribute a type
    lacks is left out for it; a filter on a user attribute matches no group."""
    _, _, user = await call("POST", endpoint.base() + "/Users", body={"userName": "r@example.com", "nickName": "R"})
    _, _, group = await call("POST", endpoint.base() + "/Groups", body={"displayName": "Root"})
    search = "urn:ietf:params:scim:api:messages:2.0:SearchRequest"
    status, headers, body = await call("POST", endpoint.base() + "/.search", body={"schemas": [search]})
    assert status == 200 and headers["Content-Type"] == SCIM
    assert body["totalResults"] == 2 and [r["id"] for r in body["Resources"]] == [user["id"], group["id"]]
    status, _, body = await call(
        "POST", endpoint.base() + "/.search", body={"schemas": [search], "attributes": ["nickName"]}
    )
    assert status == 200
    assert body["Resources"][0]["nickName"] == "R" and "userName" not in body["Resources"][0]
    assert body["Resources"][1]["id"] == group["id"] and "displayName" not in body["Resources"][1]
    status, _, body = await call(
        "POST", endpoint.base() + "/.search", body={"filter": 'userName eq "R@example.com"', "count": 5}
    )
    assert status == 200 and [r["id"] for r in body["Resources"]] == [user["id"]]
    status, _, body = await call("POST", endpoint.base() + "/.search", body={"startIndex": 2, "count": 1})
    assert body["totalResults"] == 2 and [r["id"] for r in body["Resources"]] == [group["id"]]
    status, headers, body = await call("POST", endpoint.base() + "/.search", body={"filter": "nope nope"})
    assert_scim_error(status, headers, body, 400, "invalidFilter")
    status, headers, body = await call("GET", endpoint.base() + "/.search")
    assert_scim_error(status, headers, body, 405)
    status, headers, body = await call("POST", endpoint.base() + "/.search", ENTRA_TOKEN, body={})
    assert_scim_error(status, headers, body, 401)


async def test_a_request_before_the_providers_are_listed_waits_instead_of_401() -> None:
    # A replica serves its port before its first listing of the ScimProviders (right after a restart):
    # a request then must not be answered 401, which an identity provider takes for a revoked token.
    registry = Registry(listed=False)
    runner = web.AppRunner(make_app(registry, ServerSettings(request_timeout=5)))
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    base = f"http://127.0.0.1:{runner.addresses[0][1]}/scim/v2/data-platform/okta"
    try:
        asking = asyncio.create_task(call("GET", base + "/Users"))
        await asyncio.sleep(0.3)
        assert not asking.done()
        registry.add(Provider("data-platform", "okta", ScimService(MemoryStore()), lambda: [OKTA_TOKEN]))
        registry.listed.set()
        status, _, body = await asking
        assert status == 200 and body["totalResults"] == 0
        # Once listed, an unknown provider is 401 at once, as before.
        status, headers, body = await call("GET", base.replace("/okta", "/nope") + "/Users")
        assert_scim_error(status, headers, body, 401)
    finally:
        await runner.cleanup()


async def test_a_request_while_the_providers_never_list_is_503_with_retry_after() -> None:
    registry = Registry(listed=False)
    runner = web.AppRunner(make_app(registry, ServerSettings(request_timeout=0.3)))
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        status, headers, body = await call("GET", f"http://127.0.0.1:{runner.addresses[0][1]}/scim/v2/ns/okta/Users")
        assert_scim_error(status, headers, body, 503)
        assert headers["Retry-After"] == "5"
    finally:
        await runner.cleanup()

"""Conformance of the Synapse emulator with behaviour recorded from the real service.

Each test names the recording it follows: the az CLI recording `test_access_control.yaml` (azure-cli,
2022-06, api-version 2020-08-01-preview) and the azure-sdk-for-js recording `recording_should_list_roles`
(2022-12, api-version 2020-12-01). The SDK is used where it can express the request; raw HTTPS where
it cannot (another api-version, response headers).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest

from synapse_scim_sandbox import Sandbox
from synapse_scim_sandbox.tls import client_context

from .conftest import SYNAPSE_SCOPE, secret_credential

CONTRIBUTOR = "7572bffe-f453-4b66-912a-46cc5ef38fda"
WS = "workspaces/analytics"


class Raw:
    """Plain HTTPS to the workspace endpoint with the operator's bearer token and the sandbox CA."""

    def __init__(self, sb: Sandbox, http: aiohttp.ClientSession, token: str) -> None:
        self.base = sb.workspace_endpoint("analytics")
        self.http = http
        self.kwargs = {"headers": {"Authorization": f"Bearer {token}"}, "ssl": client_context(sb.ca_path)}

    async def call(
        self, method: str, path: str, version: str, body: Any = None, **params: str
    ) -> tuple[int, Any, Any, bytes]:
        """(status, parsed JSON body or None, headers, raw body)"""
        async with self.http.request(
            method, self.base + path, params={"api-version": version, **params}, json=body, **self.kwargs
        ) as r:
            raw = await r.read()
            return r.status, (await r.json(content_type=None)) if raw else None, r.headers, raw


@pytest.fixture
async def http(sb: Sandbox) -> AsyncIterator[Raw]:
    async with secret_credential(sb) as cred:
        token = (await cred.get_token(SYNAPSE_SCOPE)).token
    async with aiohttp.ClientSession() as session:
        yield Raw(sb, session, token)


async def test_delete_answers_204_with_content_length_zero(http: Raw, sb: Sandbox) -> None:
    """The az CLI recording: DELETE answers 204 No Content with `content-length: 0` and an empty body
    (for an id that exists and, as before, for one that does not)."""
    alice = sb.state.directory.user("alice@contoso.com").id
    request = {"roleId": CONTRIBUTOR, "principalId": alice, "scope": WS}
    assert (await http.call("PUT", "/roleAssignments/to-delete", "2020-12-01", request))[0] == 200
    for aid in ("to-delete", "never-existed"):
        status, _, headers, raw = await http.call("DELETE", f"/roleAssignments/{aid}", "2020-12-01")
        assert (status, headers.get("Content-Length"), raw) == (204, "0", b""), aid

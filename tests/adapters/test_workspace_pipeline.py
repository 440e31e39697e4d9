"""The Synapse client's lean pipeline and its create (adapters/workspace.py: access_control_client,
AccessControl.put_assignment), against a transport that records what is sent and answers what a test
says: the create sends what the SDK's generated create_role_assignment sends, fails as it fails, and
the pipeline still retries 429 (honouring Retry-After) and 5xx, telling the adaptive limit of each 429."""

from __future__ import annotations

import json
import time
from collections.abc import Iterable
from typing import Any

import pytest
from azure.core.credentials import AccessToken
from azure.core.exceptions import ClientAuthenticationError, HttpResponseError, ResourceExistsError
from azure.core.pipeline.transport import AsyncHttpResponse, AsyncHttpTransport, HttpRequest
from azure.core.utils import CaseInsensitiveDict

from synapse_scim.adapters.credentials import Cloud
from synapse_scim.adapters.throttle import AdaptiveLimit
from synapse_scim.adapters.workspace import AccessControl, Workspace, WorkspaceError, access_control_client
from synapse_scim.core.model import Grant, assignment_id
from synapse_scim.core.reasons import Reason

ENDPOINT = "https://analytics.dev.azuresynapse.net"
ROLE = "6e4bf58a-b8e1-4cc3-bbf9-d73143322b78"
PRINCIPAL = "0b0c6cd6-1f1a-4c36-8b0e-d1a9e3b8f0a1"
SCOPE = "workspaces/analytics"
CREATED = {"id": "x", "roleDefinitionId": ROLE, "principalId": PRINCIPAL, "scope": SCOPE, "principalType": "User"}
Answer = tuple[int, dict[str, Any] | None, dict[str, str]]


class Response(AsyncHttpResponse):
    def __init__(self, request: HttpRequest, status: int, body: dict[str, Any] | None, headers: dict[str, str]):
        super().__init__(request, None)
        self.status_code = status
        self.reason = "answer"
        self._body = json.dumps(body).encode() if body is not None else b""
        self.headers = CaseInsensitiveDict({"Content-Type": "application/json; charset=utf-8", **headers})
        self.content_type = self.headers["Content-Type"]

    def body(self) -> bytes:
        return self._body

    async def load_body(self) -> None:
        return None


class Recorder(AsyncHttpTransport):
    """Answers `answers` in order, then 200 with an assignment; keeps every request it was sent."""

    def __init__(self, answers: Iterable[Answer] = ()) -> None:
        self.answers = list(answers)
        self.sent: list[HttpRequest] = []

    async def send(self, request: HttpRequest, **kwargs: Any) -> Response:
        self.sent.append(request)
        status, body, headers = self.answers.pop(0) if self.answers else (200, CREATED, {})
        return Response(request, status, body, headers)

    async def __aenter__(self) -> Recorder:
        return self

    async def __aexit__(self, *args: Any) -> None:
        return None

    async def open(self) -> None:
        return None

    async def close(self) -> None:
        return None


class Token:
    async def get_token(self, *scopes: str, **kwargs: Any) -> AccessToken:
        return AccessToken("token", int(time.time()) + 3600)

    async def close(self) -> None:
        return None


def client(transport: Recorder, limit: AdaptiveLimit | None = None) -> AccessControl:
    return access_control_client(Token(), ENDPOINT, Cloud.from_spec(None), limit=limit, transport=transport)  # type: ignore[arg-type]


def sent(request: HttpRequest) -> tuple[str, str, dict[str, str], Any]:
    body = request.body if isinstance(request.body, bytes) else str(request.body).encode()
    headers = {k.lower(): v for k, v in request.headers.items() if k.lower() != "x-ms-client-request-id"}
    return request.method, request.url, headers, json.loads(body)


@pytest.mark.parametrize("principal_type", ["User", None])
async def test_the_create_sends_what_the_generated_operation_sends(principal_type: str | None) -> None:
    ours, theirs = Recorder(), Recorder()
    await client(ours).put_assignment("id/with space", ROLE, PRINCIPAL, SCOPE, principal_type)
    await client(theirs).role_assignments.create_role_assignment(
        "id/with space", ROLE, PRINCIPAL, SCOPE, principal_type=principal_type
    )
    assert sent(ours.sent[0]) == sent(theirs.sent[0])
    method, url, headers, body = sent(ours.sent[0])
    assert method == "PUT"
    assert url == f"{ENDPOINT}/roleAssignments/id%2Fwith%20space?api-version=2020-12-01"
    assert headers["authorization"] == "Bearer token" and headers["content-length"] == str(len(ours.sent[0].body))
    assert ("principalType" in body) is (principal_type is not None)


@pytest.mark.parametrize(
    "answer",
    [
        (409, {"error": {"code": "RoleAssignmentAlreadyExists", "message": "exists"}}, {}),
        (400, {"error": {"code": "InvalidScope", "message": "no such item"}}, {}),
        (401, {"error": {"code": "Unauthorized", "message": "token"}}, {}),
        (403, {"error": {"code": "Forbidden", "message": "not allowed"}}, {}),
        (404, None, {}),
    ],
    ids=lambda a: str(a[0]),
)
async def test_a_failed_create_raises_what_the_generated_operation_raises(answer: Answer) -> None:
    with pytest.raises(HttpResponseError) as ours:
        await client(Recorder([answer])).put_assignment("a", ROLE, PRINCIPAL, SCOPE, "User")
    with pytest.raises(HttpResponseError) as theirs:
        await client(Recorder([answer])).role_assignments.create_role_assignment("a", ROLE, PRINCIPAL, SCOPE)
    assert type(ours.value) is type(theirs.value)
    assert str(ours.value) == str(theirs.value)
    assert ours.value.status_code == answer[0]
    assert (ours.value.error and ours.value.error.code) == (theirs.value.error and theirs.value.error.code)
    assert type(ours.value.model) is type(theirs.value.model)
    if answer[0] == 409:
        assert isinstance(ours.value, ResourceExistsError)
    if answer[0] == 401:
        assert isinstance(ours.value, ClientAuthenticationError)


@pytest.mark.parametrize("status", [429, 500, 503])
async def test_the_lean_pipeline_still_retries_throttling_and_server_errors(status: int) -> None:
    limit = AdaptiveLimit(8)
    transport = Recorder([(status, None, {"Retry-After": "0"})] * 2)
    await client(transport, limit).put_assignment("a", ROLE, PRINCIPAL, SCOPE, "User")
    assert len(transport.sent) == 3, "two retries by the SDK, then the 200"
    assert limit.throttles == (2 if status == 429 else 0), "each 429 told to the adaptive limit"


async def test_the_workspace_adopts_a_409_and_reports_a_400_as_a_rejected_grant() -> None:
    grant = Grant(ROLE, PRINCIPAL, SCOPE)
    transport = Recorder([(409, {"error": {"code": "RoleAssignmentAlreadyExists", "message": "exists"}}, {})])
    workspace = Workspace(client(transport), "analytics")
    assert await workspace.create(grant, "User") is False
    assert await workspace.create(grant, "User") is True
    assert [r.url.split("?")[0].rsplit("/", 1)[1] for r in transport.sent] == [assignment_id(grant)] * 2
    transport.answers = [(400, {"error": {"code": "InvalidScope", "message": "no such item\nmore"}}, {})]
    with pytest.raises(WorkspaceError) as rejected:
        await workspace.create(grant, "User")
    assert rejected.value.reason == Reason.GRANT_REJECTED and ": 400: no such item: check" in rejected.value.message

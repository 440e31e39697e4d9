"""Synapse access-control adapter (azure-synapse-accesscontrol, async client).

Role definitions are read once per workspace and scope and cached; assignments are listed with the
`x-ms-continuation` paging the SDK hides (it returns one page and drops the header unless asked);
creates use the deterministic id, and 409 RoleAssignmentAlreadyExists counts as success.
"""

from __future__ import annotations

import asyncio
import json
import os
import ssl
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import aiohttp
from azure.core.credentials_async import AsyncTokenCredential
from azure.core.exceptions import (
    ClientAuthenticationError,
    HttpResponseError,
    ResourceExistsError,
    ResourceNotFoundError,
    ServiceRequestError,
    ServiceResponseError,
    map_error,
)
from azure.core.pipeline.policies import (
    AsyncBearerTokenCredentialPolicy,
    AsyncRetryPolicy,
    ContentDecodePolicy,
    UserAgentPolicy,
)
from azure.core.pipeline.transport import AioHttpTransport, AsyncHttpTransport, HttpRequest
from azure.synapse.accesscontrol import __version__ as SDK_VERSION
from azure.synapse.accesscontrol.aio import AccessControlClient
from azure.synapse.accesscontrol.models import ErrorContract

from synapse_scim import __version__
from synapse_scim.adapters.credentials import Cloud, azure_ca_bundle
from synapse_scim.adapters.fence import FencePolicy
from synapse_scim.adapters.throttle import AdaptiveLimit, ThrottlePolicy, retry_after_seconds
from synapse_scim.core.errors import ReasonedError, first_line, retry_after_header, untrusted_certificate
from synapse_scim.core.model import Assignment, Grant, assignment_id
from synapse_scim.core.reasons import Reason
from synapse_scim.metrics import SynapseMetricsPolicy

# How many times a write that Synapse keeps throttling is tried again (each time after the SDK's own
# retries and the Retry-After it was given): throttling slows a sync down, it does not fail it.
THROTTLED_ATTEMPTS = 8


class WorkspaceError(ReasonedError):
    """`reason` is a CamelCase condition reason for status."""


@dataclass(frozen=True)
class RoleDefinition:
    id: str
    name: str
    scopes: tuple[str, ...]


def workspace_error(exc: Exception, what: str) -> WorkspaceError:
    if isinstance(exc, WorkspaceError):
        return exc
    if (untrusted := untrusted_certificate(exc, what)) is not None:
        return WorkspaceError(untrusted.reason, untrusted.message)
    if isinstance(exc, ClientAuthenticationError):
        text = str(exc)
        if "AADSTS" in text or "Authentication failed" in text:
            return WorkspaceError(Reason.AUTHENTICATION_FAILED, f"{what}: cannot get a token: {first_line(text)}")
        return WorkspaceError(Reason.AUTHENTICATION_FAILED, f"{what}: the workspace rejected the token (401)")
    if isinstance(exc, HttpResponseError):
        status = exc.status_code or 0
        code = (exc.error.code if exc.error is not None else "") or ""
        if status == 403:
            return WorkspaceError(
                Reason.ACCESS_DENIED,
                f"{what}: 403 {code}: give the operator's identity the Synapse Administrator role on the workspace",
            )
        if status == 404:
            return WorkspaceError(Reason.WORKSPACE_NOT_FOUND, f"{what}: 404 {code}: check spec.endpoint")
        return WorkspaceError(
            Reason.WORKSPACE_READ_FAILED,
            f"{what}: HTTP {status} {code}".strip(),
            retry_after=retry_after_header(getattr(exc.response, "headers", None)),
        )
    if isinstance(exc, (ServiceRequestError, ServiceResponseError, OSError, asyncio.TimeoutError)):
        return WorkspaceError(
            Reason.WORKSPACE_UNREACHABLE,
            f"{what}: {type(exc).__name__}: {first_line(str(exc))}: "
            "check that spec.endpoint and spec.cloud.authorityHost are right and reachable",
        )
    return WorkspaceError(Reason.WORKSPACE_READ_FAILED, f"{what}: {type(exc).__name__}: {first_line(str(exc))}")


def access_control_client(
    credential: AsyncTokenCredential,
    endpoint: str,
    cloud: Cloud,
    retry_total: int = 4,
    limit: AdaptiveLimit | None = None,
    transport: AsyncHttpTransport[Any, Any] | None = None,
) -> AccessControl:
    """The SDK's client with the pipeline the operator needs, and no more.

    The SDK's default pipeline runs 14 policies on every request; at tens of thousands of writes a
    sync, a large share of the operator's CPU per write (bench/write_cost.py) went to ones that do
    nothing for us: a uuid1 client request id (Synapse's own x-ms-request-id identifies a request),
    headers and proxy policies (no custom headers, no `proxies`: the transport's session decides about
    proxies), redirects and the Authorization clean-up that goes with them (Synapse access control does
    not redirect; a 3xx now surfaces as an HTTP error instead of being followed), the custom hook,
    distributed tracing (no tracing plugin is configured), and the network-trace and HTTP logging
    policies (`synapse-scim run` sets the `azure` loggers to WARNING, so they only checked levels and
    copied headers). What stays, in the SDK's order: the user agent, the JSON decoding msrest reads
    listings from, the retry policy (429 and 5xx with Retry-After, connection errors: the SDK's own
    retries come before ours, as before), the bearer token, and per attempt the metrics and the
    adaptive write limit's policy; last, the write fence (adapters/fence.py: nothing leaves a replica
    whose leadership may have run out). The user agent names the replica (POD_NAME), so that
    Synapse's logs say which replica sent what. `transport` is for tests (default: aiohttp, with the
    CA bundle's one SSL context when one is configured)."""
    policies: list[Any] = [
        UserAgentPolicy(user_agent=user_agent(), sdk_moniker=f"synapse-accesscontrol/{SDK_VERSION}"),
        ContentDecodePolicy(),
        AsyncRetryPolicy(retry_total=retry_total),
        AsyncBearerTokenCredentialPolicy(credential, cloud.synapse_scope),
        SynapseMetricsPolicy(),
    ]
    if limit is not None:
        policies.append(ThrottlePolicy(limit))
    policies.append(FencePolicy())
    return AccessControl(
        credential,
        endpoint,
        credential_scopes=[cloud.synapse_scope],
        policies=policies,
        **({"transport": transport} if transport is not None else _transport()),
    )


def user_agent(env: dict[str, str] | None = None) -> str:
    """`synapse-scim/<version>`, and `pod/<name>` when the replica runs as a pod (POD_NAME)."""
    pod = (env if env is not None else os.environ).get("POD_NAME")
    return f"synapse-scim/{__version__}" + (f" pod/{pod}" if pod else "")


# What the generated create_role_assignment maps its failures to (azure.synapse.accesscontrol 0.7.0).
_CREATE_ERRORS: dict[int, type[HttpResponseError]] = {
    401: ClientAuthenticationError,
    404: ResourceNotFoundError,
    409: ResourceExistsError,
}
_API_VERSION = "2020-12-01"


class AccessControl(AccessControlClient):
    """AccessControlClient with a create that costs less CPU than the generated one.

    The generated `role_assignments.create_role_assignment` builds a msrest model, serializes it and
    its URL, query and headers through msrest, and always deserializes the answer into a
    RoleAssignmentDetails, which the operator never reads (a 200 is all it needs). `put_assignment`
    sends the same request (the URL, query, headers and JSON body the generated operation sends, byte
    for byte) through the same client's pipeline, and fails exactly as it does: the same error map,
    and an HttpResponseError carrying the ErrorContract model."""

    def __init__(self, credential: AsyncTokenCredential, endpoint: str, **kwargs: Any) -> None:
        super().__init__(credential, endpoint, **kwargs)
        self._assignments_url = f"{endpoint.rstrip('/')}/roleAssignments/"

    async def put_assignment(
        self, assignment_id: str, role_id: str, principal_id: str, scope: str, principal_type: str | None
    ) -> None:
        body: dict[str, str] = {"roleId": role_id, "principalId": principal_id, "scope": scope}
        if principal_type is not None:  # msrest leaves out what is None
            body["principalType"] = principal_type
        request = HttpRequest(
            "PUT",
            f"{self._assignments_url}{quote(assignment_id, safe='')}?api-version={_API_VERSION}",
            headers={"Content-Type": "application/json", "Accept": "application/json, text/json"},
        )
        request.set_bytes_body(json.dumps(body).encode())
        response = await self._send_request(request, stream=False)
        if response.status_code != 200:
            map_error(status_code=response.status_code, response=response, error_map=_CREATE_ERRORS)
            # msrest has no type hints: the call is the generated operation's, word for word.
            error = self._deserialize.failsafe_deserialize(ErrorContract, response)  # type: ignore[no-untyped-call]
            raise HttpResponseError(response=response, model=error)


def _transport() -> dict[str, Any]:
    """With a CA bundle, one SSL context on the session's connector, not `connection_verify`.

    azure-core turns a `connection_verify` path into a new SSLContext on every request, and aiohttp
    keys pooled connections by that context: every request would open a new TLS connection (a full
    handshake each, several times the cost of the request itself)."""
    ca = azure_ca_bundle()
    if not ca:
        return {}
    context = ssl.create_default_context(cafile=ca)
    # No cookies, as in the session azure-core makes for itself: Synapse sets none we need, and a real
    # jar filters every request's cookies and stores every answer's, once per write.
    session = aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(ssl=context), trust_env=False, cookie_jar=aiohttp.DummyCookieJar()
    )
    return {"transport": AioHttpTransport(session=session, session_owner=True)}


def _keep_headers(pipeline_response: Any, deserialized: Any, headers: dict[str, Any]) -> tuple[Any, dict[str, Any]]:
    return deserialized, headers


class Workspace:
    """One Synapse workspace's role definitions and role assignments."""

    def __init__(
        self, client: AccessControl, name: str, role_cache_ttl: float = 3600.0, limit: AdaptiveLimit | None = None
    ) -> None:
        self.client = client
        self.name = name
        self.limit = limit or AdaptiveLimit(8)
        # The last listing with our own writes since applied: what incremental syncs plan against.
        self.known_assignments: tuple[Assignment, ...] | None = None
        self._roles: tuple[float, tuple[RoleDefinition, ...]] | None = None
        self._role_cache_ttl = role_cache_ttl

    def remember(self, assignments: Iterable[Assignment]) -> None:
        self.known_assignments = tuple(assignments)

    async def role_definitions(self) -> tuple[RoleDefinition, ...]:
        """Every role definition of the workspace (cached: built-in roles do not change)."""
        if self._roles and time.monotonic() - self._roles[0] < self._role_cache_ttl:
            return self._roles[1]
        try:
            found = await self.client.role_definitions.list_role_definitions()
        except Exception as exc:
            raise workspace_error(exc, "listing role definitions") from exc
        roles = tuple(
            RoleDefinition(id=str(r.id).lower(), name=r.name or "", scopes=tuple(r.scopes or ())) for r in found or ()
        )
        self._roles = (time.monotonic(), roles)
        return roles

    async def assignments(self) -> tuple[Assignment, ...]:
        """Every role assignment of the workspace, all pages."""
        out: list[Assignment] = []
        token: str | None = None
        try:
            while True:
                # With cls the SDK returns what cls returns (its annotation says the list alone).
                kept: Any = await self.client.role_assignments.list_role_assignments(
                    continuation_token_parameter=token, cls=_keep_headers
                )
                page, headers = kept
                out.extend(
                    Assignment(
                        id=str(a.id),
                        role_id=str(a.role_definition_id).lower(),
                        principal_id=str(a.principal_id).lower(),
                        scope=a.scope or "",
                        principal_type=a.principal_type,
                    )
                    for a in (page.value or ())
                )
                token = headers.get("x-ms-continuation") or None
                if not token:
                    self.known_assignments = tuple(out)
                    return self.known_assignments
        except Exception as exc:
            raise workspace_error(exc, "listing role assignments") from exc

    async def create(self, grant: Grant, principal_type: str | None) -> bool:
        """Grant; True if created now, False if it already existed (409 is success: idempotent)."""

        async def put() -> bool:
            try:
                await self.client.put_assignment(
                    assignment_id(grant), grant.role_id, grant.principal_id, grant.scope, principal_type
                )
                return True
            except ResourceExistsError:
                return False
            except HttpResponseError as exc:
                if exc.status_code != 400:
                    raise
                # The service refused what the binding asks for: a person must fix it.
                said = (exc.error.message if exc.error is not None else "") or ""
                raise WorkspaceError(
                    Reason.GRANT_REJECTED,
                    f"granting role {grant.role_id} to {grant.principal_id} at "
                    f"{grant.scope}: 400: {first_line(said)}: check the binding's spec.scope (the "
                    "item must exist in the workspace) and spec.roles",
                ) from exc

        return await self._write(put, f"granting role {grant.role_id} to {grant.principal_id}")

    async def delete(self, assignment: Assignment) -> bool:
        """Revoke; True if deleted now, False if it was already gone."""

        async def remove() -> bool:
            try:
                await self.client.role_assignments.delete_role_assignment_by_id(assignment.id, scope=assignment.scope)
                return True
            except ResourceNotFoundError:
                return False

        return await self._write(remove, f"revoking assignment {assignment.id}")

    async def _write(self, op: Callable[[], Awaitable[bool]], what: str) -> bool:
        for _ in range(THROTTLED_ATTEMPTS):
            async with self.limit:
                try:
                    done = await op()
                except HttpResponseError as exc:
                    if exc.status_code != 429:
                        raise workspace_error(exc, what) from exc
                    headers = getattr(exc.response, "headers", None) or {}
                    self.limit.throttled(retry_after_seconds(headers))
                    continue
                except Exception as exc:
                    raise workspace_error(exc, what) from exc
                self.limit.succeeded()
                return done
        raise WorkspaceError(
            Reason.THROTTLED,
            f"{what}: Synapse kept answering 429 (throttled) after "
            f"{THROTTLED_ATTEMPTS} rounds of retries; tried again next sync",
            retry_after=max(0.0, self.limit.resume_at - time.monotonic()),
        )

    async def close(self) -> None:
        await self.client.close()


def roles_by_name(roles: Iterable[RoleDefinition]) -> dict[str, RoleDefinition]:
    return {r.name: r for r in roles}

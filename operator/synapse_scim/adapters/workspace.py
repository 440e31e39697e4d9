"""Synapse access-control adapter (azure-synapse-accesscontrol, async client).

Role definitions are read once per workspace and scope and cached; assignments are listed with the
`x-ms-continuation` paging the SDK hides (it returns one page and drops the header unless asked);
creates use the deterministic id, and 409 RoleAssignmentAlreadyExists counts as success.
"""

from __future__ import annotations

import asyncio
import ssl
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Any

import aiohttp
from azure.core.credentials_async import AsyncTokenCredential
from azure.core.exceptions import (
    ClientAuthenticationError,
    HttpResponseError,
    ResourceExistsError,
    ResourceNotFoundError,
    ServiceRequestError,
    ServiceResponseError,
)
from azure.core.pipeline.transport import AioHttpTransport
from azure.synapse.accesscontrol.aio import AccessControlClient

from synapse_scim.adapters.credentials import Cloud, azure_ca_bundle
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
) -> AccessControlClient:
    policies: list[Any] = [SynapseMetricsPolicy()]
    if limit is not None:
        policies.append(ThrottlePolicy(limit))
    return AccessControlClient(
        credential,
        endpoint,
        credential_scopes=[cloud.synapse_scope],
        retry_total=retry_total,
        per_retry_policies=policies,
        **_transport(),
    )


def _transport() -> dict[str, Any]:
    """With a CA bundle, one SSL context on the session's connector, not `connection_verify`.

    azure-core turns a `connection_verify` path into a new SSLContext on every request, and aiohttp
    keys pooled connections by that context: every request would open a new TLS connection (a full
    handshake each, several times the cost of the request itself)."""
    ca = azure_ca_bundle()
    if not ca:
        return {}
    context = ssl.create_default_context(cafile=ca)
    session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=context), trust_env=False)
    return {"transport": AioHttpTransport(session=session, session_owner=True)}


def _keep_headers(pipeline_response: Any, deserialized: Any, headers: dict[str, Any]) -> tuple[Any, dict[str, Any]]:
    return deserialized, headers


class Workspace:
    """One Synapse workspace's role definitions and role assignments."""

    def __init__(
        self, client: AccessControlClient, name: str, role_cache_ttl: float = 3600.0, limit: AdaptiveLimit | None = None
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
                await self.client.role_assignments.create_role_assignment(
                    assignment_id(grant),
                    grant.role_id,
                    grant.principal_id,
                    grant.scope,
                    principal_type=principal_type,
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

"""The SCIM error body (RFC 7644 §3.12): `status` as a string, `scimType` where the RFC defines one."""

from __future__ import annotations

import contextvars
from typing import Any

from pydantic import ValidationError
from scim2_models import Error, InvalidValueException, SCIMException, UniquenessException

ERROR_SCHEMA = "urn:ietf:params:scim:api:messages:2.0:Error"


def error_body(status: int, detail: str, scim_type: str | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {"schemas": [ERROR_SCHEMA], "status": str(status), "detail": detail}
    if scim_type:
        body["scimType"] = scim_type
    return body


def from_exception(exc: SCIMException) -> tuple[int, dict[str, Any]]:
    """The HTTP status and body of a SCIM exception (ours or scim2-models')."""
    return exc.status, error_body(exc.status, exc.detail if exc.detail else str(exc), exc.scim_type or None)


def from_validation(exc: ValidationError) -> SCIMException:
    """A pydantic validation error of a request body as a SCIM exception: the first error, with its path."""
    errors = Error.from_validation_errors(exc)
    if not errors:
        return InvalidValueException(detail="the request body is not valid")
    return SCIMException.from_error(errors[0])


def already_taken(attribute: str, value: str) -> UniquenessException:
    """409 uniqueness: the message names the attribute and how to find the resource that holds it."""
    return UniquenessException(
        detail=f"{attribute} {value!r} is already taken by another resource of this provider (compared without "
        f'case): find it with filter={attribute} eq "{value}" and update it by its id, or choose another {attribute}'
    )


class VersionConflict(Exception):
    """The stored resource changed since it was read (another write won): read again and re-apply."""


class Abandoned(Exception):
    """The client was answered before this write started (its request timed out at the endpoint): it is not
    applied. The identity provider retries it; applied later, it could undo a newer request of the same
    object that was sent to another replica meanwhile (a reactivation landing after a deactivation)."""


class ClientAnswered:
    """Set by the HTTP adapter when it answers the client before the operation ends (a 503 after the
    request timeout); the operation then finishes the write it has sent, and starts no other."""

    def __init__(self) -> None:
        self.answered = False


CLIENT_ANSWERED: contextvars.ContextVar[ClientAnswered | None] = contextvars.ContextVar(
    "scim_client_answered", default=None
)


def check_not_abandoned() -> None:
    """Before a write starts (a fresh read, apply, write): raise Abandoned once the client was answered."""
    flag = CLIENT_ANSWERED.get()
    if flag is not None and flag.answered:
        raise Abandoned("the client was answered (timed out) before this write started: not applied")

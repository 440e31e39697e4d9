"""The SCIM error body (RFC 7644 §3.12): `status` as a string, `scimType` where the RFC defines one."""

from __future__ import annotations

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

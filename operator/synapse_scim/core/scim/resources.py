"""The two resource types, how a request body becomes one, and how one is written back.

The models are scim2-models' `User` (with the enterprise extension, so Entra's URN keys resolve) and
`Group`, with one change: e-mail values are plain strings. scim2-models validates them with
email-validator, which refuses Okta's own documented example (`test.user@okta.local`, a reserved
name); identity providers expect their values stored as sent (E1).

Stored form: the resource's attributes as a JSON dict, without `id`, `meta`, `members` or `password`
(a password is never stored nor logged); the store keeps those apart."""

from __future__ import annotations

import unicodedata
from enum import StrEnum
from typing import Any, ClassVar

from pydantic import ValidationError
from scim2_models import (
    URN,
    Context,
    Email,
    EnterpriseUser,
    Group,
    InvalidSyntaxException,
    InvalidValueException,
    ResponseParameters,
    SCIMException,
    ScimPolicy,
    User,
    default_comparison_key,
)

from synapse_scim.core.scim.errors import from_validation

USER_SCHEMA = "urn:ietf:params:scim:schemas:core:2.0:User"
GROUP_SCHEMA = "urn:ietf:params:scim:schemas:core:2.0:Group"
ENTERPRISE_SCHEMA = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"
LIST_SCHEMA = "urn:ietf:params:scim:api:messages:2.0:ListResponse"
PATCH_SCHEMA = "urn:ietf:params:scim:api:messages:2.0:PatchOp"

# Attributes the store manages itself: a request's values for them are ignored.
MANAGED = ("id", "meta")


class Kind(StrEnum):
    USER = "User"
    GROUP = "Group"

    @property
    def endpoint(self) -> str:
        return "Users" if self is Kind.USER else "Groups"


class PlainEmail(Email):
    """An e-mail whose value is stored as sent (no email-validator)."""

    value: str | None = None


class UserResource(User[EnterpriseUser]):
    __schema__ = URN(USER_SCHEMA)

    emails: list[PlainEmail] | None = None  # type: ignore[assignment]
    Emails: ClassVar[type[PlainEmail]] = PlainEmail


class GroupResource(Group):
    __schema__ = URN(GROUP_SCHEMA)


MODELS: dict[Kind, type[UserResource] | type[GroupResource]] = {Kind.USER: UserResource, Kind.GROUP: GroupResource}

# Compared without case, as the issue asks (RFC 7643 makes externalId caseExact; identity providers
# match on it as on userName, and a case-exact filter with a case-insensitive uniqueness check would
# loop POST -> 409).
CASE_INSENSITIVE_FIELDS = frozenset({"user_name", "external_id", "display_name"})


def fold(value: str) -> str:
    """The comparison key of a case-insensitive value: NFC, lower-cased, NFC again."""
    return unicodedata.normalize("NFC", unicodedata.normalize("NFC", value).lower())


def comparison_key(binding: Any, value: str) -> str:
    if (
        getattr(binding, "field_name", None) in CASE_INSENSITIVE_FIELDS
        and getattr(binding, "sub_field_name", None) is None
    ):
        return fold(value)
    return default_comparison_key(binding, value)


# What identity providers send that the strict reading refuses (docs/scim.md): Entra's ADSCIM group URN
# and `meta` in bodies (unknown=ignore), Entra's remove-by-value of members (remove_value_as_filter;
# members are handled by patch.py, this covers other multi-valued attributes), and add/replace on
# `emails[type eq "work"].value` when no such entry exists yet (unmatched_path_filter=create).
POLICY = ScimPolicy(
    unknown=ScimPolicy.Unknown.ignore,
    remove_value_as_filter=ScimPolicy.RemoveValue.apply,
    unmatched_path_filter=ScimPolicy.UnmatchedPathFilter.create,
    comparison_key=comparison_key,
)

# Index attribute (SCIM name) -> model field. `id` is compared exactly, the others through fold().
INDEXED = {"id": "id", "username": "user_name", "externalid": "external_id", "displayname": "display_name"}
UNIQUE = {Kind.USER: "userName", Kind.GROUP: "displayName"}


def index_keys(kind: Kind, attributes: dict[str, Any]) -> dict[str, str]:
    """The index entries of a stored resource: SCIM attribute name -> comparison key."""
    keys: dict[str, str] = {}
    for name in ("userName", "externalId", "displayName"):
        if kind is Kind.GROUP and name == "userName":
            continue
        value = attributes.get(name)
        if isinstance(value, str):
            keys[name] = fold(value)
    return keys


def unique_key(kind: Kind, attributes: dict[str, Any]) -> str | None:
    """The key that must be unique among the provider's resources of this kind (userName, displayName)."""
    value = attributes.get(UNIQUE[kind])
    return fold(value) if isinstance(value, str) else None


def _without_case(body: dict[str, Any], name: str) -> dict[str, Any]:
    return {key: value for key, value in body.items() if key.lower() != name}


def parse(kind: Kind, body: Any, *, replacement: bool = False) -> tuple[UserResource | GroupResource, list[str]]:
    """A create (POST) or replace (PUT) body as a resource, and, for a group, its member ids in order.

    Read-only and managed attributes (`id`, `meta`) are ignored, a password is dropped, booleans may be
    the strings "True"/"False". A group's members are returned apart (the model gets none)."""
    if not isinstance(body, dict):
        raise InvalidSyntaxException(detail="the request body must be a JSON object")
    clean = dict(body)
    for name in (*MANAGED, "password", "members"):
        clean = _without_case(clean, name)
    if not any(key.lower() == "schemas" for key in clean):
        clean["schemas"] = [USER_SCHEMA if kind is Kind.USER else GROUP_SCHEMA]
    members: list[str] = []
    if kind is Kind.GROUP:
        raw = next((value for key, value in body.items() if key.lower() == "members"), None)
        members = member_ids(raw)
    context = Context.RESOURCE_REPLACEMENT_REQUEST if replacement else Context.RESOURCE_CREATION_REQUEST
    try:
        resource = MODELS[kind].model_validate(clean, scim_ctx=context, scim_policy=POLICY)
    except ValidationError as exc:
        raise from_validation(exc) from None
    return resource, members


def member_ids(raw: Any) -> list[str]:
    """Member ids from a `members` value: a list of {"value": id, ...} (a single object is tolerated).
    Nested groups are not supported: a member whose `type` is not User is refused."""
    if raw is None:
        return []
    items = raw if isinstance(raw, list) else [raw]
    ids: list[str] = []
    for item in items:
        if not isinstance(item, dict):
            raise InvalidValueException(detail="a member must be an object with a 'value' (the member's id)")
        value = next((v for k, v in item.items() if k.lower() == "value"), None)
        if not isinstance(value, str) or not value:
            raise InvalidValueException(detail="a member must have a 'value' (the member's id)")
        kind = next((v for k, v in item.items() if k.lower() == "type"), None)
        if isinstance(kind, str) and kind.lower() != "user":
            raise InvalidValueException(
                detail=f"member {value}: only users can be members (nested groups are not supported)"
            )
        if value not in ids:
            ids.append(value)
    return ids


def stored(resource: UserResource | GroupResource) -> dict[str, Any]:
    """The stored form of a resource: every attribute it has, as JSON, without id, meta and members."""
    data = resource.model_dump(scim_ctx=None, mode="json", by_alias=True, exclude_none=True)
    for name in (*MANAGED, "members", "password", "schemas"):
        data.pop(name, None)
    return data


def load(kind: Kind, attributes: dict[str, Any], resource_id: str | None = None) -> UserResource | GroupResource:
    """A stored resource as its model (for filters, PATCH and responses)."""
    data = dict(attributes)
    if resource_id is not None:
        data["id"] = resource_id
    return MODELS[kind].model_validate(data, scim_policy=POLICY)


def response_parameters(kind: Kind, attributes: str | None, excluded: str | None) -> ResponseParameters[Any] | None:
    """`attributes` / `excludedAttributes` of a request, resolved against the resource type (400 when unknown)."""
    if not attributes and not excluded:
        return None
    try:
        return ResponseParameters[MODELS[kind]].model_validate(  # type: ignore[valid-type]
            {"attributes": attributes or None, "excludedAttributes": excluded or None}
        )
    except ValidationError as exc:
        raise from_validation(exc) from None


def known_attributes(kind: Kind, names: str | None, *, keep_one: bool = False) -> str | None:
    """Of a comma-separated list of attribute names, those the resource type has (for a search of every
    resource type at once). With `keep_one`, a list none of whose names the type has becomes `id`
    (the type's resources are then returned with their id only, never in full)."""
    if not names:
        return names
    known = []
    for name in (each.strip() for each in names.split(",")):
        try:
            response_parameters(kind, name, None)
        except SCIMException:
            continue
        known.append(name)
    if not known:
        return "id" if keep_one else None
    return ",".join(known)


def wants_members(parameters: ResponseParameters[Any] | None) -> bool:
    """Whether a group response carries its members under these parameters."""
    if parameters is None:
        return True

    def named(paths: list[Any] | None) -> bool:
        return any(str(path).lower().split(":")[-1].split(".")[0] == "members" for path in paths or [])

    if parameters.excluded_attributes and named(parameters.excluded_attributes):
        return False
    return not parameters.attributes or named(parameters.attributes)


def dump(
    kind: Kind,
    attributes: dict[str, Any],
    *,
    resource_id: str,
    meta: dict[str, Any],
    members: list[dict[str, Any]] | None = None,
    parameters: ResponseParameters[Any] | None = None,
) -> dict[str, Any]:
    """A stored resource as a response body. A group's members are added as built by the caller (a
    50,000-member group is never turned into 50,000 models)."""
    resource = load(kind, attributes, resource_id)
    body = resource.model_dump(
        scim_ctx=Context.RESOURCE_QUERY_RESPONSE, response_parameters=parameters, scim_policy=POLICY
    )
    body["id"] = resource_id
    body["meta"] = meta
    if kind is Kind.GROUP and members is not None and wants_members(parameters):
        body["members"] = members
    return body

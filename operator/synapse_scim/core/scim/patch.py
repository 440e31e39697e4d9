"""PATCH (RFC 7644 §3.5.2) in every dialect identity providers send (docs/scim.md, issue 14).

Users, and a group's own attributes, are patched by scim2-models under resources.POLICY: `op` in any
case, "True"/"False" strings, a no-path `replace` with dotted and URN keys (Entra, aadOptscim062020),
Okta's no-path `{"active": false}`, Okta's rename `{"id", "displayName"}` (the id must be the group's).

A group's members are set operations on ids, written here: scim2-models applies them to a list of
models, which on a 50,000-member group took 63 s to remove 100 members. The forms:

- `add` `members` [value list], or a no-path `add` whose value has `members`: add those;
- `replace` `members` [value list], or a no-path `replace` with `members`: the group has exactly those;
- `remove` `members[value eq "…"]` (or an `or` of such): remove those;
- `remove` `members` with a value list (Entra's default): remove **only** those;
- `remove` `members` with no value, a null or an empty list: refused (400 invalidValue), never
  applied. A strict reading would empty the group and revoke every role it grants.

Operations apply in order; the whole PATCH is refused if any operation is (nothing is half-applied).
A PATCH with an empty `Operations` list (Microsoft's validator sends one) changes nothing."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError
from scim2_models import (
    Context,
    InvalidPathException,
    InvalidSyntaxException,
    InvalidValueException,
    PatchOp,
    SCIMException,
    ScimFilter,
)

from synapse_scim.core.scim.errors import from_validation
from synapse_scim.core.scim.filters import member_leaf
from synapse_scim.core.scim.resources import GROUP_SCHEMA, PATCH_SCHEMA, POLICY, GroupResource, UserResource, member_ids

OPS = ("add", "replace", "remove")
MAX_OPERATIONS = 1000

REMOVE_ALL_REFUSED = (
    "a remove of members must name the members to remove: a value list "
    '[{"value": "<id>"}] or a path members[value eq "<id>"]. Removing every member at once is refused '
    "(it would revoke every role the group grants); send a replace of members to set the whole list"
)


@dataclass(frozen=True)
class Operation:
    op: str  # lower-cased: add, replace, remove
    path: str | None
    value: Any
    has_value: bool


def operations(body: Any) -> list[Operation]:
    """The operations of a PatchOp body, checked for shape. Raises 400 invalidSyntax/invalidValue."""
    if not isinstance(body, dict):
        raise InvalidSyntaxException(detail="the request body must be a JSON object")
    schemas = next((value for key, value in body.items() if key.lower() == "schemas"), None)
    if schemas is not None and (not isinstance(schemas, list) or PATCH_SCHEMA not in schemas):
        raise InvalidSyntaxException(detail=f"a PATCH body's schemas must be [{PATCH_SCHEMA!r}]")
    raw = next((value for key, value in body.items() if key.lower() == "operations"), None)
    if not isinstance(raw, list):
        raise InvalidSyntaxException(detail="a PATCH body must have an 'Operations' list")
    if len(raw) > MAX_OPERATIONS:
        raise InvalidValueException(detail=f"a PATCH may carry at most {MAX_OPERATIONS} operations")
    out: list[Operation] = []
    for item in raw:
        if not isinstance(item, dict):
            raise InvalidSyntaxException(detail="each PATCH operation must be an object")
        fields = {key.lower(): value for key, value in item.items()}
        op = fields.get("op")
        if not isinstance(op, str) or op.lower() not in OPS:
            raise InvalidSyntaxException(detail=f"unknown PATCH op {op!r}: expected add, replace or remove")
        path = fields.get("path")
        if path is not None and (not isinstance(path, str) or not path.strip()):
            raise InvalidPathException(detail="a PATCH path must be a non-empty string")
        out.append(Operation(op.lower(), path.strip() if path else None, fields.get("value"), "value" in fields))
    return out


def _library_patch(resource: UserResource | GroupResource, ops: list[Operation]) -> bool:
    """Apply operations with scim2-models to a copy's fields in place; whether anything changed."""
    if not ops:
        return False
    payload: dict[str, Any] = {
        "schemas": [PATCH_SCHEMA],
        "Operations": [
            {
                "op": op.op,
                **({"path": op.path} if op.path is not None else {}),
                **({"value": op.value} if op.has_value else {}),
            }
            for op in ops
        ],
    }
    try:
        with POLICY:
            patch = PatchOp[type(resource)].model_validate(payload, scim_ctx=Context.RESOURCE_PATCH_REQUEST)  # type: ignore[misc]
            return bool(patch.patch(resource))
    except ValidationError as exc:
        raise from_validation(exc) from None
    except SCIMException as exc:
        if isinstance(exc.__cause__, ValidationError):  # scim2-models puts pydantic's whole text in the detail
            raise from_validation(exc.__cause__) from None
        raise


def _is_password(path: str | None) -> bool:
    return path is not None and path.lower().split(":")[-1] == "password"


def patch_user(user: UserResource, body: Any) -> tuple[UserResource, bool]:
    """The user after the PATCH, and whether it changed. A password is accepted and never stored."""
    ops: list[Operation] = []
    for op in operations(body):
        if _is_password(op.path):
            continue
        if op.path is None and isinstance(op.value, dict):
            value = {key: val for key, val in op.value.items() if key.lower() != "password"}
            if not value:
                continue
            op = Operation(op.op, None, value, True)
        ops.append(op)
    result = user.model_copy(deep=True)
    changed = _library_patch(result, ops)
    return result, changed


def _members_path(path: str) -> str | None:
    """What follows `members` in a group path ("" for members itself), None when the path is not
    about members. A URN prefix of the core group schema is allowed."""
    lowered = path.lower()
    prefix = GROUP_SCHEMA.lower() + ":"
    if lowered.startswith(prefix):
        path, lowered = path[len(prefix) :], lowered[len(prefix) :]
    if not lowered.startswith("members"):
        return None
    rest = path[len("members") :]
    if rest and rest[0] not in "[.":
        return None  # another attribute whose name starts with "members"
    return rest


def _filtered_member_ids(rest: str, members: set[str]) -> set[str]:
    """The current members that `members[<filter>]` selects."""
    if not (rest.startswith("[") and rest.endswith("]")):
        raise InvalidPathException(detail=f'unsupported members path "members{rest}": use members[value eq "<id>"]')
    try:
        node = ScimFilter(f"members{rest}").ast
    except SCIMException:
        raise
    except (ValueError, TypeError) as exc:
        raise InvalidPathException(detail=f"invalid members path: {exc}") from None
    leaf = member_leaf(node)
    if leaf is None or leaf.ids is None:
        raise InvalidPathException(detail='unsupported members path: use members[value eq "<id>"]')
    return members & set(leaf.ids)


@dataclass(frozen=True)
class GroupPatch:
    group: GroupResource  # without members
    members: list[str]  # the member ids after the PATCH, in order (existing first, then added)
    added: frozenset[str]
    removed: frozenset[str]
    changed: bool


def patch_group(group: GroupResource, members: list[str], body: Any) -> GroupPatch:
    """The group after the PATCH (`group` carries no members; `members` are its member ids)."""
    current = dict.fromkeys(members)  # ordered set
    attribute_ops: list[Operation] = []
    for op in operations(body):
        if op.path is None:
            if op.op == "remove":
                raise InvalidPathException(detail="a remove operation needs a path")
            if not isinstance(op.value, dict):
                raise InvalidValueException(detail="a PATCH operation without a path needs an object value")
            rest = {}
            for key, value in op.value.items():
                if key.lower() in ("members", GROUP_SCHEMA.lower() + ":members"):
                    ids = member_ids(value)
                    if op.op == "replace":
                        current = dict.fromkeys(ids)
                    else:
                        current.update(dict.fromkeys(ids))
                else:
                    rest[key] = value
            if rest:
                attribute_ops.append(Operation(op.op, None, rest, True))
            continue
        tail = _members_path(op.path)
        if tail is None:
            attribute_ops.append(op)
            continue
        if tail == "":
            if op.op == "add":
                current.update(dict.fromkeys(member_ids(op.value)))
            elif op.op == "replace":
                current = dict.fromkeys(member_ids(op.value))
            else:
                if op.value is None or op.value == [] or op.value == {}:
                    raise InvalidValueException(detail=REMOVE_ALL_REFUSED)
                for member in member_ids(op.value):
                    current.pop(member, None)
            continue
        if op.op != "remove":
            raise InvalidPathException(
                detail=f'{op.op} on "{op.path}" is not supported: add or replace "members" with a value list'
            )
        for member in _filtered_member_ids(tail, set(current)):
            current.pop(member, None)
    result = group.model_copy(deep=True)
    changed = _library_patch(result, attribute_ops)
    before, after = set(members), set(current)
    added, removed = frozenset(after - before), frozenset(before - after)
    return GroupPatch(result, list(current), added, removed, changed or bool(added or removed))

"""SCIM filters (RFC 7644 §3.4.2.2): parsed and checked by scim2-models, answered from an index where
they can be, evaluated by scim2-models except on group members, which are a set of ids here.

Supported: every operator and attribute scim2-models evaluates (eq, ne, co, sw, ew, gt, ge, lt, le, pr,
and, or, not, value paths such as `emails[type eq "work"].value eq "…"`). On groups, `members` is
filtered by value equality only (`members[value eq "…"]`, `members.value eq "…"`, `members eq "…"`,
`members pr`). Anything else is 400 invalidFilter: never an unfiltered list.

`userName`, `externalId` and `displayName` compare without case (resources.comparison_key)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError
from scim2_models import InvalidFilterException, ScimFilter, SearchRequest
from scim2_models.path import (
    AttrPath,
    CompareOperator,
    Comparison,
    FilterNode,
    LogicalExpr,
    LogicalOperator,
    Not,
    Present,
    ValuePath,
)

from synapse_scim.core.scim.resources import GROUP_SCHEMA, MODELS, POLICY, GroupResource, Kind, UserResource, fold

MAX_FILTER_LENGTH = 2048

# Entra's documentation writes `externalId eq jyoung`: a bare word where the grammar wants a quoted
# string. Only a whole filter of one comparison with a bare word (no quote, single or double, bracket,
# parenthesis or space) is quoted; a single-quoted value stays an error (it is not a SCIM string);
# literals (true, false, null, numbers) are left as they are.
_BARE = re.compile(r"^\s*([A-Za-z][\w.:$-]*)\s+(eq|ne|co|sw|ew)\s+([^\s\"'()\[\]]+)\s*$", re.IGNORECASE)
_LITERAL = re.compile(r"^(true|false|null|-?\d+(\.\d+)?([eE][+-]?\d+)?)$", re.IGNORECASE)


def _quote_bare_value(text: str) -> str:
    match = _BARE.match(text)
    if match is None or _LITERAL.match(match.group(3)):
        return text
    return f'{match.group(1)} {match.group(2)} "{match.group(3)}"'


def _is_members(path: AttrPath) -> bool:
    return path.attr.lower() == "members" and (path.uri is None or path.uri.lower() == GROUP_SCHEMA.lower())


@dataclass(frozen=True)
class Lookup:
    """An equality an index answers: every match of the filter has this value (attribute: id, userName,
    externalId or displayName; key: the exact id, or the folded value)."""

    attribute: str
    key: str


class _Members:
    """A leaf on group members: a set of ids the member set must meet (None: any member at all)."""

    def __init__(self, ids: frozenset[str] | None) -> None:
        self.ids = ids

    def __call__(self, members: frozenset[str]) -> bool:
        if self.ids is None:
            return bool(members)
        return not self.ids.isdisjoint(members)


@dataclass(frozen=True)
class CompiledFilter:
    text: str
    kind: Kind
    ast: FilterNode
    lookup: Lookup | None
    _leaves: dict[int, Any]

    def matches(self, resource: UserResource | GroupResource, members: frozenset[str] = frozenset()) -> bool:
        """Whether a resource (a group without its members, which come as a set of ids) matches."""
        with POLICY:
            return self._eval(self.ast, resource, members)

    def _eval(self, node: FilterNode, resource: UserResource | GroupResource, members: frozenset[str]) -> bool:
        if isinstance(node, LogicalExpr):
            if node.op is LogicalOperator.and_:
                return all(self._eval(term, resource, members) for term in node.terms)
            return any(self._eval(term, resource, members) for term in node.terms)
        if isinstance(node, Not):
            return not self._eval(node.expr, resource, members)
        leaf = self._leaves[id(node)]
        if isinstance(leaf, _Members):
            return leaf(members)
        return bool(leaf.match(resource))


def _member_value_ids(node: FilterNode) -> frozenset[str]:
    """The ids of `value eq "a" [or value eq "b" ...]` inside a members value path; else invalidFilter."""
    if isinstance(node, LogicalExpr) and node.op is LogicalOperator.or_:
        ids: frozenset[str] = frozenset()
        for term in node.terms:
            ids |= _member_value_ids(term)
        return ids
    if (
        isinstance(node, Comparison)
        and node.op is CompareOperator.eq
        and node.attr_path.attr.lower() == "value"
        and node.attr_path.sub_attr is None
        and isinstance(node.value, str)
    ):
        return frozenset({node.value})
    raise InvalidFilterException(
        detail='group members can only be filtered by value equality: members[value eq "<id>"]'
    )


def member_leaf(node: FilterNode) -> _Members | None:
    """The member test of a leaf on `members`, None when the leaf is not about members."""
    if isinstance(node, ValuePath) and _is_members(node.attr_path):
        if node.sub_attr is not None or node.attr_path.sub_attr is not None:
            raise InvalidFilterException(
                detail='group members can only be filtered by value equality: members[value eq "<id>"]'
            )
        return _Members(_member_value_ids(node.val_filter))
    if isinstance(node, Present) and _is_members(node.attr_path):
        return _Members(None)
    if isinstance(node, Comparison) and _is_members(node.attr_path):
        if (
            node.attr_path.sub_attr not in (None, "value")
            or node.op is not CompareOperator.eq
            or not isinstance(node.value, str)
        ):
            raise InvalidFilterException(
                detail='group members can only be filtered by value equality: members[value eq "<id>"]'
            )
        return _Members(frozenset({node.value}))
    return None


def _lookup(node: FilterNode) -> Lookup | None:
    """An equality on an indexed attribute that every match must satisfy: the node itself, or a term of a
    top-level `and`."""
    if isinstance(node, LogicalExpr) and node.op is LogicalOperator.and_:
        found = [lookup for term in node.terms if (lookup := _lookup(term)) is not None]
        return next((each for each in found if each.attribute == "id"), found[0] if found else None)
    if not isinstance(node, Comparison) or node.op is not CompareOperator.eq or not isinstance(node.value, str):
        return None
    path = node.attr_path
    if path.sub_attr is not None or (path.uri is not None and not path.uri.lower().endswith((":user", ":group"))):
        return None
    name = {"id": "id", "username": "userName", "externalid": "externalId", "displayname": "displayName"}.get(
        path.attr.lower()
    )
    if name is None:
        return None
    return Lookup(name, node.value if name == "id" else fold(node.value))


FILTER_HELP = (
    'write a filter such as userName eq "alice@example.com" (RFC 7644 §3.4.2.2: operators eq, ne, co, sw, ew, '
    "gt, ge, lt, le, pr; and, or, not; strings in double quotes)"
)


def compile_filter(kind: Kind, text: str) -> CompiledFilter:
    """Parse and check a filter against a resource type. Raises InvalidFilterException (400) whose
    detail quotes the filter, says what is wrong and how to write one."""
    try:
        return _compile(kind, text)
    except InvalidFilterException as exc:
        shown = text if len(text) <= 80 else text[:77] + "..."
        raise InvalidFilterException(detail=f"filter {shown!r}: {exc.detail}; {FILTER_HELP}") from None


def _compile(kind: Kind, text: str) -> CompiledFilter:
    if len(text) > MAX_FILTER_LENGTH:
        raise InvalidFilterException(detail=f"the filter is longer than {MAX_FILTER_LENGTH} characters")
    text = _quote_bare_value(text)
    model = MODELS[kind]
    try:
        parsed: ScimFilter[Any] = ScimFilter(text)
    except InvalidFilterException:
        raise
    except (ValueError, TypeError) as exc:
        raise InvalidFilterException(detail=f"invalid filter: {exc}") from None
    leaves: dict[int, Any] = {}
    members_only: list[FilterNode] = []

    def walk(node: FilterNode) -> None:
        if isinstance(node, LogicalExpr):
            for term in node.terms:
                walk(term)
            return
        if isinstance(node, Not):
            walk(node.expr)
            return
        if kind is Kind.GROUP and (leaf := member_leaf(node)) is not None:
            leaves[id(node)] = leaf
            members_only.append(node)
            return
        # Checked strictly against the model: an unknown attribute is 400, not "matches nothing".
        try:
            SearchRequest[model].model_validate({"filter": str(node)}, scim_policy=POLICY)  # type: ignore[valid-type]
            leaves[id(node)] = ScimFilter[model](node)  # type: ignore[valid-type]
        except ValidationError as exc:
            detail = exc.errors()[0].get("msg", "invalid filter") if exc.errors() else "invalid filter"
            raise InvalidFilterException(detail=f"{detail} (in {node})") from None

    walk(parsed.ast)
    return CompiledFilter(text=text, kind=kind, ast=parsed.ast, lookup=_lookup(parsed.ast), _leaves=leaves)

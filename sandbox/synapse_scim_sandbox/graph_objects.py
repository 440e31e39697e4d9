"""How Graph renders directory objects: properties per type (defaults as in v1.0), `$select`
projection, a cache of rendered JSON, and the opaque paging tokens."""

from __future__ import annotations

import base64
import binascii
import itertools
import json
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from .directory import GROUP, SERVICE_PRINCIPAL, USER, DirectoryObject
from .service import ServiceError, dumps

CONTENT_TYPE = "application/json;odata.metadata=minimal;odata.streaming=true;IEEE754Compatible=false;charset=utf-8"
ODATA_TYPE = {
    USER: "#microsoft.graph.user",
    GROUP: "#microsoft.graph.group",
    SERVICE_PRINCIPAL: "#microsoft.graph.servicePrincipal",
}
CASTS = {
    f"{ns}.{name}": kind
    for ns in ("microsoft.graph", "graph")
    for name, kind in (("user", USER), ("group", GROUP), ("serviceprincipal", SERVICE_PRINCIPAL))
}
CREATED = "2024-01-01T00:00:00Z"

Getter = Callable[[Any], Any]
GETTERS: dict[str, dict[str, Getter]] = {
    USER: {
        "id": lambda u: u.id,
        "businessPhones": lambda u: [],
        "displayName": lambda u: u.display_name,
        "givenName": lambda u: u.given_name,
        "jobTitle": lambda u: u.job_title,
        "mail": lambda u: u.mail,
        "mobilePhone": lambda u: None,
        "officeLocation": lambda u: None,
        "preferredLanguage": lambda u: None,
        "surname": lambda u: u.surname,
        "userPrincipalName": lambda u: u.user_principal_name,
        "accountEnabled": lambda u: u.account_enabled,
        "userType": lambda u: "Member",
        "mailNickname": lambda u: u.user_principal_name.split("@")[0],
        "createdDateTime": lambda u: CREATED,
    },
    GROUP: {
        "id": lambda g: g.id,
        "createdDateTime": lambda g: CREATED,
        "deletedDateTime": lambda g: None,
        "description": lambda g: g.description,
        "displayName": lambda g: g.display_name,
        "groupTypes": lambda g: [],
        "mail": lambda g: None,
        "mailEnabled": lambda g: g.mail_enabled,
        "mailNickname": lambda g: g.mail_nickname,
        "securityEnabled": lambda g: g.security_enabled,
        "visibility": lambda g: None,
    },
    SERVICE_PRINCIPAL: {
        "id": lambda s: s.id,
        "deletedDateTime": lambda s: None,
        "accountEnabled": lambda s: s.account_enabled,
        "appDisplayName": lambda s: s.display_name,
        "appId": lambda s: s.app_id,
        "displayName": lambda s: s.display_name,
        "servicePrincipalNames": lambda s: [s.app_id],
        "servicePrincipalType": lambda s: "Application",
    },
}
DEFAULTS: dict[str, tuple[str, ...]] = {
    USER: (
        "businessPhones",
        "displayName",
        "givenName",
        "jobTitle",
        "mail",
        "mobilePhone",
        "officeLocation",
        "preferredLanguage",
        "surname",
        "userPrincipalName",
        "id",
    ),
    GROUP: tuple(GETTERS[GROUP]),
    SERVICE_PRINCIPAL: tuple(GETTERS[SERVICE_PRINCIPAL]),
}
ALL_PROPS = frozenset(itertools.chain.from_iterable(GETTERS.values()))
Plan = dict[str, list[tuple[str, Getter]]]


def plan(select: list[str] | None, kinds: Iterable[str]) -> Plan:
    """Which properties to emit per object kind."""
    out: Plan = {}
    for kind in kinds:
        getters = GETTERS[kind]
        names = DEFAULTS[kind] if select is None else ["id", *(p for p in select if p in getters and p != "id")]
        out[kind] = [(n, getters[n]) for n in names]
    return out


def project(obj: DirectoryObject, p: Plan, with_type: bool) -> dict[str, Any]:
    out: dict[str, Any] = {"@odata.type": ODATA_TYPE[obj.kind]} if with_type else {}
    for name, get in p[obj.kind]:
        out[name] = get(obj)
    return out


class RenderCache:
    """JSON of projected objects, reused across pages until any object changes (directory.revision)."""

    LIMIT = 300_000

    def __init__(self) -> None:
        self._items: dict[tuple[str, tuple[str, ...] | None], bytes] = {}
        self._revision = -1

    def render(self, objects: Iterable[DirectoryObject], p: Plan, select: list[str] | None, revision: int) -> bytes:
        if revision != self._revision or len(self._items) > self.LIMIT:
            self._items.clear()
            self._revision = revision
        key = tuple(select) if select is not None else None
        items = self._items
        parts = []
        for obj in objects:
            fragment = items.get((obj.id, key))
            if fragment is None:
                fragment = dumps(project(obj, p, True))
                items[(obj.id, key)] = fragment
            parts.append(fragment)
        return b"[" + b",".join(parts) + b"]"


def all_values(obj: DirectoryObject) -> dict[str, Any]:
    return {name: get(obj) for name, get in GETTERS[obj.kind].items()}


def encode_token(data: Mapping[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(data, separators=(",", ":")).encode()).rstrip(b"=").decode()


def decode_token(text: str) -> dict[str, Any]:
    try:
        data = json.loads(base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)))
    except (ValueError, binascii.Error):
        raise ServiceError(400, "Request_BadRequest", "Invalid paging token.") from None
    if not isinstance(data, dict):
        raise ServiceError(400, "Request_BadRequest", "Invalid paging token.")
    return data

"""Synapse RBAC scope paths. Pure functions, no I/O.

Scope paths have the shape the service itself uses (``GET /rbacScopes``, role definitions'
``scopes``): ``workspaces/{workspaceName}`` and
``workspaces/{workspaceName}/{collection}/{name}``, with no leading slash.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from enum import StrEnum
from typing import Any
from urllib.parse import urlsplit

__all__ = [
    "SCOPE_COLLECTIONS",
    "ScopeKind",
    "role_valid_at",
    "scope_kind",
    "scope_path",
    "spec_scope_spelling",
    "workspace_name_from_endpoint",
]


class ScopeKind(StrEnum):
    """Kinds of scope; the non-workspace values are also the keys of a binding's ``spec.scope``."""

    WORKSPACE = "workspace"
    BIG_DATA_POOL = "bigDataPool"
    INTEGRATION_RUNTIME = "integrationRuntime"
    LINKED_SERVICE = "linkedService"
    CREDENTIAL = "credential"
    SCOPE_POOL = "scopePool"


# spec.scope key -> path segment, spelled exactly as Synapse spells it in rbacScopes.
SCOPE_COLLECTIONS: Mapping[ScopeKind, str] = {
    ScopeKind.BIG_DATA_POOL: "bigDataPools",
    ScopeKind.INTEGRATION_RUNTIME: "integrationRuntimes",
    ScopeKind.LINKED_SERVICE: "linkedServices",
    ScopeKind.CREDENTIAL: "credentials",
    ScopeKind.SCOPE_POOL: "scopePools",
}
_KIND_BY_COLLECTION = {segment.lower(): kind for kind, segment in SCOPE_COLLECTIONS.items()}


def _check_name(field: str, value: Any) -> str:
    # A "/" or an empty name would silently address a different (or no) scope.
    if not isinstance(value, str) or not value.strip() or "/" in value or value != value.strip():
        raise ValueError(f"{field}: must be a non-empty name without '/' or surrounding spaces, got {value!r}")
    return value


def scope_path(workspace_name: str, scope_spec: Mapping[str, Any] | None) -> str:
    """``spec.scope`` of a binding -> the Synapse scope path.

    ``{}`` (or None) is the workspace; ``{"bigDataPool": "p1"}`` is
    ``workspaces/{ws}/bigDataPools/p1`` and likewise for the other kinds. Errors name the
    offending field, because they end up verbatim in a binding's status.
    """
    ws = _check_name("workspaceName", workspace_name)
    spec = dict(scope_spec or {})
    if len(spec) > 1:
        raise ValueError(f"scope: at most one of {sorted(spec)} may be set")
    if not spec:
        return f"workspaces/{ws}"
    ((key, value),) = spec.items()
    try:
        kind = ScopeKind(key)
    except ValueError:
        kind = None
    if kind is None or kind is ScopeKind.WORKSPACE:
        allowed = ", ".join(str(k) for k in SCOPE_COLLECTIONS)
        raise ValueError(f"scope.{key}: unknown scope kind (one of: {allowed}; or {{}} for the workspace)")
    return f"workspaces/{ws}/{SCOPE_COLLECTIONS[kind]}/{_check_name(f'scope.{key}', value)}"


def _segments(path: str) -> list[str]:
    return path.strip().strip("/").split("/")


def scope_kind(path: str) -> ScopeKind:
    """Kind of a concrete scope path. Collection segments match case-insensitively (Azure does)."""
    parts = _segments(path)
    if len(parts) >= 2 and parts[0].lower() == "workspaces" and parts[1]:
        if len(parts) == 2:
            return ScopeKind.WORKSPACE
        if len(parts) == 4 and parts[3] and parts[2].lower() in _KIND_BY_COLLECTION:
            return _KIND_BY_COLLECTION[parts[2].lower()]
    raise ValueError(f"scope: not a Synapse scope path: {path!r}")


def _is_placeholder(segment: str) -> bool:
    return segment.startswith("{") and segment.endswith("}")  # such as {workspaceName}


def _segment_matches(template: str, actual: str) -> bool:
    if _is_placeholder(template):
        return bool(actual)
    return template.lower() == actual.lower()


def spec_scope_spelling(template: str) -> str | None:
    """A role definition's scope as a binding's ``spec.scope`` says it (YAML flow style).

    ``workspaces/{workspaceName}`` is ``{}`` (the workspace: no spec.scope);
    ``workspaces/{workspaceName}/bigDataPools/{bigDataPoolName}`` is ``{bigDataPool: NAME}``, and
    likewise for every kind of ``SCOPE_COLLECTIONS``. A concrete entry keeps its item's name
    (``workspaces/ws/bigDataPools/p1`` is ``{bigDataPool: p1}``). None for a path spec.scope cannot
    express (a collection it does not know, or not a Synapse scope path at all).
    """
    parts = _segments(template)
    if len(parts) < 2 or parts[0].lower() != "workspaces" or not parts[1]:
        return None
    if len(parts) == 2:
        return "{}"
    if len(parts) == 4 and parts[3] and parts[2].lower() in _KIND_BY_COLLECTION:
        name = "NAME" if _is_placeholder(parts[3]) else parts[3]
        return f"{{{_KIND_BY_COLLECTION[parts[2].lower()]}: {name}}}"
    return None


def role_valid_at(role_scopes: Iterable[str], path: str) -> bool:
    """Whether a role definition whose ``scopes`` are ``role_scopes`` may be assigned at ``path``.

    Role definitions list templates such as ``workspaces/{workspaceName}/bigDataPools/
    {bigDataPoolName}``; a ``{...}`` segment matches any name, other segments must be equal
    (case-insensitively). Concrete entries therefore work too.
    """
    actual = _segments(path)
    for template in role_scopes:
        parts = _segments(template)
        if len(parts) == len(actual) and all(_segment_matches(t, a) for t, a in zip(parts, actual, strict=True)):
            return True
    return False


# Public, China and US Government clouds all use "<name>.dev.azuresynapse.<cloud suffix>".
_ENDPOINT_HOST = re.compile(r"^([a-z0-9](?:[a-z0-9-]*[a-z0-9])?)\.dev\.azuresynapse\.[a-z0-9.-]+$")


def workspace_name_from_endpoint(endpoint: str) -> str:
    """``https://NAME.dev.azuresynapse.net`` -> ``NAME`` (lowercase; workspace names are).

    Anything else (an emulator on 127.0.0.1, a proxy) raises ValueError: guessing a name there
    would build scopes for the wrong workspace; the caller should use an explicit name instead.
    """
    parts = urlsplit(endpoint.strip()) if isinstance(endpoint, str) else None
    host = (parts.hostname or "") if parts else ""
    if not parts or parts.scheme.lower() != "https" or parts.path not in ("", "/") or parts.query:
        raise ValueError(f"endpoint: expected https://<workspace>.dev.azuresynapse.net, got {endpoint!r}")
    match = _ENDPOINT_HOST.match(host.lower())
    if not match:
        raise ValueError(
            f"endpoint: cannot derive a workspace name from {endpoint!r} "
            "(expected https://<workspace>.dev.azuresynapse.net; set the workspace name explicitly)"
        )
    return match.group(1)

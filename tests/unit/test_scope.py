"""Scope paths, role scope validity, endpoint names and Go durations."""

from __future__ import annotations

import pytest
import yaml

from synapse_scim.core.durations import parse_duration
from synapse_scim.core.scope import (
    SCOPE_COLLECTIONS,
    ScopeKind,
    role_valid_at,
    scope_kind,
    scope_path,
    spec_scope_spelling,
    workspace_name_from_endpoint,
)
from synapse_scim.reads.bindings import valid_scopes_text

# Verbatim from the real role definitions (builtin-roles.json in the shared reference).
SYNAPSE_USER_SCOPES = [
    "workspaces/{workspaceName}",
    "workspaces/{workspaceName}/bigDataPools/{bigDataPoolName}",
    "workspaces/{workspaceName}/scopePools/{scopePoolName}",
    "workspaces/{workspaceName}/integrationRuntimes/{integrationRuntimeName}",
    "workspaces/{workspaceName}/linkedServices/{linkedServiceName}",
    "workspaces/{workspaceName}/credentials/{credentialName}",
]
ARTIFACT_PUBLISHER_SCOPES = ["workspaces/{workspaceName}"]
CONTRIBUTOR_SCOPES = SYNAPSE_USER_SCOPES[:4]


@pytest.mark.parametrize(
    ("spec", "path", "kind"),
    [
        ({}, "workspaces/ws", ScopeKind.WORKSPACE),
        (None, "workspaces/ws", ScopeKind.WORKSPACE),
        ({"bigDataPool": "p1"}, "workspaces/ws/bigDataPools/p1", ScopeKind.BIG_DATA_POOL),
        ({"integrationRuntime": "ir"}, "workspaces/ws/integrationRuntimes/ir", ScopeKind.INTEGRATION_RUNTIME),
        ({"linkedService": "ls"}, "workspaces/ws/linkedServices/ls", ScopeKind.LINKED_SERVICE),
        ({"credential": "c"}, "workspaces/ws/credentials/c", ScopeKind.CREDENTIAL),
        ({"scopePool": "sp"}, "workspaces/ws/scopePools/sp", ScopeKind.SCOPE_POOL),
    ],
)
def test_scope_path_and_kind(spec: dict[str, str] | None, path: str, kind: ScopeKind) -> None:
    assert scope_path("ws", spec) == path
    assert scope_kind(path) is kind


def test_scope_path_with_two_kinds_names_the_fields() -> None:
    with pytest.raises(ValueError, match=r"bigDataPool.*credential"):
        scope_path("ws", {"bigDataPool": "p1", "credential": "c"})


@pytest.mark.parametrize(
    ("spec", "field"),
    [
        ({"sqlPool": "x"}, "scope.sqlPool"),
        ({"workspace": "x"}, "scope.workspace"),
        ({"bigDataPool": ""}, "scope.bigDataPool"),
        ({"bigDataPool": "a/b"}, "scope.bigDataPool"),
        ({"linkedService": None}, "scope.linkedService"),
    ],
)
def test_scope_path_bad_input_names_the_field(spec: dict[str, object], field: str) -> None:
    with pytest.raises(ValueError, match=field):
        scope_path("ws", spec)


def test_scope_path_rejects_bad_workspace_name() -> None:
    with pytest.raises(ValueError, match="workspaceName"):
        scope_path("", {})


def test_scope_kind_tolerates_case_and_slashes_but_rejects_other_paths() -> None:
    assert scope_kind("/workspaces/ws/BIGDATAPOOLS/p1/") is ScopeKind.BIG_DATA_POOL
    for bad in ["", "workspaces", "workspaces/", "workspaces/ws/sqlPools/x", "workspaces/ws/bigDataPools", "subs/x"]:
        with pytest.raises(ValueError, match="scope"):
            scope_kind(bad)


@pytest.mark.parametrize(
    ("scopes", "path", "valid"),
    [
        (ARTIFACT_PUBLISHER_SCOPES, "workspaces/ws", True),
        (ARTIFACT_PUBLISHER_SCOPES, "workspaces/ws/bigDataPools/p1", False),
        (CONTRIBUTOR_SCOPES, "workspaces/ws/bigDataPools/p1", True),
        (CONTRIBUTOR_SCOPES, "workspaces/ws/integrationRuntimes/ir", True),
        (CONTRIBUTOR_SCOPES, "workspaces/ws/credentials/c", False),
        (SYNAPSE_USER_SCOPES, "workspaces/ws/credentials/c", True),
        (SYNAPSE_USER_SCOPES, "workspaces/ws/linkedServices/ls", True),
        (SYNAPSE_USER_SCOPES, "workspaces/ws/sqlPools/x", False),
        (SYNAPSE_USER_SCOPES, "workspaces/ws/bigdatapools/p1", True),  # case-insensitive segment
        (["workspaces/ws"], "workspaces/ws", True),  # a concrete entry matches itself
        (["workspaces/ws"], "workspaces/other", False),
        ([], "workspaces/ws", False),
    ],
)
def test_role_valid_at(scopes: list[str], path: str, valid: bool) -> None:
    assert role_valid_at(scopes, path) is valid


@pytest.mark.parametrize(
    ("template", "spelling"),
    [
        ("workspaces/{workspaceName}", "{}"),
        ("workspaces/{workspaceName}/bigDataPools/{bigDataPoolName}", "{bigDataPool: NAME}"),
        ("workspaces/{workspaceName}/integrationRuntimes/{integrationRuntimeName}", "{integrationRuntime: NAME}"),
        ("workspaces/{workspaceName}/linkedServices/{linkedServiceName}", "{linkedService: NAME}"),
        ("workspaces/{workspaceName}/credentials/{credentialName}", "{credential: NAME}"),
        ("workspaces/{workspaceName}/scopePools/{scopePoolName}", "{scopePool: NAME}"),
        # Concrete entries name their item; collections match without case, slashes around are ignored.
        ("workspaces/ws", "{}"),
        ("/workspaces/ws/BIGDATAPOOLS/p1/", "{bigDataPool: p1}"),
        # What spec.scope cannot say has no spelling: the caller shows the path itself.
        ("workspaces/{workspaceName}/sqlPools/{sqlPoolName}", None),
        ("workspaces/{workspaceName}/bigDataPools", None),
        ("workspaces", None),
        ("subscriptions/{subscriptionId}", None),
        ("", None),
    ],
)
def test_spec_scope_spelling(template: str, spelling: str | None) -> None:
    assert spec_scope_spelling(template) == spelling


@pytest.mark.parametrize("path", ["workspaces/ws", *(f"workspaces/ws/{c}/item" for c in SCOPE_COLLECTIONS.values())])
def test_spec_scope_spelling_is_what_spec_scope_accepts(path: str) -> None:
    # Every collection: the spelling, pasted into a manifest as spec.scope, addresses the same path.
    spelled = spec_scope_spelling(path)
    assert spelled is not None
    assert scope_path("ws", yaml.safe_load(spelled)) == path


def test_valid_scopes_are_listed_as_spec_scope_says_them() -> None:
    assert valid_scopes_text(CONTRIBUTOR_SCOPES) == (
        "spec.scope {} (the workspace), {bigDataPool: NAME}, {scopePool: NAME}, {integrationRuntime: NAME}"
    )
    # A path spec.scope cannot say is listed as it is, apart; duplicates once.
    sql = "workspaces/{workspaceName}/sqlPools/{sqlPoolName}"
    assert valid_scopes_text([*ARTIFACT_PUBLISHER_SCOPES, sql, "workspaces/ws"]) == (
        f"spec.scope {{}} (the workspace); {sql} (no spec.scope for it)"
    )
    assert valid_scopes_text([]) == "no scope"


@pytest.mark.parametrize(
    ("endpoint", "name"),
    [
        ("https://contoso-analytics.dev.azuresynapse.net", "contoso-analytics"),
        ("https://Contoso.dev.azuresynapse.net/", "contoso"),
        ("https://ws1.dev.azuresynapse.azure.cn", "ws1"),
        ("https://ws1.dev.azuresynapse.usgovcloudapi.net:443", "ws1"),
    ],
)
def test_workspace_name_from_endpoint(endpoint: str, name: str) -> None:
    assert workspace_name_from_endpoint(endpoint) == name


@pytest.mark.parametrize(
    "endpoint",
    [
        "http://ws.dev.azuresynapse.net",
        "https://127.0.0.1:8443",
        "https://ws.sql.azuresynapse.net",
        "ws.dev.azuresynapse.net",
        "https://ws.dev.azuresynapse.net/roleAssignments",
        "",
    ],
)
def test_workspace_name_from_endpoint_rejects_other_urls(endpoint: str) -> None:
    with pytest.raises(ValueError, match="endpoint"):
        workspace_name_from_endpoint(endpoint)


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("10m", 600.0),
        ("1h30m", 5400.0),
        ("1.5h", 5400.0),
        ("300ms", 0.3),
        ("2h45m30s", 9930.0),
        ("1m30s500ms", 90.5),
        ("0", 0.0),
        ("0s", 0.0),
        ("+5s", 5.0),
        ("1500us", 0.0015),
        ("1µs", 1e-6),
        (".5s", 0.5),
        ("90s", 90.0),
    ],
)
def test_parse_duration(text: str, seconds: float) -> None:
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["", "10", "m", "10x", "1h 30m", "-5m", "1d", "5mss", "1.2.3s", "h1"])
def test_parse_duration_bad_input_names_the_value(text: str) -> None:
    with pytest.raises(ValueError, match="duration") as info:
        parse_duration(text)
    assert repr(text) in str(info.value)


def test_parse_duration_rejects_non_strings() -> None:
    with pytest.raises(ValueError, match="600"):
        parse_duration(600)  # type: ignore[arg-type]

"""Bad input in what a binding names: roles, scopes, subjects (unknown, ambiguous, deleted, deleted
mid-sync) and hostile strings. One operator for the module; each case has its own sandbox workspace."""

from __future__ import annotations

from catalogue import QUOTED_GROUP, TWIN_GROUP, UNICODE_GROUP, expect, start, start_healthy

from support.harness import RB_PLURAL
from support.orgs import upn

WORKSPACES = [
    "role-unknown",
    "role-wrong-case",
    "role-hostile",
    "role-long",
    "roles-max-some-unknown",
    "role-not-valid-at-scope",
    "scope-item-missing",
    "group-unknown",
    "group-ambiguous",
    "group-id-unknown",
    "group-deleted",
    "group-404-mid-sync",
    "user-unknown",
    "user-id-unknown",
    "sp-unknown",
    "sp-app-id-unknown",
    "odata-injection",
    "quote-in-name",
    "unicode-name",
    "zero-width-lookalike",
    "newline-in-name",
    "shell-markdown",
    "user-path-traversal",
    "user-query-injection",
    "group-name-max-length",
    "subjects-max-all-unknown",
]
UNKNOWN_GUID = "0badc0de-0000-4000-8000-00000000dead"


def granted(h, name: str) -> set[str]:
    """Principals the operator granted in workspace `name` (the seeded manual grant excluded)."""
    return {a["principalId"] for a in h.assignments(name) if a.get("createdBy")}


# -- roles and scopes -----------------------------------------------------------------------------


def test_role_unknown(bad):
    guard = start(bad, "role-unknown", ["Synapse Contributer"], [{"kind": "Group", "name": "Analysts"}])
    expect(
        bad, "role-unknown", "RoleNotFound", "'Synapse Contributer'", "roles are named exactly", "Synapse Contributor"
    )
    guard.check()
    assert granted(bad, "role-unknown") == set()


def test_role_wrong_case(bad):
    guard = start(bad, "role-wrong-case", ["synapse user"], [{"kind": "Group", "name": "Analysts"}])
    expect(bad, "role-wrong-case", "RoleNotFound", "'synapse user'", "Synapse User")
    guard.check()


def test_role_hostile_string(bad):
    role = "Synapse User'; DROP TABLE roles;--\n`$(id)` ✓"
    guard = start(bad, "role-hostile", [role], [{"kind": "Group", "name": "Analysts"}])
    expect(bad, "role-hostile", "RoleNotFound", repr(role))
    guard.check()


def test_role_name_at_max_length(bad):
    role = "R" * 128
    guard = start(bad, "role-long", [role], [{"kind": "Group", "name": "Analysts"}])
    expect(bad, "role-long", "RoleNotFound", role)
    guard.check()


def test_twenty_roles_some_unknown(bad):
    roles = ["Synapse User", "Synapse Contributor"] + [f"Made Up Role {i}" for i in range(18)]
    guard = start(bad, "roles-max-some-unknown", roles, [{"kind": "Group", "name": "Analysts"}])
    ready = expect(bad, "roles-max-some-unknown", "RoleNotFound", "'Made Up Role 0'", "'Made Up Role 17'")
    assert "'Synapse User'" not in ready["message"], "only the unknown roles are named"
    guard.check()
    # The roles that do exist are granted (a grant is never destructive); the unknown ones are named.
    assert granted(bad, "roles-max-some-unknown") == {bad.user_id(upn("erin")), bad.user_id(upn("frank"))}


def test_role_not_valid_at_scope(bad):
    guard = start(
        bad,
        "role-not-valid-at-scope",
        ["Apache Spark Administrator"],
        [{"kind": "User", "name": upn("alice")}],
        scope={"bigDataPool": "sparkpool"},
    )
    expect(
        bad,
        "role-not-valid-at-scope",
        "RoleNotValidAtScope",
        "'Apache Spark Administrator'",
        "workspaces/role-not-valid-at-scope/bigDataPools/sparkpool",
        "it is valid at",
    )
    guard.check()


def test_scope_item_missing(bad):
    guard = start(
        bad,
        "scope-item-missing",
        ["Synapse Compute Operator"],
        [{"kind": "User", "name": upn("alice")}],
        scope={"bigDataPool": "nosuchpool"},
    )
    expect(bad, "scope-item-missing", "GrantRejected", "nosuchpool", "spec.scope")
    guard.check()


# -- subjects -------------------------------------------------------------------------------------


def test_group_unknown(bad):
    guard = start(bad, "group-unknown", ["Synapse User"], [{"kind": "Group", "name": "No Such Group"}])
    obj = expect(bad, "group-unknown", "SubjectNotFound", "'No Such Group'", "does not exist")
    assert obj
    assert bad.get(RB_PLURAL, "group-unknown")["status"]["unresolved"][0]["name"] == "Group No Such Group"
    guard.check()


def test_group_ambiguous(bad):
    guard = start(bad, "group-ambiguous", ["Synapse User"], [{"kind": "Group", "name": TWIN_GROUP}])
    expect(
        bad, "group-ambiguous", "SubjectAmbiguous", f"'{TWIN_GROUP}'", "more than one Group", "name it by id instead"
    )
    guard.check()
    assert granted(bad, "group-ambiguous") == set(), "neither twin's members get the role"


def test_group_id_unknown(bad):
    guard = start(bad, "group-id-unknown", ["Synapse User"], [{"kind": "Group", "id": UNKNOWN_GUID}])
    expect(bad, "group-id-unknown", "SubjectNotFound", UNKNOWN_GUID, "does not exist")
    guard.check()


def test_group_deleted_after_grants(bad):
    guard = start_healthy(bad, "group-deleted", "Doomed")
    bad.sb.admin.delete_group("Doomed")  # the directory watcher sees the change and syncs
    expect(bad, "group-deleted", "SubjectNotFound", "'Doomed'", "does not exist")
    guard.check()


def test_group_404_mid_sync(bad):
    """The group resolves by name, then its member list answers 404 (deleted between the two reads)."""
    guard = start_healthy(bad, "group-404-mid-sync", "Vanishing")
    rule = bad.sb.admin.inject_fault(
        {
            "service": "graph",
            "operation": "transitiveMembers",
            "match": {"group": "Vanishing"},
            "status": 404,
            "code": "Request_ResourceNotFound",
        }
    )
    try:
        # The change watch sees the group change and the sync re-reads its members: 404.
        bad.sb.admin.add_member("Vanishing", upn("heidi"))
        expect(bad, "group-404-mid-sync", "SubjectNotFound", "members of group 'Vanishing'", "does not exist")
        guard.check()
    finally:
        bad.sb.admin.remove_fault(rule["id"])


def test_user_unknown(bad):
    guard = start(bad, "user-unknown", ["Synapse User"], [{"kind": "User", "name": upn("nobody")}])
    expect(bad, "user-unknown", "SubjectNotFound", upn("nobody"), "does not exist")
    guard.check()


def test_user_id_unknown(bad):
    guard = start(bad, "user-id-unknown", ["Synapse User"], [{"kind": "User", "id": UNKNOWN_GUID}])
    expect(bad, "user-id-unknown", "SubjectNotFound", UNKNOWN_GUID, "does not exist")
    guard.check()


def test_service_principal_unknown(bad):
    guard = start(bad, "sp-unknown", ["Synapse User"], [{"kind": "ServicePrincipal", "name": "no-such-app"}])
    expect(bad, "sp-unknown", "SubjectNotFound", "'no-such-app'", "does not exist")
    guard.check()


def test_service_principal_app_id_unknown(bad):
    guard = start(bad, "sp-app-id-unknown", ["Synapse User"], [{"kind": "ServicePrincipal", "name": UNKNOWN_GUID}])
    expect(bad, "sp-app-id-unknown", "SubjectNotFound", UNKNOWN_GUID, "does not exist")
    guard.check()


# -- hostile strings ------------------------------------------------------------------------------


def test_odata_injection_in_group_name(bad):
    name = "x' or displayName eq 'Analysts"
    guard = start(bad, "odata-injection", ["Synapse User"], [{"kind": "Group", "name": name}])
    expect(bad, "odata-injection", "SubjectNotFound", "does not exist")
    guard.check()
    assert granted(bad, "odata-injection") == set(), "the filter was not widened to Analysts"


def test_quote_in_group_name_resolves(bad):
    start(bad, "quote-in-name", ["Synapse User"], [{"kind": "Group", "name": QUOTED_GROUP}])
    bad.wait_condition(RB_PLURAL, "quote-in-name")
    assert granted(bad, "quote-in-name") == {bad.user_id(upn("heidi"))}


def test_unicode_group_name_resolves(bad):
    start(bad, "unicode-name", ["Synapse User"], [{"kind": "Group", "name": UNICODE_GROUP}])
    bad.wait_condition(RB_PLURAL, "unicode-name")
    assert granted(bad, "unicode-name") == {bad.user_id(upn("heidi"))}


def test_zero_width_lookalike_is_not_the_group(bad):
    guard = start(bad, "zero-width-lookalike", ["Synapse User"], [{"kind": "Group", "name": "Anal\u200bysts"}])
    expect(bad, "zero-width-lookalike", "SubjectNotFound", "does not exist")
    guard.check()
    assert granted(bad, "zero-width-lookalike") == set()


def test_newline_in_group_name(bad):
    guard = start(bad, "newline-in-name", ["Synapse User"], [{"kind": "Group", "name": "Analysts\nReady: True"}])
    expect(bad, "newline-in-name", "SubjectNotFound", repr("Analysts\nReady: True"))
    guard.check()
    assert granted(bad, "newline-in-name") == set()


def test_shell_and_markdown_metacharacters(bad):
    name = "`$(id)`; rm -rf / | <script>*_[x](y)_* && echo %s"
    guard = start(bad, "shell-markdown", ["Synapse User"], [{"kind": "Group", "name": name}])
    expect(bad, "shell-markdown", "SubjectNotFound", repr(name))
    guard.check()


def test_user_name_path_traversal(bad):
    guard = start(bad, "user-path-traversal", ["Synapse User"], [{"kind": "User", "name": "../groups"}])
    expect(bad, "user-path-traversal", "SubjectNotFound", "'../groups'")
    guard.check()
    assert granted(bad, "user-path-traversal") == set()


def test_user_name_query_injection(bad):
    name = upn("alice") + "?$select=id"
    guard = start(bad, "user-query-injection", ["Synapse User"], [{"kind": "User", "name": name}])
    expect(bad, "user-query-injection", "SubjectNotFound", repr(name))
    guard.check()
    assert granted(bad, "user-query-injection") == set(), "the name did not resolve to alice"


# -- oversized ------------------------------------------------------------------------------------


def test_group_name_at_max_length(bad):
    name = "G" * 256
    guard = start(bad, "group-name-max-length", ["Synapse User"], [{"kind": "Group", "name": name}])
    expect(bad, "group-name-max-length", "SubjectNotFound", name)
    guard.check()


def test_max_subjects_all_unknown(bad):
    subjects = [{"kind": "User", "name": f"ghost{i:03d}@contoso.onmicrosoft.com"} for i in range(256)]
    guard = start(bad, "subjects-max-all-unknown", ["Synapse User"], subjects)
    expect(bad, "subjects-max-all-unknown", "SubjectNotFound", "ghost000@", "ghost255@", timeout=120)
    unresolved = bad.get(RB_PLURAL, "subjects-max-all-unknown")["status"]["unresolved"]
    assert len(unresolved) == 256
    guard.check()

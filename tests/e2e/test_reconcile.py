"""The operator end to end: real API server, the Azure sandbox through the real SDKs, `synapse-scim run`."""

from __future__ import annotations

import time

import pytest

from support.harness import RB_PLURAL, WS_PLURAL
from support.orgs import upn
from synapse_scim.core.model import Grant, assignment_id

CONTRIBUTOR = "7572bffe-f453-4b66-912a-46cc5ef38fda"
USER_ROLE = "2a385764-43e8-416c-9825-7b18d05a2c4b"
COMPUTE_OPERATOR = "e3844cc7-4670-42cb-9349-9bdac1ee7881"
CREDENTIAL_USER = "5eb298b4-692c-4241-9cf0-f58a3b42bb25"
ADMIN = "6e4bf58a-b8e1-4cc3-bbf9-d73143322b78"
WS_SCOPE = "workspaces/analytics"


def held(h, role_id: str, scope: str = WS_SCOPE) -> set[str]:
    """Principal ids holding role_id at scope in the sandbox workspace."""
    return {a["principalId"] for a in h.assignments() if a["roleDefinitionId"] == role_id and a["scope"] == scope}


def ready(h, name: str, **kw):
    return h.wait_condition(RB_PLURAL, name, **kw)


def test_one_group_one_role_is_granted_with_deterministic_ids(harness):
    h = harness
    h.start_operator()
    h.workspace()
    h.binding("analysts", ["Synapse Contributor"], [{"kind": "Group", "name": "Analysts"}])
    obj = ready(h, "analysts")
    erin, frank = h.user_id(upn("erin")), h.user_id(upn("frank"))
    assert held(h, CONTRIBUTOR) == {erin, frank}, "dave is disabled: no role"
    for a in h.assignments():
        assert a["id"] == assignment_id(Grant(a["roleDefinitionId"], a["principalId"], a["scope"]))
    status = obj["status"]
    assert status["summary"] == {"desired": 2, "inSync": 2, "missing": 0, "pendingRemoval": 0, "unmanaged": 0}
    assert status["drift"] == {"missing": [], "unexpected": [], "truncated": False}
    assert status["claims"] == [{"roleId": CONTRIBUTOR, "scope": WS_SCOPE}]
    ws = h.wait_condition(WS_PLURAL, "analytics")
    assert ws["status"]["reachable"] is True
    assert ws["status"]["assignments"] == {"managed": 2, "unmanaged": 0}
    assert ws["status"]["roleDefinitions"] == 11


def test_nested_groups_with_a_cycle_expand_to_every_member_once(harness):
    h = harness
    h.start_operator()
    h.workspace()
    h.binding("engineers", ["Synapse User"], [{"kind": "Group", "name": "Data Engineers"}])
    ready(h, "engineers")
    assert held(h, USER_ROLE) == {h.user_id(upn(u)) for u in ("alice", "bob", "carol")}
    assert len(h.assignments()) == 3


def test_user_in_two_bindings_keeps_the_grant_until_both_are_gone(harness):
    h = harness
    h.start_operator()
    h.workspace()
    h.binding("direct", ["Synapse User"], [{"kind": "User", "name": upn("alice")}])
    h.binding("via-group", ["Synapse User"], [{"kind": "Group", "name": "Data Engineers"}])
    ready(h, "direct")
    ready(h, "via-group")
    alice = h.user_id(upn("alice"))
    assert alice in held(h, USER_ROLE)
    h.delete(RB_PLURAL, "via-group")
    h.wait_for(lambda: h.get(RB_PLURAL, "via-group") is None, "via-group gone")
    assert held(h, USER_ROLE) == {alice}, "bob and carol lose it; alice is still granted by 'direct'"
    h.delete(RB_PLURAL, "direct")
    h.wait_for(lambda: h.get(RB_PLURAL, "direct") is None, "direct gone")
    assert held(h, USER_ROLE) == set()


def test_orphan_deletion_policy_leaves_the_assignments(harness):
    h = harness
    h.start_operator()
    h.workspace()
    h.binding("keep", ["Synapse User"], [{"kind": "Group", "name": "Analysts"}], deletionPolicy="Orphan")
    ready(h, "keep")
    before = held(h, USER_ROLE)
    assert len(before) == 2
    h.delete(RB_PLURAL, "keep")
    h.wait_for(lambda: h.get(RB_PLURAL, "keep") is None, "binding gone")
    ws = h.wait_for(
        lambda: (h.get(WS_PLURAL, "analytics") or {}).get("status", {}).get("orphanedAssignments"),
        "orphaned ids recorded",
    )
    assert len(ws) == 2
    # A later binding of the same role at the same scope does not prune what was orphaned.
    h.binding("other", ["Synapse User"], [{"kind": "User", "name": upn("alice")}])
    ready(h, "other")
    assert held(h, USER_ROLE) == before | {h.user_id(upn("alice"))}


def test_observe_mode_writes_nothing_and_reports_drift(harness):
    h = harness
    h.sb.admin.add_assignment("analytics", "Synapse User", h.user_id(upn("grace")), WS_SCOPE)
    h.start_operator()
    h.workspace()
    h.binding("watch", ["Synapse User"], [{"kind": "Group", "name": "Analysts"}], managementPolicy="Observe")
    obj = ready(h, "watch", status="True", reason="DriftDetected")
    assert held(h, USER_ROLE) == {h.user_id(upn("grace"))}, "nothing was written"
    drift = obj["status"]["drift"]
    assert {d["principalId"] for d in drift["missing"]} == {h.user_id(upn("erin")), h.user_id(upn("frank"))}
    assert [(d["principal"], d["managed"]) for d in drift["unexpected"]] == [(h.user_id(upn("grace")), False)]
    assert h.sb.admin.counters().get("synapse.createRoleAssignment.200", 0) == 0


def test_disabled_user_and_new_member_follow_the_directory(harness):
    h = harness
    h.start_operator()
    h.workspace()
    h.binding("analysts", ["Synapse User"], [{"kind": "Group", "name": "Analysts"}])
    ready(h, "analysts")
    erin, heidi = h.user_id(upn("erin")), h.user_id(upn("heidi"))
    assert erin in held(h, USER_ROLE)
    started = time.monotonic()
    h.sb.admin.disable_user(upn("erin"))
    h.sb.admin.add_member("Analysts", upn("heidi"))
    h.wait_for(
        lambda: erin not in held(h, USER_ROLE) and heidi in held(h, USER_ROLE),
        "directory changes reach the workspace",
        timeout=30,
    )
    print(f"directory change reached the workspace in {time.monotonic() - started:.1f}s")


def test_service_principal_member_gets_the_role(harness):
    h = harness
    h.start_operator()
    h.workspace()
    h.binding(
        "pipelines",
        ["Synapse Compute Operator"],
        [{"kind": "Group", "name": "Pipelines"}, {"kind": "ServicePrincipal", "name": "etl-pipeline"}],
    )
    ready(h, "pipelines")
    assert held(h, COMPUTE_OPERATOR) == {h.sp_id("etl-pipeline")}
    types = {a["principalType"] for a in h.assignments()}
    assert types == {"ServicePrincipal"}


def test_group_object_itself_with_expand_false(harness):
    h = harness
    h.start_operator()
    h.workspace()
    h.binding("contractors", ["Synapse User"], [{"kind": "Group", "name": "Contractors", "expand": False}])
    ready(h, "contractors")
    assert held(h, USER_ROLE) == {h.group_id("Contractors")}


@pytest.mark.parametrize(
    ("scope", "path", "role", "role_id"),
    [
        ({}, "workspaces/analytics", "Synapse User", USER_ROLE),
        (
            {"bigDataPool": "sparkpool"},
            "workspaces/analytics/bigDataPools/sparkpool",
            "Synapse Compute Operator",
            COMPUTE_OPERATOR,
        ),
        ({"scopePool": "sqlpool"}, "workspaces/analytics/scopePools/sqlpool", "Synapse Contributor", CONTRIBUTOR),
        (
            {"integrationRuntime": "AutoResolveIntegrationRuntime"},
            "workspaces/analytics/integrationRuntimes/AutoResolveIntegrationRuntime",
            "Synapse User",
            USER_ROLE,
        ),
        (
            {"linkedService": "datalake"},
            "workspaces/analytics/linkedServices/datalake",
            "Synapse Credential User",
            CREDENTIAL_USER,
        ),
        (
            {"credential": "WorkspaceSystemIdentity"},
            "workspaces/analytics/credentials/WorkspaceSystemIdentity",
            "Synapse Credential User",
            CREDENTIAL_USER,
        ),
    ],
    ids=["workspace", "bigDataPool", "scopePool", "integrationRuntime", "linkedService", "credential"],
)
def test_every_scope_kind(harness, scope, path, role, role_id):
    h = harness
    h.start_operator()
    h.workspace()
    h.binding("scoped", [role], [{"kind": "User", "name": upn("alice")}], scope=scope)
    ready(h, "scoped")
    assert held(h, role_id, path) == {h.user_id(upn("alice"))}


def test_manual_assignment_is_reported_and_never_touched(harness):
    h = harness
    grace = h.user_id(upn("grace"))
    manual = h.sb.admin.add_assignment("analytics", "Synapse User", grace, WS_SCOPE)
    h.start_operator()
    h.workspace()
    h.binding("analysts", ["Synapse User"], [{"kind": "Group", "name": "Analysts"}])
    obj = ready(h, "analysts")
    assert obj["status"]["summary"]["unmanaged"] == 1
    assert obj["status"]["drift"]["unexpected"][0]["managed"] is False
    assert manual["id"] in {a["id"] for a in h.assignments()}
    assert "manual assignment" in h.condition(RB_PLURAL, "analysts")["message"]
    ws = h.get(WS_PLURAL, "analytics")
    assert ws["status"]["assignments"] == {"managed": 2, "unmanaged": 1}


def test_existing_grant_is_adopted_on_409(harness):
    h = harness
    erin = h.user_id(upn("erin"))
    manual = h.sb.admin.add_assignment("analytics", "Synapse User", erin, WS_SCOPE)
    h.start_operator()
    h.workspace()
    h.binding("analysts", ["Synapse User"], [{"kind": "Group", "name": "Analysts"}])
    obj = ready(h, "analysts")
    assert obj["status"]["summary"]["missing"] == 0
    ids = {a["principalId"]: a["id"] for a in h.assignments()}
    assert ids[erin] == manual["id"], "the existing grant satisfies the binding; no second assignment"


def test_wrong_secret_stalls_with_a_clear_reason_and_removes_nothing(harness):
    h = harness
    h.start_operator()
    h.workspace()
    h.binding("analysts", ["Synapse User"], [{"kind": "Group", "name": "Analysts"}])
    ready(h, "analysts")
    before = h.assignments()
    h.secret("synapse-sp", {"clientSecret": "wrong-secret"})
    obj = ready(h, "analysts", type_="Stalled", status="True", reason="AuthenticationFailed", timeout=60)
    message = h.condition(RB_PLURAL, "analysts", "Ready")["message"]
    assert "AADSTS" in message and "wrong-secret" not in str(obj)
    # The directory now says erin goes; with a failing credential that must not become a revocation.
    # (Only after Stalled: a sync already under way with the good secret may rightly revoke her.)
    log = h.sb.admin.request_log()
    since = log[-1]["seq"] if log else 0
    h.sb.admin.remove_member("Analysts", upn("erin"))
    tried = h.sb.admin.wait_for_requests(service="login", operation="token", status=401, count=2, since=since)
    assert len(tried) >= 2, "the operator went on trying with the wrong secret after the change"
    assert h.assignments() == before


def test_rotated_secret_is_picked_up_without_restart(harness):
    h = harness
    h.start_operator()
    h.workspace()
    h.secret("synapse-sp", {"clientSecret": "stale"})
    h.binding("analysts", ["Synapse User"], [{"kind": "Group", "name": "Analysts"}])
    ready(h, "analysts", type_="Stalled", status="True", reason="AuthenticationFailed")
    h.secret("synapse-sp", {"clientSecret": h.app.secret})
    h.patch(WS_PLURAL, "analytics", {"metadata": {"annotations": {"example.com/rotated": "1"}}})
    ready(h, "analysts")
    assert len(held(h, USER_ROLE)) == 2


def test_unknown_role_is_reported(harness):
    h = harness
    h.start_operator()
    h.workspace()
    h.binding("typo", ["Synapse Contributer"], [{"kind": "Group", "name": "Analysts"}])
    obj = ready(h, "typo", type_="Stalled", status="True", reason="RoleNotFound")
    assert "Synapse Contributer" in h.condition(RB_PLURAL, "typo")["message"]
    assert obj["status"].get("summary", {}).get("desired", 0) == 0
    assert h.assignments() == []


def test_role_not_valid_at_scope_is_reported(harness):
    h = harness
    h.start_operator()
    h.workspace()
    h.binding(
        "spark-admin",
        ["Apache Spark Administrator"],
        [{"kind": "User", "name": upn("alice")}],
        scope={"bigDataPool": "sparkpool"},
    )
    ready(h, "spark-admin", type_="Stalled", status="True", reason="RoleNotValidAtScope")
    assert h.assignments() == []


def test_missing_workspace_is_reported(harness):
    h = harness
    h.start_operator()
    h.binding("lost", ["Synapse User"], [{"kind": "User", "name": upn("alice")}], workspace="nowhere")
    ready(h, "lost", type_="Stalled", status="True", reason="WorkspaceNotFound")


def test_unknown_group_is_reported_and_blocks_no_other_binding(harness):
    h = harness
    h.start_operator()
    h.workspace()
    h.binding("ghost", ["Synapse User"], [{"kind": "Group", "name": "No Such Group"}])
    h.binding("analysts", ["Synapse User"], [{"kind": "Group", "name": "Analysts"}])
    obj = ready(h, "ghost", type_="Stalled", status="True", reason="SubjectNotFound")
    assert obj["status"]["unresolved"][0]["name"] == "Group No Such Group"
    ready(h, "analysts")


@pytest.mark.parametrize("org", [pytest.param(2500, id="2500-members")], indirect=True)
def test_large_group_pages_both_apis_and_emptying_it_trips_the_removal_guard(harness):
    h = harness
    h.start_operator()
    h.workspace()
    h.binding("everyone", ["Synapse User"], [{"kind": "Group", "name": "Everyone"}])
    obj = ready(h, "everyone", timeout=180)
    assert obj["status"]["summary"]["desired"] == 2500
    assert len(held(h, USER_ROLE)) == 2500
    counters = h.sb.admin.counters()
    assert counters.get("graph.transitiveMembers.200", 0) >= 3, "2,500 members take 3 pages of 999"
    # Incremental syncs plan against the last listing plus our own writes; a restart's first sync is
    # full and lists the 2,500 assignments again, page by page, and writes nothing.
    h.stop_operator()
    h.start_operator()
    h.wait_for(
        lambda: h.sb.admin.counters().get("synapse.listRoleAssignments.200", 0) >= 3,
        "a fresh listing of every assignment page after the restart",
        timeout=120,
    )
    ready(h, "everyone", timeout=60)
    assert h.sb.admin.counters().get("synapse.createRoleAssignment.200", 0) == counters.get(
        "synapse.createRoleAssignment.200", 0
    ), "a restart re-grants nothing"
    # The directory loses everyone: the guard holds the mass removal until a person approves.
    h.sb.admin.delete_group("Everyone")
    h.sb.admin.add_group("Everyone", [])
    ws = h.wait_for(
        lambda: (h.get(WS_PLURAL, "analytics") or {}).get("status", {}).get("heldPlan"),
        "removal guard trips",
        timeout=120,
    )
    assert ws["removals"] == 2500
    assert len(held(h, USER_ROLE)) == 2500, "nothing removed before approval"
    ready(h, "everyone", type_="Stalled", status="True", reason="RemovalsHeld")
    h.patch(WS_PLURAL, "analytics", {"metadata": {"annotations": {"synapse-scim.io/approve-removals": ws["id"]}}})
    h.wait_for(lambda: not held(h, USER_ROLE), "approved removals executed", timeout=180)
    ready(h, "everyone", timeout=60)


def test_client_certificate_credential(harness):
    h = harness
    h.secret("synapse-cert", {"tls.pem": h.app.certificate_path.read_text()})
    h.start_operator()
    h.workspace(
        client_id=h.app.client_id,
        credential={"certificate": {"clientId": h.app.client_id, "secretRef": {"name": "synapse-cert"}}},
    )
    h.binding("analysts", ["Synapse User"], [{"kind": "Group", "name": "Analysts"}])
    ready(h, "analysts")
    assert len(held(h, USER_ROLE)) == 2


def test_workload_identity_credential(harness):
    h = harness
    h.start_operator(AZURE_FEDERATED_TOKEN_FILE=str(h.app.federated_token_file))
    h.workspace(client_id=h.app.client_id, credential={"workloadIdentity": {"clientId": h.app.client_id}})
    h.binding("analysts", ["Synapse User"], [{"kind": "Group", "name": "Analysts"}])
    ready(h, "analysts")
    assert len(held(h, USER_ROLE)) == 2


def test_operators_own_identity_by_default(harness):
    h = harness
    # The pod's workload identity, as AKS injects it (the chart's azureWorkloadIdentity.clientId).
    h.start_operator(
        AZURE_FEDERATED_TOKEN_FILE=str(h.app.federated_token_file),
        AZURE_CLIENT_ID=h.app.client_id,
        AZURE_TENANT_ID=h.sb.tenant_id,
    )
    ws = h.workspace(own_identity=True)
    assert "credential" not in ws["spec"]
    h.binding("analysts", ["Synapse User"], [{"kind": "Group", "name": "Analysts"}])
    ready(h, "analysts")
    assert len(held(h, USER_ROLE)) == 2


def test_applied_changes_are_events_on_the_binding(harness):
    h = harness
    h.start_operator()
    h.workspace()
    h.binding("analysts", ["Synapse User"], [{"kind": "Group", "name": "Analysts"}])
    ready(h, "analysts")

    def granted_event():
        events = h.core.list_namespaced_event(h.namespace).items
        return [e for e in events if e.involved_object.name == "analysts" and e.reason == "Granted"]

    event = h.wait_for(granted_event, "a Granted event")[0]
    assert event.involved_object.kind == "SynapseRoleBinding" and "2 role assignment" in event.message


@pytest.mark.parametrize("org", [pytest.param(100, id="100-members")], indirect=True)
def test_hundred_member_group_from_apply_to_ready(harness):
    h = harness
    h.start_operator()
    h.workspace()
    h.wait_condition(WS_PLURAL, "analytics")
    started = time.monotonic()
    h.binding("everyone", ["Synapse User"], [{"kind": "Group", "name": "Everyone"}])
    obj = ready(h, "everyone", timeout=120)
    print(f"100-member group: apply to Ready in {time.monotonic() - started:.1f}s")
    assert obj["status"]["summary"]["inSync"] == 100

"""A SynapseWorkspace deleted while its bindings still exist (someone deletes it first, or a GitOps tool
prunes it before them): it waits, saying why, revoking nothing the live bindings grant and serving them
as before (a member added is granted, a leaver revoked: before the fix nothing reached Synapse while it
waited); once the bindings are deleted their grants are revoked (deletionPolicy Delete) and it goes."""

from __future__ import annotations

from support.harness import RB_PLURAL, WS_PLURAL
from support.orgs import upn

CONTRIBUTOR = "7572bffe-f453-4b66-912a-46cc5ef38fda"


def contributors(h) -> set[str]:
    return {a["principalId"] for a in h.assignments() if a["roleDefinitionId"] == CONTRIBUTOR}


def test_a_workspace_deleted_before_its_bindings_waits_for_them_and_revokes_nothing_they_grant(harness):
    h = harness
    h.start_operator()
    h.workspace()
    h.binding("analysts", ["Synapse Contributor"], [{"kind": "Group", "name": "Analysts"}])
    h.wait_condition(RB_PLURAL, "analysts")
    granted = {h.user_id(upn("erin")), h.user_id(upn("frank"))}
    assert contributors(h) == granted

    h.delete(WS_PLURAL, "analytics")
    waiting = h.wait_for(
        lambda: (
            (h.condition(WS_PLURAL, "analytics") or {}).get("reason") == "Deleting"
            and h.condition(WS_PLURAL, "analytics")
        ),
        "the workspace to say it is waiting for its bindings",
    )
    assert "analysts" in waiting["message"], waiting
    assert h.sb.admin.request_log(service="synapse", operation="deleteRoleAssignment") == []
    # Changes while it waits still reach Synapse: the live binding is served as before, a leaver included.
    h.sb.admin.add_member("Analysts", upn("heidi"))
    h.wait_for(lambda: h.user_id(upn("heidi")) in contributors(h), "heidi granted while the workspace waits")
    frank = h.user_id(upn("frank"))
    h.sb.admin.remove_member("Analysts", frank)
    h.wait_for(lambda: frank not in contributors(h), "frank (a leaver) revoked while the workspace waits")
    assert h.get(WS_PLURAL, "analytics") is not None, "the workspace waits while a binding names it"
    deletes = h.sb.admin.request_log(service="synapse", operation="deleteRoleAssignment")
    assert len(deletes) == 1, "only the leaver's grant was revoked"

    h.delete(RB_PLURAL, "analysts")
    h.wait_for(lambda: h.get(WS_PLURAL, "analytics") is None, "the workspace to go after its binding", timeout=90)
    assert contributors(h) == set(), "the binding's grants (deletionPolicy Delete) were revoked before it went"
    assert h.get(RB_PLURAL, "analysts") is None

"""The Argo CD health checks in health/argocd, evaluated on made-up statuses and on what the operator
really writes."""

from __future__ import annotations

from typing import Any

import pytest
import yaml
from argo_health import HEALTH, KINDS, health, script

from support.harness import RB_PLURAL, WS_PLURAL
from support.orgs import upn
from synapse_scim.core.status import conditions, ready_conditions


def _obj(kind: str, generation: int = 1, observed: int | None = 1, **ready: Any) -> dict[str, Any]:
    obj: dict[str, Any] = {
        "apiVersion": "synapse-scim.io/v1alpha1",
        "kind": kind,
        "metadata": {"name": "x", "namespace": "ns", "generation": generation},
    }
    if observed is not None:
        conds = conditions(ready_conditions(**ready), None, observed, "2026-01-01T00:00:00Z")
        obj["status"] = {"observedGeneration": observed, "conditions": conds}
    return obj


CASES = [
    # (id, object arguments, expected status, a piece of the expected message)
    ("no-status", {"observed": None}, "Progressing", "waiting for the operator"),
    (
        "ready",
        {"ready": True, "reason": "InSync", "message": "all 2 desired assignment(s) present"},
        "Healthy",
        "all 2 desired",
    ),
    (
        "generation-behind",
        {"generation": 3, "observed": 2, "ready": True, "reason": "InSync", "message": "ok"},
        "Progressing",
        "waiting for the operator to observe generation 3",
    ),
    (
        "stalled-but-behind",
        {"generation": 2, "ready": False, "reason": "RoleNotFound", "message": "typo", "stalled": True},
        "Progressing",
        "observe generation 2",
    ),
    (
        "stalled",
        {"ready": False, "reason": "RoleNotFound", "message": "role 'Synapse Contributer' not found", "stalled": True},
        "Degraded",
        "RoleNotFound: role 'Synapse Contributer' not found",
    ),
    (
        "reconciling",
        {"ready": False, "reason": "Applying", "message": "2 to grant, 0 to revoke", "reconciling": True},
        "Progressing",
        "Applying: 2 to grant",
    ),
    (
        "suspended",
        {"ready": True, "reason": "Suspended", "message": "spec.suspend is true"},
        "Suspended",
        "spec.suspend",
    ),
    (
        "workspace-suspended",
        {
            "ready": True,
            "reason": "WorkspaceSuspended",
            "message": "SynapseWorkspace ns/analytics has spec.suspend: true, so nothing is granted or revoked",
        },
        "Suspended",
        "WorkspaceSuspended: SynapseWorkspace ns/analytics has spec.suspend",
    ),
    (
        "observe-drift",
        {"ready": True, "reason": "DriftDetected", "message": "Observe mode: 2 missing"},
        "Suspended",
        "Observe mode: 2 missing",
    ),
    ("not-ready-other", {"ready": False, "reason": "Throttled", "message": "429"}, "Progressing", "429"),
]


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize(("args", "status", "message"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_health_mapping(kind, args, status, message):
    got_status, got_message = health(kind, _obj(kind, **args))
    assert got_status == status
    assert message in got_message


def test_status_without_conditions_is_progressing():
    obj = {"metadata": {"generation": 1}, "status": {"observedGeneration": 1}}
    assert health("SynapseRoleBinding", obj) == ("Progressing", "waiting for the operator")


def test_the_configmap_patch_carries_the_same_lua():
    patch = yaml.safe_load((HEALTH / "argocd-cm-patch.yaml").read_text())
    assert patch["kind"] == "ConfigMap" and patch["metadata"]["name"] == "argocd-cm"
    for kind in KINDS:
        assert patch["data"][f"resource.customizations.health.synapse-scim.io_{kind}"] == script(kind).read_text()


def test_health_of_what_the_operator_writes(harness):
    h = harness
    h.workspace()
    h.binding("analysts", ["Synapse User"], [{"kind": "Group", "name": "Analysts"}])
    # Before the operator has seen anything.
    assert health("SynapseWorkspace", h.get(WS_PLURAL, "analytics")) == ("Progressing", "waiting for the operator")
    assert health("SynapseRoleBinding", h.get(RB_PLURAL, "analysts")) == ("Progressing", "waiting for the operator")

    h.start_operator()
    h.binding("typo", ["Synapse Contributer"], [{"kind": "Group", "name": "Analysts"}])
    h.binding("watch", ["Synapse Contributor"], [{"kind": "Group", "name": "Analysts"}], managementPolicy="Observe")
    h.binding("paused", ["Synapse Compute Operator"], [{"kind": "User", "name": upn("alice")}], suspend=True)

    expected = {
        "analysts": (h.wait_condition(RB_PLURAL, "analysts"), "Healthy"),
        "typo": (h.wait_condition(RB_PLURAL, "typo", type_="Stalled", reason="RoleNotFound"), "Degraded"),
        "watch": (h.wait_condition(RB_PLURAL, "watch", status="True", reason="DriftDetected"), "Suspended"),
        "paused": (h.wait_condition(RB_PLURAL, "paused", status="True", reason="Suspended"), "Suspended"),
    }
    for name, (obj, want) in expected.items():
        got, message = health("SynapseRoleBinding", obj)
        assert got == want, f"{name}: {got} {message!r}"
    assert "Synapse Contributer" in health("SynapseRoleBinding", expected["typo"][0])[1]
    assert "Observe mode" in health("SynapseRoleBinding", expected["watch"][0])[1]
    ws = h.wait_condition(WS_PLURAL, "analytics")
    assert health("SynapseWorkspace", ws)[0] == "Healthy"

    # A spec change the operator has not seen yet: Progressing, whatever the old conditions say.
    h.stop_operator()
    h.patch(RB_PLURAL, "analysts", {"spec": {"roles": ["Synapse User", "Synapse Contributor"]}})
    obj = h.get(RB_PLURAL, "analysts")
    assert obj["metadata"]["generation"] == 2
    assert health("SynapseRoleBinding", obj) == ("Progressing", "waiting for the operator to observe generation 2")

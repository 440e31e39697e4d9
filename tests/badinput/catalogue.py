"""What every bad-input case checks: the condition a person reads (reason, and a message naming the
thing and the fix), and that the failure caused no destructive action in the sandbox."""

from __future__ import annotations

from typing import Any

from support.harness import RB_PLURAL, Harness
from support.orgs import small_org, upn

# A manual grant seeded in every case's workspace: nothing the operator does may remove it.
MANUAL_ROLE = "Synapse Administrator"
MANUAL_PRINCIPAL = upn("grace")

# Groups a case may change or lose without disturbing the others (members: erin and frank).
OWN_GROUPS = ("Doomed", "Vanishing", "Growing", "Locked Out", "Cut Off")
# Groups with names that need care: quoting in OData filters, unicode, and one name used twice.
QUOTED_GROUP = "O'Brien's Team"
UNICODE_GROUP = "Équipe Données 数据 🚀"
TWIN_GROUP = "Twins"


def bad_input_org(workspaces: list[str]) -> dict[str, Any]:
    org = small_org()
    org["groups"] += [{"displayName": g, "members": [upn("erin"), upn("frank")]} for g in OWN_GROUPS]
    org["groups"] += [
        {"displayName": QUOTED_GROUP, "members": [upn("heidi")]},
        {"displayName": UNICODE_GROUP, "members": [upn("heidi")]},
        {"displayName": TWIN_GROUP, "id": "7a1c0de0-0000-4000-8000-000000000001", "members": [upn("alice")]},
        {"displayName": TWIN_GROUP, "id": "7a1c0de0-0000-4000-8000-000000000002", "members": [upn("bob")]},
    ]
    org["workspaces"] = [
        {
            "name": name,
            "bigDataPools": ["sparkpool"],
            "assignments": [{"role": MANUAL_ROLE, "principal": MANUAL_PRINCIPAL}],
        }
        for name in workspaces
    ]
    return org


class NoDestruction:
    """A snapshot of one sandbox workspace; `check()` asserts nothing in it was revoked since."""

    def __init__(self, h: Harness, workspace: str) -> None:
        self.h = h
        self.workspace = workspace
        self.before = {a["id"]: a for a in h.assignments(workspace)}
        manual = [a for a in self.before.values() if a["principalId"] == h.user_id(MANUAL_PRINCIPAL)]
        assert manual, "the seeded manual grant is there to begin with"
        self.manual_id = manual[0]["id"]
        log = h.sb.admin.request_log(service="synapse")
        self.since = log[-1]["seq"] if log else 0

    def check(self) -> None:
        after = {a["id"] for a in self.h.assignments(self.workspace)}
        assert self.manual_id in after, "the manual grant was removed"
        assert set(self.before) <= after, f"assignments disappeared: {set(self.before) - after}"
        deletes = [
            e
            for e in self.h.sb.admin.request_log(service="synapse", operation="deleteRoleAssignment", since=self.since)
            if f"/{self.workspace}/" in e["path"]
        ]
        assert deletes == [], f"the operator tried to revoke: {deletes}"


def expect(
    h: Harness, name: str, reason: str, *says: str, stalled: bool = True, plural: str = RB_PLURAL, timeout: float = 60.0
) -> dict[str, Any]:
    """Wait until `name` is not Ready for `reason` (Stalled if a person must act, Reconciling if the
    operator retries on its own); the Ready message must contain every fragment of `says`."""
    type_ = "Stalled" if stalled else "Reconciling"
    try:
        h.wait_condition(plural, name, type_=type_, status="True", reason=reason, timeout=timeout)
    except AssertionError as exc:
        now = (h.get(plural, name) or {}).get("status", {}).get("conditions")
        raise AssertionError(
            f"{plural}/{name} never got {type_}=True reason={reason}; its conditions: {now}\n" + str(exc)[:3000]
        ) from None
    ready = h.condition(plural, name, "Ready")
    assert ready is not None and ready["status"] == "False" and ready["reason"] == reason, ready
    for fragment in says:
        assert fragment in ready["message"], f"{fragment!r} not in the message: {ready['message']!r}"
    assert "\n" not in ready["message"], f"a status message is one line: {ready['message']!r}"
    return ready


def start(
    h: Harness,
    name: str,
    roles: list[str],
    subjects: list[dict[str, Any]],
    *,
    workspace: dict[str, Any] | None = None,
    **binding: Any,
) -> NoDestruction:
    """A SynapseWorkspace `name` on the sandbox workspace `name` (with its own Secret) and a binding
    `name` on it; returns the snapshot taken before either existed."""
    guard = NoDestruction(h, name)
    h.workspace(name, secret_name=f"{name}-sp", **(workspace or {}))
    h.binding(name, roles, subjects, workspace=name, **binding)
    return guard


def start_healthy(h: Harness, name: str, group: str, **workspace: Any) -> NoDestruction:
    """A workspace whose binding (Synapse User for `group`) is Ready with its grants; returns the
    snapshot taken then, so a case can break something and prove nothing was revoked."""
    start(h, name, ["Synapse User"], [{"kind": "Group", "name": group}], workspace=workspace)
    h.wait_condition(RB_PLURAL, name)
    guard = NoDestruction(h, name)
    assert len(guard.before) == 3, "two grants for the group and the manual one"
    return guard

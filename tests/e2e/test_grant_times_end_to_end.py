"""The grant ledger end to end: the operator (its own process, against the real API server and the
sandbox) grants, records the time of each grant in ConfigMaps owned by the workspace, and
`synapse-scim report --cluster -o json` shows those times; a revocation removes the entry."""

from __future__ import annotations

import datetime as dt
import json
import subprocess
import sys

from support.harness import RB_PLURAL
from support.orgs import upn
from synapse_scim.adapters.grant_ledger import MANAGED_BY, WORKSPACE_LABEL, shard_of
from synapse_scim.core.model import Grant, assignment_id

CONTRIBUTOR = "7572bffe-f453-4b66-912a-46cc5ef38fda"
WS_SCOPE = "workspaces/analytics"


def held(h) -> set[str]:
    return {a["principalId"] for a in h.assignments() if a["roleDefinitionId"] == CONTRIBUTOR}


def ledger(h) -> dict[str, object]:
    """The workspace's ledger ConfigMaps by name (as the admin: the report's reader)."""
    found = h.core.list_namespaced_config_map(h.namespace, label_selector=f"{WORKSPACE_LABEL}=analytics").items
    return {cm.metadata.name: cm for cm in found}


def report(h) -> dict:
    out = subprocess.run(
        [sys.executable, "-m", "synapse_scim.cli", "report", "--cluster", "-n", h.namespace, "-o", "json"],
        env=h.operator_env(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    return json.loads(out.stdout)


def test_grants_are_timed_in_the_ledger_and_the_report_shows_them(harness):
    h = harness
    before = dt.datetime.now(dt.UTC).replace(microsecond=0)
    h.start_operator()
    ws = h.workspace()
    h.binding("analysts", ["Synapse Contributor"], [{"kind": "Group", "name": "Analysts"}])
    h.wait_condition(RB_PLURAL, "analysts")
    erin, frank = h.user_id(upn("erin")), h.user_id(upn("frank"))
    ids = {p: assignment_id(Grant(CONTRIBUTOR, p, WS_SCOPE)) for p in (erin, frank)}

    def recorded() -> dict[str, object] | None:
        maps = ledger(h)
        return maps if sum(len(cm.data or {}) for cm in maps.values()) == 2 else None

    maps = h.wait_for(recorded, "both grants in the ledger", timeout=30)
    times = {}
    for aid in ids.values():
        cm = maps[f"analytics-grants-{shard_of(aid)}"]
        assert cm.metadata.labels[MANAGED_BY] == "synapse-scim"
        (owner,) = cm.metadata.owner_references
        assert (owner.kind, owner.name, owner.uid) == ("SynapseWorkspace", "analytics", ws["metadata"]["uid"])
        times[aid] = cm.data[aid]
        at = dt.datetime.fromisoformat(times[aid].replace("Z", "+00:00"))
        assert before <= at <= dt.datetime.now(dt.UTC)

    doc = report(h)
    rows = {a["assignmentId"]: a for a in doc["assignments"]}
    assert {aid: rows[aid]["granted"] for aid in ids.values()} == times
    assert "grant ledger" in doc["grantTime"]

    # frank leaves Analysts: his grant is revoked and its entry goes; erin's stays as it was.
    h.sb.admin.remove_member("Analysts", upn("frank"))
    frank_id = ids[frank]
    h.wait_for(lambda: frank not in held(h), "frank's grant revoked", timeout=60)
    h.wait_for(
        lambda: frank_id not in (ledger(h)[f"analytics-grants-{shard_of(frank_id)}"].data or {}),
        "frank's entry gone from the ledger",
        timeout=30,
    )
    erin_id = ids[erin]
    assert ledger(h)[f"analytics-grants-{shard_of(erin_id)}"].data[erin_id] == times[erin_id]
    rows = {a["assignmentId"]: a for a in report(h)["assignments"]}
    assert frank_id not in rows and rows[erin_id]["granted"] == times[erin_id]

"""bench/report_bench.py's world: the split it says, and the operator's own ids on the managed grants."""

from __future__ import annotations

from collections import Counter

from report_bench import ROLES, uid, world
from synapse_scim.core.model import Grant, assignment_id


def test_the_world_has_the_assignments_it_says() -> None:
    seed, counts = world(2_000)
    (ws,) = seed["workspaces"]
    assert counts == {"assignments": 2_000, "managed": 1_600, "manual": 400}
    assert len(ws["assignments"]) == 2_000
    owned = [a for a in ws["assignments"] if "id" in a]
    assert len(owned) == counts["managed"]
    first = owned[0]
    assert first["id"] == assignment_id(Grant(ROLES[first["role"]], uid(0), first["scope"]))
    assert Counter(a["role"] for a in ws["assignments"])["Synapse Administrator"] == 50

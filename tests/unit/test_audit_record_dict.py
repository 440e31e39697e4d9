"""controller/writes.py: AuditRecord.as_dict, the `audit` field of every audit log line, is a shallow copy
that must equal what dataclasses.asdict gave before it (the KQL of docs/log-analytics.md reads it)."""

from __future__ import annotations

import dataclasses

from synapse_scim.controller.writes import AuditRecord
from synapse_scim.core.reasons import Action, Outcome


def test_as_dict_is_what_dataclasses_asdict_gives() -> None:
    record = AuditRecord(
        action=Action.GRANT,
        principal="alice@contoso.com",
        principal_id="0b0c6cd6-1f1a-4c36-8b0e-d1a9e3b8f0a1",
        role="Synapse User",
        role_id="6e4bf58a-b8e1-4cc3-bbf9-d73143322b78",
        scope="workspaces/analytics",
        bindings=("team/analysts", "team/everyone"),
        reason="wanted by team/analysts, team/everyone",
        outcome=Outcome.DONE,
    )
    assert record.as_dict() == dataclasses.asdict(record)
    assert list(record.as_dict()) == [f.name for f in dataclasses.fields(AuditRecord)]
    assert record.as_dict()["action"] is Action.GRANT

"""`--log-format json` (env SYNAPSE_SCIM_LOG_FORMAT): one JSON object a line, an audit record per
grant, and no secret in any line."""

from __future__ import annotations

import json

import pytest

from support.harness import RB_PLURAL

AUDIT_FIELDS = {"action", "principal", "principal_id", "role", "scope", "bindings", "reason", "outcome"}


def test_json_logs_carry_one_audit_record_per_grant_and_no_secret(harness):
    h = harness
    h.start_operator(SYNAPSE_SCIM_LOG_FORMAT="json")
    h.workspace()
    h.binding("analysts", ["Synapse User"], [{"kind": "Group", "name": "Analysts"}])
    h.wait_condition(RB_PLURAL, "analysts")
    granted = {(a["principalId"], a["scope"]) for a in h.assignments()}
    assert len(granted) == 2

    def audit_lines() -> list[dict] | None:
        lines = [json.loads(line) for line in h.operator_log().splitlines() if '"synapse_scim.audit"' in line]
        return lines if len([r for r in lines if r.get("audit", {}).get("action") == "grant"]) >= 2 else None

    h.wait_for(audit_lines, "audit lines of the grants", timeout=30)
    h.stop_operator()  # flush, and the shutdown lines are checked too

    log = h.operator_log()
    records = []
    for number, line in enumerate(log.splitlines(), 1):
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            pytest.fail(f"line {number} is not JSON: {line[:300]!r}")
        assert isinstance(record, dict), f"line {number} is not an object: {line[:300]!r}"
        assert {"time", "level", "logger", "message"} <= record.keys(), line[:300]
        records.append(record)
    assert records, "the operator logged nothing"

    audit = [r["audit"] for r in records if r["logger"] == "synapse_scim.audit"]
    grants = [a for a in audit if a["action"] == "grant"]
    assert len(grants) == len(granted), grants
    assert {(a["principal_id"], a["scope"]) for a in grants} == granted
    for a in grants:
        assert AUDIT_FIELDS <= a.keys(), a
        assert a["outcome"] == "done"
        assert a["role"] == "Synapse User"
        assert list(a["bindings"]) == [f"{h.namespace}/analysts"], a
        assert a["principal"] and a["reason"]

    secret = h.app.secret
    assert secret and secret not in log, "the client secret appears in the operator's log"

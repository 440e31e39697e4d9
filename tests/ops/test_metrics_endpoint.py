"""The Prometheus endpoint of a running operator: counters that add up, and labels with bounded values."""

from __future__ import annotations

import re
import urllib.request

from prometheus_client.parser import text_string_to_metric_families

from support.harness import RB_PLURAL
from synapse_scim_sandbox.devcluster import free_port

GUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")


def scrape(port: int) -> list:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as resp:
        assert resp.status == 200
        return [s for family in text_string_to_metric_families(resp.read().decode()) for s in family.samples]


def total(samples: list, name: str, **labels: str) -> float:
    return sum(s.value for s in samples if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()))


def test_metrics_after_one_binding(harness):
    h = harness
    port = free_port()
    h.start_operator(SYNAPSE_SCIM_METRICS_PORT=str(port))
    h.workspace()
    h.binding("analysts", ["Synapse User"], [{"kind": "Group", "name": "Analysts"}])
    h.wait_condition(RB_PLURAL, "analysts")
    grants = len(h.assignments())
    assert grants == 2

    ns = {"namespace": h.namespace}

    def settled():
        try:
            samples = scrape(port)
        except OSError:
            return None
        ok = (
            total(samples, "synapse_scim_reconciles_total", result="success", **ns) >= 1
            and total(samples, "synapse_scim_assignments_created_total", **ns) >= grants
        )
        return samples if ok else None

    samples = h.wait_for(settled, "metrics after the first sync", timeout=30)
    assert total(samples, "synapse_scim_assignments_created_total", **ns) == grants
    assert total(samples, "synapse_scim_assignments_created_total", workspace="analytics", **ns) == grants
    assert (
        total(
            samples,
            "synapse_scim_azure_requests_total",
            service="synapse",
            operation="createRoleAssignment",
            code="200",
        )
        >= grants
    )
    assert (
        total(samples, "synapse_scim_azure_requests_total", service="graph", operation="transitiveMembers", code="200")
        >= 1
    )
    assert total(samples, "synapse_scim_reconcile_duration_seconds_count", **ns) >= 1
    # What the chart's alerts read (docs/runbooks.md).
    ws = {"workspace": "analytics", **ns}
    assert total(samples, "synapse_scim_workspace_last_success_timestamp_seconds", **ws) > 0
    assert total(samples, "synapse_scim_workspace_loop_start_timestamp_seconds", **ws) > 0
    assert total(samples, "synapse_scim_workspace_sync_interval_seconds", **ws) > 0
    assert total(samples, "synapse_scim_binding_stalled", binding="analysts", **ns) == 0
    assert total(samples, "synapse_scim_directory_polls_total", result="success") >= 1  # the watch's first links
    assert total(samples, "synapse_scim_leader") == 1

    operations = {s.labels["operation"] for s in samples if s.name == "synapse_scim_azure_requests_total"}
    assert "other" not in operations, f"unrouted Azure requests: {operations}"
    for s in samples:
        for key, value in s.labels.items():
            assert not GUID.search(value), f"unbounded label {s.name}{{{key}={value!r}}}"

"""Metric labels stay bounded: requests are named by operation, never by id."""

from __future__ import annotations

import pytest
from prometheus_client import generate_latest

from synapse_scim import metrics


@pytest.mark.parametrize(
    ("service", "method", "url", "op"),
    [
        ("graph", "GET", "https://g/v1.0/groups/abc/transitiveMembers?$top=999", "transitiveMembers"),
        ("graph", "GET", "https://g/v1.0/groups/delta()?$select=id", "groupsDelta"),
        ("graph", "GET", "https://g/v1.0/groups/delta?$deltatoken=x", "groupsDelta"),
        ("graph", "GET", "https://g/v1.0/users/delta?$deltatoken=x", "usersDelta"),
        ("graph", "GET", "https://g/v1.0/servicePrincipals/delta?$skiptoken=x", "servicePrincipalsDelta"),
        ("graph", "POST", "https://g/v1.0/$batch", "batch"),
        ("graph", "GET", "https://g/v1.0/groups?$filter=displayName%20eq%20'x'", "listGroups"),
        ("graph", "GET", "https://g/v1.0/groups/abc", "getGroup"),
        ("graph", "GET", "https://g/v1.0/users/alice%40contoso.com", "getUser"),
        ("graph", "GET", "https://g/v1.0/servicePrincipals?$filter=appId%20eq%20'x'", "listServicePrincipals"),
        ("synapse", "GET", "https://s/ws/roleAssignments?api-version=2020-12-01", "listRoleAssignments"),
        ("synapse", "PUT", "https://s/ws/roleAssignments/1234?api-version=2020-12-01", "createRoleAssignment"),
        ("synapse", "DELETE", "https://s/ws/roleAssignments/1234?api-version=2020-12-01", "deleteRoleAssignment"),
        ("synapse", "GET", "https://s/ws/roleDefinitions?api-version=2020-12-01", "listRoleDefinitions"),
        ("synapse", "PATCH", "https://s/ws/roleAssignments/1", "other"),
    ],
)
def test_operation_names(service, method, url, op):
    assert metrics.operation(service, method, url) == op


def test_errors_are_counted_by_status_code():
    metrics.observe("synapse", "PUT", "https://s/ws/roleAssignments/1", 429, 0.01)
    metrics.observe("synapse", "PUT", "https://s/ws/roleAssignments/1", 200, 0.01)
    text = generate_latest(metrics.REGISTRY).decode()
    assert (
        'synapse_scim_azure_request_errors_total{code="429",operation="createRoleAssignment",service="synapse"}' in text
    )
    assert 'synapse_scim_azure_request_errors_total{code="200"' not in text
    assert 'synapse_scim_azure_requests_total{code="200",operation="createRoleAssignment",service="synapse"}' in text


def test_a_gone_binding_or_workspace_leaves_no_gauges():
    value = metrics.REGISTRY.get_sample_value
    metrics.BINDING_READY.labels("ns-forget", "b").set(1)
    metrics.BINDING_DRIFT.labels("ns-forget", "b", "missing").set(3)
    metrics.BINDING_READY.labels("ns-forget", "other").set(1)
    metrics.REMOVALS_HELD.labels("ns-forget", "ws").set(7)
    metrics.WRITE_LIMIT.labels("ns-forget", "ws").set(8)
    metrics.forget_binding("ns-forget", "b")
    metrics.forget_workspace("ns-forget", "ws")
    assert value("synapse_scim_binding_ready", {"namespace": "ns-forget", "binding": "b"}) is None
    assert (
        value("synapse_scim_binding_drift", {"namespace": "ns-forget", "binding": "b", "direction": "missing"}) is None
    )
    assert value("synapse_scim_removals_held", {"namespace": "ns-forget", "workspace": "ws"}) is None
    assert value("synapse_scim_write_concurrency", {"namespace": "ns-forget", "workspace": "ws"}) is None
    assert value("synapse_scim_binding_ready", {"namespace": "ns-forget", "binding": "other"}) == 1
    metrics.forget_binding("ns-forget", "never-seen")  # nothing to drop is not an error


def test_every_metric_of_the_module_is_served():
    """/metrics serves metrics.REGISTRY: a metric created without registry=REGISTRY lands in
    prometheus_client's default registry and is never shown (synapse_scim_scim_pokes_total was)."""
    from prometheus_client.metrics import MetricWrapperBase

    served = {m.name for m in metrics.REGISTRY.collect()}
    ours = {
        name: value._name
        for name, value in vars(metrics).items()
        if isinstance(value, MetricWrapperBase) and value._name.startswith("synapse_scim_")
    }
    assert ours and {k: n for k, n in ours.items() if n not in served} == {}

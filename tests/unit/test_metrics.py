"""Metric labels stay bounded: requests are named by operation, never by id."""

from __future__ import annotations

import time
from types import SimpleNamespace

import pytest
from prometheus_client import generate_latest

from synapse_scim import metrics
from synapse_scim.adapters.directory import DeltaLinks, DirectoryError
from synapse_scim.controller.reconcile import record_metrics
from synapse_scim.controller.sync import SyncResult
from synapse_scim.controller.tenant import Subscription, TenantWatch
from synapse_scim.core.model import BindingKey, BindingReport, Problem
from synapse_scim.core.reasons import Reason
from synapse_scim.core.status import BindingOutcome


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


# -- the signals the chart's PrometheusRule alerts on (docs/runbooks.md) ---------------------------


def _outcome(*problems: Problem) -> BindingOutcome:
    report = BindingReport(desired=1, in_sync=1, pending_removal=0, unmanaged=0, held=0)
    return BindingOutcome(report=report, problems=problems, workspace_name="ws", workspace_namespace="ns-alerts")


def test_a_stalled_binding_and_the_last_successful_sync_are_recorded():
    value = metrics.REGISTRY.get_sample_value
    stalled, healthy = BindingKey("ns-alerts", "stalled"), BindingKey("ns-alerts", "healthy")
    result = SyncResult(
        workspace_status={},
        outcomes={
            stalled: _outcome(Problem(Reason.SUBJECT_NOT_FOUND, "group x not found")),
            healthy: _outcome(),
        },
    )
    before = time.time()
    record_metrics("ns-alerts", "ws", result, 0.1)
    assert value("synapse_scim_binding_stalled", {"namespace": "ns-alerts", "binding": "stalled"}) == 1
    assert value("synapse_scim_binding_stalled", {"namespace": "ns-alerts", "binding": "healthy"}) == 0
    last = value("synapse_scim_workspace_last_success_timestamp_seconds", {"namespace": "ns-alerts", "workspace": "ws"})
    assert last is not None and last >= before  # a stalled binding is its own alert, not a failed sync
    metrics.forget_binding("ns-alerts", "stalled")
    assert value("synapse_scim_binding_stalled", {"namespace": "ns-alerts", "binding": "stalled"}) is None


@pytest.mark.parametrize(
    "result",
    [
        SyncResult(workspace_status={}, outcomes={}, problem=Problem(Reason.ACCESS_DENIED, "403")),
        SyncResult(workspace_status={}, outcomes={}, read_problems=(Problem(Reason.DIRECTORY_READ_FAILED, "503"),)),
    ],
    ids=["workspace-failed", "read-failed-retried"],
)
def test_a_failed_sync_leaves_the_last_success_alone(result):
    labels = {"namespace": "ns-alerts-failed", "workspace": "ws"}
    metrics.LAST_SUCCESS.labels("ns-alerts-failed", "ws").set(123)
    record_metrics("ns-alerts-failed", "ws", result, 0.1)
    assert metrics.REGISTRY.get_sample_value("synapse_scim_workspace_last_success_timestamp_seconds", labels) == 123
    metrics.forget_workspace("ns-alerts-failed", "ws")
    for name in (
        "synapse_scim_workspace_last_success_timestamp_seconds",
        "synapse_scim_workspace_loop_start_timestamp_seconds",
        "synapse_scim_workspace_sync_interval_seconds",
    ):
        assert metrics.REGISTRY.get_sample_value(name, labels) is None


class _Directory:
    def __init__(self, *answers: object) -> None:
        self.answers = list(answers)

    async def deltas(self, links: DeltaLinks) -> object:
        answer = self.answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer


async def test_directory_polls_are_counted_by_result():
    def count(result: str) -> float:
        return metrics.REGISTRY.get_sample_value("synapse_scim_directory_polls_total", {"result": result}) or 0.0

    links = DeltaLinks("g", "u", "s")
    errors, successes = count("error"), count("success")  # other tests' polls count too
    watch = TenantWatch(key=("t-polls", "https://graph"), interval=30, links=links)
    down = DirectoryError(Reason.DIRECTORY_READ_FAILED, "503", definitive=False)
    watch.subscribers[("ns", "ws")] = Subscription(_Directory(down, down), poke=lambda: None)
    await watch.poll()
    watch.retry_at = None
    await watch.poll()
    assert (count("error") - errors, count("success") - successes) == (2, 0)
    assert watch.behind
    # Taking new links (after a lost delta link) is a poll too.
    watch.forget()
    watch.subscribers[("ns", "ws")].directory = _Directory(SimpleNamespace(links=DeltaLinks("g2", "u2", "s2")))
    await watch.poll()
    assert (count("error") - errors, count("success") - successes) == (2, 1)

"""The chart's RBAC is sufficient, proven by the operator itself: `helm install`, then `synapse-scim run`
signed in with a TokenRequest token of the chart's ServiceAccount reconciles a binding to Ready against
the Azure sandbox, and writes its grant ledger. Take one verb the operator needs away from the installed
Role and the same run must not get to Ready: the proof bites.

Only the operator uses the ServiceAccount's kubeconfig; the test applies the Secret, the workspace and
the binding as the admin (the user applying manifests). test_chart.py asserts the rules verbatim; this
file asserts they are enough.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client
from operator_rbac import ChartHarness, can, chart_harness, forbidden_lines, remove_verb_from_role

from support.chart import fullname, install_chart, service_account_kubeconfig
from support.harness import RB_PLURAL, WS_PLURAL
from support.kube import gone
from support.orgs import upn

GROUP = "synapse-scim.io"
CONTRIBUTOR = "7572bffe-f453-4b66-912a-46cc5ef38fda"
WS_SCOPE = "workspaces/analytics"
# How long a broken run is watched for never getting to Ready. The unbroken run gets there in a few
# seconds (directory poll 1s); every broken case first waits for its own evidence (a 403), so this is
# only the "and it stays that way" part.
NEVER_READY_FOR = 15.0


def _install(cluster: Any, namespace: str, release: str, mode: str) -> None:
    args = ["--set-json", f'watchNamespaces=["{namespace}"]'] if mode == "namespaced" else []
    install_chart(cluster, namespace, release, *args)


@pytest.fixture
def release(cluster, namespace, request) -> Iterator[str]:
    """The chart installed in the test's namespace, in the mode of `request.param` (default namespaced:
    watchNamespaces=[the test namespace]); uninstalled afterwards, cluster-scoped objects included."""
    mode = getattr(request, "param", "namespaced")
    name = f"scim-{namespace[2:]}"  # unique: the ClusterRole(Binding) of the cluster-wide mode is named after it
    _install(cluster, namespace, name, mode)
    try:
        yield name
    finally:
        cluster.helm("uninstall", name, "--namespace", namespace)
        with cluster.api_client() as api:
            rbac = client.RbacAuthorizationV1Api(api)
            assert gone(lambda: rbac.read_cluster_role(fullname(name)))
            assert gone(lambda: rbac.read_cluster_role_binding(fullname(name)))
            assert gone(lambda: rbac.read_namespaced_role(fullname(name), namespace))


@pytest.fixture
def sa_kubeconfig(cluster, namespace, release, tmp_path) -> Path:
    return service_account_kubeconfig(cluster, namespace, release, tmp_path / "operator.kubeconfig")


@pytest.fixture
def h(cluster, namespace, release, tmp_path) -> Iterator[ChartHarness]:
    # Depends on `release`: the operator is stopped before the chart (and its RBAC) is uninstalled.
    with chart_harness(cluster, namespace, tmp_path) as harness:
        yield harness


def _held(h: ChartHarness, role_id: str) -> set[str]:
    return {a["principalId"] for a in h.assignments() if a["roleDefinitionId"] == role_id and a["scope"] == WS_SCOPE}


def _ready_true(h: ChartHarness, name: str) -> dict[str, Any] | None:
    c = h.condition(RB_PLURAL, name)
    return c if c and c["status"] == "True" else None


@pytest.mark.parametrize("release", ["namespaced", "clusterwide"], indirect=True)
def test_operator_reconciles_under_the_charts_rbac(h, namespace, release, sa_kubeconfig, request):
    clusterwide = request.node.callspec.params["release"] == "clusterwide"
    # As the chart runs it: leader election on, the Lease named after the release in its namespace.
    h.start_operator(
        all_namespaces=clusterwide,
        KUBECONFIG=str(sa_kubeconfig),
        SYNAPSE_SCIM_LEADER_ELECTION="on",
        SYNAPSE_SCIM_LEASE_NAME=fullname(release),
        POD_NAMESPACE=namespace,
        POD_NAME="operator-0",
    )
    h.workspace()
    h.binding("analysts", ["Synapse Contributor"], [{"kind": "Group", "name": "Analysts"}])

    obj = h.wait_condition(RB_PLURAL, "analysts", timeout=90)
    assert obj["status"]["summary"]["inSync"] == 2
    assert _held(h, CONTRIBUTOR) == {h.user_id(upn("erin")), h.user_id(upn("frank"))}
    ws = h.wait_condition(WS_PLURAL, "analytics", timeout=60)
    assert ws["status"]["reachable"] is True
    # kopf's finalizer went on with the ServiceAccount's `patch` on the kind.
    assert obj["metadata"].get("finalizers"), obj["metadata"]
    # kopf's Events were posted with the ServiceAccount's `create` on events (a refusal would be silent:
    # kopf does not log it at the operator's level, and Ready does not depend on it).
    h.wait_for(
        lambda: [
            e
            for e in h.core.list_namespaced_event(h.namespace).items
            if e.involved_object.kind == "SynapseRoleBinding" and e.involved_object.name == "analysts"
        ],
        "an Event about the binding",
        timeout=30,
    )
    # The grant ledger was written with the ServiceAccount's `create` and `patch` on configmaps (it
    # never fails the sync, so only this and the 403-free log below show its RBAC is enough).
    ledger = [
        cm
        for cm in h.core.list_namespaced_config_map(
            namespace, label_selector="synapse-scim.io/workspace=analytics"
        ).items
        if cm.metadata.name.startswith("analytics-grants-")
    ]
    assert sum(len(cm.data or {}) for cm in ledger) == 2, [cm.metadata.name for cm in ledger]
    assert all(ref.kind == "SynapseWorkspace" for cm in ledger for ref in cm.metadata.owner_references)
    lease = client.CoordinationV1Api(h.api).read_namespaced_lease(fullname(release), namespace)
    assert lease.spec.holder_identity == "operator-0"
    log = h.operator_log()
    assert not forbidden_lines(log), "the operator was refused something:\n" + "\n".join(forbidden_lines(log))


# (resource as written in the Role, verb, API group, subresource for the access review)
BROKEN = {
    # Status reports cannot be written: the binding is reconciled in Azure but never reports Ready.
    "binding-status-patch": ("synapserolebindings/status", "patch", GROUP),
    # The workspace's credential Secret cannot be read: nothing reaches Azure.
    "secret-get": ("secrets", "get", ""),
    # Bindings cannot be listed: neither kopf nor the workspace's sync sees one.
    "binding-list": ("synapserolebindings", "list", GROUP),
    # The workspace a binding names cannot be read by name.
    "workspace-get": ("synapseworkspaces", "get", GROUP),
}


@pytest.mark.parametrize("case", list(BROKEN))
def test_removing_one_verb_from_the_role_breaks_it(h, cluster, namespace, release, sa_kubeconfig, case):
    resource, verb, group = BROKEN[case]
    role = fullname(release)
    plural, _, sub = resource.partition("/")
    assert can(sa_kubeconfig, cluster, verb, plural, namespace, group=group, subresource=sub or None)
    remove_verb_from_role(cluster, namespace, role, resource, verb, group)
    assert not can(sa_kubeconfig, cluster, verb, plural, namespace, group=group, subresource=sub or None)

    h.start_operator(KUBECONFIG=str(sa_kubeconfig))
    h.workspace()
    h.binding("analysts", ["Synapse Contributor"], [{"kind": "Group", "name": "Analysts"}])

    # First the evidence that this very verb is what is missing ...
    if case == "secret-get":
        obj = h.wait_condition(RB_PLURAL, "analysts", status="False", reason="SecretNotFound", timeout=90)
        message = next(c for c in obj["status"]["conditions"] if c["type"] == "Ready")["message"]
        assert "403" in message and "get on secrets" in message, message
        assert h.assignments() == [], "nothing may reach Azure without the credential"
    else:
        h.wait_for(
            lambda: [line for line in forbidden_lines(h.operator_log()) if plural in line],
            f"the operator's 403 on {resource}",
            timeout=90,
        )
    if case == "binding-status-patch":
        # ... the rest of the access still works (the grants are made, the workspace reports) ...
        h.wait_for(
            lambda: _held(h, CONTRIBUTOR) == {h.user_id(upn("erin")), h.user_id(upn("frank"))},
            "the grants in the sandbox",
            timeout=90,
        )
        h.wait_condition(WS_PLURAL, "analytics", timeout=60)
    # ... and the binding never gets to Ready.
    h.never(lambda: _ready_true(h, "analysts"), "binding Ready without " + f"{verb} on {resource}", NEVER_READY_FOR)

"""What kubectl wait and kstatus (Flux, kpt, cli-utils) read of the operator's status.

- `kubectl wait --for=condition=X` takes a condition as met only when its `observedGeneration` (or,
  when a condition has none, `status.observedGeneration`) equals `metadata.generation`.
- kstatus (sigs.k8s.io/cli-utils/pkg/kstatus/status, `checkGenericProperties`) reads no condition's
  `observedGeneration`: it compares `status.observedGeneration` with `metadata.generation`
  (InProgress while they differ), then reads the types and statuses of the conditions alone:
  `Reconciling=True` is InProgress, `Stalled=True` is Failed; then `Ready`: True is Current, False is
  InProgress; a custom resource with none of these is Current. `_kstatus` asks the library itself.
"""

from __future__ import annotations

import time
from typing import Any

from gitops import evaluate

from support.harness import RB_PLURAL, WS_PLURAL


def _kstatus(tool, obj: dict[str, Any]) -> str:
    """kstatus's status of the object, by sigs.k8s.io/cli-utils itself (tests/ops/gitops.py)."""
    [result] = evaluate(tool, [obj])
    return str(result["kstatus"]["status"])


def _wait(h, name: str, condition: str) -> None:
    proc = h.cluster.kubectl(
        "wait",
        f"--for=condition={condition}",
        f"synapserolebinding/{name}",
        "-n",
        h.namespace,
        "--timeout=60s",
        check=False,
    )
    assert proc.returncode == 0, f"kubectl wait --for=condition={condition} {name}: {proc.stdout}{proc.stderr}"


def _current(h, name: str, type_: str) -> dict:
    obj = h.get(RB_PLURAL, name)
    generation = obj["metadata"]["generation"]
    assert obj["status"]["observedGeneration"] == generation, "kstatus: InProgress while they differ"
    cond = next(c for c in obj["status"]["conditions"] if c["type"] == type_)
    assert cond["observedGeneration"] == generation, "kubectl wait: a condition of an older generation is not met"
    return cond


def test_kubectl_wait_and_kstatus_read_ready_and_stalled(harness, gitops_tool):
    h = harness
    h.start_operator()
    h.workspace()
    h.binding("analysts", ["Synapse User"], [{"kind": "Group", "name": "Analysts"}])
    h.binding("typo", ["Synapse Contributer"], [{"kind": "Group", "name": "Analysts"}])

    _wait(h, "analysts", "Ready")
    ready = _current(h, "analysts", "Ready")
    assert ready["status"] == "True"
    assert _current(h, "analysts", "Stalled")["status"] == "False"
    assert _current(h, "analysts", "Reconciling")["status"] == "False"
    assert _kstatus(gitops_tool, h.get(RB_PLURAL, "analysts")) == "Current"

    _wait(h, "typo", "Stalled=True")
    stalled = _current(h, "typo", "Stalled")
    assert stalled["reason"] == "RoleNotFound"
    assert _current(h, "typo", "Ready")["status"] == "False"
    assert _kstatus(gitops_tool, h.get(RB_PLURAL, "typo")) == "Failed"
    # Ready=True never comes for the broken one: kubectl wait gives up (short timeout on purpose).
    proc = h.cluster.kubectl(
        "wait", "--for=condition=Ready", "synapserolebinding/typo", "-n", h.namespace, "--timeout=2s", check=False
    )
    assert proc.returncode != 0


def test_a_resource_the_operator_has_not_seen_reads_in_progress(harness, gitops_tool):
    # Issue 13, finding 2: with no status at all kstatus says Current, and a Flux health check passed
    # before the operator had looked. The CRDs default status to {observedGeneration: 0}.
    h = harness
    h.workspace()
    h.binding("analysts", ["Synapse User"], [{"kind": "Group", "name": "Analysts"}])
    for plural, name in ((WS_PLURAL, "analytics"), (RB_PLURAL, "analysts")):
        obj = h.get(plural, name)
        assert obj["status"] == {"observedGeneration": 0}
        assert _kstatus(gitops_tool, obj) == "InProgress"


def test_a_long_first_sync_reads_in_progress_from_its_start(harness, gitops_tool):
    # Issue 13, finding 2: during a long first sync the binding had no conditions until its grants were
    # done. Every grant takes 2 s here; every state the binding shows until InSync must be InProgress,
    # and it must say Reconciling (Applying) of its own generation while the grants are made.
    h = harness
    slow = h.sb.admin.inject_fault(
        {"service": "synapse", "operation": "createRoleAssignment", "kind": "delay", "delay": 2}
    )
    h.start_operator()
    h.workspace()
    h.binding("analysts", ["Synapse User"], [{"kind": "Group", "name": "Analysts"}])
    snapshots: list[dict[str, Any]] = []
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        obj = h.get(RB_PLURAL, "analysts")
        if not snapshots or obj["status"] != snapshots[-1]["status"]:
            snapshots.append(obj)
        ready = next((c for c in obj["status"].get("conditions") or () if c["type"] == "Ready"), None)
        if ready and ready["reason"] == "InSync":
            break
        time.sleep(0.1)
    h.sb.admin.remove_fault(slow["id"])
    *before, done = snapshots
    assert done["status"]["conditions"][0]["reason"] == "InSync"
    results = evaluate(gitops_tool, snapshots)
    assert [r["kstatus"]["status"] for r in results[:-1]] == ["InProgress"] * len(before), before
    assert results[-1]["kstatus"]["status"] == "Current"
    applying = [
        o
        for o in before
        if o["status"].get("observedGeneration") == 1
        and any(c["type"] == "Reconciling" and c["status"] == "True" for c in o["status"].get("conditions") or ())
    ]
    assert applying, f"never said Reconciling: {[o['status'] for o in before]}"
    assert all(r["argocd"]["status"] == "Progressing" for r in results[:-1])


def test_kubectl_wait_for_the_reason_waits_for_the_grants(harness):
    # The README's way to wait for the grants themselves, now that Ready=True also means Suspended,
    # WorkspaceSuspended or DriftDetected.
    h = harness
    h.start_operator()
    h.workspace()
    h.binding("analysts", ["Synapse User"], [{"kind": "Group", "name": "Analysts"}])
    h.binding("watch", ["Synapse Contributor"], [{"kind": "Group", "name": "Analysts"}], managementPolicy="Observe")
    jsonpath = '--for=jsonpath={.status.conditions[?(@.type=="Ready")].reason}=InSync'
    proc = h.cluster.kubectl("wait", jsonpath, "synrb/analysts", "-n", h.namespace, "--timeout=60s", check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    _wait(h, "watch", "Ready")  # settled: Ready=True, reason DriftDetected
    proc = h.cluster.kubectl("wait", jsonpath, "synrb/watch", "-n", h.namespace, "--timeout=2s", check=False)
    assert proc.returncode != 0, "an Observe binding with drift is not InSync"

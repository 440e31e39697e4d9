"""What kubectl wait and kstatus (Flux, kpt, cli-utils) read of the operator's status.

- `kubectl wait --for=condition=X` takes a condition as met only when its `observedGeneration` (or,
  when a condition has none, `status.observedGeneration`) equals `metadata.generation`.
- kstatus (sigs.k8s.io/cli-utils/pkg/kstatus/status, `checkGenericProperties`) reads no condition's
  `observedGeneration`: it compares `status.observedGeneration` with `metadata.generation`
  (InProgress while they differ), then reads the types and statuses of the conditions alone:
  `Reconciling=True` is InProgress, `Stalled=True` is Failed, and a custom resource with neither is
  Current. `_kstatus` below is that rule.
"""

from __future__ import annotations

from typing import Any

from support.harness import RB_PLURAL


def _kstatus(obj: dict[str, Any]) -> str:
    """kstatus's status of a custom resource (its generic rules; it has no rules of its own for one)."""
    if obj["metadata"].get("deletionTimestamp"):
        return "Terminating"
    status = obj.get("status") or {}
    if "observedGeneration" in status and status["observedGeneration"] != obj["metadata"].get("generation"):
        return "InProgress"
    for cond in status.get("conditions") or ():
        if cond["type"] == "Reconciling" and cond["status"] == "True":
            return "InProgress"
        if cond["type"] == "Stalled" and cond["status"] == "True":
            return "Failed"
    return "Current"


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


def test_kubectl_wait_and_kstatus_read_ready_and_stalled(harness):
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
    assert _kstatus(h.get(RB_PLURAL, "analysts")) == "Current"

    _wait(h, "typo", "Stalled=True")
    stalled = _current(h, "typo", "Stalled")
    assert stalled["reason"] == "RoleNotFound"
    assert _current(h, "typo", "Ready")["status"] == "False"
    assert _kstatus(h.get(RB_PLURAL, "typo")) == "Failed"
    # Ready=True never comes for the broken one: kubectl wait gives up (short timeout on purpose).
    proc = h.cluster.kubectl(
        "wait", "--for=condition=Ready", "synapserolebinding/typo", "-n", h.namespace, "--timeout=2s", check=False
    )
    assert proc.returncode != 0

"""What Flux and kstatus read: `kubectl wait --for=condition=...` on the operator's conditions, and
conditions that carry the generation they describe."""

from __future__ import annotations

from support.harness import RB_PLURAL


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
    assert obj["status"]["observedGeneration"] == generation
    cond = next(c for c in obj["status"]["conditions"] if c["type"] == type_)
    assert cond["observedGeneration"] == generation, "kstatus ignores conditions of an older generation"
    return cond


def test_kubectl_wait_reads_ready_and_stalled(harness):
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

    _wait(h, "typo", "Stalled=True")
    stalled = _current(h, "typo", "Stalled")
    assert stalled["reason"] == "RoleNotFound"
    assert _current(h, "typo", "Ready")["status"] == "False"
    # Ready=True never comes for the broken one: kubectl wait gives up (short timeout on purpose).
    proc = h.cluster.kubectl(
        "wait", "--for=condition=Ready", "synapserolebinding/typo", "-n", h.namespace, "--timeout=2s", check=False
    )
    assert proc.returncode != 0

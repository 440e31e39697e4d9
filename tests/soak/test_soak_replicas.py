"""The soak (bench/soak.py) with two replicas under leader election and Kubernetes faults, for a few
minutes, on a control plane of its own (its API server and etcd are killed and paused): the leader
SIGKILLed and paused past its Lease, a standby SIGKILLed, the API server SIGKILLed and paused for 30 s,
etcd SIGKILLed, every watch expired (etcd compacted, 410 Gone), a binding edited and one deleted and
created again, the credential Secret deleted and created again; with the Azure faults, directory changes
and SCIM pushes (to either replica) of the soak. No violation may occur, no Synapse write may come from a
replica that did not hold the Lease when it arrived (the sandbox's request log against the Lease's
history), and everything converges within two sync intervals once the faults stop.

SYNAPSE_SCIM_SOAK_KUBE_SECONDS (default 210) makes it longer, SYNAPSE_SCIM_SOAK_SEED replays a seed.
"""

from __future__ import annotations

import os
import random

from kubernetes import client

from soak import Soak, soak_org, summary  # bench/soak.py (pyproject.toml's pytest pythonpath)
from soak_kube import KubeFaults
from support.harness import running_harness
from synapse_scim_sandbox.devcluster import ControlPlane

NO_RECOVERY = {"standby_kill", "replica_kill_during_push"}


def test_soak_with_replicas_and_kubernetes_faults(kube_tools, tmp_path, request):
    seed = int(os.environ.get("SYNAPSE_SCIM_SOAK_SEED") or random.SystemRandom().randrange(2**31))
    duration = float(os.environ.get("SYNAPSE_SCIM_SOAK_KUBE_SECONDS", "210"))
    print(
        f"\nsoak: seed {seed} (SYNAPSE_SCIM_SOAK_SEED={seed} replays it), {duration:g}s, 2 replicas, Kubernetes faults"
    )
    # A control plane of its own: this soak kills and pauses it.
    with ControlPlane(tools=kube_tools) as cluster:
        with cluster.api_client() as api:
            client.CoreV1Api(api).create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name="soak")))
        with running_harness(cluster, "soak", soak_org(), tmp_path, request) as h:
            report = Soak(
                h,
                duration=duration,
                seed=seed,
                replicas=2,
                kube_faults=True,
                kube_fault_every=20.0,
                object_fault_every=20.0,
                pause_range=(30.0, 35.0),
                kill_every=25.0,
                log=lambda m: print(m, flush=True),
            ).run()
    print(summary(report))
    kinds = {e["kind"] for e in report.episodes}
    # The faults happened: every control-plane fault, every object fault, every replica fault.
    assert set(KubeFaults.KINDS) <= kinds, kinds
    assert {"binding_edit", "binding_recreate", "secret_recreate"} <= kinds, kinds
    assert {"leader_kill", "leader_pause", "standby_kill"} <= kinds, kinds
    assert report.faults_injected > 0 and report.scim_requests > 0 and report.directory_changes > 0
    # ... and what they must not do.
    assert report.writes_checked > 0
    assert report.writes_by_non_holders == 0
    assert report.scim_rejected == 0, report.scim_rejected_by_code
    assert report.violations == [], "\n".join(report.violations)
    assert report.convergence_s is not None
    # Every fault was recovered from (a standby's kill has nothing to recover: the leader goes on).
    recoverable = {k: row for k, row in report.fault_table.items() if k in kinds - NO_RECOVERY}
    assert all(row["recovered"] == row["injected"] for row in recoverable.values()), report.fault_table

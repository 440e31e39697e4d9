"""An operator upgrade, short (bench/upgrade_run.py; the bench runs it longer and writes the figures): the
previous release's chart (commit bac18e4) installed with its CRDs, replicaCount 2 and leader election,
its two pods run as processes with the previous release's code; directory changes flow; `helm upgrade`
to this checkout's chart with a new image tag and the CRDs re-applied with `kubectl apply
--server-side`; the pods rolled one at a time as the chart's RollingUpdate strategy says, the new ones
running this checkout's code.

The run starts its own control plane: the CRDs are cluster-scoped, and here the previous release's chart
installs them, so the session cluster (whose CRDs every other test uses) is left alone.

Asserted: no violation (no manual assignment deleted or missing, nothing deleted that a binding wanted
throughout the race window before, no duplicate, no binding lost, convergence within two sync
intervals after the rollout and the last change), no Azure request answered with an error, every old
pod stopped on SIGTERM with exit 0 and released the Lease, a new pod leading at the end, the CRDs in
the API server those of this checkout. Times are reported, not asserted.
"""

from __future__ import annotations

import pytest

from upgrade_run import PREVIOUS, UpgradeConfig, UpgradeRun, previous_available  # bench/upgrade_run.py

pytestmark = pytest.mark.skipif(
    not previous_available(), reason=f"needs the previous release's commit {PREVIOUS} (a full clone)"
)


def test_helm_upgrade_from_the_previous_release_with_two_replicas_while_the_directory_changes(kube_tools, tmp_path):
    cfg = UpgradeConfig(
        changes_before=8, changes_during=6, changes_after=4, change_every=1.0, sync_interval=30.0, workdir=tmp_path
    )
    run = UpgradeRun(kube_tools, cfg, log=lambda m: print(m, flush=True))
    report = run.run()
    counts = run.summary_counts()
    print({k: v for k, v in counts.items() if k != "error_samples"})
    print(report["leadership_rollout"], report["leadership_transitions"])
    print({k: v for k, v in report.items() if k.endswith("_dry_run")})

    assert run.violations == [], "\n".join(run.violations)
    assert report["convergence_after_upgrade_s"] is not None
    assert counts["errors"] == 0, counts["error_samples"]
    # The run did what it claims: changes flowed, the operator wrote and revoked, across the rollout.
    assert counts["directory_changes"] >= cfg.changes_before + cfg.changes_during + cfg.changes_after
    assert counts["creates"] > 0 and counts["deletes"] > 0

    # The previous release ran the previous code, the new pods this checkout's, as the image tags say.
    assert report["installed_crds_match_previous"]
    assert report["deployment_image"] == f"synapse-scim:{report['new_image_tag']}"
    pods = report["pods"]
    old = [p for p in pods if p["code"].startswith("previous")]
    new = [p for p in pods if p["code"].startswith("this checkout")]
    assert len(old) == 2 and len(new) == 2, pods
    assert "/previous/operator/" in report["code_paths"]["synapse-scim:0.1.0"]
    # One at a time (maxSurge 1, maxUnavailable 0): each step started one new pod and stopped one old.
    assert [(len(s["started"]), len(s["stopped"])) for s in report["rollout"]["steps"]] == [(1, 1), (1, 1)]
    for p in old:
        assert p["stopped_by"] == "rollout" and p["exit_code"] == 0 and not p["sigkilled"], p
    # Leadership went from the previous release to this one: a new pod holds the Lease and says so.
    assert report["new_leader_after_rollout_s"] is not None
    assert any(p["acquired_lease"] for p in new)
    assert report["leader_at_end_is_a_new_pod"], report["leader_at_end"]
    # The CRDs were re-applied: the API server has this checkout's.
    assert report["crds_match_this_checkout"]
    assert all(line.endswith("serverside-applied") for line in report["crds_apply"]), report["crds_apply"]
    # ... and the README's --force-conflicts is needed: Helm manages the CRDs' fields it created.
    changed = report["changed_crd_apply_dry_run"]
    assert changed["without_force"]["exit"] != 0 and 'conflict with "helm"' in changed["without_force"]["stderr"]
    assert changed["with_force_conflicts"]["exit"] == 0, changed

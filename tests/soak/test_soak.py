"""The soak (bench/soak.py) for a couple of minutes: 20% of Azure calls fail, the directory changes at
random, an identity provider pushes random SCIM changes (bursts of 50 included) to the operator's
endpoint, the operator is SIGKILLed at random moments (during pushes too) and restarted; no violation
may occur, everything converges within two sync intervals once the faults stop, and a deleted pushed
group and a deleted ScimProvider hold their grants.

SYNAPSE_SCIM_SOAK_SECONDS (default 120) makes it longer, SYNAPSE_SCIM_SOAK_SEED replays a seed.
"""

from __future__ import annotations

import os
import random

from soak import Soak, soak_org, summary  # bench/soak.py (pyproject.toml's pytest pythonpath)
from support.harness import running_harness


def test_soak_with_faults_crashes_directory_changes_and_scim_pushes(cluster, namespace, tmp_path, request):
    seed = int(os.environ.get("SYNAPSE_SCIM_SOAK_SEED") or random.SystemRandom().randrange(2**31))
    duration = float(os.environ.get("SYNAPSE_SCIM_SOAK_SECONDS", "120"))
    print(f"\nsoak: seed {seed} (SYNAPSE_SCIM_SOAK_SEED={seed} replays it), {duration:g}s")
    with running_harness(cluster, namespace, soak_org(), tmp_path, request) as h:
        report = Soak(h, duration=duration, seed=seed, log=lambda m: print(m, flush=True)).run()
    print(summary(report))
    # The soak did what it claims: faults, crashes and changes happened, the operator kept working.
    assert report.faults_injected > 0 and report.kills > 0 and report.directory_changes > 0
    assert report.creates > 0 and report.deletes > 0
    # ... and the identity provider pushed, in bursts too, and the endpoint was killed under it.
    assert report.scim_changes > 0 and report.scim_bursts > 0 and report.scim_requests > 0
    assert report.scim_rejected == 0, report.scim_rejected_by_code
    assert set(report.hold_checks) == {"group deleted", "provider deleted"}, report.hold_checks
    assert report.violations == [], "\n".join(report.violations)
    assert report.convergence_s is not None

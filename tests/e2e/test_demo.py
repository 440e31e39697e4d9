"""`make demo`'s program runs start to finish: control plane, sandbox, operator, convergence, directory changes,
and an identity provider's SCIM push (a grant and its revocation)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time

import pytest


@pytest.mark.skipif(
    bool(os.environ.get("SYNAPSE_SCIM_EXISTING_CLUSTER")), reason="the demo starts its own local control plane"
)
def test_demo_converges_and_follows_the_directory(kube_tools):
    """The demo starts a control plane of its own, with the session's tools (hence `cluster`-marked)."""
    started = time.monotonic()
    proc = subprocess.run(
        [sys.executable, "-m", "synapse_scim.cli", "demo", "--timeout", "90"],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "SYNAPSE_SCIM_TOOLS": str(kube_tools.directory)},
    )
    elapsed = time.monotonic() - started
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    out = proc.stdout
    assert "converged in" in out and "followed the directory in" in out
    # Piped output is a sequence of tables, not terminal redraws.
    assert "\x1b[" not in out
    assert "data-engineers" in out and "analysts" in out
    # The SCIM scene: the endpoint, the push, the grant and the revocation with their measured times.
    assert re.search(r"ScimProvider okta serves https://127\.0\.0\.1:\d+/scim/v2/data-platform/okta", out), out[-3000:]
    assert re.search(r"granted \d+\.\d\ds after the SCIM response", out), out[-3000:]
    assert re.search(r"revoked \d+\.\d\ds after the SCIM response", out), out[-3000:]
    assert "okta-data-stewards" in out
    print(f"demo ran in {elapsed:.1f}s")

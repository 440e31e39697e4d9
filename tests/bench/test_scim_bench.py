"""Smoke tests of the SCIM benchmark (bench/scim_bench.py) and of the transcript against `synapse-scim
run` (bench/scim_transcript.py --cluster), on the session's real control plane: each harness measures
and shows what it says (every phase's requests, the big group's members and shards, the cold load
finding everything, the provider's status), not how fast the endpoint is: no wall-clock assertions."""

from __future__ import annotations

import argparse
import asyncio
import base64
import io
import re
from pathlib import Path
from typing import Any

from kubernetes import client

import scim_transcript
from scim_bench import Bench, markdown


def test_the_benchmark_runs_every_phase_and_counts_what_it_stored(cluster: Any, namespace: str, tmp_path: Path) -> None:
    args = argparse.Namespace(users=120, groups=6, big=120, filters=20, patches=3, concurrency=4)
    bench = Bench(cluster, tmp_path, args, lambda _: None, namespace=namespace)
    try:
        report = asyncio.run(bench.run())
    finally:
        bench.endpoint.stop()
    requests = {p["phase"]: p["requests"] for p in report["phases"]}
    assert requests == {
        "create user": 120,
        "filter userName": 20,
        "create group": 6,
        "patch 100 members (add)": 3,
        "patch 100 members (remove)": 3,
    }
    # The operator's CPU is read from /proc in clock ticks (10 ms): a 3-request phase may cost less than
    # one tick and read 0, so only the whole run must show CPU spent.
    assert all(p["operator_cpu_s"] >= 0 and p["p95_ms"] >= p["p50_ms"] for p in report["phases"])
    assert sum(p["operator_cpu_s"] for p in report["phases"]) > 0
    big = report["big"]
    assert big["members"] == 120 and big["grow"]["requests"] == 2 and big["single_member_patch"]["requests"] == 100
    assert big["shards"]["objects"] == 0, "120 members stay inline"
    assert report["stored"]["scimusers"]["objects"] == 120
    assert report["stored"]["scimgroups"]["objects"] == 7
    assert report["cold_load_s"] > 0 and report["rss_cold_loaded_mb"] > 0
    text = markdown(report)
    assert "| create user | 120 | 4 |" in text and "One group of 120 members" in text


def test_the_transcript_against_the_running_operator(cluster: Any, namespace: str, tmp_path: Path) -> None:
    out = io.StringIO()
    statuses = scim_transcript.against_operator(cluster, tmp_path, namespace, out)
    text = out.getvalue()
    assert statuses == scim_transcript.EXPECTED
    assert f"/scim/v2/{namespace}/okta" in text
    assert re.search(r'"users": 1,?\n', text) and re.search(r'"groups": 1,?\n', text), text[-1500:]
    audit = [line for line in text.splitlines() if re.search(r"synapse_scim\.audit: scim \w+ \w+", line)]
    changes = [" ".join(line.split("synapse_scim.audit: scim ")[1].split(" ")[:2]) for line in audit]
    assert changes == [
        "create User",
        "create Group",
        "patch Group",
        "patch Group",
        "patch User",
    ], audit
    assert "members +1 -0" in audit[2] and "members +0 -1" in audit[3] and "active=false" in audit[4]
    with cluster.api_client() as api:
        secret = client.CoreV1Api(api).read_namespaced_secret("okta-scim-token", namespace)
    token = base64.b64decode(secret.data["token"]).decode()
    assert token not in text and not re.search(r"Bearer (?!<redacted>)", text)

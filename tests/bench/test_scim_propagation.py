"""Smoke test of the SCIM propagation benchmark (bench/scim_propagation.py), tiny, on the session's control
plane: it measures every single change and the burst, counts the syncs and Graph calls the burst caused,
and writes its results. What it measures is not asserted: no wall-clock assertions."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

from bench_results import write_results
from scim_propagation import KINDS, Bench, Config, markdown


def test_the_propagation_benchmark_measures_and_writes_results(cluster: Any, namespace: str, tmp_path: Path) -> None:
    cfg = Config(singles=4, pool=6, initial=3, burst=30, batch=10)
    bench = Bench(cluster, tmp_path, cfg, lambda _: None, namespace=namespace)
    try:
        report = asyncio.run(bench.run())
    finally:
        if bench.endpoint is not None:
            bench.endpoint.stop()
    singles = report["singles"]
    assert [c["kind"] for c in singles["changes"]] == list(KINDS)
    assert singles["measured"] == 4 and singles["missed"] == 0 and singles["final_state_matches"]
    assert all(c["latency_s"] is not None for c in singles["changes"])
    burst = report["burst"]
    assert burst["members"] == 30 and burst["granted"] == 30 and burst["missing"] == 0
    assert burst["requests"] >= 30 + 1 + 3 and burst["final_state_matches"]
    assert burst["syncs_total"] >= 1 and burst["scim_pokes"] >= 1 and burst["graph_calls"] >= 1
    assert burst["azure_calls"]["synapse.createRoleAssignment"] == 30
    assert report["lower_bound"]["creates"] == 30 and report["lower_bound"]["measured_s"] > 0
    assert {t["target"] for t in report["targets"]} and report["machine"]["cpus"]

    stem = write_results(tmp_path / "results", "scim-propagation", report, markdown(report))
    assert json.loads(stem.with_suffix(".json").read_text())["burst"]["members"] == 30
    text = stem.with_suffix(".md").read_text()
    assert "## Single changes (4 measured, 0 missed)" in text and "initial push of a 30-member group" in text

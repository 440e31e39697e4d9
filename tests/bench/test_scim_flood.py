"""Smoke test of the SCIM flood benchmark (bench/scim_flood.py), tiny, on the session's control plane: it
measures the Graph changes of both phases, floods the endpoint from its own processes (valid requests of
one provider, unauthenticated junk), keeps a second provider's requests going and writes its results.
How fast anything was is not asserted: no wall-clock assertions."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

from bench_results import write_results
from scim_flood import Bench, Config, carrying_poll, markdown


def test_the_flood_benchmark_measures_both_phases_and_writes_results(
    cluster: Any, namespace: str, tmp_path: Path
) -> None:
    cfg = Config(changes=2, gap=0.2, concurrency=4, warmup=0.5, poll_interval="1s", change_timeout=60.0)
    bench = Bench(cluster, tmp_path, cfg, lambda _: None, namespace=namespace)
    try:
        report = asyncio.run(bench.run())
    finally:
        if bench.endpoint is not None:
            bench.endpoint.stop()
    for phase in ("quiet", "flood"):
        graph = report[phase]["graph"]
        assert [c["kind"] for c in graph["changes"]] == ["add", "remove"]
        assert graph["measured"] == 2 and graph["missed"] == 0 and graph["delta_polls"] >= 1
        assert all(c["after_poll_s"] is not None for c in graph["changes"])
        second = report[phase]["second_provider"]
        # The second provider has a rate limit of its own and another address than the junk: never refused.
        assert second["requests"] >= 1 and second["success_rate"] == 1.0
        assert set(report[phase]["cpu_share"]) == {"operator", "sandbox"}
    assert report["final_state_matches"]
    assert "flood" not in report["quiet"]
    flood = report["flood"]["flood"]
    assert flood["processes"] == 2 and flood["requests"] == sum(flood["by_status"].values()) > 0
    kinds = flood["by_kind"]
    assert kinds["provider"]["requests"] > 0 and kinds["junk"]["requests"] > 0
    # Junk is never served: refused as unauthenticated (401) or, past the address's budget, 429.
    assert set(kinds["junk"]["by_status"]) <= {"401", "429"} and kinds["junk"]["by_status"].get("401", 0) >= 1
    assert set(kinds["provider"]["by_status"]) <= {"200", "201", "429"}
    answers = report["flood"]["endpoint_answers"]
    assert any(key.endswith("/okta 200") for key in answers) and any("/onelogin " in key for key in answers)
    assert report["machine"]["load_average"] and report["load_average_after"] and report["commit"]

    stem = write_results(tmp_path / "results", "scim-flood", report, markdown(report))
    assert json.loads(stem.with_suffix(".json").read_text())["flood"]["flood"]["processes"] == 2
    text = stem.with_suffix(".md").read_text()
    assert "## Graph changes (2 per phase" in text and "## The second provider (onelogin" in text


def test_a_change_belongs_to_the_last_poll_before_its_write() -> None:
    polls = [100.0, 130.0, 160.0]
    assert carrying_poll(polls, 101.0, 130.4) == 130.0
    # The admin API answered after the poll that saw the change had been logged: that poll, not the next.
    assert carrying_poll(polls, 130.1, 130.5) == 130.0
    assert carrying_poll(polls, 101.0, None) is None
    assert carrying_poll(polls, 99.0, 99.5) is None  # written before any poll of the phase

"""Smoke test of the scale benchmark (bench/scale_bench.py): the tiny scenario end to end, both
strategies, with short intervals, on the session's real control plane and a real sandbox process.
It checks that the harness measures what it says (expected set, counts, propagation, quiet window),
not how fast the operator is: there are no wall-clock assertions."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

from bench_results import percentile
from scale_bench import RunConfig, by_operation, markdown, run
from scale_model import ROLE_IDS, SCENARIOS, World, build_seed, workspace_names
from scale_procs import operator_writes
from synapse_scim_sandbox import load_seed

TINY = SCENARIOS["tiny"]


def test_expected_assignments_agree_with_the_sandboxs_own_directory() -> None:
    """The harness expands groups itself (from the seed); the sandbox's directory must agree."""
    world = World(TINY, build_seed(TINY))
    d = load_seed(build_seed(TINY)).directory
    want: dict[str, set[tuple[str, str, str]]] = {ws: set() for ws in workspace_names(TINY)}
    for b in world.bindings:
        for g in b.groups:
            members = {
                m
                for m in d.transitive_members(g)
                if (m in d.users and d.users[m].account_enabled) or m in d.service_principals
            }
            want[b.workspace] |= {(ROLE_IDS[r], m, b.scope_path()) for r in b.roles for m in members}
    assert world.desired() == want
    assert all(want.values()), "every workspace of the tiny scenario has something to grant"
    assert sum(len(w) for w in world.manual.values()) > 0


def test_membership_changes_are_independent_and_have_effects() -> None:
    world = World(TINY, build_seed(TINY))
    before = world.expected()
    changes = world.plan_changes(8, seed=3)
    after = world.expected()
    assert len({c.user for c in changes}) == 8
    assert {c.kind for c in changes} == {"add", "remove", "add-nested", "remove-nested"}
    for ws in before:  # the changes' effects are exactly the difference between the two states
        created = {g for c in changes for g in c.creates.get(ws, ())}
        deleted = {g for c in changes for g in c.deletes.get(ws, ())}
        assert after[ws] == (before[ws] | created) - deleted
        assert not created & before[ws] and deleted <= before[ws]


def test_percentile_is_nearest_rank() -> None:
    values = [float(i) for i in range(1, 21)]
    assert percentile(values, 50) == 10.0 and percentile(values, 95) == 19.0 and percentile(values, 100) == 20.0
    assert percentile([], 95) is None


def test_tiny_scenario_end_to_end(cluster: Any, tmp_path: Path) -> None:
    cfg = RunConfig(
        poll_interval=1.0,
        changes=4,
        change_gap=0.5,
        change_timeout=60,
        quiet_scale=1 / 30,
        quiet_sync=30.0,
        quiet_poll_interval=1.0,
        quiet_window=4.0,
        converge_timeout=180,
    )
    report = run(TINY, ["delta", "naive"], cfg, cluster, tmp_path, log=lambda msg: None)
    world = World(TINY, build_seed(TINY))
    minimum = world.minimum(page_size=cfg.page_size, latency=cfg.latency, write_concurrency=8, read_concurrency=8)
    needed_writes = sum(minimum["writes_per_workspace"].values())
    assert needed_writes == minimum["calls"]["synapse.createRoleAssignment"] > 0

    for name in ("delta", "naive"):
        r = report["strategies"][name]
        assert r["seed_matches_model"], "the sandbox holds the manual assignments the model put in the seed"
        assert r["expected_assignments"] == sum(len(e) for e in world.expected().values())

        c = r["converge"]
        assert c["azure_calls"] == by_operation(c["counters"]) and c["azure_calls_total"] == sum(c["counters"].values())
        created = sum(n for k, n in c["counters"].items() if k.startswith("synapse.createRoleAssignment.2"))
        assert created == needed_writes, "every needed assignment was created exactly once to converge"
        assert 0 <= c["first_azure_call_s"] <= c["last_write_s"] <= c["converge_s"]
        assert c["k8s_writes"] >= len(world.bindings), "each binding's Ready status (a status write) was counted"
        for op in ("graph.transitiveMembers", "synapse.listRoleDefinitions", "synapse.listRoleAssignments"):
            assert c["azure_calls"].get(op, 0) >= minimum["calls"][op], op

        p = r["propagation"]
        assert p["measured"] == cfg.changes and p["missed"] == 0 and p["final_state_matches"]
        assert all(ch["latency_s"] > 0 for ch in p["changes"])
        assert p["p50_s"] <= p["p95_s"] <= p["max_s"]
        assert p["azure_calls"].get("synapse.createRoleAssignment", 0) == sum(ch["creates"] for ch in p["changes"])
        assert p["azure_calls"].get("synapse.deleteRoleAssignment", 0) == sum(ch["deletes"] for ch in p["changes"])

        assert r["peak_rss_mb"] > 0 and r["cpu_s_converge"] > 0
        assert r["sandbox"]["rss_mb_converged"] > 0 and r["sandbox"]["cpu_s_converge"] >= 0

    q = report["strategies"]["delta"]["quiet"]
    assert q["settled_by"] == "first sync seen"
    assert q["window_s"] >= cfg.window
    assert q["azure_calls_total"] == sum(q["azure_calls"].values())
    assert q["k8s_writes"] == operator_writes(Counter(q["k8s_writes_by_resource"]))
    assert_one_naive_pass(report["strategies"]["naive"]["quiet"], world, cfg)

    assert set(report["ratios_naive_over_delta"]) == set(report["figures"]["delta"])
    assert {t["target"].split(" ")[0] for t in report["targets"]} >= {"propagation", "quiet", "operator"}
    json.dumps(report)  # the JSON file is written from this
    text = markdown(report)
    assert "| time to converge from empty (s) |" in text and "naive / delta" in text


def assert_one_naive_pass(q: dict[str, Any], world: World, cfg: RunConfig) -> None:
    """The naive quiet figure is one pass, counted and scaled as the report says."""
    assert set(q["syncs_per_workspace"]) == set(workspace_names(world.scenario))
    assert q["one_pass"], f"one sync per workspace in the pass, got {q['syncs_per_workspace']}"
    assert q["azure_failed_calls"] == 0
    assert q["azure_calls_total"] == sum(q["azure_calls"].values()) > 0
    assert q["logged_calls"] == q["azure_calls_total"], "the pass's duration comes from a log that saw all of it"
    # A naive pass re-lists every workspace and reads every bound group (at least one page each, once
    # per binding that names it) and writes nothing on a converged world.
    bound = sum(len(b.groups) for b in world.bindings)
    assert q["azure_calls"]["graph.transitiveMembers"] >= bound
    assert q["azure_calls"]["synapse.listRoleAssignments"] >= world.scenario.workspaces
    assert "synapse.createRoleAssignment" not in q["azure_calls"]
    interval = max(cfg.poll_interval, q["pass_s"])
    assert q["interval_applied"] == ("poll interval" if interval == cfg.poll_interval else "pass duration")
    assert q["azure_calls_per_window"] == round(q["azure_calls_total"] * cfg.quiet_minutes * 60 / interval)


def test_naive_quiet_only_against_deltas_world(cluster: Any, tmp_path: Path) -> None:
    """--naive quiet-only: naive neither converges nor propagates; its one pass is made in delta's
    sandbox, and the quiet target is judged on that measured figure."""
    cfg = RunConfig(
        poll_interval=1.0,
        changes=2,
        change_gap=0.5,
        change_timeout=60,
        quiet_scale=1 / 30,
        quiet_sync=30.0,
        quiet_poll_interval=1.0,
        quiet_window=4.0,
        converge_timeout=180,
        naive="quiet-only",
    )
    report = run(TINY, ["delta", "naive"], cfg, cluster, tmp_path, log=lambda msg: None)
    world = World(TINY, build_seed(TINY))
    naive = report["strategies"]["naive"]
    assert list(report["strategies"]) == ["delta", "naive"]
    assert naive["mode"] == "quiet-only" and "converge" not in naive and "propagation" not in naive
    assert "quiet-only" in naive["quiet"]["world"]
    assert_one_naive_pass(naive["quiet"], world, cfg)
    assert report["figures"]["naive"]["converge_s"] is None
    (target,) = [t for t in report["targets"] if t["target"].startswith("quiet tenant: >=")]
    delta_calls = report["figures"]["delta"]["quiet_azure_calls"]
    if delta_calls:
        assert target["value"] == round(naive["quiet"]["azure_calls_per_window"] / delta_calls, 2)
    assert "one naive pass at real time" in target["how"]
    json.dumps(report)
    text = markdown(report)
    assert "not run (--naive quiet-only)" in text and "naive was measured quiet-only" in text

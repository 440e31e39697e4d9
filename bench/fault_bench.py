"""Propagation after faults (issue 13): how long a leaver keeps access once a Graph fault has ended,
and how long a disabled service principal keeps its roles. The same set-up as scale_bench.py: a real
kube-apiserver + etcd (devcluster), the Azure sandbox with realistic latency in its own process, and
`synapse-scim run` (delta strategy) as its own process, at default settings (poll interval 30 s,
syncInterval 10m).

    .venv/bin/python bench/fault_bench.py --scenario S                 # writes bench/results/faults-S-<date>.{json,md}
    .venv/bin/python bench/fault_bench.py --scenario tiny --quick      # short intervals, prints only

After converging from empty, three phases in one sandbox, one namespace, one operator:
(a) membership storm: Graph answers 429 to every `transitiveMembers` read; N members are removed
    from bound groups (one each, seeded) during it. The storm lasts --storm seconds (default two
    poll intervals: the watch sees the removals, the syncs fail); then it ends. Per member: the time
    from the storm's end to the sandbox's log time of the last revocation its removal implies.
(b) delta storm: the same with 429s on the tenant watch's `$batch` POST (groups/delta + users/delta),
    so that the operator does not even learn of the removals until the storm ends.
(c) service principals disabled: M service principals that hold roles through a binding (before
    converging, the harness makes as many as needed members of bound groups) are disabled with the
    sandbox's `POST /_sandbox/servicePrincipals/{id}/disable`; per principal: the time from the
    admin call to its last revocation. Skipped, with the reason in the report, when the sandbox has
    no such route (it answers 404).
For (a) and (b) a revocation that comes before the storm's end is counted (`revoked_during_fault`):
there should be none, since nothing may be removed on a failed read. p50/p95 are nearest-rank over
the principals whose revocations all showed within --timeout; the others count as missed. Goal for
each p95: one poll interval + 5 s.
"""

from __future__ import annotations

import argparse
import datetime as dt
import random
import statistics
import sys
import tempfile
import time
import uuid
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

from bench_results import percentile, write_results
from scale_bench import (
    Cluster,
    WriteLog,
    assignments,
    by_operation,
    converge,
    diff,
    duration,
    source_version,
)
from scale_model import APP, SCENARIOS, Change, Grant, Scenario, World, build_seed
from scale_procs import OperatorProcess, SandboxProcess, cpu_plan, machine
from synapse_scim_sandbox import AdminError, SyncAdminClient
from synapse_scim_sandbox.devcluster import ControlPlane

ROOT = Path(__file__).resolve().parents[1]
STORMS = {"membership": "transitiveMembers", "delta": "batch"}  # phase -> the Graph operation that fails


@dataclass
class FaultConfig:
    poll_interval: float = 30.0  # SYNAPSE_SCIM_DIRECTORY_POLL_INTERVAL (the default)
    sync_interval: float = 600.0  # spec.syncInterval (the default 10m)
    members: int = 10  # members removed during each storm
    storm: float | None = None  # seconds from the first removal to the storm's end; default 2 poll intervals
    retry_after: int = 2  # Retry-After of the storm's 429s (whole seconds, as Graph sends them)
    change_gap: float = 0.5  # seconds between two removals
    service_principals: int = 5  # disabled in phase (c), among those holding a role through a binding
    timeout: float = 150.0  # a principal's revocations must show within this after the fault's end
    latency: dict[str, float] = field(default_factory=lambda: {"graph": 0.020, "synapse": 0.040, "login": 0.0})
    write_concurrency: int = 8
    read_concurrency: int = 8
    page_size: int = 100
    converge_timeout: float = 3600.0
    seed: int = 1

    @property
    def storm_s(self) -> float:
        return self.storm if self.storm is not None else 2 * self.poll_interval

    @property
    def goal_s(self) -> float:
        return self.poll_interval + 5.0


def summary(results: list[dict[str, Any]]) -> dict[str, Any]:
    latencies = [r["latency_s"] for r in results if r["latency_s"] is not None]
    return {
        "measured": len(latencies),
        "missed": len(results) - len(latencies),
        "p50_s": percentile(latencies, 50),
        "p95_s": percentile(latencies, 95),
        "max_s": max(latencies, default=None),
        "mean_s": round(statistics.fmean(latencies), 3) if latencies else None,
    }


def revocations(log: WriteLog, deletes: dict[str, set[Grant]], since: float, until: float) -> list[float | None]:
    """When each revocation in `deletes` showed (first time after `since`); waits until all did or `until`."""
    keys = [("delete", ws, g) for ws, grants in deletes.items() for g in grants]
    while True:
        seen = [log.when(k, since) for k in keys]
        if all(s is not None for s in seen) or time.time() > until:
            return seen
        time.sleep(0.2)


def storm(
    admin: SyncAdminClient, op: OperatorProcess, log: WriteLog, operation: str, changes: list[Change], cfg: FaultConfig
) -> dict[str, Any]:
    """429 on every Graph `operation` while `changes` (removals) are made; measured from the storm's end."""
    before = admin.counters()
    rule = admin.inject_fault(
        {"service": "graph", "operation": operation, "status": 429, "retry_after": cfg.retry_after}
    )
    made: list[tuple[Change, float]] = []
    try:
        started = time.time()
        for change in changes:
            made.append((change, time.time()))
            admin.remove_member(change.group, change.user)
            time.sleep(cfg.change_gap)
        while time.time() < started + cfg.storm_s:
            if not op.alive():
                raise RuntimeError("the operator exited during the storm; see its log")
            time.sleep(0.2)
        during = diff(admin.counters(), before)
    finally:
        admin.remove_fault(rule["id"])
    ended = time.time()
    results = []
    for change, t in made:
        seen = revocations(log, change.deletes, t, ended + cfg.timeout)
        done = [s for s in seen if s is not None]
        results.append(
            {
                "kind": change.kind,
                "group": change.group_name,
                "user": change.user,
                "deletes": len(seen),
                "revoked_during_fault": sum(1 for s in done if s < ended),
                "latency_s": round(max(done) - ended, 3) if done and len(done) == len(seen) else None,
            }
        )
    return {
        "operation": operation,
        "storm_s": round(ended - started, 1),
        "throttled_calls": during.get(f"graph.{operation}.429", 0),
        "azure_calls_during": by_operation(during),
        "azure_calls_until_revoked": by_operation(diff(admin.counters(), before)),
        "revoked_during_fault": sum(r["revoked_during_fault"] for r in results),
        "principals": results,
        **summary(results),
    }


def disable_service_principals(admin: SyncAdminClient, log: WriteLog, world: World, cfg: FaultConfig) -> dict[str, Any]:
    """Disable service principals that hold roles through a binding; measured from each admin call."""
    manual = {ws: set(m.values()) for ws, m in world.manual.items()}
    chosen = []
    for sp in world.seed["servicePrincipals"]:
        if sp.get("displayName") == APP or sp["id"] not in world.enabled:
            continue
        deletes = {ws: g - manual.get(ws, set()) for ws, g in world.grants_of(sp["id"]).items()}
        deletes = {ws: g for ws, g in deletes.items() if g}
        if deletes:
            chosen.append((sp, deletes))
    chosen = chosen[: cfg.service_principals]
    if not chosen:
        return {"skipped": "no service principal holds a role through a binding in this scenario"}
    before = admin.counters()
    made = []
    for sp, deletes in chosen:
        t = time.time()
        try:
            admin._call("POST", f"/servicePrincipals/{quote(sp['id'], safe='')}/disable")
        except AdminError as exc:
            if exc.status == 404 and not made:
                return {
                    "skipped": "the sandbox has no route POST /_sandbox/servicePrincipals/{ref}/disable "
                    f"(it answered {exc.status} {exc.code}): run this with a sandbox that can disable a "
                    "service principal"
                }
            raise
        world.enabled.discard(sp["id"])
        made.append((sp, deletes, t))
        time.sleep(cfg.change_gap)
    results = []
    for sp, deletes, t in made:
        seen = revocations(log, deletes, t, t + cfg.timeout)
        done = [s for s in seen if s is not None]
        results.append(
            {
                "service_principal": sp["displayName"],
                "id": sp["id"],
                "deletes": len(seen),
                "latency_s": round(max(done) - t, 3) if done and len(done) == len(seen) else None,
            }
        )
    return {"principals": results, "azure_calls": by_operation(diff(admin.counters(), before)), **summary(results)}


def enrol_service_principals(world: World, n: int, seed: int) -> list[tuple[str, str]]:
    """Make `n` service principals hold a role through a binding (the scenarios give few of them one):
    those that hold none become direct members of a bound group, in the model here; the sandbox gets
    the same (group, principal) pairs before the operator starts."""
    rng = random.Random(seed)
    bound = sorted({g for b in world.bindings for g in b.groups})
    sps = sorted(sp["id"] for sp in world.seed["servicePrincipals"] if sp.get("displayName") != APP)
    holding = sum(1 for sp in sps if world.grants_of(sp))
    out: list[tuple[str, str]] = []
    for sp in sps:
        if holding + len(out) >= n:
            break
        if not world.grants_of(sp):
            group = rng.choice(bound)
            world.members[group].add(sp)
            out.append((group, sp))
    return out


def run(scenario: Scenario, cfg: FaultConfig, cp: Any, workdir: Path, log: Any = print) -> dict[str, Any]:
    world = World(scenario, build_seed(scenario))
    enrolled = enrol_service_principals(world, cfg.service_principals, cfg.seed)
    expected = world.expected()
    removals = world.plan_changes(2 * cfg.members, cfg.seed, kinds=("remove", "remove-nested"))
    plan = {"membership": removals[: cfg.members], "delta": removals[cfg.members :]}
    sandbox_cpu, operator_cpu = cpu_plan()
    report: dict[str, Any] = {
        "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": machine(),
        "source": source_version(),
        "command": " ".join(["python bench/fault_bench.py", *sys.argv[1:]]),
        "scenario": {**asdict(scenario), "stats": world.stats()},
        "config": {**asdict(cfg), "storm_s": cfg.storm_s, "goal_s": cfg.goal_s},
    }
    with (
        SandboxProcess(
            scenario, latency=cfg.latency, cert_dir=workdir / "sandbox", cpu=sandbox_cpu, page_size=cfg.page_size
        ) as sb,
        cp.api_client() as api,
    ):
        admin = SyncAdminClient(sb.info["admin_url"], sb.info["ca_path"], timeout=120)
        for group, sp in enrolled:
            admin.add_member(group, sp)
        cluster = Cluster(api, f"faults-{uuid.uuid4().hex[:6]}")
        cluster.create(world, sb.info, cfg.sync_interval)
        op = OperatorProcess(
            kubeconfig=cp.kubeconfig,
            ca_path=sb.info["ca_path"],
            namespace=cluster.namespace,
            log_path=workdir / "operator.log",
            cpu=operator_cpu,
            env={
                "SYNAPSE_SCIM_STRATEGY": "delta",
                "SYNAPSE_SCIM_WRITE_CONCURRENCY": str(cfg.write_concurrency),
                "SYNAPSE_SCIM_READ_CONCURRENCY": str(cfg.read_concurrency),
                "SYNAPSE_SCIM_DIRECTORY_POLL_INTERVAL": duration(cfg.poll_interval),
            },
        )
        try:
            log(f"{len(world.bindings)} bindings in {scenario.workspaces} workspace(s); converging")
            report["converge"] = {
                k: v for k, v in converge(cluster, admin, op, expected, cfg.converge_timeout).items() if k != "counters"
            }
            ids = {ws: assignments(admin, ws) for ws in expected}
            with WriteLog(admin, ids) as writes:
                for phase, operation in STORMS.items():
                    log(f"{phase} storm: 429 on {operation} for {cfg.storm_s:g} s, {len(plan[phase])} removals")
                    report[phase] = storm(admin, op, writes, operation, plan[phase], cfg)
                    log(
                        f"{phase} storm: p95 {report[phase]['p95_s']} s after its end, {report[phase]['missed']} missed"
                    )
                log(f"disabling up to {cfg.service_principals} service principals")
                report["service_principals"] = disable_service_principals(admin, writes, world, cfg)
                sp = report["service_principals"]
                log("service principals: " + (sp.get("skipped") or f"p95 {sp['p95_s']} s, {sp['missed']} missed"))
            final = world.expected()
            actual = {ws: {*assignments(admin, ws).values()} for ws in final}
            report["final_state_matches"] = actual == final
            report["final_state_diff"] = {
                ws: {"missing": len(final[ws] - actual[ws]), "extra": len(actual[ws] - final[ws])} for ws in final
            }
            report["operator"] = op.usage()
        except BaseException:
            text = (workdir / "operator.log").read_text(errors="replace").splitlines()[-40:]
            sys.stderr.write("--- operator.log (tail) ---\n" + "\n".join(text) + "\n")
            raise
        finally:
            op.stop()
    report["targets"] = targets(report, cfg)
    return report


def targets(report: dict[str, Any], cfg: FaultConfig) -> list[dict[str, Any]]:
    out = []
    names = {
        "membership": "Graph 429 storm on membership reads: p95 from its end to the revocation",
        "delta": "Graph 429 storm on the delta $batch: p95 from its end to the revocation",
        "service_principals": "service principal disabled: p95 to the revocation",
    }
    for key, name in names.items():
        r = report.get(key) or {}
        p95 = r.get("p95_s")
        met = None if r.get("skipped") else p95 is not None and p95 <= cfg.goal_s and r.get("missed") == 0
        if met and r.get("revoked_during_fault"):
            met = False
        out.append(
            {"target": f"{name} <= {cfg.goal_s:g} s", "value": "skipped" if r.get("skipped") else p95, "met": met}
        )
    return out


def markdown(report: dict[str, Any]) -> str:
    m, sc, cfg = report["machine"], report["scenario"], report["config"]
    lines = [
        f"# Propagation after faults, scenario {sc['name']}, {report['date']}",
        "",
        f"Machine: {m['cpu']}, {m['cpus']} CPUs, {m['memory_mb']} MB RAM; {m['os']} (kernel {m['kernel']}); "
        f"Python {m['python']}.",
        f"Command: `{report['command']}`; operator from commit {report['source']}.",
        "",
        f"World: {sc['stats']['users']:,} users, {sc['stats']['groups']:,} groups, {sc['stats']['bindings']} "
        f"bindings over {sc['stats']['workspaces']} workspace(s). Poll interval {cfg['poll_interval']:g} s, "
        f"syncInterval {cfg['sync_interval']:g} s; storms of {cfg['storm_s']:g} s (429, Retry-After "
        f"{cfg['retry_after']} s), {cfg['members']} removals each; converged in {report['converge']['converge_s']} s.",
        "",
        "| fault | principals | measured | missed | revoked during the fault | p50 (s) | p95 (s) | max (s) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    labels = {
        "membership": "429 storm on transitiveMembers (from its end)",
        "delta": "429 storm on the delta $batch (from its end)",
        "service_principals": "service principal disabled (from the admin call)",
    }
    for key, label in labels.items():
        r = report[key]
        if r.get("skipped"):
            lines.append(f"| {label} | skipped: {r['skipped']} | | | | | | |")
            continue
        cells = [len(r["principals"]), r["measured"], r["missed"], r.get("revoked_during_fault", "—")]
        cells += ["—" if r[k] is None else f"{r[k]:g}" for k in ("p50_s", "p95_s", "max_s")]
        lines.append(f"| {label} | " + " | ".join(str(c) for c in cells) + " |")
    lines += ["", "## Targets", "", "| target | value | verdict |", "|---|---|---|"]
    for t in report["targets"]:
        verdict = "met" if t["met"] else "n/a (skipped)" if t["met"] is None else "**missed**"
        lines.append(f"| {t['target']} | {t['value']} | {verdict} |")
    lines += ["", "## Principal by principal (s)", ""]
    for key in labels:
        r = report[key]
        if not r.get("skipped"):
            lines.append(f"- {key}: " + ", ".join(str(p["latency_s"]) for p in r["principals"]))
    lines += [
        "",
        f"Final state {'matches' if report['final_state_matches'] else 'DIFFERS from'} the expected one: "
        f"{report['final_state_diff']}.",
    ]
    for phase in STORMS:
        calls = Counter(report[phase]["azure_calls_during"])
        lines.append(f"Azure calls during the {phase} storm: {dict(calls)}.")
    return "\n".join(lines) + "\n"


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--scenario", choices=list(SCENARIOS), required=True)
    p.add_argument("--members", type=int, default=10, help="members removed during each storm")
    p.add_argument("--service-principals", type=int, default=5)
    p.add_argument("--storm", type=float, help="seconds a storm lasts (default: two poll intervals)")
    p.add_argument("--timeout", type=float, default=150.0, help="seconds a principal's revocations may take")
    p.add_argument(
        "--quick",
        action="store_true",
        help="poll interval 5 s, syncInterval 10m, storms of 12 s, 3 removals and 2 service principals; "
        "prints, and writes only with --out",
    )
    p.add_argument("--out", type=Path, help="where to write the results (default bench/results; none with --quick)")
    args = p.parse_args()
    cfg = FaultConfig(
        members=args.members, service_principals=args.service_principals, storm=args.storm, timeout=args.timeout
    )
    if args.quick:
        cfg = FaultConfig(poll_interval=5.0, members=3, service_principals=2, storm=args.storm or 12.0, timeout=60.0)
    out = args.out if args.out is not None or args.quick else ROOT / "bench" / "results"
    with tempfile.TemporaryDirectory(prefix="fault-bench-") as tmp, ControlPlane() as cp:
        report = run(
            SCENARIOS[args.scenario], cfg, cp, Path(tmp), log=lambda msg: print(msg, file=sys.stderr, flush=True)
        )
    text = markdown(report)
    print(text)
    if out is not None:
        stem = write_results(out, f"faults-{args.scenario}", report, text)
        print(f"wrote {stem}.json and {stem}.md", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Benchmark of the Azure sandbox (synapse_scim_sandbox).

1. Memory: a fresh process loads a synthetic organisation (default 100k users, 10k groups, 200k role
   assignments) and reports resident memory before/after and the load time.
2. Throughput on one core: the sandbox, loaded with that organisation, runs in a child process pinned
   to CPU 0; a load generator pinned to another CPU drives it over HTTPS with keep-alive connections
   (raw aiohttp, so the client stays cheap) and reports requests per second, latency percentiles and
   the server's own CPU use (close to 100% means the server core was the bottleneck) for:
   - a Graph member page (GET /v1.0/groups/{id}/members, 100 users per page),
   - a Graph transitive member page (100 per page, nested groups),
   - a Synapse role-assignment PUT (a new assignment each time),
   - a Synapse filtered role-assignment list (principalId=...).

    .venv/bin/python bench/sandbox_bench.py              # full run, writes bench/results/sandbox-<date>.{json,md}
    .venv/bin/python bench/sandbox_bench.py --quick      # small smoke run, prints only
    .venv/bin/python bench/sandbox_bench.py --scenario XL
        # the scale benchmark's world (bench/scale_model.py) instead of the synthetic organisation,
        # writes bench/results/sandbox-XL-<date>.{json,md}

With --scenario, memory is measured twice: the seed scale_bench.py gives the sandbox (the directory,
the workspaces and the few manual assignments: what the sandbox holds before the operator runs), and
that seed with every assignment the scenario expects once converged (what it holds after). The
throughput runs against the second one.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import gc
import itertools
import json
import multiprocessing as mp
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp

from bench_results import write_results
from scale_model import SCENARIOS, World, build_seed
from synapse_scim_sandbox import Sandbox, load_seed, synthetic_org
from synapse_scim_sandbox.tls import client_context

ROOT = Path(__file__).resolve().parents[1]

CONTRIBUTOR = "7572bffe-f453-4b66-912a-46cc5ef38fda"


def rss_mb(field: str = "VmRSS") -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    return float("nan")


def org(args: argparse.Namespace, converged: bool = True) -> dict[str, Any]:
    """The organisation to load: the synthetic one, or a scale scenario's seed (with every expected
    assignment when `converged`, else only the manual ones)."""
    if args.scenario:
        return scenario_seed(args.scenario, converged)
    return synthetic_org(
        users=args.users,
        groups=args.groups,
        members_per_group=args.members_per_group,
        nesting=0.1,
        cycles=10,
        service_principals=100,
        assignments=args.assignments,
        large_groups=10,
        large_group_size=2000,
        seed=1,
    )


def scenario_seed(name: str, converged: bool) -> dict[str, Any]:
    scenario = SCENARIOS[name]
    seed = build_seed(scenario)
    if converged:
        # Every expected grant once, as the operator leaves it; the manual ones keep their ids.
        world = World(scenario, seed)
        expected = world.expected()
        for w, ws in enumerate(seed["workspaces"]):
            manual = {g: aid for aid, g in world.manual[ws["name"]].items()}
            ws["assignments"] = [
                {
                    "role": role,
                    "principal": principal,
                    "scope": scope,
                    "id": manual.get((role, principal, scope)) or f"00000000-0000-4000-9{w:03x}-{i:012x}",
                }
                for i, (role, principal, scope) in enumerate(sorted(expected[ws["name"]]))
            ]
    return seed


# ----------------------------------------------------------------------------------------------- memory
def memory_child(args: argparse.Namespace, converged: bool, out: Any) -> None:
    gc.collect()
    base = rss_mb()
    t0 = time.perf_counter()
    seed = org(args, converged)
    t1 = time.perf_counter()
    state = load_seed(seed)
    t2 = time.perf_counter()
    del seed
    gc.collect()
    d = state.directory
    t3 = time.perf_counter()
    expanded = sum(len(d.transitive_members(g)) for g in d.groups)
    t4 = time.perf_counter()
    out.send(
        {
            "users": len(d.users),
            "groups": len(d.groups),
            "service_principals": len(d.service_principals),
            "memberships": sum(len(g.members) for g in d.groups.values()),
            "role_assignments": sum(len(w.assignments) for w in state.workspaces.values()),
            "rss_before_mb": round(base, 1),
            "rss_loaded_mb": round(rss_mb(), 1),
            "state_mb": round(rss_mb() - base, 1),
            "peak_rss_mb": round(rss_mb("VmHWM"), 1),
            "generate_s": round(t1 - t0, 2),
            "load_s": round(t2 - t1, 2),
            "expand_all_groups_s": round(t4 - t3, 2),
            "transitive_entries": expanded,
            "rss_after_expanding_all_mb": round(rss_mb(), 1),
        }
    )


def run_in_child(target: Any, *args: Any) -> Any:
    ctx = mp.get_context("spawn")
    parent, child = ctx.Pipe()
    proc = ctx.Process(target=target, args=(*args, child))
    proc.start()
    result = parent.recv()
    proc.join()
    return result


# ----------------------------------------------------------------------------------------------- server
def server_child(args: argparse.Namespace, conn: Any) -> None:
    os.sched_setaffinity(0, {args.server_cpu})

    async def main() -> None:
        sandbox = Sandbox(org(args), cert_dir=Path(tempfile.mkdtemp()), page_size=100, log_size=1000)
        gc.collect()
        gc.freeze()  # as the CLI does: the loaded organisation is never scanned by the cyclic GC again
        async with sandbox:
            d = sandbox.state.directory
            member_group = next(g.id for g in d.groups.values() if len(g.members) >= 100)
            nested = max(d.groups, key=lambda g: len(d.transitive_members(g)))
            ws = next(iter(sandbox.state.workspaces))
            some_principal = next(iter(sandbox.state.workspaces[ws].assignments)).principal_id
            app = next(iter(sandbox.clients.values()))
            conn.send(
                {
                    "graph": sandbox.graph_url,
                    "login": sandbox.authority_host,
                    "tenant": sandbox.tenant_id,
                    "synapse": sandbox.workspace_endpoint(ws),
                    "ca": str(sandbox.ca_path),
                    "client_id": app.client_id,
                    "secret": app.secret,
                    "group": member_group,
                    "nested": nested,
                    "nested_size": len(d.transitive_members(nested)),
                    "principal": some_principal,
                    "pid": os.getpid(),
                }
            )
            await asyncio.get_running_loop().run_in_executor(None, conn.recv)  # wait for "stop"

    asyncio.run(main())


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def load(info: dict[str, Any], args: argparse.Namespace) -> dict[str, Any]:
    ssl = client_context(info["ca"])
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=args.concurrency, ssl=ssl)) as session:
        tokens = {}
        for name, scope in (
            ("graph", "https://graph.microsoft.com/.default"),
            ("synapse", "https://dev.azuresynapse.net/.default"),
        ):
            async with session.post(
                f"{info['login']}/{info['tenant']}/oauth2/v2.0/token",
                data={
                    "client_id": info["client_id"],
                    "client_secret": info["secret"],
                    "grant_type": "client_credentials",
                    "scope": scope,
                },
            ) as r:
                tokens[name] = (await r.json())["access_token"]
        ws_scope = "workspaces/" + info["synapse"].rsplit("/", 1)[1]

        def member_page() -> tuple[str, str, bytes | None, str]:
            return "GET", f"{info['graph']}/groups/{info['group']}/members?$top=100", None, "graph"

        def transitive_page() -> tuple[str, str, bytes | None, str]:
            return "GET", f"{info['graph']}/groups/{info['nested']}/transitiveMembers?$top=100", None, "graph"

        counter = itertools.count(1)

        def put() -> tuple[str, str, bytes | None, str]:  # a new principal each time: never a 409
            n = next(counter)
            body = (
                f'{{"roleId":"{CONTRIBUTOR}","principalId":"00000000-0000-4000-8000-{n:012x}",'
                f'"scope":"{ws_scope}","principalType":"User"}}'
            ).encode()
            return "PUT", f"{info['synapse']}/roleAssignments/bench-{n}?api-version=2020-12-01", body, "synapse"

        def filtered_list() -> tuple[str, str, bytes | None, str]:
            return (
                "GET",
                f"{info['synapse']}/roleAssignments?api-version=2020-12-01&principalId={info['principal']}",
                None,
                "synapse",
            )

        results = {}
        for name, make, expect in (
            ("graph_member_page", member_page, 200),
            ("graph_transitive_member_page", transitive_page, 200),
            ("synapse_role_assignment_put", put, 200),
            ("synapse_filtered_list", filtered_list, 200),
        ):
            results[name] = await drive(session, tokens, make, expect, args, info["pid"])
        return results


async def drive(
    session: aiohttp.ClientSession,
    tokens: dict[str, str],
    make: Any,
    expect: int,
    args: argparse.Namespace,
    server_pid: int,
) -> dict[str, Any]:
    latencies: list[float] = []
    errors = 0
    size = 0
    stop_at = 0.0
    measuring = False

    async def worker() -> None:
        nonlocal errors, size
        while time.perf_counter() < stop_at:
            method, url, body, service = make()
            t = time.perf_counter()
            headers = {"Authorization": f"Bearer {tokens[service]}"}
            if body is not None:
                headers["Content-Type"] = "application/json"
            async with session.request(method, url, data=body, headers=headers) as r:
                data = await r.read()
            if measuring:
                latencies.append(time.perf_counter() - t)
                size = len(data)
                if r.status != expect:
                    errors += 1

    stop_at = time.perf_counter() + args.warmup
    await asyncio.gather(*(worker() for _ in range(args.concurrency)))
    measuring = True
    cpu0, client0, t0 = cpu_seconds(server_pid), cpu_seconds(os.getpid()), time.perf_counter()
    stop_at = t0 + args.duration
    await asyncio.gather(*(worker() for _ in range(args.concurrency)))
    elapsed, cpu = time.perf_counter() - t0, cpu_seconds(server_pid) - cpu0
    client_cpu = cpu_seconds(os.getpid()) - client0
    latencies.sort()
    return {
        "requests": len(latencies),
        "errors": errors,
        "seconds": round(elapsed, 2),
        "rps": round(len(latencies) / elapsed, 1),
        "server_cpu_percent": round(100 * cpu / elapsed, 1),
        "client_cpu_percent": round(100 * client_cpu / elapsed, 1),
        "rps_per_server_cpu_second": round(len(latencies) / cpu, 1) if cpu else None,
        "latency_ms_p50": round(1000 * statistics.median(latencies), 2),
        "latency_ms_p99": round(1000 * latencies[int(0.99 * (len(latencies) - 1))], 2),
        "response_bytes": size,
        "concurrency": args.concurrency,
    }


def throughput(args: argparse.Namespace) -> dict[str, Any]:
    os.sched_setaffinity(0, {args.client_cpu})
    ctx = mp.get_context("spawn")
    parent, child = ctx.Pipe()
    proc = ctx.Process(target=server_child, args=(args, child))
    proc.start()
    try:
        info = parent.recv()
        results = asyncio.run(load(info, args))
        results["setup"] = {"member_group_page_users": 100, "nested_group_transitive_members": info["nested_size"]}
    finally:
        parent.send("stop")
        proc.join(60)
    return results


# ----------------------------------------------------------------------------------------------- report
def machine() -> dict[str, Any]:
    model = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        platform.processor(),
    )
    mem = next(
        (
            int(line.split()[1]) // 1024
            for line in Path("/proc/meminfo").read_text().splitlines()
            if line.startswith("MemTotal")
        ),
        0,
    )
    import aiohttp as a

    return {
        "cpu": model,
        "cpus": os.cpu_count(),
        "memory_mb": mem,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "aiohttp": a.__version__,
        # The machine may be shared: other work running meanwhile shows here and skews every figure.
        "load_average": [round(x, 2) for x in os.getloadavg()],
    }


def markdown(report: dict[str, Any]) -> str:
    m, mem, tp = report["machine"], report["memory"], report["throughput"]
    lines = [
        f"# Sandbox benchmark, {report['date']}",
        "",
        f"Machine: {m['cpu']}, {m['cpus']} CPUs, {m['memory_mb']} MB RAM; Python {m['python']}, aiohttp "
        f"{m['aiohttp']}; {m['platform']}; load average at the start {m.get('load_average')}.",
        f"Command: `{report['command']}`",
        "",
        "## Memory with the organisation loaded",
        "",
    ]
    if report["parameters"].get("scenario"):
        seed = report["memory_seed"]
        lines += [
            f"Scenario {report['parameters']['scenario']} of bench/scale_model.py. As scale_bench.py seeds it "
            f"(before the operator runs: {seed['role_assignments']:,} manual assignments): state "
            f"{seed['state_mb']} MB, process {seed['rss_loaded_mb']} MB, peak while loading "
            f"{seed['peak_rss_mb']} MB; building the seed (scale_model.build_seed) {seed['generate_s']} s, "
            f"loading it {seed['load_s']} s. Converged (every expected assignment present), below. During a "
            "scale run the sandbox also keeps its request log (up to 50,000 entries).",
            "",
        ]
    lines += [
        f"{mem['users']:,} users, {mem['groups']:,} groups ({mem['memberships']:,} direct memberships), "
        f"{mem['service_principals']:,} service principals, {mem['role_assignments']:,} role assignments.",
        "",
        "| measure | value |",
        "|---|---|",
        f"| resident memory of the loaded state | {mem['state_mb']} MB (process {mem['rss_loaded_mb']} MB, "
        f"interpreter + imports {mem['rss_before_mb']} MB) |",
        f"| peak resident memory while loading (seed dict + state) | {mem['peak_rss_mb']} MB |",
        f"| building the seed / loading it | {mem['generate_s']} s / {mem['load_s']} s |",
        f"| expanding every group transitively (cached afterwards) | {mem['expand_all_groups_s']} s, "
        f"{mem['transitive_entries']:,} entries, process then {mem['rss_after_expanding_all_mb']} MB |",
        "",
        "## Requests per second, sandbox on one core",
        "",
        "Server pinned to one CPU with the organisation above loaded; load generator (raw aiohttp, keep-alive, "
        f"{tp['graph_member_page']['concurrency']} concurrent requests) pinned to another CPU; HTTPS.",
        "",
        "| request | req/s | server CPU | req per server CPU second | load generator CPU | p50 ms | p99 ms "
        "| response bytes |",
        "|---|---|---|---|---|---|---|---|",
    ]
    labels = {
        "graph_member_page": "Graph member page (100 users)",
        "graph_transitive_member_page": "Graph transitiveMembers page (100)",
        "synapse_role_assignment_put": "Synapse role-assignment PUT",
        "synapse_filtered_list": "Synapse role assignments, principalId filter",
    }
    for key, label in labels.items():
        r = tp[key]
        lines.append(
            f"| {label} | {r['rps']} | {r['server_cpu_percent']}% | {r['rps_per_server_cpu_second']} | "
            f"{r['client_cpu_percent']}% | "
            f"{r['latency_ms_p50']} | {r['latency_ms_p99']} | {r['response_bytes']} |"
        )
    lines += [
        "",
        "Server CPU near 100% means the one server core was saturated (below it, the load generator's "
        "core, or other work on the machine, was the limit). Requests per server CPU second is what the "
        "sandbox costs a request, whatever else runs; errors: "
        + ", ".join(f"{k} {tp[k]['errors']}" for k in labels)
        + ".",
    ]
    return "\n".join(lines) + "\n"


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--users", type=int, default=100_000)
    p.add_argument("--groups", type=int, default=10_000)
    p.add_argument("--members-per-group", type=int, default=20)
    p.add_argument("--assignments", type=int, default=200_000)
    p.add_argument("--duration", type=float, default=8.0)
    p.add_argument("--warmup", type=float, default=1.5)
    p.add_argument("--concurrency", type=int, default=16)
    p.add_argument("--server-cpu", type=int, default=0)
    p.add_argument("--client-cpu", type=int, default=1)
    p.add_argument("--quick", action="store_true", help="a small organisation and short runs; prints only")
    p.add_argument(
        "--scenario",
        choices=list(SCENARIOS),
        help="load a scale_bench.py scenario's world instead of the synthetic organisation "
        "(--users, --groups, --members-per-group, --assignments are then ignored)",
    )
    p.add_argument("--out", type=Path, default=ROOT / "bench" / "results")
    args = p.parse_args()
    if args.quick:
        args.users, args.groups, args.assignments, args.duration, args.warmup = 3000, 300, 5000, 1.5, 0.3
    report = {
        "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": machine(),
        "command": " ".join(["python bench/sandbox_bench.py", *sys.argv[1:]]),
        "parameters": vars(args) | {"out": str(args.out)},
    }
    if args.scenario:
        report["memory_seed"] = run_in_child(memory_child, args, False)
        print(json.dumps(report["memory_seed"], indent=1), flush=True)
    report["memory"] = run_in_child(memory_child, args, True)
    print(json.dumps(report["memory"], indent=1), flush=True)
    report["throughput"] = throughput(args)
    print(json.dumps(report["throughput"], indent=1), flush=True)
    if not args.quick:
        name = f"sandbox-{args.scenario}" if args.scenario else "sandbox"
        stem = write_results(args.out, name, report, markdown(report))
        print(f"wrote {stem}.json and {stem}.md")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Operator CPU per role-assignment write (issue 16, "cheaper writes").

The sandbox runs in its own process pinned to one CPU; this process pins itself to the other and
drives N creates (default 5,000) through the operator's real write path: a Workspace adapter built by
`adapters/connections.py: Connections` (the real azure-synapse-accesscontrol client over HTTPS, with
the operator's client-secret credential) and `controller/writes.py: execute`, one Plan of N Creates,
as a sync hands it over. The operator's logging is configured as `synapse-scim run --log-format json`
does (to /dev/null), so the audit records cost what they cost in production.

Reported: operator-process CPU seconds per write (os.times user+system over the writes alone, after a
warm-up that fetched the token and opened the connections), wall time, writes per second, and how many
writes landed (the sandbox's counters and its assignment list). With --profile, the cProfile top lists
(cumulative and tottime); the CPU figures are then those under the profiler.

    .venv/bin/python bench/write_cost.py                        # 5,000 writes, latency 0: CPU alone
    .venv/bin/python bench/write_cost.py --synapse-ms 40        # with the latency of scale_bench
    .venv/bin/python bench/write_cost.py --writes 2000 --profile --save /tmp/before.json
    .venv/bin/python bench/write_cost.py --record /tmp/before.json /tmp/after.json   # bench/results/write-cost-<date>
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import cProfile
import datetime as dt
import io
import json
import os
import platform
import pstats
import ssl
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp

from bench_results import write_results
from scale_procs import cpu_plan, machine
from synapse_scim.adapters.connections import Connections
from synapse_scim.adapters.credentials import Cloud
from synapse_scim.controller.run import configure_logging
from synapse_scim.controller.writes import AuditRecord, execute
from synapse_scim.core.model import BindingKey, Create, Grant, Plan, Principal, PrincipalType
from synapse_scim_sandbox import synthetic_org

WORKSPACE = "bench"
ROLE = "Synapse User"
HERE = Path(__file__).resolve().parent


def cpu() -> float:
    t = os.times()
    return t.user + t.system


def start_sandbox(users: int, graph_ms: float, synapse_ms: float, cpu_index: int | None) -> subprocess.Popen[str]:
    """The sandbox as `synapse-scim sandbox --json`, seeded with `users` users, pinned to `cpu_index`."""
    seed = synthetic_org(
        users=users, groups=1, members_per_group=1, service_principals=0, disabled=0, workspace=WORKSPACE, seed=1
    )
    tmp = Path(tempfile.mkdtemp(prefix="write-cost-"))
    (tmp / "seed.json").write_text(json.dumps(seed))
    cmd = [
        sys.executable,
        "-m",
        "synapse_scim.cli",
        "sandbox",
        "--seed",
        str(tmp / "seed.json"),
        "--json",
        "--latency-graph",
        str(graph_ms),
        "--latency-synapse",
        str(synapse_ms),
    ]
    if cpu_index is not None:
        cmd = ["taskset", "-c", str(cpu_index), *cmd]
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)


async def admin(session: aiohttp.ClientSession, url: str, method: str, path: str) -> Any:
    async with session.request(method, f"{url}{path}") as r:
        r.raise_for_status()
        return await r.json()


def plan_of(users: list[dict[str, Any]], role_id: str, writes: int) -> Plan:
    """`writes` creates of one role at the workspace, one user each, as the planner would hand them over."""
    binding = BindingKey("bench", "everyone")
    return Plan(
        creates=tuple(
            Create(
                grant=Grant(role_id, u["id"], f"workspaces/{WORKSPACE}"),
                principal=Principal(u["id"], PrincipalType.USER, u["userPrincipalName"]),
                role_name=ROLE,
                bindings=(binding,),
                via=("Everyone",),
            )
            for u in users[:writes]
        )
    )


class RawWriter:
    """The floor, for comparison (--raw): the same PUTs (URL, headers, JSON body, bearer token) with
    aiohttp alone, over a session set up as the operator's (one SSL context, no cookie jar), at the same
    concurrency; no azure-core, no msrest, no limit, no audit records, no metrics."""

    def __init__(self, endpoint: str, token: str, ctx: ssl.SSLContext) -> None:
        self.base = f"{endpoint.rstrip('/')}/roleAssignments/"
        self.headers = {
            "Authorization": f"Bearer {token}",
            "Content-Type": "application/json",
            "Accept": "application/json, text/json",
        }
        self.session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(ssl=ctx), cookie_jar=aiohttp.DummyCookieJar(), trust_env=False
        )

    async def execute(self, plan: Plan, concurrency: int) -> int:
        pending = list(reversed(plan.creates))
        created = 0

        async def worker() -> None:
            nonlocal created
            while pending:
                c = pending.pop()
                body = {"roleId": c.grant.role_id, "principalId": c.grant.principal_id, "scope": c.grant.scope}
                body["principalType"] = str(c.principal_type)
                url = f"{self.base}{c.assignment_id}?api-version=2020-12-01"
                async with self.session.put(url, data=json.dumps(body).encode(), headers=self.headers) as r:
                    await r.read()
                    created += r.status == 200

        await asyncio.gather(*(worker() for _ in range(concurrency)))
        return created


async def run(args: argparse.Namespace, info: dict[str, Any], users: list[dict[str, Any]]) -> dict[str, Any]:
    env = info["env"]
    os.environ["SYNAPSE_SCIM_AZURE_CA_BUNDLE"] = info["ca_path"]
    secret = env["AZURE_CLIENT_SECRET"].encode()

    async def read_secret(namespace: str, name: str, key: str) -> bytes:
        return secret

    spec = {
        "endpoint": env[f"SYNAPSE_SCIM_WORKSPACE_{WORKSPACE.upper()}"],
        "workspaceName": WORKSPACE,
        "tenantId": info["tenant_id"],
        "credential": {"clientSecret": {"clientId": env["AZURE_CLIENT_ID"], "secretRef": {"name": "synapse-sp"}}},
        "cloud": {"authorityHost": info["authority_host"], "graphEndpoint": info["graph_url"].removesuffix("/v1.0")},
    }
    connections = Connections(read_secret, write_concurrency=args.write_concurrency)
    clients = await connections.get("bench", WORKSPACE, spec)
    workspace = clients.workspace
    ctx = ssl.create_default_context(cafile=info["ca_path"])
    out: dict[str, Any] = {}
    try:
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=ctx)) as session:
            # Warm-up, not measured: the token, the role definitions, and one connection per writer.
            roles = {r.name: r.id for r in await workspace.role_definitions()}
            role_id = roles[ROLE]
            warm = plan_of(users[-args.write_concurrency :], role_id, args.write_concurrency)
            raw = None
            if args.raw:
                token = await clients.credential.get_token(Cloud.from_spec(spec["cloud"]).synapse_scope)
                raw = RawWriter(spec["endpoint"], token.token, ctx)
                await raw.execute(warm, args.write_concurrency)
            else:
                await execute(warm, workspace, {role_id: ROLE})
            await admin(session, info["admin_url"], "DELETE", "/counters")
            # CPU time, not wall time: on a shared machine the wall clock charges other processes to us.
            profiler = cProfile.Profile(time.process_time) if args.profile else None
            rounds: list[dict[str, float]] = []
            wanted: set[str] = set()
            audit: list[AuditRecord] = []
            raw_created = 0
            for r in range(args.rounds):
                plan = plan_of(users[r * args.writes : (r + 1) * args.writes], role_id, args.writes)
                wanted |= {c.assignment_id for c in plan.creates}
                wall, spent = time.perf_counter(), cpu()
                if profiler:
                    profiler.enable()
                if raw:
                    raw_created += await raw.execute(plan, args.write_concurrency)
                else:
                    audit += (await execute(plan, workspace, {role_id: ROLE})).audit
                if profiler:
                    profiler.disable()
                wall, spent = time.perf_counter() - wall, cpu() - spent
                rounds.append({"cpu_s": round(spent, 3), "wall_s": round(wall, 3)})
            if raw:
                await raw.session.close()
            counters = await admin(session, info["admin_url"], "GET", "/counters")
            listed = await admin(session, info["admin_url"], "GET", f"/workspaces/{WORKSPACE}/assignments")
        total = args.writes * args.rounds
        # Per round, CPU per write; the machine is shared, so the median of the rounds is the figure
        # and the smallest one shows the least disturbed.
        per_write = sorted(r["cpu_s"] * 1000 / args.writes for r in rounds)
        out = {
            "writes": args.writes,
            "rounds": args.rounds,
            "write_concurrency": args.write_concurrency,
            "latency_ms": {"graph": args.graph_ms, "synapse": args.synapse_ms},
            "profiled": bool(profiler),
            "cpu_ms_per_write": round(statistics.median(per_write), 4),
            "cpu_ms_per_write_min": round(per_write[0], 4),
            "cpu_s": round(sum(r["cpu_s"] for r in rounds), 3),
            "wall_s": round(sum(r["wall_s"] for r in rounds), 3),
            "writes_per_s": round(total / sum(r["wall_s"] for r in rounds), 1),
            "per_round": rounds,
            "mode": "raw-aiohttp" if args.raw else "operator",
            "granted": raw_created if args.raw else sum(1 for r in audit if r.action == "grant" and not r.failed),
            "failed": sum(1 for r in audit if r.failed),
            "sandbox_creates_200": counters.get("synapse.createRoleAssignment.200", 0),
            "sandbox_creates": sum(v for k, v in counters.items() if k.startswith("synapse.createRoleAssignment.")),
            "landed": len(wanted & {a["id"] for a in listed}),
        }
        if profiler:
            out["profile"] = {order: top(profiler, order, args.top) for order in ("cumulative", "tottime")}
    finally:
        await connections.close()
    return out


def top(profiler: cProfile.Profile, order: str, count: int) -> str:
    text = io.StringIO()
    stats = pstats.Stats(profiler, stream=text)
    stats.strip_dirs().sort_stats(order).print_stats(count)
    # pstats opens with the totals and a header of blank lines; the table is what is worth keeping.
    return text.getvalue().strip()


def measure(args: argparse.Namespace) -> dict[str, Any]:
    sandbox_cpu, own_cpu = cpu_plan()
    users = synthetic_org(
        users=args.writes * args.rounds + args.write_concurrency,
        groups=1,
        members_per_group=1,
        service_principals=0,
        disabled=0,
        workspace=WORKSPACE,
        seed=1,
    )["users"]
    sandbox = start_sandbox(len(users), args.graph_ms, args.synapse_ms, sandbox_cpu)
    if own_cpu is not None:
        os.sched_setaffinity(0, {own_cpu})
    try:
        info = json.loads(sandbox.stdout.readline())  # type: ignore[union-attr]
        with open(os.devnull, "w") as devnull, contextlib.redirect_stderr(devnull):
            # The operator's own logging (JSON lines to stderr), its audit records included.
            configure_logging("json", verbose=False)
            out = asyncio.run(run(args, info, users))
    finally:
        sandbox.terminate()
        sandbox.wait()
    out["cpus"] = {"sandbox": sandbox_cpu, "operator": own_cpu}
    return out


def markdown(report: dict[str, Any]) -> str:
    m = report["machine"]
    runs = report["runs"]
    lines = [
        f"# Operator CPU per role-assignment write, {report['date']}",
        "",
        f"{m['cpus']} CPU(s) ({m['cpu']}), {m['memory_mb']} MB, {m['os']}, Python {m['python']}. "
        "`bench/write_cost.py`: the sandbox pinned to one CPU, the operator's write path (Connections' "
        "Workspace adapter and `controller/writes.py: execute`, the audit log as JSON to /dev/null) "
        "pinned to the other; CPU = os.times user+system of the operator process over the writes alone.",
        "",
        "| run | commit | writes x rounds | Synapse latency | CPU ms/write (median) | min | CPU s | wall s | writes/s "
        "| landed |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, r in runs.items():
        lines.append(
            f"| {name} | {r.get('commit', '')} | {r['writes']:,} x {r['rounds']} | {r['latency_ms']['synapse']:g} ms | "
            f"{r['cpu_ms_per_write']:.3f} | {r['cpu_ms_per_write_min']:.3f} | {r['cpu_s']:.2f} | {r['wall_s']:.2f} | "
            f"{r['writes_per_s']:,.0f} | {r['landed']:,} |"
        )
    for note in report.get("notes", []):
        lines += ["", note]
    for name, r in runs.items():
        for order, text in (r.get("profile") or {}).items():
            lines += ["", f"## Profile {name}, by {order}", "", "```", text, "```"]
    return "\n".join(lines) + "\n"


def record(paths: list[Path], out: Path, notes: list[str]) -> Path:
    """One report of several saved runs (`--save`), named by the run's label (the file's stem)."""
    runs: dict[str, Any] = {}
    for p in paths:
        runs[p.stem] = json.loads(p.read_text())
    report = {
        "date": f"{dt.datetime.now(dt.UTC):%Y-%m-%d}",
        "machine": {**machine(), "python": platform.python_version()},
        "runs": runs,
        "notes": notes,
    }
    return write_results(out, "write-cost", report, markdown(report))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--writes", type=int, default=5000)
    p.add_argument("--rounds", type=int, default=1, help="rounds of --writes creates; the median is reported")
    p.add_argument("--write-concurrency", type=int, default=8)
    p.add_argument("--graph-ms", type=float, default=0)
    p.add_argument("--synapse-ms", type=float, default=0)
    p.add_argument("--raw", action="store_true", help="the floor: the same PUTs with aiohttp alone (no SDK, no audit)")
    p.add_argument("--profile", action="store_true", help="cProfile top lists (the CPU figures then include it)")
    p.add_argument("--top", type=int, default=30, help="lines of each profile list")
    p.add_argument("--save", type=Path, help="also write the run's JSON here (its stem names it in --record)")
    p.add_argument("--commit", default="", help="recorded with --save")
    p.add_argument("--record", type=Path, nargs="+", help="saved runs to write as bench/results/write-cost-<date>")
    p.add_argument("--note", action="append", default=[], help="a paragraph for --record's markdown")
    p.add_argument("--out", type=Path, default=HERE / "results")
    args = p.parse_args()
    if args.record:
        print(record(args.record, args.out, args.note))
        return
    out = measure(args)
    if args.commit:
        out["commit"] = args.commit
    if args.save:
        args.save.write_text(json.dumps(out, indent=1) + "\n")
    profile = out.pop("profile", None)
    print(json.dumps(out, indent=1))
    for order, text in (profile or {}).items():
        print(f"\n--- by {order}\n{text}")


if __name__ == "__main__":
    main()

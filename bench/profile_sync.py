"""Profile of the operator's Azure side: one full sync, a second full sync, then --incremental syncs (10),
each after a one-member change of another bound group, of one workspace with many bindings, without
Kubernetes. The syncs keep a SyncMemory between them as the operator's workspace loop does (a fresh one
for each full sync), so the incremental figures are those of incremental planning.

The sandbox runs in its own process (pinned to the last CPU when there are two or more); this process
runs controller/sync.sync_workspace with the operator's real adapters (adapters/directory.py and
adapters/workspace.py, the real SDKs over HTTPS) and reports wall time, CPU seconds, peak RSS, Azure
calls by operation and, with --profile, the functions that cost the most CPU (cProfile, cumulative).

    .venv/bin/python bench/profile_sync.py --users 10000 --groups 500 --bindings 100
    .venv/bin/python bench/profile_sync.py --users 50000 --groups 2000 --bindings 100 --profile
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import io
import json
import os
import pstats
import resource
import ssl
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp
from azure.identity.aio import ClientSecretCredential

from synapse_scim.adapters.credentials import Cloud
from synapse_scim.adapters.directory import Directory, graph_client
from synapse_scim.adapters.directory_cache import DirectoryCache
from synapse_scim.adapters.throttle import AdaptiveLimit
from synapse_scim.adapters.workspace import Workspace, access_control_client
from synapse_scim.controller.sync import SyncMemory, sync_workspace
from synapse_scim.core.model import BindingKey
from synapse_scim.core.objects import BindingObject, WorkspaceObject
from synapse_scim_sandbox import synthetic_org

WORKSPACE = "bench"


def bindings(count: int, groups: int) -> list[BindingObject]:
    """Binding i grants one role on the workspace to group i (spread over the groups)."""
    roles = ["Synapse User", "Synapse Contributor", "Synapse Artifact User", "Synapse Compute Operator"]
    step = max(1, groups // max(1, count))
    return [
        BindingObject(
            key=BindingKey("bench", f"b{i}"),
            spec={
                "workspaceRef": {"name": WORKSPACE},
                "roles": [roles[i % len(roles)]],
                "subjects": [{"kind": "Group", "name": f"Group {(i * step) % groups}"}],
            },
            status={},
            generation=1,
            deleting=False,
        )
        for i in range(count)
    ]


async def admin(session: aiohttp.ClientSession, url: str, method: str, path: str, body: Any = None) -> Any:
    async with session.request(method, f"{url}{path}", json=body) as r:
        r.raise_for_status()
        return await r.json()


def rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def cpu() -> float:
    t = os.times()
    return t.user + t.system


def start_sandbox(args: argparse.Namespace) -> subprocess.Popen[str]:
    seed = synthetic_org(
        users=args.users,
        groups=args.groups,
        members_per_group=args.members,
        nesting=args.nesting,
        workspace=WORKSPACE,
        seed=1,
    )
    tmp = Path(tempfile.mkdtemp(prefix="profile-sync-"))
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
        str(args.graph_ms),
        "--latency-synapse",
        str(args.synapse_ms),
    ]
    if (os.cpu_count() or 1) > 1:
        cmd = ["taskset", "-c", str((os.cpu_count() or 2) - 1), *cmd]
        os.sched_setaffinity(0, {0})
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)


async def run(args: argparse.Namespace, info: dict[str, Any]) -> dict[str, Any]:
    env = info["env"]
    ca = info["ca_path"]
    cloud = Cloud.from_spec(
        {"authorityHost": info["authority_host"], "graphEndpoint": info["graph_url"].removesuffix("/v1.0")}
    )
    cred = ClientSecretCredential(
        info["tenant_id"],
        env["AZURE_CLIENT_ID"],
        env["AZURE_CLIENT_SECRET"],
        authority=info["authority_host"],
        connection_verify=ca,
    )
    os.environ["SYNAPSE_SCIM_AZURE_CA_BUNDLE"] = ca
    limit = AdaptiveLimit(args.write_concurrency)
    directory = Directory(graph_client(cred, cloud, verify=ca))
    workspace = Workspace(
        access_control_client(cred, env[f"SYNAPSE_SCIM_WORKSPACE_{WORKSPACE.upper()}"], cloud, limit=limit),
        WORKSPACE,
        limit=limit,
    )
    ws = WorkspaceObject(
        namespace="bench",
        name=WORKSPACE,
        spec={"removalGuard": {"maxRemovals": 100000, "maxPercent": 100}},
        status={},
        annotations={},
        generation=1,
    )
    objs = bindings(args.bindings, args.groups)
    cache = DirectoryCache()
    ctx = ssl.create_default_context(cafile=ca)
    out: dict[str, Any] = {"scale": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()}}
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=ctx)) as session:
        admin_url = info["admin_url"]
        profiler = cProfile.Profile() if args.profile else None
        phases = ["full", "full-again", *(f"incremental-{i}" for i in range(args.incremental))]
        for phase in phases:
            if phase.startswith("incremental"):
                # One member joins the i-th bound group; the watch would invalidate just that group.
                i = int(phase.rsplit("-", 1)[1])
                group = objs[i % len(objs)].spec["subjects"][0]["name"]
                upn = f"new{i}@synthetic.example"
                await admin(session, admin_url, "POST", "/users", {"userPrincipalName": upn})
                await admin(session, admin_url, "POST", f"/groups/{group}/members", {"member": upn})
                gid = next(k for k, v in cache.groups.items() if k[1] == group)
                cache.invalidate({cache.groups[gid].id}, {})
            await admin(session, admin_url, "DELETE", "/counters")
            wall, spent = time.monotonic(), cpu()
            if profiler and phase.rstrip("0123456789").rstrip("-") in args.profile_phases.split(","):
                profiler.enable()
            if phase.startswith("full"):
                memory = SyncMemory()  # as the operator's loop does: a full sync starts from scratch
            result = await sync_workspace(
                ws,
                objs,
                directory,
                workspace,
                when="2026-11-28T00:00:00Z",
                read_concurrency=args.read_concurrency,
                cache=cache,
                fresh=phase.startswith("full"),
                memory=memory,
            )
            if profiler:
                profiler.disable()
            counters = await admin(session, admin_url, "GET", "/counters")
            out[phase] = {
                "seconds": round(time.monotonic() - wall, 3),
                "cpu_seconds": round(cpu() - spent, 3),
                "writes": sum(1 for a in result.audit if a.action == "grant"),
                "desired": sum(o.report.desired if o.report else 0 for o in result.outcomes.values()),
                "calls": {k: v for k, v in sorted(counters.items()) if not k.startswith("login.")},
                "problem": result.problem and result.problem.reason,
            }
            ws = WorkspaceObject(
                namespace="bench",
                name=WORKSPACE,
                spec=ws.spec,
                status=result.workspace_status,
                annotations={},
                generation=1,
            )
            objs = [
                BindingObject(
                    key=b.key,
                    spec=b.spec,
                    generation=1,
                    deleting=False,
                    status={"claims": [{"roleId": r, "scope": s} for r, s in result.outcomes[b.key].claims]},
                )
                for b in objs
            ]
        spent_ms = [1000 * out[p]["cpu_seconds"] for p in phases if p.startswith("incremental")]
        if spent_ms:
            # os.times ticks in 10 ms: the mean over several syncs is the figure, not any one of them.
            out["incremental_cpu_ms"] = {"syncs": len(spent_ms), "mean": round(sum(spent_ms) / len(spent_ms), 1)}
        out["peak_rss_mb"] = round(rss_mb(), 1)
        if profiler and args.profile_out:
            profiler.dump_stats(args.profile_out)
        if profiler:
            text = io.StringIO()
            pstats.Stats(profiler, stream=text).sort_stats("cumulative").print_stats(args.profile_lines)
            out["profile"] = text.getvalue()
    await workspace.close()
    await directory.close()
    await cred.close()
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--users", type=int, default=10000)
    p.add_argument("--groups", type=int, default=500)
    p.add_argument("--members", type=int, default=50, help="users per group")
    p.add_argument("--nesting", type=float, default=0.2)
    p.add_argument("--bindings", type=int, default=100)
    p.add_argument("--graph-ms", type=float, default=20)
    p.add_argument("--synapse-ms", type=float, default=40)
    p.add_argument("--write-concurrency", type=int, default=8)
    p.add_argument("--read-concurrency", type=int, default=8)
    p.add_argument("--incremental", type=int, default=10, help="incremental syncs, each after a one-member change")
    p.add_argument("--profile", action="store_true")
    p.add_argument(
        "--profile-phases",
        default="full,full-again,incremental",
        help="the phases --profile covers (comma-separated)",
    )
    p.add_argument("--profile-lines", type=int, default=30)
    p.add_argument("--profile-out", type=Path, help="also write the profile's stats here (pstats format)")
    args = p.parse_args()
    sandbox = start_sandbox(args)
    try:
        out = asyncio.run(run(args, json.loads(sandbox.stdout.readline())))  # type: ignore[union-attr]
    finally:
        sandbox.terminate()
        sandbox.wait()
    profile = out.pop("profile", None)
    print(json.dumps(out, indent=1))
    if profile:
        print(profile)


if __name__ == "__main__":
    main()

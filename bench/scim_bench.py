"""The SCIM endpoint at the scale issue 14 designs for: 50,000 users, 5,000 groups, one group of 50,000
members, kept in the Kubernetes API by `synapse-scim run`.

    SYNAPSE_SCIM_TOOLS="$(hack/build-tools.sh)" .venv/bin/python bench/scim_bench.py          # 50k / 5k / 50k
    SYNAPSE_SCIM_TOOLS="$(hack/build-tools.sh)" .venv/bin/python bench/scim_bench.py --quick  # 2k / 200 / 2k
        [--users N] [--groups N] [--big N] [--concurrency 8] [--out DIR]

What runs: a real kube-apiserver and etcd (the tests' ControlPlane, CRDs installed) and the operator as
`synapse-scim run` with its SCIM endpoint over TLS, pinned to one CPU (the second when there are two:
"on one core" is then what it is). The client is this process, on the other CPU with the API server
and etcd. The per-provider rate limit is raised out of the way (SYNAPSE_SCIM_SCIM_RATE): the figures
are the endpoint's capacity, not the limit's. At the default limit (50 requests/s a provider) loading
50,000 users takes at least 1,000 s whatever the endpoint can do.

Phases, each with its latencies (client side, p50/p95/max), wall time, requests/s, and the operator's
CPU time per request (requests/s on one core = 1 / that):

1. `create user`: N users POSTed as Okta sends them, `concurrency` in flight;
2. `filter userName`: GET /Users?filter=userName eq "<random user, case changed>" at N users;
3. `create group`: the groups POSTed with 0-50 members each (Okta's group push);
4. `patch 100 members`: PATCH adding 100 members to a group, then one removing them (value filters);
5. `big group`: one group grown to `big` members by 100-member PATCHes (inline up to 8,192, then
   sharded); then GET of it (bytes), a 1-member add and remove on it, and what it added to RSS;
6. `cold load`: the operator restarted; the time from its start to its first answer (it answers once
   the provider's objects are listed and indexed), and its RSS then, against a fresh operator with the
   provider empty (the baseline): "RSS with them loaded".
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import random
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp

from bench_results import write_results
from scale_procs import cpu_seconds, machine, peak_rss_mb, rss_mb
from scim_operator import GROUP, VERSION, ScimOperator
from synapse_scim_sandbox.devcluster import ControlPlane, ExistingCluster

NAMESPACE, PROVIDER = "scim-bench", "okta"
SCIM = "application/scim+json"
USER = "urn:ietf:params:scim:schemas:core:2.0:User"
GROUP_SCHEMA = "urn:ietf:params:scim:schemas:core:2.0:Group"
PATCH = "urn:ietf:params:scim:api:messages:2.0:PatchOp"


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))]


def okta_user(i: int) -> dict[str, Any]:
    """A user as Okta creates it (developer.okta.com SCIM 2.0 reference), about the size it sends."""
    given, family = f"Given{i}", f"Family{i}"
    name = f"user{i:06d}@example.com"
    return {
        "schemas": [USER],
        "userName": name,
        "externalId": f"00u{uuid.UUID(int=i).hex[:17]}",
        "name": {"givenName": given, "familyName": family},
        "displayName": f"{given} {family}",
        "emails": [{"primary": True, "value": name, "type": "work"}],
        "locale": "en-US",
        "active": True,
    }


class Client:
    """aiohttp against the endpoint, timing every request; an answer other than the expected fails the run."""

    def __init__(self, session: aiohttp.ClientSession, base: str) -> None:
        self.session, self.base = session, base

    async def call(self, method: str, path: str, expect: int, body: Any = None) -> tuple[float, Any, int]:
        data = json.dumps(body).encode() if body is not None else None
        started = time.perf_counter()
        async with self.session.request(method, self.base + path, data=data) as response:
            raw = await response.read()
            took = time.perf_counter() - started
            if response.status != expect:
                raise RuntimeError(f"{method} {path}: {response.status} (wanted {expect}): {raw[:300]!r}")
            return took, (json.loads(raw) if raw else None), len(raw)


class Phase:
    """Runs requests with a bound on those in flight; records latencies, wall time and operator CPU."""

    def __init__(self, name: str, pid: int, concurrency: int) -> None:
        self.name, self.pid, self.concurrency = name, pid, concurrency
        self.latencies: list[float] = []

    async def run(self, jobs: list[Callable[[], Awaitable[float]]]) -> dict[str, Any]:
        queue = list(reversed(jobs))
        cpu0, t0 = cpu_seconds(self.pid), time.perf_counter()

        async def worker() -> None:
            while queue:
                self.latencies.append(await queue.pop()())

        await asyncio.gather(*(worker() for _ in range(self.concurrency)))
        wall, cpu = time.perf_counter() - t0, cpu_seconds(self.pid) - cpu0
        return self.summary(wall, cpu)

    def summary(self, wall: float, cpu: float) -> dict[str, Any]:
        n = len(self.latencies)
        ms = [x * 1000 for x in self.latencies]
        cpu_ms = cpu * 1000 / n if n else float("nan")
        return {
            "phase": self.name,
            "requests": n,
            "concurrency": self.concurrency,
            "wall_s": round(wall, 2),
            "per_s": round(n / wall, 1) if wall else None,
            "p50_ms": round(statistics.median(ms), 1) if ms else None,
            "p95_ms": round(percentile(ms, 0.95), 1),
            "max_ms": round(max(ms), 1) if ms else None,
            "operator_cpu_s": round(cpu, 2),
            "operator_cpu_ms_per_request": round(cpu_ms, 2),
            "per_s_one_core": round(1000 / cpu_ms, 1) if cpu_ms else None,
        }


class Bench:
    def __init__(
        self,
        cp: ControlPlane | ExistingCluster,
        workdir: Path,
        args: argparse.Namespace,
        log: Callable[[str], None],
        namespace: str = NAMESPACE,
    ) -> None:
        self.args, self.log, self.namespace = args, log, namespace
        unlimited = {"SYNAPSE_SCIM_SCIM_RATE": "1000000", "SYNAPSE_SCIM_SCIM_BURST": "1000000"}
        self.endpoint = ScimOperator(cp, workdir, namespace, PROVIDER, env=unlimited)
        self.custom = self.endpoint.custom

    @property
    def pid(self) -> int:
        return self.endpoint.pid

    async def first_answer(self, http: Client, path: str, deadline_s: float = 900.0) -> Any:
        """Polls until the endpoint answers 200 (connection refused while it starts)."""
        deadline = time.monotonic() + deadline_s
        while True:
            try:
                return (await http.call("GET", path, 200))[1]
            except (aiohttp.ClientError, RuntimeError, OSError):
                if time.monotonic() > deadline:
                    raise
                await asyncio.sleep(0.05)

    async def settled_rss(self) -> float:
        """VmRSS once the operator is idle: sampled for 5 s, the last value."""
        await asyncio.sleep(5)
        return rss_mb(self.pid)

    async def run(self) -> dict[str, Any]:
        args, rng = self.args, random.Random(14)
        report: dict[str, Any] = {
            "machine": machine(),
            "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
            "config": {
                "users": args.users,
                "groups": args.groups,
                "big_group": args.big,
                "concurrency": args.concurrency,
                "operator_cpu": self.endpoint.cpu,
                "rate_limit": "raised (SYNAPSE_SCIM_SCIM_RATE=1000000)",
            },
            "phases": [],
        }
        self.endpoint.create_provider()
        headers = {"Authorization": f"Bearer {self.endpoint.token}", "Content-Type": SCIM, "Accept": SCIM}
        connector = aiohttp.TCPConnector(ssl=self.endpoint.ssl_context(), limit=args.concurrency * 2)
        base = self.endpoint.base_url
        async with aiohttp.ClientSession(headers=headers, connector=connector) as session:
            http = Client(session, base)
            self.endpoint.start()
            await self.first_answer(http, "/Users?count=1")
            report["rss_empty_mb"] = await self.settled_rss()
            self.log(f"operator serving, provider empty: RSS {report['rss_empty_mb']} MB")

            # 1. users
            ids: list[str] = [""] * args.users

            def create_user(i: int) -> Callable[[], Awaitable[float]]:
                async def job() -> float:
                    took, body, _ = await http.call("POST", "/Users", 201, okta_user(i))
                    ids[i] = body["id"]
                    return took

                return job

            report["phases"].append(await self.phase("create user", [create_user(i) for i in range(args.users)]))
            report["rss_users_mb"] = await self.settled_rss()

            # 2. userName filter at N users
            def find_user(i: int) -> Callable[[], Awaitable[float]]:
                name = okta_user(i)["userName"]
                name = name.upper() if i % 2 else name  # compared case-insensitively

                async def job() -> float:
                    took, body, _ = await http.call("GET", f'/Users?filter=userName eq "{name}"', 200)
                    if body["totalResults"] != 1 or body["Resources"][0]["id"] != ids[i]:
                        raise RuntimeError(f"filter for {name} found {body['totalResults']}")
                    return took

                return job

            probes = [find_user(rng.randrange(args.users)) for _ in range(args.filters)]
            report["phases"].append(await self.phase("filter userName", probes))

            # 3. groups with 0-50 members each
            group_ids: list[str] = [""] * args.groups

            def create_group(g: int) -> Callable[[], Awaitable[float]]:
                members = [{"value": ids[m]} for m in rng.sample(range(args.users), rng.randint(0, 50))]

                async def job() -> float:
                    body = {"schemas": [GROUP_SCHEMA], "displayName": f"Group {g:05d}", "members": members}
                    took, answer, _ = await http.call("POST", "/Groups", 201, body)
                    group_ids[g] = answer["id"]
                    return took

                return job

            report["phases"].append(await self.phase("create group", [create_group(g) for g in range(args.groups)]))

            # 4. 100-member PATCHes: add 100, then remove those 100 (Entra's value-filter removes)
            def patch_members(g: str, add: bool) -> Callable[[], Awaitable[float]]:
                chosen = [ids[m] for m in rng.sample(range(args.users), 100)]
                if add:
                    op = {"op": "add", "path": "members", "value": [{"value": m} for m in chosen]}
                    ops = [op]
                else:
                    ops = [{"op": "remove", "path": "members", "value": [{"value": m} for m in chosen]}]

                async def job() -> float:
                    took, _, _ = await http.call("PATCH", f"/Groups/{g}", 204, {"schemas": [PATCH], "Operations": ops})
                    return took

                return job

            targets = rng.sample(group_ids, min(args.patches, len(group_ids)))
            report["phases"].append(
                await self.phase("patch 100 members (add)", [patch_members(g, True) for g in targets])
            )
            report["phases"].append(
                await self.phase("patch 100 members (remove)", [patch_members(g, False) for g in targets])
            )
            report["rss_groups_mb"] = await self.settled_rss()

            # 5. one group of `big` members
            if args.big:
                report["big"] = await self.big_group(http, ids[: args.big], rng)

            report["rss_loaded_mb"] = await self.settled_rss()
            report["peak_rss_mb"] = peak_rss_mb(self.pid)

            # 6. cold load: a new replica lists and indexes everything before its first answer
            self.endpoint.stop()
            started = self.endpoint.start()
            last = okta_user(args.users - 1)["userName"]
            found = await self.first_answer(http, f'/Users?filter=userName eq "{last}"')
            report["cold_load_s"] = round(time.perf_counter() - started, 2)
            assert found["totalResults"] == 1
            counts = await self.first_answer(http, "/Groups?count=1&excludedAttributes=members")
            assert counts["totalResults"] == args.groups + (1 if args.big else 0), counts["totalResults"]
            report["cold_load_cpu_s"] = cpu_seconds(self.pid)
            report["rss_cold_loaded_mb"] = await self.settled_rss()
            report["peak_rss_cold_mb"] = peak_rss_mb(self.pid)
            report["stored"] = self.stored()
            self.endpoint.stop()
        report["rss_added_mb"] = round(report["rss_cold_loaded_mb"] - report["rss_empty_mb"], 1)
        return report

    async def phase(self, name: str, jobs: list[Callable[[], Awaitable[float]]]) -> dict[str, Any]:
        self.log(f"{name}: {len(jobs)} requests ...")
        found = await Phase(name, self.pid, self.args.concurrency).run(jobs)
        self.log(f"  {json.dumps(found)}")
        return found

    async def big_group(self, http: Client, members: list[str], rng: random.Random) -> dict[str, Any]:
        before = await self.settled_rss()
        _, body, _ = await http.call(
            "POST", "/Groups", 201, {"schemas": [GROUP_SCHEMA], "displayName": "All Staff", "members": []}
        )
        gid = body["id"]
        chunks = [members[i : i + 100] for i in range(0, len(members), 100)]

        def add(chunk: list[str]) -> Callable[[], Awaitable[float]]:
            ops = [{"op": "add", "path": "members", "value": [{"value": m} for m in chunk]}]

            async def job() -> float:
                took, _, _ = await http.call("PATCH", f"/Groups/{gid}", 204, {"schemas": [PATCH], "Operations": ops})
                return took

            return job

        # One writer at a time, as Okta and Entra push one group's membership: every PATCH of one group
        # is serialised by its resourceVersion anyway.
        self.log(f"big group: {len(chunks)} PATCHes of 100 ...")
        grow = Phase("grow big group (100-member PATCH)", self.pid, 1)
        grown = await grow.run([add(chunk) for chunk in chunks])
        took, full, size = await http.call("GET", f"/Groups/{gid}", 200)
        if len(full.get("members") or ()) != len(members):
            raise RuntimeError(f"the big group has {len(full.get('members') or ())} members, wanted {len(members)}")
        slim_took, _, slim_size = await http.call("GET", f"/Groups/{gid}?excludedAttributes=members", 200)
        outsider = rng.choice(members)

        def one(op: str) -> Callable[[], Awaitable[float]]:
            operation = {"op": op, "path": "members", "value": [{"value": outsider}]}

            async def job() -> float:
                took, _, _ = await http.call(
                    "PATCH", f"/Groups/{gid}", 204, {"schemas": [PATCH], "Operations": [operation]}
                )
                return took

            return job

        single = Phase("1-member PATCH of the big group", self.pid, 1)
        singles = await single.run([one("remove" if i % 2 == 0 else "add") for i in range(100)])
        after = await self.settled_rss()
        self.log(f"  grown {json.dumps(grown)}\n  single {json.dumps(singles)}")
        return {
            "members": len(members),
            "grow": grown,
            "single_member_patch": singles,
            "get_full_ms": round(took * 1000, 1),
            "get_full_bytes": size,
            "get_without_members_ms": round(slim_took * 1000, 1),
            "get_without_members_bytes": slim_size,
            "rss_before_mb": before,
            "rss_after_mb": after,
            "rss_cost_mb": round(after - before, 1),
            "shards": self.shards(gid),
        }

    def shards(self, gid: str) -> dict[str, Any]:
        listed = self.custom.list_namespaced_custom_object(
            GROUP, VERSION, self.namespace, "scimgroupmembers", label_selector=f"synapse-scim.io/scim-group={gid}"
        )["items"]
        sizes = [len(json.dumps(item)) for item in listed]
        group = self.custom.get_namespaced_custom_object(GROUP, VERSION, self.namespace, "scimgroups", gid)
        return {
            "objects": len(sizes),
            "largest_bytes": max(sizes, default=0),
            "total_bytes": sum(sizes),
            "group_object_bytes": len(json.dumps(group)),
        }

    def stored(self) -> dict[str, Any]:
        """Objects and their JSON size in the API server, a sample of users for the mean."""
        out: dict[str, Any] = {}
        for plural in ("scimusers", "scimgroups", "scimgroupmembers"):
            page = self.custom.list_namespaced_custom_object(GROUP, VERSION, self.namespace, plural, limit=500)
            remaining = int(page["metadata"].get("remainingItemCount") or 0)
            items = page["items"]
            mean = statistics.mean(len(json.dumps(i)) for i in items) if items else 0
            out[plural] = {"objects": len(items) + remaining, "mean_bytes_of_first_500": round(mean)}
        return out


def markdown(report: dict[str, Any]) -> str:
    m, c = report["machine"], report["config"]
    lines = [
        f"# SCIM endpoint at scale: {c['users']:,} users, {c['groups']:,} groups, one group of {c['big_group']:,}",
        "",
        f"{report['date']}; {m['cpu']}, {m['cpus']} CPUs, {m['memory_mb']:,} MB, {m['os']}, Python {m['python']}. "
        f"`bench/scim_bench.py`: the operator (`synapse-scim run`, SCIM over TLS) pinned to CPU {c['operator_cpu']}; "
        "the client, kube-apiserver and etcd share the other. Rate limit raised out of the way. "
        f"{c['concurrency']} requests in flight unless the phase says 1.",
        "",
        "| phase | requests | in flight | wall s | req/s | p50 ms | p95 ms | max ms | operator CPU ms/req "
        "| req/s on one core |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    phases = list(report["phases"])
    if "big" in report:
        phases += [report["big"]["grow"], report["big"]["single_member_patch"]]
    for p in phases:
        lines.append(
            f"| {p['phase']} | {p['requests']:,} | {p['concurrency']} | {p['wall_s']} | {p['per_s']} | {p['p50_ms']} | "
            f"{p['p95_ms']} | {p['max_ms']} | {p['operator_cpu_ms_per_request']} | {p['per_s_one_core']} |"
        )
    users = report["phases"][0]
    groups = next(p for p in report["phases"] if p["phase"] == "create group")
    lines += [
        "",
        f"- **Load time** (pushed through the endpoint): {c['users']:,} users in {users['wall_s']} s, "
        f"{c['groups']:,} groups in {groups['wall_s']} s.",
        f"- **Cold load** (a restarted replica lists and indexes everything before its first answer): "
        f"{report['cold_load_s']} s, {report['cold_load_cpu_s']} CPU-s.",
        f"- **RSS**: {report['rss_empty_mb']} MB with the provider empty; {report['rss_cold_loaded_mb']} MB after a "
        f"cold load of everything: **{report['rss_added_mb']} MB more** (goal ≤ 150). Peak of the restarted "
        f"process {report['peak_rss_cold_mb']} MB. The process that took the writes: {report['rss_users_mb']} MB after "
        f"the users, {report['rss_groups_mb']} MB after the groups, {report['rss_loaded_mb']} MB at the end "
        f"(peak {report['peak_rss_mb']} MB).",
    ]
    if "big" in report:
        b = report["big"]
        s = b["shards"]
        lines += [
            f"- **One group of {b['members']:,} members**: grown by {b['grow']['requests']} PATCHes of 100 in "
            f"{b['grow']['wall_s']} s; stored as {s['objects']} shards (largest {s['largest_bytes']:,} bytes, "
            f"{s['total_bytes']:,} in all) and a group object of {s['group_object_bytes']:,} bytes; RSS "
            f"{b['rss_before_mb']} → {b['rss_after_mb']} MB ({b['rss_cost_mb']} MB); GET with members "
            f"{b['get_full_ms']} ms, {b['get_full_bytes']:,} bytes; without members {b['get_without_members_ms']} ms.",
        ]
    lines.append(
        "- **Stored**: "
        + "; ".join(
            f"{k} {v['objects']:,} (mean {v['mean_bytes_of_first_500']:,} bytes)" for k, v in report["stored"].items()
        )
        + "."
    )
    return "\n".join(lines) + "\n"


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--users", type=int, default=50_000)
    p.add_argument("--groups", type=int, default=5_000)
    p.add_argument("--big", type=int, default=50_000, help="members of the one large group (0: none)")
    p.add_argument("--filters", type=int, default=2_000, help="userName filter requests")
    p.add_argument("--patches", type=int, default=200, help="100-member PATCHes (each then undone)")
    p.add_argument("--concurrency", type=int, default=8)
    p.add_argument("--quick", action="store_true", help="2,000 users, 200 groups, a 2,000 group; prints only")
    p.add_argument("--out", type=Path, default=Path(__file__).parent / "results")
    args = p.parse_args()
    if args.quick:
        args.users, args.groups, args.big, args.filters, args.patches = 2_000, 200, 2_000, 200, 20
    if args.big > args.users:
        p.error("--big cannot exceed --users (its members are users)")

    def log(msg: str) -> None:
        print(msg, file=sys.stderr, flush=True)

    with tempfile.TemporaryDirectory(prefix="scim-bench-") as tmp, ControlPlane() as cp:
        bench = Bench(cp, Path(tmp), args, log)
        try:
            report = asyncio.run(bench.run())
        except BaseException:
            log(bench.endpoint.logs())
            raise
        finally:
            bench.endpoint.stop()
    text = markdown(report)
    print(text)
    if not args.quick:
        stem = write_results(args.out, "scim", report, text)
        log(f"wrote {stem}.json and {stem}.md")
    return 0


if __name__ == "__main__":
    sys.exit(main())

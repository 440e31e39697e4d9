"""Graph propagation while the SCIM endpoint is flooded, and a second provider served meanwhile (issue 17).

    SYNAPSE_SCIM_TOOLS="$(hack/build-tools.sh)" .venv/bin/python bench/scim_flood.py          # writes results
    SYNAPSE_SCIM_TOOLS="$(hack/build-tools.sh)" .venv/bin/python bench/scim_flood.py --quick  # prints only
        [--changes 20] [--gap 3] [--flooders 1] [--junk 1] [--concurrency 32] [--out DIR]

What runs (as bench/scim_propagation.py): a real kube-apiserver and etcd; the Azure sandbox in its own
process pinned to the first CPU (Graph 20 ms, Synapse 40 ms); `synapse-scim run` with its SCIM endpoint
over TLS (bench/scim_operator.py) pinned to the second CPU, every setting at its default (the directory
poll every 30 s, the SCIM rate limit 50 requests/s with bursts of 100 per provider, the failed
authentication budget 1/s with bursts of 10 per client address). With `--quick` the poll is every 1 s.

The world: one SynapseWorkspace `graph` with one binding of role "Synapse User" to the Entra group
"Flood Watch" (members from the sandbox's admin API), and two ScimProviders: `okta`, whose token the
flood uses, and `onelogin`, the second provider, which keeps working through the flood.

Two phases, each of `--changes` Graph changes (alternately a member added to and removed from "Flood
Watch", each a different user, through the sandbox's admin API; `--gap` s apart on average, at random).
Latency = from the admin API's answer to the sandbox's request-log time of the create or delete of that
user's assignment (as scim_propagation.py). Most of it is waiting for the next delta poll (30 s apart),
so each change is also timed from the first `groupsDelta` the sandbox answered after it ("after the
poll": the operator's own part: the poll's other requests, the incremental sync, the write).

1. **quiet**: nothing else but the second provider's requests.
2. **flood**: `--flooders` processes send valid requests of provider okta as fast as they are answered
   (`--concurrency` in flight each, keep-alive: GETs with a userName filter, user POSTs, PATCHes of
   users it created), and `--junk` processes send unauthenticated junk (no token, a wrong token, an
   unknown provider, bodies that are not JSON) on a new TLS connection each time; all pinned to the
   sandbox's CPU, so that the operator's CPU is its own (the sandbox's answers are slowed by them
   instead: its CPU is reported). The junk comes from 127.0.0.2, the valid flood from 127.0.0.3: the
   failed-authentication budget is per client address by design (a guesser behind the same address as
   an identity provider slows it down: docs/scim.md), and the figure wanted here is the provider
   limit's. The flood starts `--warmup` s before the first change and stops once every change is seen.

In both phases the second provider (`onelogin`, from 127.0.0.1) sends `--second-rate` requests a second,
one at a time: a GET with a filter, a user POST, a PATCH of a user it made; counted by status, with
their latency. Reported for the flood: its request rate and answers by status (the clients' count and
the operator's synapse_scim_scim_requests_total), the operator's CPU share (CPU seconds of its process
over the flood's wall time: 1.0 is all of its CPU) and the sandbox's.

Writes bench/results/scim-flood-<date>.{json,md} (with `--quick`, only when `--out` is given), with the
machine, the load average before and after, and the commit. The smoke test is tests/bench/test_scim_flood.py.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import multiprocessing as mp
import os
import random
import ssl
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import aiohttp
from kubernetes.client.exceptions import ApiException
from prometheus_client.parser import text_string_to_metric_families

from bench_results import latency_stats, percentile, write_results
from scale_bench import source_version
from scale_model import APP_SECRET
from scale_procs import SandboxProcess, cpu_plan, cpu_seconds, machine, profile_summary
from scim_operator import GROUP, VERSION, ScimOperator
from scim_propagation import LATENCY, SCIM, by_operation, diff, okta_user, set_active
from synapse_scim_sandbox.admin import AdminClient
from synapse_scim_sandbox.devcluster import ControlPlane, ExistingCluster
from synapse_scim_sandbox.seed import synthetic_org

NAMESPACE, FLOODED, SECOND = "scim-flood", "okta", "onelogin"
WORKSPACE, ENTRA_GROUP, ROLE = "graph", "Flood Watch", "Synapse User"
JUNK_ADDRESS, FLOOD_ADDRESS = "127.0.0.2", "127.0.0.3"


@dataclass
class Config:
    changes: int = 20  # Graph changes per phase, alternately add and remove
    gap: float = 3.0  # mean seconds between two changes (uniform in 0..2 gap)
    flooders: int = 1  # processes sending valid requests of the flooded provider
    junk: int = 1  # processes sending unauthenticated junk
    concurrency: int = 32  # requests in flight per flooding process
    warmup: float = 3.0  # the flood runs this long before the first change
    second_rate: float = 5.0  # the second provider's requests a second
    change_timeout: float = 120.0  # a change not seen this long after the last one is missed
    poll_interval: str | None = None  # SYNAPSE_SCIM_DIRECTORY_POLL_INTERVAL; None: the default (30 s)
    profile: str | None = None  # a file: the operator runs under cProfile (both phases), its top functions reported
    seed: int = 17

    @property
    def pool(self) -> int:
        return 4 * self.changes  # half members at the start; each phase touches `changes` of them


def build_seed(cfg: Config) -> dict[str, Any]:
    return synthetic_org(
        users=cfg.pool,
        groups=0,
        service_principals=0,
        disabled=0.0,
        workspaces=[WORKSPACE],
        pools=1,
        seed=cfg.seed,
        app_secret=APP_SECRET,
    )


# ------------------------------------------------------------------------------------------ the flood
def _client_ssl(ca_path: str) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=ca_path)


async def _flood(
    kind: str, base: str, token: str, ca_path: str, concurrency: int, stop: threading.Event, ready: Any
) -> dict:
    """Send requests until `stop`, `concurrency` at a time, each sent as soon as the last one answered."""
    statuses: Counter[str] = Counter()
    errors: Counter[str] = Counter()
    rng = random.Random(os.getpid())
    junk = kind == "junk"
    connector = aiohttp.TCPConnector(
        ssl=_client_ssl(ca_path),
        limit=0,
        force_close=junk,  # junk: a TLS handshake for every request
        local_addr=(JUNK_ADDRESS if junk else FLOOD_ADDRESS, 0),
    )
    created: list[str] = []
    sent = 0
    timeout = aiohttp.ClientTimeout(total=60)
    auth = {"Authorization": f"Bearer {token}", "Content-Type": SCIM, "Accept": SCIM}

    def request() -> tuple[str, str, dict[str, str], bytes | None]:
        nonlocal sent
        sent += 1
        if junk:
            pick = sent % 4
            if pick == 0:
                return "GET", base + "/Users", {}, None
            if pick == 1:
                return "GET", base + '/Users?filter=userName eq "x"', {"Authorization": "Bearer wrong-token"}, None
            if pick == 2:
                other = base.rsplit("/", 1)[0] + "/nobody"
                return "POST", other + "/Users", {"Authorization": f"Bearer {token}"}, b"{not json"
            return "PATCH", base + "/Groups/" + uuid.uuid4().hex, {"Content-Type": SCIM}, os.urandom(64)
        pick = sent % 4
        if pick in (0, 1):
            n = rng.randrange(10**6)
            return "GET", f'{base}/Users?filter=userName eq "flood-{n}@flood.example"', auth, None
        if pick == 2 or not created:
            upn = f"flood-{os.getpid()}-{sent}@flood.example"
            return "POST", base + "/Users", auth, json.dumps(okta_user(upn, sent)).encode()
        patch = set_active(bool(sent % 8))
        return "PATCH", f"{base}/Users/{rng.choice(created)}", auth, json.dumps(patch).encode()

    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:

        async def worker() -> None:
            while not stop.is_set():
                method, url, headers, body = request()
                try:
                    async with session.request(method, url, headers=headers, data=body) as response:
                        raw = await response.read()
                        statuses[str(response.status)] += 1
                        if response.status == 201 and method == "POST" and len(created) < 1000:
                            created.append(json.loads(raw)["id"])
                except (aiohttp.ClientError, OSError, TimeoutError) as exc:
                    errors[type(exc).__name__] += 1
                    await asyncio.sleep(0.01)

        ready()
        started = time.time()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        ended = time.time()
    return {
        "kind": kind,
        "requests": sum(statuses.values()),
        "by_status": dict(sorted(statuses.items())),
        "errors": dict(errors),
        "started": started,
        "ended": ended,
    }


def _flood_main(
    kind: str, base: str, token: str, ca_path: str, concurrency: int, cpu: int | None, stop: Any, conn: Any
) -> None:
    if cpu is not None:
        os.sched_setaffinity(0, {cpu})
    flag = threading.Event()  # set from a thread that waits on the process-shared event: no IPC per request
    threading.Thread(target=lambda: (stop.wait(), flag.set()), daemon=True).start()
    started = time.process_time()
    result = asyncio.run(_flood(kind, base, token, ca_path, concurrency, flag, lambda: conn.send("ready")))
    result["client_cpu_s"] = round(time.process_time() - started, 2)
    conn.send(result)


class Flood:
    """The flooding processes (spawned), started and stopped together."""

    def __init__(self, cfg: Config, base: str, token: str, ca_path: str) -> None:
        ctx = mp.get_context("spawn")
        self.stop_event = ctx.Event()
        self.procs: list[tuple[Any, Any]] = []
        cpu = cpu_plan()[0]
        for kind, count in (("provider", cfg.flooders), ("junk", cfg.junk)):
            for _ in range(count):
                parent, child = ctx.Pipe()
                args = (kind, base, token, ca_path, cfg.concurrency, cpu, self.stop_event, child)
                proc = ctx.Process(target=_flood_main, args=args, daemon=True)
                self.procs.append((proc, parent))

    def start(self) -> None:
        """Start every process; returns once each is ready to send (the spawn and its imports take seconds)."""
        for proc, _ in self.procs:
            proc.start()
        for proc, conn in self.procs:
            if not conn.poll(120) or conn.recv() != "ready":
                raise RuntimeError(f"flood process {proc.pid} did not start")

    def stop(self) -> list[dict[str, Any]]:
        self.stop_event.set()
        results = []
        for proc, conn in self.procs:
            if conn.poll(120):
                results.append(conn.recv())
            proc.join(30)
            if proc.is_alive():
                proc.kill()
                proc.join()
        return results


# ------------------------------------------------------------------------------------------ the second provider
class SecondProvider:
    """A well-behaved identity provider: `rate` requests a second, one at a time, cycling through a GET
    with a filter, a user POST and a PATCH of a user it made (deactivate, reactivate)."""

    def __init__(self, session: aiohttp.ClientSession, base: str, rate: float) -> None:
        self.session, self.base, self.rate = session, base, rate
        self.results: list[dict[str, Any]] = []
        self.users: list[str] = []
        self.n = 0

    async def one(self) -> None:
        self.n += 1
        step = self.n % 3
        if step == 0 or (step == 2 and not self.users):
            upn = f"second-{uuid.uuid4().hex[:12]}@second.example"
            method, path, body = "POST", "/Users", okta_user(upn, 10**6 + self.n)
        elif step == 1:
            method, path, body = "GET", f'/Users?filter=userName eq "second-{self.n}@second.example"', None
        else:
            method, path, body = "PATCH", f"/Users/{random.choice(self.users)}", set_active(self.n % 6 != 2)
        data = json.dumps(body).encode() if body is not None else None
        started = time.perf_counter()
        try:
            async with self.session.request(method, self.base + path, data=data) as response:
                raw = await response.read()
                status = str(response.status)
                if response.status == 201:
                    self.users.append(json.loads(raw)["id"])
        except (aiohttp.ClientError, OSError, TimeoutError) as exc:
            status = type(exc).__name__
        self.results.append({"method": method, "status": status, "ms": (time.perf_counter() - started) * 1000})

    async def run(self, stop: asyncio.Event) -> None:
        at = time.monotonic()
        while not stop.is_set():
            await self.one()
            at += 1 / self.rate
            await asyncio.sleep(max(0.0, at - time.monotonic()))

    def summary(self, start: int = 0) -> dict[str, Any]:
        results = self.results[start:]
        ok = [r["ms"] for r in results if r["status"].startswith("2")]
        by_status = Counter(r["status"] for r in results)
        return {
            "requests": len(results),
            "succeeded": len(ok),
            "success_rate": round(len(ok) / len(results), 4) if results else None,
            "by_status": dict(sorted(by_status.items())),
            "by_method": dict(sorted(Counter(r["method"] for r in results).items())),
            "p50_ms": round(percentile(ok, 50), 1) if ok else None,
            "p95_ms": round(percentile(ok, 95), 1) if ok else None,
            "max_ms": round(max(ok), 1) if ok else None,
        }


def scim_requests(metrics: str | None) -> dict[str, int]:
    """synapse_scim_scim_requests_total by "provider status"."""
    out: Counter[str] = Counter()
    for family in text_string_to_metric_families(metrics or ""):
        for sample in family.samples:
            if sample.name == "synapse_scim_scim_requests_total":
                labels = sample.labels
                out[f"{labels['provider']} {labels.get('status') or labels.get('code')}"] += int(sample.value)
    return dict(out)


def runqueue_wait_s(pid: int) -> float:
    """Seconds the process's main thread (the operator's event loop) has waited for a CPU while runnable
    (/proc/PID/schedstat): other work on its CPU, not its own."""
    try:
        return int(Path(f"/proc/{pid}/schedstat").read_text().split()[1]) / 1e9
    except (OSError, IndexError, ValueError):
        return 0.0


def carrying_poll(polls: list[float], at: float, done: float | None) -> float | None:
    """The delta poll that brought a change made at `at` and written at `done`: the last poll answered
    before the write. Not the first after `at`: the admin API may answer a change after a poll that
    already saw it was logged (both are the sandbox's, the poll's log time is its answer)."""
    if done is None:
        return None
    before = [p for p in polls if p <= done]
    return before[-1] if before and before[-1] >= at - 1.0 else None


def poll_timeline(results: list[dict[str, Any]], rereads: list[tuple[float, float]]) -> list[dict[str, Any]]:
    """Per delta poll that brought changes, seconds from the poll's answer: the sync's first and last
    re-read of the group (Graph, the sandbox's log time), the first and last write; and how long the sandbox
    took over those reads (its own duration, latency included)."""
    out = []
    for poll in sorted({r["poll"] for r in results if r["poll"] is not None}):
        done = [r["done"] for r in results if r["poll"] == poll and r["done"] is not None]
        reads = [(t, ms) for t, ms in rereads if poll <= t <= max(done, default=poll)]
        out.append(
            {
                "changes": sum(1 for r in results if r["poll"] == poll),
                "first_read_s": round(reads[0][0] - poll, 3) if reads else None,
                "last_read_s": round(reads[-1][0] - poll, 3) if reads else None,
                "reads": len(reads),
                "reads_sandbox_ms": round(sum(ms for _, ms in reads), 1),
                "first_write_s": round(min(done) - poll, 3) if done else None,
                "last_write_s": round(max(done) - poll, 3) if done else None,
            }
        )
    return out


# ------------------------------------------------------------------------------------------ the benchmark
class Bench:
    def __init__(
        self, cp: ControlPlane | ExistingCluster, workdir: Path, cfg: Config, log: Any, namespace: str = NAMESPACE
    ) -> None:
        self.cp, self.workdir, self.cfg, self.log, self.namespace = cp, workdir, cfg, log, namespace
        self.seed = build_seed(cfg)
        self.users = [(u["id"], u["userPrincipalName"]) for u in self.seed["users"]]
        self.members = {uid for uid, _ in self.users[: cfg.pool // 2]}
        self.sandbox = SandboxProcess(self.seed, latency=LATENCY, cert_dir=workdir / "sandbox", cpu=cpu_plan()[0])
        self.endpoint: ScimOperator | None = None
        self.rng = random.Random(cfg.seed)

    def objects(self, sb: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
        workspace = {
            "apiVersion": f"{GROUP}/{VERSION}",
            "kind": "SynapseWorkspace",
            "metadata": {"name": WORKSPACE},
            "spec": {
                "endpoint": sb["workspaces"][WORKSPACE],
                "workspaceName": WORKSPACE,
                "tenantId": sb["tenant_id"],
                "credential": {"clientSecret": {"clientId": sb["client_id"], "secretRef": {"name": "synapse-sp"}}},
                "cloud": {
                    "authorityHost": sb["authority_host"],
                    "graphEndpoint": sb["graph_url"].removesuffix("/v1.0"),
                },
                "removalGuard": {"maxRemovals": 1000, "maxPercent": 100},
            },
        }
        binding = {
            "apiVersion": f"{GROUP}/{VERSION}",
            "kind": "SynapseRoleBinding",
            "metadata": {"name": "flood-watch"},
            "spec": {
                "workspaceRef": {"name": WORKSPACE},
                "roles": [ROLE],
                "subjects": [{"kind": "Group", "name": ENTRA_GROUP}],
            },
        }
        return [("synapseworkspaces", workspace), ("synapserolebindings", binding)]

    def second_provider(self) -> str:
        """The ScimProvider `onelogin` with its token Secret; returns the token."""
        assert self.endpoint is not None
        token = f"{SECOND}-" + uuid.uuid4().hex + uuid.uuid4().hex
        secret = f"{SECOND}-scim-token"
        self.endpoint.core.create_namespaced_secret(
            self.namespace, {"metadata": {"name": secret}, "stringData": {"token": token}}
        )
        self.endpoint.custom.create_namespaced_custom_object(
            GROUP,
            VERSION,
            self.namespace,
            "scimproviders",
            {
                "apiVersion": f"{GROUP}/{VERSION}",
                "kind": "ScimProvider",
                "metadata": {"name": SECOND},
                "spec": {"tokenSecretRef": {"name": secret}},
            },
        )
        return token

    async def held(self, admin: AdminClient) -> set[str]:
        return {a["principalId"].lower() for a in await admin.list_assignments(WORKSPACE)}

    async def until_held(self, admin: AdminClient, want: set[str], within: float = 180.0) -> None:
        deadline = time.monotonic() + within
        while await self.held(admin) != want:
            if time.monotonic() > deadline:
                raise RuntimeError(f"workspace {WORKSPACE} did not get its {len(want)} grants within {within:.0f} s")
            await asyncio.sleep(0.2)

    async def run(self) -> dict[str, Any]:
        cfg = self.cfg
        report: dict[str, Any] = {
            "machine": machine(),
            "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
            "commit": source_version(),
            "config": {
                **asdict(cfg),
                "latency": LATENCY,
                "operator_settings": "defaults" if cfg.poll_interval is None else f"poll {cfg.poll_interval}",
            },
        }
        env = {"SYNAPSE_SCIM_DIRECTORY_POLL_INTERVAL": cfg.poll_interval} if cfg.poll_interval else {}
        with self.sandbox as sandbox:
            sb = sandbox.info
            self.endpoint = endpoint = ScimOperator(
                self.cp, self.workdir, self.namespace, FLOODED, env=env, azure_ca=Path(sb["ca_path"])
            )
            endpoint.profile = Path(cfg.profile) if cfg.profile else None
            if endpoint.profile is not None:
                endpoint.profile.parent.mkdir(parents=True, exist_ok=True)
            admin = AdminClient(sb["admin_url"], sb["ca_path"])
            endpoint.create_provider()
            second_token = self.second_provider()
            try:
                endpoint.core.create_namespaced_secret(
                    self.namespace, {"metadata": {"name": "synapse-sp"}, "stringData": {"clientSecret": sb["secret"]}}
                )
            except ApiException as exc:
                if exc.status != 409:
                    raise
            await admin.add_group(ENTRA_GROUP, sorted(self.members))
            for plural, body in self.objects(sb):
                endpoint.custom.create_namespaced_custom_object(GROUP, VERSION, self.namespace, plural, body)
            endpoint.start()
            second_base = endpoint.base_url.rsplit("/", 1)[0] + f"/{SECOND}"
            headers = {"Authorization": f"Bearer {second_token}", "Content-Type": SCIM, "Accept": SCIM}
            connector = aiohttp.TCPConnector(ssl=endpoint.ssl_context(), limit=4)
            timeout = aiohttp.ClientTimeout(total=60)
            async with aiohttp.ClientSession(headers=headers, connector=connector, timeout=timeout) as session:
                await self.first_answer(session, second_base)
                await self.until_held(admin, {m.lower() for m in self.members})
                self.log(f"operator serving SCIM; {len(self.members)} members of {ENTRA_GROUP!r} granted")
                second = SecondProvider(session, second_base, cfg.second_rate)
                for phase in ("quiet", "flood"):
                    report[phase] = await self.phase(phase, admin, endpoint, second)
                    p = report[phase]["graph"]
                    self.log(
                        f"{phase}: Graph changes p50 {p['p50_s']} s, p95 {p['p95_s']} s, max {p['max_s']} s "
                        f"({p['missed']} missed); after the poll p95 {p['after_poll']['p95_s']} s"
                    )
                report["final_state_matches"] = await self.held(admin) == {m.lower() for m in self.members}
            endpoint.stop()
        report["load_average_after"] = [round(x, 2) for x in os.getloadavg()]
        q, f = report["quiet"]["graph"], report["flood"]["graph"]
        report["flood_over_quiet"] = {
            k: (round(f[k] / q[k], 2) if q[k] and f[k] is not None else None) for k in ("p50_s", "p95_s")
        } | {
            f"after_poll_{k}": (
                round(f["after_poll"][k] / q["after_poll"][k], 2)
                if q["after_poll"][k] and f["after_poll"][k] is not None
                else None
            )
            for k in ("p50_s", "p95_s")
        }
        return report

    async def first_answer(self, session: aiohttp.ClientSession, base: str, within: float = 120.0) -> None:
        deadline = time.monotonic() + within
        while True:
            try:
                async with session.get(base + "/ServiceProviderConfig") as response:
                    if response.status == 200:
                        return
            except (aiohttp.ClientError, OSError):
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"the SCIM endpoint did not answer within {within:.0f} s")
            await asyncio.sleep(0.1)

    async def phase(
        self, name: str, admin: AdminClient, endpoint: ScimOperator, second: SecondProvider
    ) -> dict[str, Any]:
        cfg = self.cfg
        assert endpoint.process is not None
        process = endpoint.process
        synapse_seq = max((e["seq"] for e in await admin.request_log(service="synapse")), default=0)
        graph_seq = max((e["seq"] for e in await admin.request_log(service="graph")), default=0)
        flood = Flood(cfg, endpoint.base_url, endpoint.token, str(endpoint.ca_path)) if name == "flood" else None
        if flood is not None:
            await asyncio.to_thread(flood.start)
        # The phase (its CPU shares, the second provider's requests) starts once the flood is sending.
        counters0, metrics0 = await admin.counters(), scim_requests(process.metrics())
        stop = asyncio.Event()
        second_from = len(second.results)
        second_task = asyncio.create_task(second.run(stop))
        wall0 = time.time()
        cpu0 = {"operator": cpu_seconds(process.pid), "sandbox": cpu_seconds(self.sandbox.info["pid"])}
        wait0 = {"operator": runqueue_wait_s(process.pid), "sandbox": runqueue_wait_s(self.sandbox.info["pid"])}
        if flood is not None:
            await asyncio.sleep(cfg.warmup)
        made: list[dict[str, Any]] = []
        touched: set[str] = set()
        for i in range(cfg.changes):
            await asyncio.sleep(self.rng.uniform(0, 2 * cfg.gap))
            adds = i % 2 == 0
            candidates = [uid for uid, _ in self.users if (uid in self.members) != adds and uid not in touched]
            uid = self.rng.choice(candidates)
            touched.add(uid)
            if adds:
                await admin.add_member(ENTRA_GROUP, uid)
                self.members.add(uid)
                made.append({"kind": "add", "principal": uid, "at": time.time()})
            else:
                listed = await admin.list_assignments(WORKSPACE)
                assignment = next(a["id"] for a in listed if a["principalId"].lower() == uid.lower())
                await admin.remove_member(ENTRA_GROUP, uid)
                self.members.discard(uid)
                made.append({"kind": "remove", "principal": uid, "assignment": assignment, "at": time.time()})
        seen = await self.effects(admin, made, synapse_seq)
        wall1 = time.time()
        cpu1 = {"operator": cpu_seconds(process.pid), "sandbox": cpu_seconds(self.sandbox.info["pid"])}
        wait1 = {"operator": runqueue_wait_s(process.pid), "sandbox": runqueue_wait_s(self.sandbox.info["pid"])}
        flood_results = await asyncio.to_thread(flood.stop) if flood is not None else []
        stop.set()
        await second_task
        metrics1 = scim_requests(process.metrics())
        graph_log = await admin.request_log(service="graph", since=graph_seq)
        polls = sorted(float(e["time"]) for e in graph_log if e["operation"] == "groupsDelta")
        # The incremental sync's re-read of the changed group (the flood's user POSTs make Graph lookups too:
        # listUsers, not these).
        rereads = sorted(
            (float(e["time"]), float(e.get("duration_ms") or 0))
            for e in graph_log
            if e["operation"] in ("listGroups", "transitiveMembers", "listGroupMembers", "getGroup")
        )
        results = []
        for change in made:
            at, done = change["at"], seen.get(change["principal"])
            poll = carrying_poll(polls, at, done)
            results.append(
                {
                    "kind": change["kind"],
                    "principal": change["principal"],
                    "latency_s": round(done - at, 3) if done is not None else None,
                    "after_poll_s": round(done - poll, 3) if done is not None and poll is not None else None,
                    "poll": poll,
                    "done": done,
                }
            )
        timeline = poll_timeline(results, rereads)
        for r in results:
            del r["poll"], r["done"]
        after_poll = [r["after_poll_s"] for r in results if r["after_poll_s"] is not None]
        wall = wall1 - wall0
        out: dict[str, Any] = {
            "graph": {
                **latency_stats(results),
                "after_poll": {
                    "p50_s": percentile(after_poll, 50),
                    "p95_s": percentile(after_poll, 95),
                    "max_s": max(after_poll, default=None),
                },
                "delta_polls": len(polls),
                "per_poll": timeline,
            },
            "wall_s": round(wall, 2),
            "cpu_share": {k: round((cpu1[k] - cpu0[k]) / wall, 3) for k in cpu0},
            "runqueue_wait_share": {k: round((wait1[k] - wait0[k]) / wall, 3) for k in wait0},
            "azure_calls": by_operation(diff(await admin.counters(), counters0)),
            "endpoint_answers": diff(metrics1, metrics0),
            "second_provider": second.summary(second_from),
        }
        if flood is not None:
            by_status: Counter[str] = Counter()
            for r in flood_results:
                by_status.update(r["by_status"])
            per_kind = {}
            for kind in ("provider", "junk"):
                rs = [r for r in flood_results if r["kind"] == kind]
                if rs:
                    span = max(r["ended"] for r in rs) - min(r["started"] for r in rs)
                    count = sum(r["requests"] for r in rs)
                    statuses: Counter[str] = Counter()
                    errors: Counter[str] = Counter()
                    for r in rs:
                        statuses.update(r["by_status"])
                        errors.update(r["errors"])
                    per_kind[kind] = {
                        "processes": len(rs),
                        "requests": count,
                        "rate_per_s": round(count / span, 1) if span > 0 else None,
                        "by_status": dict(sorted(statuses.items())),
                        "errors": dict(errors),
                        "client_cpu_s": round(sum(r["client_cpu_s"] for r in rs), 2),
                    }
            span = max((r["ended"] for r in flood_results), default=0) - min(
                (r["started"] for r in flood_results), default=0
            )
            total = sum(by_status.values())
            out["flood"] = {
                "processes": len(flood_results),
                "concurrency_each": cfg.concurrency,
                "duration_s": round(span, 2),
                "requests": total,
                "rate_per_s": round(total / span, 1) if span > 0 else None,
                "by_status": dict(sorted(by_status.items())),
                "by_kind": per_kind,
            }
        return out

    async def effects(self, admin: AdminClient, made: list[dict[str, Any]], since: int) -> dict[str, float]:
        """The log time of each change's create (found by its principal) or delete (by the assignment's id,
        read before the change), principal -> time; the log is read every half second."""
        adds = {c["principal"].lower(): c for c in made if c["kind"] == "add"}
        removes = {c["assignment"].lower(): c for c in made if c["kind"] == "remove"}
        seen: dict[str, float] = {}
        deadline = max(c["at"] for c in made) + self.cfg.change_timeout
        seq = since
        while len(seen) < len(made) and time.time() < deadline:
            await asyncio.sleep(0.5)
            entries = await admin.request_log(service="synapse", since=seq)
            seq = max((e["seq"] for e in entries), default=seq)
            for e in entries:
                if not str(e["status"]).startswith("2"):
                    continue
                params = e["params"]
                if e["operation"] == "createRoleAssignment":
                    change = adds.get(str(params.get("principalId", "")).lower())
                elif e["operation"] == "deleteRoleAssignment":
                    change = removes.get(str(params.get("roleAssignmentId", "")).lower())
                else:
                    continue
                if change is not None and float(e["time"]) >= change["at"]:
                    seen.setdefault(change["principal"], float(e["time"]))
        return seen


def markdown(report: dict[str, Any]) -> str:
    m, c, q, f = report["machine"], report["config"], report["quiet"], report["flood"]
    fl = f.get("flood", {})
    poll = "30 s (default)" if c["poll_interval"] is None else c["poll_interval"]

    def graph_row(label: str, g: dict[str, Any]) -> str:
        a = g["after_poll"]
        return (
            f"| {label} | {g['measured']} | {g['missed']} | {g['p50_s']} | {g['p95_s']} | {g['max_s']} "
            f"| {a['p50_s']} | {a['p95_s']} | {a['max_s']} |"
        )

    def second_row(label: str, s: dict[str, Any]) -> str:
        return (
            f"| {label} | {s['requests']} | {s['success_rate']} | {s['by_status']} | {s['p50_ms']} "
            f"| {s['p95_ms']} | {s['max_ms']} |"
        )

    lines = [
        f"# SCIM flood benchmark, {report['date']}",
        "",
        f"Machine: {m['cpu']}, {m['cpus']} CPUs, {m['memory_mb']} MB, {m['os']}, kernel {m['kernel']}, Python "
        f"{m['python']}; load average {m['load_average']} before, {report['load_average_after']} after (the "
        f"machine is shared). Commit {report['commit']}. Sandbox latency Graph {int(LATENCY['graph'] * 1000)} ms, "
        f"Synapse {int(LATENCY['synapse'] * 1000)} ms; the operator at its default settings (directory poll "
        f"{poll}, SCIM rate limit 50/s with bursts of 100 per provider, failed authentications 1/s with "
        "bursts of 10 per address), pinned to one CPU; the sandbox and the flooding clients on the other.",
        "",
        f"## Graph changes ({c['changes']} per phase, a member added to or removed from {ENTRA_GROUP!r})",
        "",
        "Latency: from the admin API's answer to the sandbox's log time of the assignment's create or delete. "
        "After the poll: from the first groupsDelta answered after the change (the operator's own part).",
        "",
        "| phase | measured | missed | p50 s | p95 s | max s | after the poll p50 s | p95 s | max s |",
        "|---|---|---|---|---|---|---|---|---|",
        graph_row("quiet", q["graph"]),
        graph_row("**flood**", f["graph"]),
        "",
        f"Flood / quiet: {report['flood_over_quiet']}. Final state as expected: {report['final_state_matches']}.",
        "",
        "Per delta poll that brought changes (seconds from the poll's answer): the sync's re-reads of the group "
        "(Graph) and its writes (Synapse).",
        "",
        "| phase | changes | first read | last read | reads (sandbox ms) | first write | last write |",
        "|---|---|---|---|---|---|---|",
        *(
            f"| {phase} | {t['changes']} | {t['first_read_s']} | {t['last_read_s']} | {t['reads']} "
            f"({t['reads_sandbox_ms']}) | {t['first_write_s']} | {t['last_write_s']} |"
            for phase in ("quiet", "flood")
            for t in report[phase]["graph"]["per_poll"]
        ),
        "",
        "## The flood",
        "",
        f"{fl.get('processes')} client processes, {c['concurrency']} requests in flight each, for "
        f"{fl.get('duration_s')} s: **{fl.get('requests'):,} requests, {fl.get('rate_per_s')} a second**; "
        f"answers {fl.get('by_status')}.",
        "",
        "| flood | processes | requests | per second | answers | client errors | client CPU s |",
        "|---|---|---|---|---|---|---|",
        *(
            f"| {k} | {v['processes']} | {v['requests']:,} | {v['rate_per_s']} | {v['by_status']} | {v['errors']} "
            f"| {v['client_cpu_s']} |"
            for k, v in fl.get("by_kind", {}).items()
        ),
        "",
        "CPU share (CPU seconds / wall seconds of the phase; 1.0 is a whole CPU):",
        "",
        "| phase | wall s | operator | sandbox | operator waiting for its CPU | sandbox waiting |",
        "|---|---|---|---|---|---|",
        *(
            f"| {phase} | {r['wall_s']} | **{r['cpu_share']['operator']}** | {r['cpu_share']['sandbox']} "
            f"| {r['runqueue_wait_share']['operator']} | {r['runqueue_wait_share']['sandbox']} |"
            for phase, r in (("quiet", q), ("flood", f))
        ),
        "",
        "(Waiting: the share of the wall time the process's main thread was runnable but not running, from "
        "/proc/PID/schedstat: other processes on its CPU.)",
        "",
        "The operator's count (synapse_scim_scim_requests_total, provider and status) over the flood phase: "
        f"{f['endpoint_answers']}.",
        "",
        f"## The second provider ({SECOND}: {c['second_rate']:g} requests a second, one at a time)",
        "",
        "| phase | requests | success rate | answers | p50 ms | p95 ms | max ms |",
        "|---|---|---|---|---|---|---|",
        second_row("quiet", q["second_provider"]),
        second_row("**flood**", f["second_provider"]),
        "",
        f"Azure calls, quiet: {q['azure_calls']}; flood: {f['azure_calls']}.",
    ]
    if report.get("notes"):
        lines += ["", "## Notes", "", *report["notes"]]
    return "\n".join(lines) + "\n"


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--changes", type=int, default=20)
    p.add_argument("--gap", type=float, default=3.0)
    p.add_argument("--flooders", type=int, default=1)
    p.add_argument("--junk", type=int, default=1)
    p.add_argument("--concurrency", type=int, default=32)
    p.add_argument("--profile", default=None, help="run the operator under cProfile, writing this file")
    p.add_argument("--quick", action="store_true", help="4 changes a phase, the poll every 1 s; prints only")
    p.add_argument("--out", type=Path, default=None)
    args = p.parse_args()
    cfg = Config(
        changes=args.changes,
        gap=args.gap,
        flooders=args.flooders,
        junk=args.junk,
        concurrency=args.concurrency,
        profile=args.profile,
    )
    if args.quick:
        cfg.changes, cfg.gap, cfg.warmup, cfg.poll_interval, cfg.change_timeout = 4, 0.5, 1.0, "1s", 60.0

    def log(msg: str) -> None:
        print(msg, file=sys.stderr, flush=True)

    with tempfile.TemporaryDirectory(prefix="scim-flood-") as tmp, ControlPlane() as cp:
        bench = Bench(cp, Path(tmp), cfg, log)
        try:
            report = asyncio.run(bench.run())
        except BaseException:
            if bench.endpoint is not None:
                log(bench.endpoint.logs())
            raise
        finally:
            if bench.endpoint is not None:
                bench.endpoint.stop()
    if cfg.profile and Path(cfg.profile).exists():  # written when the operator stopped
        report["profile"] = profile_summary(Path(cfg.profile), top=40)  # and its .txt beside the file
        log(f"profile: {Path(cfg.profile).with_suffix('.txt')}")
    text = markdown(report)
    print(text)
    if not args.quick or args.out is not None:
        stem = write_results(args.out or Path(__file__).parent / "results", "scim-flood", report, text)
        log(f"wrote {stem}.json and {stem}.md")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Propagation of pushed SCIM changes into Synapse, at the operator's default settings.

    SYNAPSE_SCIM_TOOLS="$(hack/build-tools.sh)" .venv/bin/python bench/scim_propagation.py          # writes results
    SYNAPSE_SCIM_TOOLS="$(hack/build-tools.sh)" .venv/bin/python bench/scim_propagation.py --quick  # prints only
        [--singles 40] [--burst 1000] [--batch 100] [--out DIR]

What runs: a real kube-apiserver and etcd (ControlPlane, CRDs installed); the Azure sandbox in its own
process pinned to the first CPU, with the scale benchmark's latencies (Graph 20 ms, Synapse 40 ms,
login 0) and a directory whose users have the userPrincipalNames the identity provider pushes as
userName (`user<i>@synthetic.example`); `synapse-scim run` with its SCIM endpoint over TLS
(bench/scim_operator.py), pinned to the second CPU, every setting at its default (the SCIM rate limit
too: 50 requests/s, burst 100 per provider). This process is the identity provider: it sends what Okta
sends (user POSTs, a group POST with no members, membership PATCHes of `--batch` members), paced by a
token bucket like the endpoint's own (a 429 is retried after its Retry-After, and counted).

Two SynapseWorkspaces, each with one binding of role "Synapse User" to a ScimGroup of provider okta:
`singles` (group "Data Engineers") and `burst` (group "Burst Group", bound before it is pushed).

1. **Single changes.** The singles group is pushed with a few members, granted, then `--singles`
   changes are made one at a time, cycling through: add a member (PATCH add), remove one (PATCH
   remove `members[value eq "…"]`), deactivate a member (PATCH `{"op":"replace","value":{"active":
   false}}`, Okta's form), reactivate one. Latency = from the SCIM response (this process's clock) to
   the sandbox's request-log time of the create or delete of that user's assignment (the sandbox logs
   a request when it has answered it: the assignment exists, or is gone, by then; no polling: the
   admin API's long poll hands the entry over). The next change waits for the previous one's effect,
   then 0.3-0.8 s. p50/p95 are nearest-rank, over all changes and per kind.
2. **Burst.** Okta's initial push of a group: `--burst` user POSTs, then the group's POST with
   `members: []`, then PATCHes adding `--batch` members each. Measured: the push itself (first request
   to last response: the rate limit bounds it), the time from the last SCIM response to the last of
   the group's role assignments created ("after the push"), and from the first request ("total").
   The lower bound is the time the same creates take when made directly: this process creates the
   same number of assignments (the same principals and role) in workspaces `direct-1` and `direct-2`
   with the operator's own Synapse adapter and write concurrency (8), before the burst, and the faster
   run counts (the machine's CPUs are shared); the formula of
   bench/scale_bench.py for writes alone, ceil(creates / 8) x Synapse latency, is shown beside it.
   Target: after the push <= 1.25 x the lower bound. What the burst cost: syncs
   (`synapse_scim_syncs_total` from the operator's /metrics, by kind; the pokes that asked for them,
   `synapse_scim_scim_pokes_total`) and Azure calls (the sandbox's
   counters, by operation) from just before the first request until the last grant plus 2 s.

Writes bench/results/scim-propagation-<date>.{json,md} (with `--quick`, only when `--out` is given).
The smoke test is tests/bench/test_scim_propagation.py.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import math
import os
import random
import statistics
import sys
import tempfile
import time
import uuid
from collections import Counter
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import aiohttp
from prometheus_client.parser import text_string_to_metric_families

from bench_results import latency_stats, percentile, write_results
from scale_model import APP_SECRET
from scale_procs import SandboxProcess, cpu_plan, cpu_seconds, machine
from scim_operator import GROUP, VERSION, ScimOperator
from synapse_scim.adapters.connections import Connections
from synapse_scim.adapters.workspace import roles_by_name
from synapse_scim.core.model import Grant, assignment_id
from synapse_scim_sandbox.admin import AdminClient
from synapse_scim_sandbox.devcluster import ControlPlane, ExistingCluster
from synapse_scim_sandbox.seed import synthetic_org

NAMESPACE, PROVIDER = "scim-propagation", "okta"
ROLE = "Synapse User"
LATENCY = {"graph": 0.020, "synapse": 0.040, "login": 0.0}
SINGLES_GROUP, BURST_GROUP = "Data Engineers", "Burst Group"
SCIM = "application/scim+json"
USER = "urn:ietf:params:scim:schemas:core:2.0:User"
GROUP_SCHEMA = "urn:ietf:params:scim:schemas:core:2.0:Group"
PATCH = "urn:ietf:params:scim:api:messages:2.0:PatchOp"
KINDS = ("add", "remove", "deactivate", "reactivate")
DIRECT = ("direct-1", "direct-2")  # the lower bound's workspaces: it is measured twice, the faster counts


@dataclass
class Config:
    singles: int = 40  # single changes, cycling through KINDS
    pool: int = 20  # pushed users the single changes draw from
    initial: int = 10  # of them, members of the singles group at the start
    burst: int = 1000  # members of the burst group
    batch: int = 100  # members per PATCH of the burst
    concurrency: int = 4  # SCIM requests in flight during the burst's user POSTs
    rate: float = 50.0  # the client's pacing: the endpoint's default limit
    rate_burst: int = 100
    write_concurrency: int = 8  # the operator's default (SYNAPSE_SCIM_WRITE_CONCURRENCY)
    change_timeout: float = 30.0  # a single change not seen within this is missed
    burst_timeout: float = 600.0
    seed: int = 1


def build_seed(cfg: Config) -> dict[str, Any]:
    """Users 0..pool-1 for the single changes, pool..pool+burst-1 for the burst; no groups (the identity
    provider pushes them); the three workspaces."""
    return synthetic_org(
        users=cfg.pool + cfg.burst,
        groups=0,
        service_principals=0,
        disabled=0.0,
        workspaces=["singles", "burst", *DIRECT],
        pools=1,
        seed=cfg.seed,
        app_secret=APP_SECRET,
    )


def okta_user(upn: str, i: int) -> dict[str, Any]:
    """A user as Okta creates it: userName is the Entra userPrincipalName (the default matching rule)."""
    given, family = f"Given{i}", f"Family{i}"
    return {
        "schemas": [USER],
        "userName": upn,
        "externalId": f"00u{uuid.UUID(int=i + 1).hex[:17]}",  # Okta's id: not a GUID, so not an object id
        "name": {"givenName": given, "familyName": family},
        "displayName": f"{given} {family}",
        "emails": [{"primary": True, "value": upn, "type": "work"}],
        "locale": "en-US",
        "active": True,
    }


def add_members(ids: list[str]) -> dict[str, Any]:
    return {"schemas": [PATCH], "Operations": [{"op": "add", "path": "members", "value": [{"value": i} for i in ids]}]}


def remove_member(scim_id: str) -> dict[str, Any]:
    return {"schemas": [PATCH], "Operations": [{"op": "remove", "path": f'members[value eq "{scim_id}"]'}]}


def set_active(active: bool) -> dict[str, Any]:
    return {"schemas": [PATCH], "Operations": [{"op": "replace", "value": {"active": active}}]}


class Pacer:
    """The client's token bucket: `rate` requests a second, `burst` at once (the endpoint's default)."""

    def __init__(self, rate: float, burst: int) -> None:
        self.rate, self.burst = rate, float(burst)
        self.tokens, self.at = float(burst), time.monotonic()
        self.lock = asyncio.Lock()

    async def take(self) -> None:
        async with self.lock:
            while True:
                now = time.monotonic()
                self.tokens = min(self.burst, self.tokens + (now - self.at) * self.rate)
                self.at = now
                if self.tokens >= 1:
                    self.tokens -= 1
                    return
                await asyncio.sleep((1 - self.tokens) / self.rate)


class Scim:
    """The identity provider: paced requests; a 429 waits its Retry-After and is sent again."""

    def __init__(self, session: aiohttp.ClientSession, base: str, pacer: Pacer) -> None:
        self.session, self.base, self.pacer = session, base, pacer
        self.requests = 0
        self.throttled = 0

    async def call(self, method: str, path: str, body: Any = None) -> tuple[Any, float]:
        """(the answer's JSON or None, time.time() of the response)."""
        data = json.dumps(body).encode() if body is not None else None
        while True:
            await self.pacer.take()
            async with self.session.request(method, self.base + path, data=data) as response:
                raw = await response.read()
                at = time.time()
                self.requests += 1
                if response.status == 429:
                    self.throttled += 1
                    await asyncio.sleep(float(response.headers.get("Retry-After") or 1))
                    continue
                if response.status not in (200, 201, 204):
                    raise RuntimeError(f"{method} {path}: {response.status}: {raw[:300]!r}")
                return (json.loads(raw) if raw else None), at

    async def first_answer(self, within: float = 120.0) -> None:
        """Polls (unpaced) until the endpoint answers: connection refused while the operator starts."""
        deadline = time.monotonic() + within
        while True:
            try:
                async with self.session.get(self.base + "/ServiceProviderConfig") as response:
                    if response.status == 200:
                        return
            except (aiohttp.ClientError, OSError):
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"the SCIM endpoint did not answer within {within:.0f} s")
            await asyncio.sleep(0.1)


class SynapseLog:
    """The sandbox's request log of Synapse role-assignment writes, read from a cursor with the admin
    API's long poll."""

    def __init__(self, admin: AdminClient) -> None:
        self.admin, self.seq = admin, 0

    async def skip(self) -> None:
        """Move the cursor past everything logged so far."""
        entries = await self.admin.request_log(service="synapse", since=self.seq)
        self.seq = max((e["seq"] for e in entries), default=self.seq)

    async def writes(self, within: float) -> list[dict[str, Any]]:
        """The successful creates and deletes logged after the cursor (waits up to `within` s for one)."""
        entries = await self.admin.wait_for_requests("synapse", since=self.seq, count=1, timeout=max(0.1, within))
        self.seq = max((e["seq"] for e in entries), default=self.seq)
        return [
            e
            for e in entries
            if e["operation"] in ("createRoleAssignment", "deleteRoleAssignment") and str(e["status"]).startswith("2")
        ]


def syncs(metrics: str | None) -> dict[str, int]:
    """synapse_scim_syncs_total by "workspace/kind", and synapse_scim_scim_pokes_total by "workspace/pokes"."""
    out: Counter[str] = Counter()
    for family in text_string_to_metric_families(metrics or ""):
        for sample in family.samples:
            if sample.name == "synapse_scim_syncs_total":
                out[f"{sample.labels['workspace']}/{sample.labels['kind']}"] += int(sample.value)
            elif sample.name == "synapse_scim_scim_pokes_total":
                out[f"{sample.labels['workspace']}/pokes"] += int(sample.value)
    return dict(out)


def diff(after: dict[str, int], before: dict[str, int]) -> dict[str, int]:
    return {k: n - before.get(k, 0) for k, n in sorted(after.items()) if n - before.get(k, 0)}


def by_operation(counters: dict[str, int]) -> dict[str, int]:
    """Sandbox counters ("service.operation.status": n) summed over status."""
    out: Counter[str] = Counter()
    for key, n in counters.items():
        service, operation, _ = key.split(".", 2)
        out[f"{service}.{operation}"] += n
    return dict(sorted(out.items()))


class Bench:
    def __init__(
        self,
        cp: ControlPlane | ExistingCluster,
        workdir: Path,
        cfg: Config,
        log: Any,
        namespace: str = NAMESPACE,
    ) -> None:
        self.cp, self.workdir, self.cfg, self.log, self.namespace = cp, workdir, cfg, log, namespace
        self.seed = build_seed(cfg)
        self.users = [(u["id"], u["userPrincipalName"]) for u in self.seed["users"]]
        self.sandbox = SandboxProcess(self.seed, latency=LATENCY, cert_dir=workdir / "sandbox", cpu=cpu_plan()[0])
        self.endpoint: ScimOperator | None = None

    # ------------------------------------------------------------------ cluster objects
    def workspace(self, sb: dict[str, Any], name: str) -> dict[str, Any]:
        return {
            "apiVersion": f"{GROUP}/{VERSION}",
            "kind": "SynapseWorkspace",
            "metadata": {"name": name},
            "spec": {
                "endpoint": sb["workspaces"][name],
                "workspaceName": name,
                "tenantId": sb["tenant_id"],
                "credential": {"clientSecret": {"clientId": sb["client_id"], "secretRef": {"name": "synapse-sp"}}},
                "cloud": {
                    "authorityHost": sb["authority_host"],
                    "graphEndpoint": sb["graph_url"].removesuffix("/v1.0"),
                },
                "removalGuard": {"maxRemovals": 1000, "maxPercent": 100},
            },
        }

    @staticmethod
    def binding(name: str, group: str) -> dict[str, Any]:
        return {
            "apiVersion": f"{GROUP}/{VERSION}",
            "kind": "SynapseRoleBinding",
            "metadata": {"name": name},
            "spec": {
                "workspaceRef": {"name": name},
                "roles": [ROLE],
                "subjects": [{"kind": "ScimGroup", "provider": PROVIDER, "name": group}],
            },
        }

    def create(self, plural: str, body: dict[str, Any]) -> None:
        assert self.endpoint is not None
        self.endpoint.custom.create_namespaced_custom_object(GROUP, VERSION, self.namespace, plural, body)

    async def synced_once(self, name: str, within: float = 120.0) -> None:
        """Until the binding's status shows a sync of its generation."""
        assert self.endpoint is not None
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            obj = self.endpoint.custom.get_namespaced_custom_object(
                GROUP, VERSION, self.namespace, "synapserolebindings", name
            )
            gen = obj["metadata"].get("generation")
            conditions = (obj.get("status") or {}).get("conditions") or ()
            if any(c["type"] == "Ready" and c.get("observedGeneration") == gen for c in conditions):
                return
            await asyncio.sleep(0.2)
        raise RuntimeError(f"binding {name} was not synced within {within:.0f} s")

    # ------------------------------------------------------------------ the run
    async def run(self) -> dict[str, Any]:
        cfg = self.cfg
        report: dict[str, Any] = {
            "machine": machine(),
            "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
            "config": {**asdict(cfg), "latency": LATENCY, "operator_settings": "defaults"},
        }
        with self.sandbox as sandbox:
            sb = sandbox.info
            self.endpoint = ScimOperator(self.cp, self.workdir, self.namespace, PROVIDER, azure_ca=Path(sb["ca_path"]))
            endpoint = self.endpoint
            admin = AdminClient(sb["admin_url"], sb["ca_path"])
            endpoint.create_provider()
            endpoint.core.create_namespaced_secret(
                self.namespace, {"metadata": {"name": "synapse-sp"}, "stringData": {"clientSecret": sb["secret"]}}
            )
            for ws in ("singles", "burst"):
                self.create("synapseworkspaces", self.workspace(sb, ws))
            self.create("synapserolebindings", self.binding("singles", SINGLES_GROUP))
            role_id, report["lower_bound"] = await self.direct_writes(sb)
            self.log(
                f"lower bound: {cfg.burst} creates made directly in {report['lower_bound']['measured_s']} s "
                f"(formula {report['lower_bound']['formula_s']} s)"
            )
            headers = {"Authorization": f"Bearer {endpoint.token}", "Content-Type": SCIM, "Accept": SCIM}
            connector = aiohttp.TCPConnector(ssl=endpoint.ssl_context(), limit=cfg.concurrency * 2)
            async with aiohttp.ClientSession(headers=headers, connector=connector) as session:
                scim = Scim(session, endpoint.base_url, Pacer(cfg.rate, cfg.rate_burst))
                endpoint.start()
                await scim.first_answer()
                self.log("operator serving SCIM")
                report["singles"] = await self.singles(scim, admin, role_id)
                self.log(f"single changes: p50 {report['singles']['p50_s']} s, p95 {report['singles']['p95_s']} s")
                report["burst"] = await self.burst(scim, admin, role_id)
                b = report["burst"]
                self.log(
                    f"burst: pushed in {b['push_s']} s, granted {b['granted_after_push_s']} s after the last "
                    f"response ({b['total_s']} s in all), {b['syncs_total']} syncs, {b['graph_calls']} Graph calls"
                )
                report["scim_requests"], report["scim_throttled"] = scim.requests, scim.throttled
            endpoint.stop()

        lb = report["lower_bound"]["measured_s"]
        b = report["burst"]
        report["burst"]["after_push_over_lower_bound"] = round(b["granted_after_push_s"] / lb, 2) if lb else None
        report["targets"] = [
            {
                "target": "single changes p95 <= 2 s",
                "value": report["singles"]["p95_s"],
                "met": report["singles"]["p95_s"] is not None
                and report["singles"]["p95_s"] <= 2.0
                and not report["singles"]["missed"],
            },
            {
                "target": "burst granted within 1.25 x the lower bound of the last SCIM response",
                "value": b["after_push_over_lower_bound"],
                "met": b["after_push_over_lower_bound"] is not None and b["after_push_over_lower_bound"] <= 1.25,
            },
        ]
        return report

    async def direct_writes(self, sb: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        """The lower bound: the burst's creates made directly, in each workspace of DIRECT, with the
        operator's Synapse adapter (its client, its write concurrency); the faster run counts (the CPUs
        are shared). Also returns the role's id."""
        cfg = self.cfg
        os.environ["SYNAPSE_SCIM_AZURE_CA_BUNDLE"] = sb["ca_path"]

        async def secret(namespace: str, name: str, key: str) -> bytes:
            return str(sb["secret"]).encode()

        principals = [uid for uid, _ in self.users[cfg.pool :]]
        runs: list[float] = []
        connections = Connections(secret, cfg.write_concurrency)
        try:
            for ws in DIRECT:
                clients = await connections.get("bench", ws, self.workspace(sb, ws)["spec"])
                role = roles_by_name(await clients.workspace.role_definitions())[ROLE]
                await clients.workspace.assignments()  # the token and the connection, as a sync has them
                started = time.perf_counter()
                created = await asyncio.gather(
                    *(clients.workspace.create(Grant(role.id, p, f"workspaces/{ws}"), "User") for p in principals)
                )
                runs.append(round(time.perf_counter() - started, 3))
                assert all(created), "the direct creates found assignments already there"
        finally:
            await connections.close()
        return role.id, {
            "creates": len(principals),
            "write_concurrency": cfg.write_concurrency,
            "runs_s": runs,
            "measured_s": min(runs),
            "formula_s": round(math.ceil(len(principals) / cfg.write_concurrency) * LATENCY["synapse"], 3),
            "formula": "ceil(creates / write concurrency) x Synapse latency (bench/scale_model.py, writes alone)",
        }

    async def singles(self, scim: Scim, admin: AdminClient, role_id: str) -> dict[str, Any]:
        cfg = self.cfg
        rng = random.Random(cfg.seed)
        pool = self.users[: cfg.pool]
        ids: dict[str, str] = {}  # principal id -> SCIM id
        for i, (pid, upn) in enumerate(pool):
            body, _ = await scim.call("POST", "/Users", okta_user(upn, i))
            ids[pid] = body["id"]
        group, _ = await scim.call(
            "POST", "/Groups", {"schemas": [GROUP_SCHEMA], "displayName": SINGLES_GROUP, "members": []}
        )
        gid = group["id"]
        members = [pid for pid, _ in pool[: cfg.initial]]
        log = SynapseLog(admin)
        await scim.call("PATCH", f"/Groups/{gid}", add_members([ids[p] for p in members]))
        await self.until_held(admin, "singles", role_id, set(members))
        self.log(f"singles group pushed and granted ({len(members)} members)")
        member, inactive = set(members), set()
        before_syncs = syncs(self.endpoint.process.metrics() if self.endpoint and self.endpoint.process else None)
        results: list[dict[str, Any]] = []
        for n in range(cfg.singles):
            kind = KINDS[n % len(KINDS)]
            active = sorted(p for p, _ in pool if p not in inactive)
            if kind == "add":
                candidates = [p for p in active if p not in member]
            elif kind == "reactivate":
                candidates = sorted(inactive)
            else:
                candidates = [p for p in active if p in member]
            pid = rng.choice(candidates)
            aid = assignment_id(Grant(role_id, pid, "workspaces/singles"))
            await log.skip()
            if kind == "add":
                _, at = await scim.call("PATCH", f"/Groups/{gid}", add_members([ids[pid]]))
                member.add(pid)
            elif kind == "remove":
                _, at = await scim.call("PATCH", f"/Groups/{gid}", remove_member(ids[pid]))
                member.discard(pid)
            elif kind == "deactivate":
                _, at = await scim.call("PATCH", f"/Users/{ids[pid]}", set_active(False))
                inactive.add(pid)
            else:
                _, at = await scim.call("PATCH", f"/Users/{ids[pid]}", set_active(True))
                inactive.discard(pid)
            operation = "createRoleAssignment" if kind in ("add", "reactivate") else "deleteRoleAssignment"
            seen = await self.seen(log, operation, aid, at + cfg.change_timeout)
            results.append(
                {"kind": kind, "principal": pid, "latency_s": round(seen - at, 3) if seen is not None else None}
            )
            await asyncio.sleep(rng.uniform(0.3, 0.8))
        after_syncs = syncs(self.endpoint.process.metrics() if self.endpoint and self.endpoint.process else None)
        held = await self.held(admin, "singles", role_id)
        want = {p.lower() for p in member - inactive}
        per_kind = {}
        for kind in KINDS:
            values = [r["latency_s"] for r in results if r["kind"] == kind and r["latency_s"] is not None]
            per_kind[kind] = {"n": len(values), "p50_s": percentile(values, 50), "p95_s": percentile(values, 95)}
        return {
            **latency_stats(results),  # each latency_s is already rounded to 3 decimals
            "per_kind": per_kind,
            "syncs": diff(after_syncs, before_syncs),
            "final_state_matches": held == want,
        }

    async def seen(self, log: SynapseLog, operation: str, aid: str, deadline: float) -> float | None:
        """The log time of the write `operation` of assignment `aid`, or None by the deadline."""
        while (left := deadline - time.time()) > 0:
            for e in await log.writes(left):
                if e["operation"] == operation and e["params"].get("roleAssignmentId") == aid:
                    return float(e["time"])
        return None

    async def held(self, admin: AdminClient, ws: str, role_id: str) -> set[str]:
        return {
            a["principalId"].lower()
            for a in await admin.list_assignments(ws)
            if a["roleDefinitionId"].lower() == role_id.lower()
        }

    async def until_held(self, admin: AdminClient, ws: str, role_id: str, want: set[str], within: float = 120) -> None:
        deadline = time.monotonic() + within
        while await self.held(admin, ws, role_id) != want:
            if time.monotonic() > deadline:
                raise RuntimeError(f"workspace {ws} did not get its {len(want)} grants within {within:.0f} s")
            await asyncio.sleep(0.2)

    async def burst(self, scim: Scim, admin: AdminClient, role_id: str) -> dict[str, Any]:
        cfg = self.cfg
        assert self.endpoint is not None and self.endpoint.process is not None
        process = self.endpoint.process
        users = self.users[cfg.pool :]
        self.create("synapserolebindings", self.binding("burst", BURST_GROUP))
        await self.synced_once("burst")  # bound before it is pushed: ScimGroupNotFound until then
        log = SynapseLog(admin)
        await log.skip()
        graph_seq = max((e["seq"] for e in await admin.request_log(service="graph")), default=0)
        counters0, syncs0 = await admin.counters(), syncs(process.metrics())
        requests0, throttled0 = scim.requests, scim.throttled
        started = time.time()
        ids: list[str] = [""] * len(users)
        queue = list(reversed(range(len(users))))

        async def worker() -> None:
            while queue:
                i = queue.pop()
                body, _ = await scim.call("POST", "/Users", okta_user(users[i][1], cfg.pool + i))
                ids[i] = body["id"]

        await asyncio.gather(*(worker() for _ in range(cfg.concurrency)))
        users_done = time.time()
        group, _ = await scim.call(
            "POST", "/Groups", {"schemas": [GROUP_SCHEMA], "displayName": BURST_GROUP, "members": []}
        )
        first_patch = time.time()
        cpu0 = {"operator": cpu_seconds(process.pid), "sandbox": cpu_seconds(self.sandbox.info["pid"])}
        last = first_patch
        for k in range(0, len(ids), cfg.batch):
            _, last = await scim.call("PATCH", f"/Groups/{group['id']}", add_members(ids[k : k + cfg.batch]))
        self.log(f"burst pushed: {len(ids)} users, the group, {math.ceil(len(ids) / cfg.batch)} PATCHes")
        want = {uid.lower() for uid, _ in users}
        granted: dict[str, float] = {}
        deadline = last + cfg.burst_timeout
        # Read every half second, not with the long poll: that one re-reads the sandbox's whole log at each
        # request it logs, and the sandbox would spend its CPU on the harness during the burst.
        seq = log.seq
        while want - granted.keys() and time.time() < deadline:
            await asyncio.sleep(0.5)
            entries = await admin.request_log(service="synapse", operation="createRoleAssignment", since=seq)
            seq = max((e["seq"] for e in entries), default=seq)
            for e in entries:
                p = e["params"]
                if p.get("workspace") == "burst" and str(e["status"]).startswith("2"):
                    granted.setdefault(str(p.get("principalId", "")).lower(), float(e["time"]))
        missing = len(want - granted.keys())
        done = max(granted.values(), default=time.time())
        cpu = {
            k: round(cpu_seconds(pid) - cpu0[k], 2)
            for k, pid in (("operator", process.pid), ("sandbox", self.sandbox.info["pid"]))
        }
        wall = round(time.time() - first_patch, 2)
        await asyncio.sleep(2.0)  # the syncs the last changes started, finished
        counters1, syncs1 = await admin.counters(), syncs(process.metrics())
        calls = by_operation(diff(counters1, counters0))
        counted = diff(syncs1, syncs0)
        burst_syncs = {k: n for k, n in counted.items() if not k.endswith("/pokes")}
        held = await self.held(admin, "burst", role_id)
        graph = await admin.request_log(service="graph", since=graph_seq)
        return {
            "timeline": self.timeline(first_patch, graph, granted, started),
            "cpu_s_from_first_patch": {**cpu, "wall_s": wall},
            "members": len(users),
            "requests": scim.requests - requests0,
            "throttled_429": scim.throttled - throttled0,
            "users_s": round(users_done - started, 2),
            "push_s": round(last - started, 2),
            "membership_patches_s": round(last - first_patch, 2),
            "granted": len(want) - missing,
            "missing": missing,
            "first_grant_after_first_patch_s": round(min(granted.values()) - first_patch, 3) if granted else None,
            "granted_after_push_s": round(done - last, 3),
            "total_s": round(done - started, 2),
            "syncs": burst_syncs,
            "syncs_total": sum(burst_syncs.values()),
            "scim_pokes": sum(n for k, n in counted.items() if k.endswith("/pokes")),
            "azure_calls": calls,
            "graph_calls": sum(n for k, n in calls.items() if k.startswith("graph.")),
            "synapse_calls": sum(n for k, n in calls.items() if k.startswith("synapse.")),
            "final_state_matches": held == want,
        }

    def timeline(
        self, first_patch: float, graph: list[dict[str, Any]], granted: dict[str, float], started: float
    ) -> dict[str, Any]:
        """Where the burst's time went, from the first membership PATCH: the operator's syncs of workspace
        burst (start from its log line, end from its "sync of" line), the Graph round trips (outer
        requests: a $batch counts once; the lookups inside by operation) and the grants."""
        assert self.endpoint is not None
        ends = []
        for line in self.endpoint.log_lines(f"sync of {self.namespace}/burst:"):
            at = dt.datetime.strptime(line[:23], "%Y-%m-%d %H:%M:%S,%f").timestamp()
            if at >= started:
                ends.append({"at_s": round(at - first_patch, 3), "line": line[24:].strip()})
        times = sorted(granted.values())
        # The sync's lookups: the Graph requests between the first PATCH and the first grant (a delta poll
        # of the tenant watch may fall among them; it is listed inside the batches).
        until = times[0] if times else time.time()
        outer = [e for e in graph if not e.get("batched") and first_patch <= e["time"] <= until]
        inner = Counter(e["operation"] for e in graph if e.get("batched") and first_patch <= e["time"] <= until)
        return {
            "from": "the first membership PATCH's start (s)",
            "sync_ends": ends[-6:],
            "graph_round_trips": len(outer),
            "graph_first_s": round(min(e["time"] for e in outer) - first_patch, 3) if outer else None,
            "graph_last_s": round(max(e["time"] for e in outer) - first_patch, 3) if outer else None,
            "graph_round_trip_ms_mean": round(statistics.fmean(e["duration_ms"] for e in outer), 1) if outer else None,
            "graph_lookups_inside_batches": dict(inner),
            "first_grant_s": round(times[0] - first_patch, 3) if times else None,
            "last_grant_s": round(times[-1] - first_patch, 3) if times else None,
        }


def markdown(report: dict[str, Any]) -> str:
    m, c, s, b, lb = report["machine"], report["config"], report["singles"], report["burst"], report["lower_bound"]
    lines = [
        f"# SCIM propagation benchmark, {report['date']}",
        "",
        f"Machine: {m['cpu']}, {m['cpus']} CPUs, {m['memory_mb']} MB, {m['os']}, kernel {m['kernel']}, "
        f"Python {m['python']}. Sandbox latency Graph {int(LATENCY['graph'] * 1000)} ms, Synapse "
        f"{int(LATENCY['synapse'] * 1000)} ms; the operator at its default settings (SCIM rate limit 50/s, "
        "burst 100; pokes after 0.15 s quiet, 1 s at most; write concurrency 8).",
        "",
        "## Targets",
        "",
        "| target | value | met |",
        "|---|---|---|",
        *(f"| {t['target']} | {t['value']} | {'yes' if t['met'] else '**no**'} |" for t in report["targets"]),
        "",
        f"## Single changes ({s['measured']} measured, {s['missed']} missed)",
        "",
        "From the SCIM response to the sandbox's log time of the create or delete.",
        "",
        "| change | n | p50 s | p95 s |",
        "|---|---|---|---|",
        *(f"| {k} | {v['n']} | {v['p50_s']} | {v['p95_s']} |" for k, v in s["per_kind"].items()),
        f"| **all** | {s['measured']} | **{s['p50_s']}** | **{s['p95_s']}** (max {s['max_s']}) |",
        "",
        f"Syncs and SCIM pokes during the single changes: {s['syncs']}. Final state as expected: "
        f"{s['final_state_matches']}.",
        "",
        f"## Burst: Okta's initial push of a {b['members']:,}-member group",
        "",
        f"{b['requests']:,} SCIM requests ({b['members']:,} user POSTs, the group POST, PATCHes of {c['batch']} "
        f"members; {b['throttled_429']} answered 429 and sent again).",
        "",
        "| measure | seconds |",
        "|---|---|",
        f"| the push (first request to last response; the rate limit bounds it) | {b['push_s']} |",
        f"| of which the user POSTs | {b['users_s']} |",
        f"| the membership PATCHes | {b['membership_patches_s']} |",
        f"| first grant after the first PATCH | {b['first_grant_after_first_patch_s']} |",
        f"| **every member granted, after the last SCIM response** | **{b['granted_after_push_s']}** |",
        f"| every member granted, from the first request | {b['total_s']} |",
        f"| lower bound: the same {lb['creates']:,} creates made directly (write concurrency "
        f"{lb['write_concurrency']}; the faster of {len(lb['runs_s'])} runs: {lb['runs_s']}) | {lb['measured_s']} |",
        f"| (formula: {lb['formula']}) | {lb['formula_s']} |",
        f"| **after the push / lower bound** | **{b['after_push_over_lower_bound']} x** |",
        "",
        f"Granted {b['granted']:,} of {b['members']:,}; final state as expected: {b['final_state_matches']}.",
        "",
        f"What the burst caused (from its first request to 2 s after the last grant): **{b['syncs_total']} syncs** "
        f"({', '.join(f'{k} {v}' for k, v in b['syncs'].items())}; {b['scim_pokes']} of them asked for by SCIM "
        f"pokes, synapse_scim_scim_pokes_total), **{b['graph_calls']} Graph calls**, "
        f"{b['synapse_calls']} Synapse calls.",
        "",
        "| sandbox operation | calls |",
        "|---|---|",
        *(f"| {k} | {v:,} |" for k, v in b["azure_calls"].items()),
    ]
    t = b.get("timeline") or {}
    if t.get("first_grant_s") is not None:
        writes_s = round(t["last_grant_s"] - t["first_grant_s"], 2)
        lines += [
            "",
            "### Where the burst's time went (seconds from the first membership PATCH)",
            "",
            "| step | at |",
            "|---|---|",
            f"| the last membership PATCH answered | {round(b['membership_patches_s'], 3)} |",
            f"| first Graph round trip of the sync (lookups of the pushed members) | {t['graph_first_s']} |",
            f"| last Graph round trip before the first grant ({t['graph_round_trips']} in all, mean "
            f"{t['graph_round_trip_ms_mean']} ms; inside the batches: "
            f"{', '.join(f'{k} {v:,}' for k, v in t['graph_lookups_inside_batches'].items())}) | {t['graph_last_s']} |",
            f"| first grant | {t['first_grant_s']} |",
            f"| last grant (the writes: {writes_s} s, against {lb['measured_s']} s made directly) "
            f"| {t['last_grant_s']} |",
            *(f"| {e['line'].split(': ', 1)[-1]} (the sync's end) | {e['at_s']} |" for e in t.get("sync_ends", ())),
        ]
        cpu = b.get("cpu_s_from_first_patch") or {}
        if cpu:
            lines += [
                "",
                f"CPU seconds from the first PATCH until the last grant was seen ({cpu['wall_s']} s of wall time): "
                f"the operator (one CPU) {cpu['operator']}, the sandbox (the other) {cpu['sandbox']}.",
            ]
    if report.get("notes"):
        lines += ["", "## Notes", "", *report["notes"]]
    return "\n".join(lines) + "\n"


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--singles", type=int, default=40)
    p.add_argument("--burst", type=int, default=1000)
    p.add_argument("--batch", type=int, default=100)
    p.add_argument("--quick", action="store_true", help="8 single changes, a 100-member burst; prints only")
    p.add_argument("--out", type=Path, default=None)
    args = p.parse_args()
    cfg = Config(singles=args.singles, burst=args.burst, batch=args.batch)
    if args.quick:
        cfg.singles, cfg.burst, cfg.batch = 8, 100, 25

    def log(msg: str) -> None:
        print(msg, file=sys.stderr, flush=True)

    with tempfile.TemporaryDirectory(prefix="scim-propagation-") as tmp, ControlPlane() as cp:
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
    text = markdown(report)
    print(text)
    if not args.quick or args.out is not None:
        stem = write_results(args.out or Path(__file__).parent / "results", "scim-propagation", report, text)
        log(f"wrote {stem}.json and {stem}.md")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Scale benchmark of the operator: a real kube-apiserver + etcd (devcluster), the Azure sandbox with
realistic latency in its own process, and `synapse-scim run` as its own process, for one scenario and
one or both strategies (delta: the operator as built; naive: a full re-list of every group for every
binding on every poll interval).

    .venv/bin/python bench/scale_bench.py --scenario S                  # both strategies, writes results
    .venv/bin/python bench/scale_bench.py --scenario tiny --quick       # a short run, prints only

Per strategy, in one sandbox and one namespace:
1. converge from empty: the bindings and workspaces exist, the operator starts; converged when every
   binding is Ready=True (for its generation) and every workspace holds exactly the expected
   assignments (computed from the seed by scale_model, manual ones included). Azure calls by
   operation (sandbox counters) against the minimum, and the lower-bound time (scale_model.minimum);
2. propagation: N membership changes (seeded: add to / remove from a bound group or a nested child
   group, one user each) at random times, default poll interval; latency = from the directory
   change to the last assignment it implies appearing / disappearing (sandbox request log);
3. quiet tenant, delta: the operator restarted with every interval scaled by --quiet-scale (poll
   interval, syncInterval and the window alike); Azure calls (sandbox counters) and Kubernetes writes
   (apiserver_request_total of write verbs, diffed) in the window, once the restart's first sync is
   done. Each of delta's quiet activities (a delta round trip a poll, a Synapse re-listing a
   syncInterval) ends well within its scaled interval, so the window's count is what 10 real minutes
   cost;
   quiet tenant, naive: a naive pass (every binding re-reads its groups, every workspace re-lists its
   assignments) can outlast a scaled 3 s poll, so the scaled window would only count the passes that
   fit (a floor). Instead exactly one pass is counted at real time: the operator restarted with the
   naive strategy and intervals longer than the run, its start-up syncs let pass, then one spec change
   of every workspace pokes each loop once, together, as a poll would (a naive sync reads every group
   for every binding and re-lists every workspace whatever started it); calls per pass = the sandbox
   counters' difference, duration = first to last Azure call. Per 10 minutes at the default poll
   interval (30 s):
   calls per pass x 600 / max(30 s, pass duration), since a pass that outlasts the poll interval runs
   back to back with the next. With --naive quiet-only that pass is made against the world the delta
   run converged (same sandbox, operator restarted as naive) and naive does not converge or propagate;
4. the operator's peak RSS (VmHWM) and CPU seconds (utime + stime), and the sandbox's RSS and CPU
   share while the operator converges (is the sandbox ever the bottleneck?), from /proc.
"""

from __future__ import annotations

import argparse
import datetime as dt
import random
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from kubernetes import client

from bench_results import latency_stats, write_results
from scale_model import APP_SECRET, SCENARIOS, Change, Grant, Scenario, World, build_seed, workspace_names
from scale_procs import (
    OperatorProcess,
    SandboxProcess,
    apiserver_writes,
    cpu_plan,
    cpu_seconds,
    machine,
    operator_writes,
    peak_rss_mb,
    profile_summary,
    rss_mb,
)
from synapse_scim_sandbox import SyncAdminClient
from synapse_scim_sandbox.devcluster import ControlPlane

ROOT = Path(__file__).resolve().parents[1]
GROUP, VERSION, WS_PLURAL, RB_PLURAL = "synapse-scim.io", "v1alpha1", "synapseworkspaces", "synapserolebindings"


@dataclass
class RunConfig:
    poll_interval: float = 30.0  # SYNAPSE_SCIM_DIRECTORY_POLL_INTERVAL while converging and propagating
    sync_interval: float = 600.0  # spec.syncInterval while converging and propagating
    quiet_scale: float = 0.1  # the quiet phase scales poll, syncInterval and window by this
    quiet_minutes: float = 10.0
    quiet_window: float | None = None  # seconds; default quiet_minutes x 60 x quiet_scale
    quiet_sync: float | None = None  # seconds; default sync_interval x quiet_scale (the CRD allows >= 30 s)
    quiet_poll_interval: float | None = None  # seconds; default poll_interval x quiet_scale
    changes: int = 20
    change_gap: float = 3.0  # mean seconds between two changes (uniform 0 .. 2x)
    change_timeout: float = 150.0  # a change's effects must show within this
    latency: dict[str, float] = field(default_factory=lambda: {"graph": 0.020, "synapse": 0.040, "login": 0.0})
    write_concurrency: int = 8
    read_concurrency: int = 8
    page_size: int = 100  # Synapse role assignments per list page (the sandbox's default)
    converge_timeout: float = 3600.0
    seed: int = 1
    profile_dir: Path | None = None  # run the operator under cProfile, files here
    tracemalloc_dir: Path | None = None  # run the operator under tracemalloc, snapshots here (a folder a run)
    tracemalloc_frames: int = 8  # frames kept per allocation (each costs time at every allocation)
    converge_only: bool = False  # stop after convergence: no propagation, no quiet window
    # "full": naive converges, propagates and has its quiet pass in a sandbox of its own; "quiet-only":
    # naive's quiet pass only, against the world the delta run converged (saves a convergence at L/XL).
    naive: str = "full"
    pass_quiet_gap: float = 3.0  # a naive pass is over when every workspace synced and nothing moved this long

    @property
    def window(self) -> float:
        return self.quiet_window if self.quiet_window is not None else self.quiet_minutes * 60 * self.quiet_scale

    @property
    def quiet_poll(self) -> float:
        if self.quiet_poll_interval is not None:
            return self.quiet_poll_interval
        return self.poll_interval * self.quiet_scale

    @property
    def simulated_minutes(self) -> float:
        return self.window / self.quiet_scale / 60

    @property
    def quiet_sync_interval(self) -> float:
        return self.quiet_sync if self.quiet_sync is not None else max(30.0, self.sync_interval * self.quiet_scale)


def duration(seconds: float) -> str:
    return f"{seconds:g}s"


def by_operation(counters: dict[str, int]) -> dict[str, int]:
    """Sandbox counters ("service.operation.status": n) summed over status."""
    out: Counter[str] = Counter()
    for key, n in counters.items():
        service, operation, _ = key.split(".", 2)
        out[f"{service}.{operation}"] += n
    return dict(sorted(out.items()))


def failed_calls(counters: dict[str, int]) -> int:
    return sum(n for key, n in counters.items() if not key.rsplit(".", 1)[1].startswith("2"))


def diff(after: dict[str, int], before: dict[str, int]) -> dict[str, int]:
    return {k: n - before.get(k, 0) for k, n in after.items() if n - before.get(k, 0)}


def assignments(admin: SyncAdminClient, ws: str) -> dict[str, Grant]:
    return {
        a["id"]: (a["roleDefinitionId"].lower(), a["principalId"].lower(), a["scope"])
        for a in admin.list_assignments(ws)
    }


# ------------------------------------------------------------------------------------------ cluster objects
class Cluster:
    """The benchmark's namespace: one Secret, the SynapseWorkspaces and the SynapseRoleBindings."""

    def __init__(self, api: client.ApiClient, namespace: str) -> None:
        self.api, self.namespace = api, namespace
        self.custom = client.CustomObjectsApi(api)
        client.CoreV1Api(api).create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=namespace)))

    def create(self, world: World, sb: dict[str, Any], sync_interval: float) -> None:
        client.CoreV1Api(self.api).create_namespaced_secret(
            self.namespace, {"metadata": {"name": "synapse-sp"}, "stringData": {"clientSecret": APP_SECRET}}
        )
        for ws in workspace_names(world.scenario):
            self.custom.create_namespaced_custom_object(
                GROUP,
                VERSION,
                self.namespace,
                WS_PLURAL,
                {
                    "apiVersion": f"{GROUP}/{VERSION}",
                    "kind": "SynapseWorkspace",
                    "metadata": {"name": ws},
                    "spec": {
                        "endpoint": sb["workspaces"][ws],
                        "workspaceName": ws,
                        "tenantId": sb["tenant_id"],
                        "credential": {
                            "clientSecret": {"clientId": sb["client_id"], "secretRef": {"name": "synapse-sp"}}
                        },
                        "cloud": {
                            "authorityHost": sb["authority_host"],
                            "graphEndpoint": sb["graph_url"].removesuffix("/v1.0"),
                        },
                        "syncInterval": duration(sync_interval),
                        # Overlapping removals from the propagation phase can add up within one sync; on
                        # the tiny scenario that is more than 20% of what the operator manages. The guard
                        # is not what is measured here.
                        "removalGuard": {"maxRemovals": 1000, "maxPercent": 100},
                    },
                },
            )
        for b in world.bindings:
            self.custom.create_namespaced_custom_object(
                GROUP, VERSION, self.namespace, RB_PLURAL, b.manifest(world.group_names)
            )

    def set_sync_interval(self, world: World, seconds: float) -> None:
        for ws in workspace_names(world.scenario):
            self.custom.patch_namespaced_custom_object(
                GROUP, VERSION, self.namespace, WS_PLURAL, ws, {"spec": {"syncInterval": duration(seconds)}}
            )

    def ready_bindings(self) -> tuple[int, int]:
        items = self.custom.list_namespaced_custom_object(GROUP, VERSION, self.namespace, RB_PLURAL)["items"]
        ready = 0
        for obj in items:
            gen = obj["metadata"].get("generation")
            for c in (obj.get("status") or {}).get("conditions") or ():
                if c["type"] == "Ready" and c["status"] == "True" and c.get("observedGeneration") == gen:
                    ready += 1
        return ready, len(items)


# ------------------------------------------------------------------------------------------ watching Synapse
class LogCursor:
    """Reads the sandbox's request log (one service, or all with None) from where it last stopped. The
    first read returns what the log still holds; callers filter by time."""

    def __init__(self, admin: SyncAdminClient, service: str | None, operation: str | None = None) -> None:
        self.admin, self.service, self.operation, self.seq = admin, service, operation, 0

    def read(self) -> list[dict[str, Any]]:
        entries = self.admin.request_log(service=self.service, operation=self.operation, since=self.seq)
        self.seq = max((e["seq"] for e in entries), default=self.seq)
        return entries


class WriteLog:
    """Follows the sandbox's request log: when each (workspace, grant) was created or deleted."""

    def __init__(self, admin: SyncAdminClient, ids: dict[str, dict[str, Grant]]) -> None:
        self.cursor = LogCursor(admin, "synapse")
        self.ids = {aid: (ws, g) for ws, m in ids.items() for aid, g in m.items()}
        self.seen: dict[tuple[str, str, Grant], list[float]] = {}
        self.lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> WriteLog:
        self.cursor.read()  # what happened before is not wanted
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(10)

    def _run(self) -> None:
        while not self._stop.is_set():
            for e in self.cursor.read():
                if e["operation"] in ("createRoleAssignment", "deleteRoleAssignment"):
                    self._record(e)
            self._stop.wait(0.2)

    def _record(self, e: dict[str, Any]) -> None:
        if not str(e["status"]).startswith("2"):
            return
        p = e["params"]
        ws = p["workspace"]
        if e["operation"] == "createRoleAssignment":
            grant = (p["roleId"].lower(), p["principalId"].lower(), p["scope"])
            self.ids[p["roleAssignmentId"]] = (ws, grant)
            key = ("create", ws, grant)
        else:
            known = self.ids.get(p["roleAssignmentId"])
            if known is None:
                return
            key = ("delete", *known)
        with self.lock:
            self.seen.setdefault(key, []).append(e["time"])

    def when(self, key: tuple[str, str, Grant], after: float) -> float | None:
        with self.lock:
            return min((t for t in self.seen.get(key, ()) if t >= after), default=None)


# ------------------------------------------------------------------------------------------ phases
def converge(
    cluster: Cluster, admin: SyncAdminClient, op: OperatorProcess, expected: dict[str, set[Grant]], timeout: float
) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    first_call = None
    writes_seen, writes_done = 0, None
    ready = total = 0
    while time.monotonic() < deadline:
        if not op.alive():
            raise RuntimeError("the operator exited while converging; see its log")
        counters = admin.counters()
        now = time.time()
        if first_call is None and counters:
            first_call = now
        creates = sum(n for k, n in counters.items() if k.startswith("synapse.createRoleAssignment.2"))
        if creates != writes_seen:
            writes_seen, writes_done = creates, now
        if first_call is None:
            time.sleep(0.05)
            continue
        ready, total = cluster.ready_bindings()
        if ready == total and all({*assignments(admin, ws).values()} == want for ws, want in expected.items()):
            done = time.time()
            counters = admin.counters()
            return {
                "converge_s": round(done - op.started, 2),
                "first_azure_call_s": round(first_call - op.started, 2),
                "last_write_s": round((writes_done or first_call) - op.started, 2),
                "azure_calls": by_operation(counters),
                "azure_calls_total": sum(counters.values()),
                "azure_failed_calls": failed_calls(counters),
                "counters": counters,
            }
        time.sleep(0.5)
    missing = {ws: len(want - {*assignments(admin, ws).values()}) for ws, want in expected.items()}
    raise RuntimeError(
        f"not converged after {timeout:.0f} s: {ready}/{total} bindings Ready, missing "
        f"assignments per workspace {missing}"
    )


def propagate(
    admin: SyncAdminClient,
    op: OperatorProcess,
    changes: list[Change],
    cfg: RunConfig,
    expected: dict[str, set[Grant]],
    ids: dict[str, dict[str, Grant]],
) -> dict[str, Any]:
    rng = random.Random(cfg.seed)
    before = admin.counters()
    cpu_before, syncs_before = op.usage()["cpu_s"], syncs_by_kind(op.metrics())
    results = []
    with WriteLog(admin, ids) as log:
        start = time.time() + 1.0
        at = start
        made: list[tuple[Change, float]] = []
        for change in changes:
            at += rng.uniform(0, 2 * cfg.change_gap)
            time.sleep(max(0.0, at - time.time()))
            t = time.time()
            if change.adds:
                admin.add_member(change.group, change.user)
            else:
                admin.remove_member(change.group, change.user)
            made.append((change, t))
        for change, t in made:
            deadline = t + cfg.change_timeout
            while True:
                seen = [log.when((kind, ws, g), t) for kind, ws, g in change.effects()]
                if all(s is not None for s in seen) or time.time() > deadline or not op.alive():
                    break
                time.sleep(0.2)
            done = [s for s in seen if s is not None]
            results.append(
                {
                    "kind": change.kind,
                    "group": change.group_name,
                    "user": change.user,
                    "creates": sum(len(g) for g in change.creates.values()),
                    "deletes": sum(len(g) for g in change.deletes.values()),
                    "latency_s": round(max(done) - t, 3) if len(done) == len(seen) else None,
                }
            )
    # Everything the operator spent while the changes propagated (the delta polls, kopf, status writes,
    # Events and metrics included) over the incremental syncs it ran: an upper bound of one sync's cost.
    cpu_s = op.usage()["cpu_s"] - cpu_before
    syncs = {k: n - syncs_before.get(k, 0) for k, n in syncs_by_kind(op.metrics()).items()}
    incremental = syncs.get("incremental", 0)
    actual = {ws: {*assignments(admin, ws).values()} for ws in expected}
    return {
        **latency_stats(results),
        "cpu_s": round(cpu_s, 2),
        "syncs": syncs,
        "cpu_ms_per_incremental_sync": round(1000 * cpu_s / incremental, 1) if incremental else None,
        "final_state_matches": actual == expected,
        "final_state_diff": {
            ws: {"missing": len(expected[ws] - actual[ws]), "extra": len(actual[ws] - expected[ws])} for ws in expected
        },
        "azure_calls": by_operation(diff(admin.counters(), before)),
    }


def per_workspace(metrics: str | None, name: str) -> dict[str, float]:
    """A counter of the operator's summed over every label but `workspace`."""
    out: Counter[str] = Counter()
    for line in (metrics or "").splitlines():
        if line.startswith(name + "{"):
            labels = dict(part.split("=", 1) for part in line[line.index("{") + 1 : line.index("}")].split(","))
            out[labels.get("workspace", "").strip('"')] += float(line.rsplit(" ", 1)[1])
    return dict(out)


def syncs_by_kind(metrics: str | None) -> dict[str, float]:
    """synapse_scim_syncs_total summed over workspaces, by kind (full, assignments, incremental)."""
    out: Counter[str] = Counter()
    for line in (metrics or "").splitlines():
        if line.startswith("synapse_scim_syncs_total{"):
            labels = dict(part.split("=", 1) for part in line[line.index("{") + 1 : line.index("}")].split(","))
            out[labels.get("kind", "").strip('"')] += float(line.rsplit(" ", 1)[1])
    return dict(out)


def synced_workspaces(metrics: str | None) -> set[str]:
    """Workspaces with at least one finished sync (synapse_scim_reconciles_total by workspace label)."""
    return {ws for ws, n in per_workspace(metrics, "synapse_scim_reconciles_total").items() if n > 0}


def quiet(
    cluster: Cluster, admin: SyncAdminClient, op: OperatorProcess, world: World, cfg: RunConfig
) -> dict[str, Any]:
    """After a restart with scaled intervals: wait for the first sync of every workspace to finish,
    one more poll interval, then count what a quiet window costs."""
    lists = LogCursor(admin, "synapse", "listRoleAssignments")
    restarted = op.started
    started = time.monotonic()
    wss = set(workspace_names(world.scenario))
    settle_limit = cfg.quiet_sync_interval + 4 * cfg.quiet_poll + 60
    listed: set[str] = set()
    while time.monotonic() - started < settle_limit:
        if not op.alive():
            raise RuntimeError("the operator exited after its restart; see its log")
        listed |= {e["params"]["workspace"] for e in lists.read() if e["time"] >= restarted}
        # The first sync lists assignments before it reads the directory: wait until every workspace's
        # first sync has finished (the operator counts a reconcile when its statuses are written).
        if (
            listed >= wss
            and cluster.ready_bindings()[0] == len(world.bindings)
            and synced_workspaces(op.metrics()) >= wss
        ):
            break
        time.sleep(0.2)
    settled_by = "first sync seen" if listed >= wss else "settle timeout (no startup sync seen)"
    time.sleep(cfg.quiet_poll + 1.0)
    c0, k0, u0 = admin.counters(), apiserver_writes(cluster.api), op.usage()
    t0 = time.monotonic()
    while (left := cfg.window - (time.monotonic() - t0)) > 0:
        if not op.alive():
            raise RuntimeError("the operator exited during the quiet window; see its log")
        time.sleep(min(1.0, left))
    c1, k1, u1 = admin.counters(), apiserver_writes(cluster.api), op.usage()
    calls = diff(c1, c0)
    k8s = dict(sorted(diff(dict(k1), dict(k0)).items()))
    return {
        "window_s": round(time.monotonic() - t0, 1),
        "settled_by": settled_by,
        "azure_calls": by_operation(calls),
        "azure_calls_total": sum(calls.values()),
        "k8s_writes": operator_writes(Counter(k8s)),
        "k8s_writes_by_resource": k8s,
        "cpu_s": round(u1["cpu_s"] - u0["cpu_s"], 2),
        "peak_rss_mb": u1["peak_rss_mb"],
        "method": f"window of {cfg.window:g} s at scale {cfg.quiet_scale:g}",
        # The window is cfg.simulated_minutes of simulated time: per cfg.quiet_minutes of it.
        "azure_calls_per_window": round(sum(calls.values()) * cfg.quiet_minutes / cfg.simulated_minutes),
        "window_minutes": cfg.quiet_minutes,
    }


def naive_pass(
    cluster: Cluster,
    admin: SyncAdminClient,
    start: Callable[[], OperatorProcess],
    world: World,
    cfg: RunConfig,
) -> dict[str, Any]:
    """Exactly one naive pass over a converged world, at real time. `start` starts the operator with the
    naive strategy and a poll interval and syncInterval longer than anything here, so that no sync is
    ever due on its own. Its start-up syncs are let pass (kopf's resume of every binding, and the spec
    change made before the start, poke a workspace while its first sync runs: one or two syncs each),
    then one change of every workspace's spec (syncInterval, one second longer: still never due) pokes
    each loop once, together, as a poll would. A naive sync reads every group for every binding and
    re-lists every workspace whatever started it. The pass is over when every workspace has finished
    one more sync and nothing moved (Azure calls, syncs started or finished) for cfg.pass_quiet_gap
    seconds; its duration runs from its first Azure call to its last. Scaled to cfg.quiet_minutes at
    the default poll interval (cfg.poll_interval)."""
    wss = set(workspace_names(world.scenario))
    long_interval = max(3600.0, cfg.converge_timeout)
    cluster.set_sync_interval(world, long_interval)
    op = start()
    try:

        def settle(before: dict[str, float]) -> tuple[dict[str, int], dict[str, float], dict[str, float]]:
            """Wait until every workspace has finished more syncs than `before` and nothing moved (no
            Azure call, no sync started or finished) for the quiet gap; return the counters, the syncs
            started and the syncs finished, per workspace. A sync counts as started before its first
            call, so one that has just begun resets the gap too."""
            deadline = time.monotonic() + cfg.converge_timeout
            state: tuple[Any, ...] = ()
            stable_since = time.monotonic()
            while True:
                if not op.alive():
                    raise RuntimeError("the naive operator exited; see its log")
                if time.monotonic() > deadline:
                    raise RuntimeError(f"the naive operator did not settle within {cfg.converge_timeout:.0f} s")
                metrics = op.metrics()
                now = (
                    admin.counters(),
                    per_workspace(metrics, "synapse_scim_syncs_total"),
                    per_workspace(metrics, "synapse_scim_reconciles_total"),
                )
                if now != state:
                    state, stable_since = now, time.monotonic()
                if (
                    all(state[2].get(ws, 0) > before.get(ws, 0) for ws in wss)
                    and time.monotonic() - stable_since >= cfg.pass_quiet_gap
                ):
                    return state
                time.sleep(0.2)

        _, startup_started, startup_syncs = settle({})
        c0, k0, u0 = admin.counters(), apiserver_writes(cluster.api), op.usage()
        cursor = LogCursor(admin, None)
        cursor.read()  # what came before is not the pass's
        cluster.set_sync_interval(world, long_interval + 1)
        c1, started, syncs = settle(startup_syncs)
        u1 = op.usage()
    finally:
        op.stop()
    # The log holds the counted calls and what batches carried (not counted): all bound the pass's
    # duration. It keeps the last 50,000 entries, more than a naive pass of XL makes.
    entries = cursor.read()
    times = [(e["time"] - e.get("duration_ms", 0) / 1000, e["time"]) for e in entries]
    calls = diff(c1, c0)
    k8s = diff(dict(apiserver_writes(cluster.api)), dict(k0))
    # The spec change that started the pass is the harness's write, one per workspace, not the operator's.
    ours = "PATCH synapse-scim.io/synapseworkspaces"
    k8s[ours] = k8s.get(ours, 0) - len(wss)
    k8s = {k: n for k, n in sorted(k8s.items()) if n}
    pass_s = round(max(t for _, t in times) - min(t for t, _ in times), 2) if times else 0.0
    interval = max(cfg.poll_interval, pass_s)
    per_window = sum(calls.values()) * cfg.quiet_minutes * 60 / interval
    syncs_in_pass = {ws: int(syncs.get(ws, 0) - startup_syncs.get(ws, 0)) for ws in sorted(wss)}
    started_in_pass = {ws: int(started.get(ws, 0) - startup_started.get(ws, 0)) for ws in sorted(wss)}
    return {
        "method": "one naive pass at real time, scaled",
        "pass_s": pass_s,
        "startup_syncs_per_workspace": {ws: int(n) for ws, n in sorted(startup_syncs.items())},
        "syncs_per_workspace": syncs_in_pass,
        "syncs_started_per_workspace": started_in_pass,
        "one_pass": all(n == 1 for n in syncs_in_pass.values()) and all(n == 1 for n in started_in_pass.values()),
        "azure_calls": by_operation(calls),
        "azure_calls_total": sum(calls.values()),
        "azure_failed_calls": failed_calls(calls),
        "logged_calls": sum(1 for e in entries if not e.get("batched")),
        "poll_interval_s": cfg.poll_interval,
        "interval_applied": "poll interval" if interval == cfg.poll_interval else "pass duration",
        "passes_per_window": round(cfg.quiet_minutes * 60 / interval, 3),
        "azure_calls_per_window": round(per_window),
        "window_minutes": cfg.quiet_minutes,
        "k8s_writes": operator_writes(Counter(k8s)),
        "k8s_writes_by_resource": k8s,
        "cpu_s": round(u1["cpu_s"] - u0["cpu_s"], 2),
        "peak_rss_mb": u1["peak_rss_mb"],
    }


def run_strategy(
    cp: Any,
    scenario: Scenario,
    strategy: str,
    cfg: RunConfig,
    workdir: Path,
    log: Any = print,
    naive_after: bool = False,
) -> dict[str, Any]:
    """One strategy in a sandbox of its own: converge, propagate, quiet. With `naive_after` (delta, with
    --naive quiet-only) the naive pass follows in the same sandbox; it is returned under "naive"."""
    world = World(scenario, build_seed(scenario))
    expected = world.expected()
    minimum = world.minimum(
        page_size=cfg.page_size,
        latency=cfg.latency,
        write_concurrency=cfg.write_concurrency,
        read_concurrency=cfg.read_concurrency,
    )
    changes = world.plan_changes(cfg.changes, cfg.seed)
    after_changes = world.expected()
    sandbox_cpu, operator_cpu = cpu_plan()
    profiles: list[Path] = []

    def profile(name: str) -> Path | None:
        if cfg.profile_dir is None:
            return None
        cfg.profile_dir.mkdir(parents=True, exist_ok=True)
        profiles.append(cfg.profile_dir / f"operator-{name}.prof")
        return profiles[-1]

    def traced(name: str) -> Path | None:
        return None if cfg.tracemalloc_dir is None else cfg.tracemalloc_dir / f"{scenario.name}-{strategy}-{name}"

    env = {
        "SYNAPSE_SCIM_STRATEGY": strategy,
        "SYNAPSE_SCIM_WRITE_CONCURRENCY": str(cfg.write_concurrency),
        "SYNAPSE_SCIM_READ_CONCURRENCY": str(cfg.read_concurrency),
    }
    out: dict[str, Any] = {
        "strategy": strategy,
        "expected_assignments": sum(len(e) for e in expected.values()),
        "minimum": minimum,
    }
    with (
        SandboxProcess(
            scenario,
            latency=cfg.latency,
            cert_dir=workdir / f"sandbox-{strategy}",
            cpu=sandbox_cpu,
            page_size=cfg.page_size,
        ) as sb,
        cp.api_client() as api,
    ):
        admin = SyncAdminClient(sb.info["admin_url"], sb.info["ca_path"], timeout=120)
        sandbox_pid = sb.info["pid"]
        out["sandbox_load_s"] = sb.info["load_s"]
        out["sandbox"] = {"load_s": sb.info["load_s"], "rss_mb_loaded": rss_mb(sandbox_pid)}
        initial = {ws: {*assignments(admin, ws).values()} for ws in expected}
        manual = {ws: set(m.values()) for ws, m in world.manual.items()}
        out["seed_matches_model"] = initial == manual
        cluster = Cluster(api, f"bench-{strategy}-{uuid.uuid4().hex[:6]}")
        cluster.create(world, sb.info, cfg.sync_interval)
        log(f"[{strategy}] {len(world.bindings)} bindings in {scenario.workspaces} workspace(s); starting the operator")
        k8s_before = apiserver_writes(api)
        sandbox_cpu0 = cpu_seconds(sandbox_pid)
        op = OperatorProcess(
            kubeconfig=cp.kubeconfig,
            ca_path=sb.info["ca_path"],
            namespace=cluster.namespace,
            log_path=workdir / f"operator-{strategy}.log",
            cpu=operator_cpu,
            env={**env, "SYNAPSE_SCIM_DIRECTORY_POLL_INTERVAL": duration(cfg.poll_interval)},
            profile=profile(f"{scenario.name}-{strategy}-converge-propagate"),
            tracemalloc=traced("converge-propagate"),
            tracemalloc_frames=cfg.tracemalloc_frames,
        )
        try:
            out["converge"] = converge(cluster, admin, op, expected, cfg.converge_timeout)
            out["converge"]["operator"] = op.usage()
            if op.tracemalloc:
                # What is still held once converged; peak.snap has the working set at its largest.
                out["converge"]["tracemalloc_snapshot"] = str(op.snapshot())
            # The sandbox has a CPU of its own: a share near 100% would make it the bottleneck. Its
            # latency is simulated by waiting, which costs no CPU; the harness's own polling of the
            # counters and, once every binding is Ready, of the assignment lists is included.
            sandbox_cpu_s = round(cpu_seconds(sandbox_pid) - sandbox_cpu0, 2)
            out["sandbox"] |= {
                "cpu_s_converge": sandbox_cpu_s,
                "cpu_share_converge": ratio(sandbox_cpu_s, out["converge"]["converge_s"]),
                "rss_mb_converged": rss_mb(sandbox_pid),
            }
            # Status, finalizers and kopf's annotations: what becoming Ready costs the API server.
            out["converge"]["k8s_writes"] = operator_writes(
                Counter(diff(dict(apiserver_writes(api)), dict(k8s_before)))
            )
            log(
                f"[{strategy}] converged in {out['converge']['converge_s']} s "
                f"(lower bound {minimum['lower_bound_s']} s)"
                + ("" if cfg.converge_only else f"; {cfg.changes} membership changes next")
            )
            if cfg.converge_only:
                out["peak_rss_mb"] = out["converge"]["operator"]["peak_rss_mb"]
                out["cpu_s_converge"] = out["converge"]["operator"]["cpu_s"]
                return out
            ids = {ws: assignments(admin, ws) for ws in expected}
            out["propagation"] = propagate(admin, op, changes, cfg, after_changes, ids)
            out["propagation"]["operator"] = op.usage()
            log(
                f"[{strategy}] propagation p50 {out['propagation']['p50_s']} s, p95 {out['propagation']['p95_s']} s; "
                f"quiet {'pass' if strategy == 'naive' else f'window of {cfg.window:g} s'} next"
            )
        finally:
            op.stop()

        def restarted(env: dict[str, str], name: str) -> OperatorProcess:
            return OperatorProcess(
                kubeconfig=cp.kubeconfig,
                ca_path=sb.info["ca_path"],
                namespace=cluster.namespace,
                log_path=workdir / f"operator-{strategy}-then-{name}.log",
                cpu=operator_cpu,
                env=env,
                profile=profile(f"{scenario.name}-{name}"),
            )

        # No naive sync may fall due on its own during the pass (see naive_pass).
        naive_env = {
            **env,
            "SYNAPSE_SCIM_STRATEGY": "naive",
            "SYNAPSE_SCIM_DIRECTORY_POLL_INTERVAL": duration(max(3600.0, cfg.converge_timeout)),
        }
        if strategy == "naive":
            out["quiet"] = naive_pass(cluster, admin, lambda: restarted(naive_env, "naive-quiet-pass"), world, cfg)
            out["quiet"]["world"] = "converged by the naive operator"
        else:
            cluster.set_sync_interval(world, cfg.quiet_sync_interval)
            op = restarted(
                {
                    **env,
                    "SYNAPSE_SCIM_DIRECTORY_POLL_INTERVAL": duration(cfg.quiet_poll),
                    # the directory's own safety net (1 h) scales with every other interval
                    "SYNAPSE_SCIM_DIRECTORY_RESYNC_INTERVAL": duration(3600 * cfg.quiet_scale),
                },
                f"{strategy}-quiet",
            )
            try:
                out["quiet"] = quiet(cluster, admin, op, world, cfg)
            finally:
                op.stop()
        q = out["quiet"]
        log(
            f"[{strategy}] quiet: {q['azure_calls_total']} Azure calls ({q['method']}; "
            f"{q['azure_calls_per_window']} per {cfg.quiet_minutes:g} min), {q['k8s_writes']} Kubernetes writes"
        )
        if naive_after:
            nq = naive_pass(cluster, admin, lambda: restarted(naive_env, "naive-quiet-pass"), world, cfg)
            nq["world"] = f"converged by the {strategy} operator (--naive quiet-only: same sandbox, operator restarted)"
            out["naive"] = {
                "strategy": "naive",
                "mode": "quiet-only",
                "expected_assignments": out["expected_assignments"],
                "minimum": minimum,
                "quiet": nq,
                "peak_rss_mb": nq["peak_rss_mb"],
            }
            log(
                f"[naive] one pass: {nq['azure_calls_total']} Azure calls in {nq['pass_s']} s; "
                f"{nq['azure_calls_per_window']} per {cfg.quiet_minutes:g} min"
            )
        out["sandbox"]["peak_rss_mb"] = peak_rss_mb(sandbox_pid)
    out["profiles"] = [profile_summary(p) for p in profiles if p.exists()]
    out["peak_rss_mb"] = max(out["propagation"]["operator"]["peak_rss_mb"], out["quiet"]["peak_rss_mb"])
    out["cpu_s_converge"] = out["converge"]["operator"]["cpu_s"]
    out["cpu_s_total_first_run"] = out["propagation"]["operator"]["cpu_s"]
    return out


# ------------------------------------------------------------------------------------------ report
def ratio(a: Any, b: Any) -> float | None:
    if not isinstance(a, int | float) or not isinstance(b, int | float) or b == 0:
        return None
    return round(a / b, 2)


def figures(r: dict[str, Any]) -> dict[str, Any]:
    """The report's headline figures; None where the run did not measure them (a quiet-only naive run
    neither converges nor propagates)."""
    # A --converge-only run has no propagation or quiet figures: None (shown as "—").
    c, p, q = r.get("converge", {}), r.get("propagation", {}), r.get("quiet", {"azure_calls_per_window": None})
    return {
        "converge_s": c.get("converge_s"),
        "converge_over_lower_bound": ratio(c.get("converge_s"), r["minimum"]["lower_bound_s"]),
        "azure_calls_converge": c.get("azure_calls_total"),
        "azure_calls_over_minimum": ratio(c.get("azure_calls_total"), r["minimum"]["total"]),
        "k8s_writes_converge": c.get("k8s_writes"),
        "propagation_p50_s": p.get("p50_s"),
        "propagation_p95_s": p.get("p95_s"),
        "cpu_ms_per_incremental_sync": p.get("cpu_ms_per_incremental_sync"),
        "quiet_azure_calls": q["azure_calls_per_window"],
        "quiet_k8s_writes": q["k8s_writes"] if "window_s" in q else None,
        "peak_rss_mb": r["peak_rss_mb"],
        "cpu_s_converge": r.get("cpu_s_converge"),
        "cpu_s_quiet": q["cpu_s"] if "window_s" in q else None,
        "sandbox_cpu_share_converge": r.get("sandbox", {}).get("cpu_share_converge"),
        "sandbox_rss_mb_converged": r.get("sandbox", {}).get("rss_mb_converged"),
    }


def quiet_method(q: dict[str, Any]) -> str:
    """How a strategy's quiet-tenant figure was measured, in one sentence."""
    if "pass_s" in q:
        return (
            f"one naive pass at real time against the world {q['world']}: {q['azure_calls_total']:,} Azure calls "
            f"in {q['pass_s']:g} s, x {q['window_minutes'] * 60:g} s / max({q['poll_interval_s']:g} s poll, "
            f"{q['pass_s']:g} s pass) = {q['azure_calls_per_window']:,} per {q['window_minutes']:g} min "
            f"({q['interval_applied']} applied)"
            + ("" if q["one_pass"] else f"; CAUTION, syncs per workspace {q['syncs_per_workspace']}, not one each")
        )
    return (
        f"counted in a {q['window_s']:g} s window at scaled intervals: {q['azure_calls_total']:,} Azure calls "
        f"= {q['azure_calls_per_window']:,} per {q['window_minutes']:g} simulated min"
    )


def targets(report: dict[str, Any]) -> list[dict[str, Any]]:
    s = report["strategies"]
    d = s.get("delta")
    n = s.get("naive")
    is_l = report["scenario"]["name"] == "L"
    out = []
    if d and "quiet" in d:  # not in a --converge-only run
        f = figures(d)
        p95 = f["propagation_p95_s"]
        out.append(
            {
                "target": "propagation p95 <= 30 s at default settings (delta)",
                "value": p95,
                "met": p95 is not None and p95 <= 30 and d["propagation"]["missed"] == 0,
            }
        )
        out.append(
            {
                "target": "L converges within 1.25x the lower bound (delta)",
                "value": f["converge_over_lower_bound"],
                "met": (f["converge_over_lower_bound"] or 99) <= 1.25 if is_l else None,
            }
        )
        out.append(
            {
                "target": "quiet tenant: 0 Kubernetes writes (delta)",
                "value": f["quiet_k8s_writes"],
                "met": f["quiet_k8s_writes"] == 0,
            }
        )
        if n:
            r = ratio(figures(n)["quiet_azure_calls"], f["quiet_azure_calls"]) if f["quiet_azure_calls"] else None
            out.append(
                {
                    "target": "quiet tenant: >= 20x fewer Azure calls than naive",
                    "value": r,
                    "met": (f["quiet_azure_calls"] == 0 and figures(n)["quiet_azure_calls"] > 0)
                    or (r is not None and r >= 20),
                    "how": f"naive: {quiet_method(n['quiet'])}; delta: {quiet_method(d['quiet'])}",
                }
            )
    if d:
        f = figures(d)
        # Issue 16: 200 MB at L (was 250), 500 MB at XL; bench/results/memory-L-2026-12-01.md.
        scale = report["scenario"]["name"]
        limit = {"L": 200, "XL": 500}.get(scale)
        out.append(
            {
                "target": f"operator peak RSS <= {limit or 200} MB at {scale if limit else 'L'} (delta)",
                "value": f["peak_rss_mb"],
                "met": f["peak_rss_mb"] <= limit if limit else None,
            }
        )
    return out


def _verdict(t: dict[str, Any]) -> str:
    return "met" if t["met"] else "n/a (judged at another scale)" if t["met"] is None else "**missed**"


def markdown(report: dict[str, Any]) -> str:
    m, sc, cfg = report["machine"], report["scenario"], report["config"]
    st = report["strategies"]
    names = list(st)
    lines = [
        f"# Scale benchmark, scenario {sc['name']}, {report['date']}",
        "",
        f"Machine: {m['cpu']}, {m['cpus']} CPUs, {m['memory_mb']} MB RAM; {m['os']} (kernel {m['kernel']}); "
        f"Python {m['python']}; load average at the start {m.get('load_average')} (other work on the machine "
        "skews every figure).",
        f"Command: `{report['command']}`; operator from commit {report['source']}.",
        "",
        f"World: {sc['stats']['users']:,} users, {sc['stats']['groups']:,} groups ({sc['stats']['nested_groups']} "
        f"nested), {sc['stats']['bindings']} bindings ({sc['stats']['bindings_on_nested_groups']} on groups with "
        f"nested groups) over {sc['stats']['workspaces']} workspace(s); {sc['stats']['wanted_assignments']:,} "
        f"wanted assignments, {sc['stats']['manual_assignments']} manual ones pre-existing; largest bound group "
        f"{sc['stats']['largest_bound_group']:,} members.",
        f"Sandbox latency: Graph {cfg['latency']['graph'] * 1000:g} ms, Synapse {cfg['latency']['synapse'] * 1000:g} "
        f"ms, login {cfg['latency']['login'] * 1000:g} ms; write concurrency {cfg['write_concurrency']} per "
        f"workspace, read concurrency {cfg['read_concurrency']}; Synapse list page {cfg['page_size']}.",
        f"Convergence and propagation at poll interval {cfg['poll_interval']:g} s, syncInterval "
        f"{cfg['sync_interval']:g} s. Quiet window: simulated time at scale {cfg['quiet_scale']:g} "
        f"(poll {cfg['quiet_poll']:g} s, syncInterval {cfg['quiet_sync_interval']:g} s, window "
        f"{cfg['window']:g} s = {cfg['simulated_minutes']:g} simulated minutes) for delta; naive: one pass "
        f"counted at real time and scaled to {cfg['quiet_minutes']:g} minutes at the {cfg['poll_interval']:g} s "
        "poll interval (see below)"
        + (
            "; naive was measured quiet-only, against the world delta converged (it did not converge or "
            "propagate itself)."
            if cfg.get("naive") == "quiet-only" and "naive" in st
            else "."
        ),
        "",
        "| measure | " + " | ".join(names) + (" | naive / delta |" if len(names) == 2 else " |"),
        "|---|" + "---|" * (len(names) + (len(names) == 2)),
    ]
    figs = {n: figures(st[n]) for n in names}
    mins = st[names[0]]["minimum"]
    rows = [
        ("time to converge from empty (s)", "converge_s"),
        ("  / lower bound " + f"({mins['lower_bound_s']} s)", "converge_over_lower_bound"),
        ("Azure calls to converge", "azure_calls_converge"),
        ("  / minimum " + f"({mins['total']:,})", "azure_calls_over_minimum"),
        ("Kubernetes writes to converge", "k8s_writes_converge"),
        ("propagation p50 (s)", "propagation_p50_s"),
        ("propagation p95 (s)", "propagation_p95_s"),
        (
            "operator CPU per incremental sync while propagating (ms; all the process spent / syncs)",
            "cpu_ms_per_incremental_sync",
        ),
        (f"quiet tenant, Azure calls per {cfg['quiet_minutes']:g} min", "quiet_azure_calls"),
        (f"quiet {cfg['simulated_minutes']:g} min (simulated): Kubernetes writes", "quiet_k8s_writes"),
        ("operator peak RSS (MB)", "peak_rss_mb"),
        ("operator CPU to converge (s)", "cpu_s_converge"),
        ("operator CPU in the quiet window (s)", "cpu_s_quiet"),
        ("sandbox CPU share while converging", "sandbox_cpu_share_converge"),
        ("sandbox RSS once converged (MB)", "sandbox_rss_mb_converged"),
    ]
    for label, key in rows:
        vals = [figs[n][key] for n in names]
        cells = ["—" if v is None else f"{v:,}" if isinstance(v, int) else f"{v:g}" for v in vals]
        extra = ""
        if len(names) == 2:
            r = ratio(figs["naive"][key], figs["delta"][key]) if "naive" in figs and "delta" in figs else None
            extra = " " + ("—" if r is None else f"{r:g}") + " |"
        lines.append(f"| {label} | " + " | ".join(cells) + " |" + extra)
    lines += [
        "",
        "## Azure calls to converge, by operation",
        "",
        "| operation | minimum | " + " | ".join(names) + " |",
        "|---|---|" + "---|" * len(names),
    ]
    conv = {n: st[n]["converge"]["azure_calls"] if "converge" in st[n] else None for n in names}
    ops = sorted({*mins["calls"], *(k for c in conv.values() if c for k in c)})
    for o in ops:
        lines.append(
            f"| {o} | {mins['calls'].get(o, 0):,} | "
            + " | ".join("—" if conv[n] is None else f"{conv[n].get(o, 0):,}" for n in names)
            + " |"
        )
    lines += [
        "",
        f"Lower bound: {mins['formula']}. Reads {mins['reads_s']} s, writes {mins['writes_s']} s "
        f"(needed writes per workspace: {mins['writes_per_workspace']}).",
        "",
    ]
    if not all("quiet" in st[n] for n in names):  # --converge-only: nothing more was measured
        lines += ["## Targets", "", "| target | value | verdict |", "|---|---|---|"]
        lines += [f"| {t['target']} | {t['value']} | {_verdict(t)} |" for t in report["targets"]]
        return "\n".join(lines) + "\n"
    lines += [
        "## Quiet tenant",
        "",
        *(f"- {n}: {quiet_method(st[n]['quiet'])}." for n in names),
        "",
        "A naive pass: the naive operator restarted with poll interval and syncInterval longer than the "
        "run (no sync falls due on its own), its start-up syncs let pass, then one spec change of every "
        "workspace pokes each loop once, together, as a poll would (a naive sync reads every group for "
        "every binding and re-lists every workspace whatever started it). Counted from the sandbox "
        "counters until every workspace finished that sync and nothing moved for 3 s; its duration runs "
        "from its first Azure call to its last (sandbox request log). Passes follow each other every poll "
        "interval, or back to back when a pass outlasts it. Delta's scaled window stays a measurement: "
        "each of its quiet activities ends well within its scaled interval.",
        "",
        "Calls by operation (delta: in the window; naive: in one pass):",
        "",
        "| operation | " + " | ".join(names) + " |",
        "|---|" + "---|" * len(names),
    ]
    qops = sorted({k for n in names for k in st[n]["quiet"]["azure_calls"]})
    for o in qops:
        lines.append(f"| {o} | " + " | ".join(f"{st[n]['quiet']['azure_calls'].get(o, 0):,}" for n in names) + " |")
    leases = {n: sum(v for k, v in st[n]["quiet"]["k8s_writes_by_resource"].items() if "/leases" in k) for n in names}
    lines += [
        "",
        "Kubernetes writes: apiserver_request_total of the verbs POST, PUT, PATCH, DELETE, APPLY, diffed "
        "over the window (naive: over its pass, less the harness's spec change of each workspace that starts "
        "it; kopf's record of having handled that change is one more workspace PATCH each), without what the "
        "API server writes itself (its identity Lease, renewed every "
        f"10 s: {leases} Lease writes in the window, not counted). By resource:",
        "",
    ]
    for n in names:
        lines.append(f"- {n}: {st[n]['quiet']['k8s_writes_by_resource'] or 'none'}")
    lines += ["", "## Targets", "", "| target | value | verdict |", "|---|---|---|"]
    for t in report["targets"]:
        how = f" (measured as: {t['how']})" if t.get("how") else ""
        lines.append(f"| {t['target']} | {t['value']}{how} | {_verdict(t)} |")
    lines += ["", "## Propagation, change by change", ""]
    for n in names:
        if "propagation" not in st[n]:
            lines += [f"{n}: not run (--naive quiet-only).", ""]
            continue
        p = st[n]["propagation"]
        lines.append(
            f"{n}: {p['measured']} measured, {p['missed']} missed, final state "
            f"{'matches' if p['final_state_matches'] else 'DIFFERS from'} the expected one; latencies (s): "
            + ", ".join(f"{c['kind']} {c['latency_s']}" for c in p["changes"])
        )
        lines.append("")
    return "\n".join(lines) + "\n"


def source_version() -> str:
    """The commit the operator runs from (this checkout), marked dirty when it has local changes."""
    try:
        head = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--", "operator"], cwd=ROOT, capture_output=True, text=True, check=True
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return head + (" (operator/ modified)" if dirty else "")


def run(
    scenario: Scenario, strategies: list[str], cfg: RunConfig, cp: Any, workdir: Path, log: Any = print
) -> dict[str, Any]:
    # Only its figures are kept: each strategy builds its own world (at XL a world is ~150 MB).
    stats = World(scenario, build_seed(scenario)).stats()
    report: dict[str, Any] = {
        "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": machine(),
        "source": source_version(),
        "command": " ".join(["python bench/scale_bench.py", *sys.argv[1:]]),
        "scenario": {**asdict(scenario), "stats": stats},
        "config": {
            **asdict(cfg),
            "window": cfg.window,
            "quiet_poll": cfg.quiet_poll,
            "quiet_sync_interval": cfg.quiet_sync_interval,
            "simulated_minutes": cfg.simulated_minutes,
        },
        "strategies": {},
    }
    quiet_only = cfg.naive == "quiet-only" and "naive" in strategies
    if quiet_only and "delta" not in strategies:
        raise ValueError("--naive quiet-only measures naive against delta's converged world: run both strategies")
    for strategy in strategies:
        if strategy == "naive" and quiet_only:
            continue
        r = run_strategy(cp, scenario, strategy, cfg, workdir, log, naive_after=quiet_only)
        if "naive" in r:
            report["strategies"]["naive"] = r.pop("naive")
        report["strategies"][strategy] = r
    report["strategies"] = {n: report["strategies"][n] for n in strategies}  # the order of --strategy
    report["figures"] = {n: figures(r) for n, r in report["strategies"].items()}
    if len(strategies) == 2:
        report["ratios_naive_over_delta"] = {
            k: ratio(report["figures"]["naive"][k], report["figures"]["delta"][k]) for k in report["figures"]["delta"]
        }
    report["targets"] = targets(report)
    return report


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--scenario", choices=list(SCENARIOS), required=True)
    p.add_argument("--strategy", choices=["delta", "naive", "both"], default="both")
    p.add_argument(
        "--quick",
        action="store_true",
        help="6 changes 1 s apart, quiet scale 1/30 (poll 1 s, syncInterval 30 s, 20 s window); prints, writes nothing",
    )
    p.add_argument("--changes", type=int, default=20)
    p.add_argument("--quiet-scale", type=float, default=0.1)
    p.add_argument(
        "--naive",
        choices=["full", "quiet-only"],
        default="full",
        help="full: naive converges, propagates and makes its quiet pass in a sandbox of its own; "
        "quiet-only: naive only makes its quiet pass, against the world delta converged (same sandbox, "
        "operator restarted as naive; saves a naive convergence at L and XL)",
    )
    p.add_argument(
        "--out",
        type=Path,
        default=None,
        help="where results go (default bench/results; --quick, --converge-only: none)",
    )
    p.add_argument(
        "--profile",
        type=Path,
        metavar="DIR",
        help="run the operator under cProfile; .prof files and their top functions (.txt) go to DIR "
        "(the profiler slows the operator: time and CPU figures of such a run are not comparable)",
    )
    p.add_argument(
        "--tracemalloc",
        type=Path,
        metavar="DIR",
        help="run the operator under tracemalloc (bench/traced_operator.py): snapshots at its traced peak, once "
        "converged and at exit go to DIR/<scenario>-<strategy>-<phase>/ (read them with bench/memory_report.py; "
        "tracing costs memory and time: RSS and time figures of such a run are not comparable)",
    )
    p.add_argument("--tracemalloc-frames", type=int, default=8, metavar="N", help="frames kept per allocation")
    p.add_argument(
        "--converge-only",
        action="store_true",
        help="stop each strategy once converged (no propagation, no quiet window); writes results only with --out",
    )
    args = p.parse_args()
    cfg = RunConfig(changes=args.changes, quiet_scale=args.quiet_scale)
    if args.quick:
        cfg = RunConfig(changes=6, change_gap=1.0, quiet_scale=1 / 30, quiet_sync=30.0)
    cfg.profile_dir = args.profile
    cfg.tracemalloc_dir = args.tracemalloc
    cfg.tracemalloc_frames = args.tracemalloc_frames
    cfg.converge_only = args.converge_only
    cfg.naive = args.naive
    strategies = ["delta", "naive"] if args.strategy == "both" else [args.strategy]
    with tempfile.TemporaryDirectory(prefix="scale-bench-") as tmp, ControlPlane() as cp:
        try:
            report = run(
                SCENARIOS[args.scenario],
                strategies,
                cfg,
                cp,
                Path(tmp),
                log=lambda msg: print(msg, file=sys.stderr, flush=True),
            )
        except BaseException:
            for f in sorted(Path(tmp).glob("operator-*.log")):
                sys.stderr.write(f"--- {f.name} (tail) ---\n" + "\n".join(f.read_text().splitlines()[-40:]) + "\n")
            raise
    text = markdown(report)
    print(text)
    out = args.out or (None if args.quick or args.converge_only else ROOT / "bench" / "results")
    if out is not None:
        name = f"scale-{args.scenario}" + ("-converge" if args.converge_only else "")
        stem = write_results(out, name, report, text)
        print(f"wrote {stem}.json and {stem}.md", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())

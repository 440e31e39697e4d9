"""Soak with faults and crashes: the operator (`synapse-scim run`) against the local control plane and the
Azure sandbox while 20% of Azure calls fail (429 with Retry-After, 500, 503, timeouts, connection
resets; tokens expired now and then), the directory changes at random, and the operator process is
SIGKILLed at random moments and restarted.

Checked continuously (the sandbox's assignments and request log, polled) and at the end:
- no manual assignment is ever deleted (nor missing from a listing);
- nothing is deleted that a binding wanted at that moment: a deletion of a grant that was wanted in
  every directory state of the `race_window` seconds before it is a violation (the operator may act
  on a read a few seconds old: a change inside that window excuses it, and is counted);
- no duplicate assignments (the same principal, role and scope twice);
- no binding lost (each still exists) or stuck (after the faults stop: Ready, current generation);
- after the faults stop, the assignments equal the expected set within two sync intervals.

    SYNAPSE_SCIM_TOOLS="$(hack/build-tools.sh)" .venv/bin/python bench/soak.py --duration 600 [--seed N]

writes bench/results/soak-<date>.json; tests/soak runs the same for a couple of minutes.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import random
import sys
import time
import uuid
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from support.harness import RB_PLURAL, WS_PLURAL, Harness, running_harness  # tests/support, installed by `make venv`
from synapse_scim.core.model import Grant, assignment_id

REPO = Path(__file__).resolve().parents[1]

DOMAIN = "contoso.onmicrosoft.com"
SCOPE = "workspaces/analytics"
ROLES = {
    "Synapse User": "2a385764-43e8-416c-9825-7b18d05a2c4b",
    "Synapse Contributor": "7572bffe-f453-4b66-912a-46cc5ef38fda",
    "Synapse Compute Operator": "e3844cc7-4670-42cb-9349-9bdac1ee7881",
    "Synapse Administrator": "6e4bf58a-b8e1-4cc3-bbf9-d73143322b78",
}
USERS = [f"s{i:02d}@{DOMAIN}" for i in range(24)]
TEAMS = ["Team A", "Team B", "Team C", "Ops"]
# (parent, child) group nestings the soak toggles; the cycle Ops > Team B > ... is allowed too.
NESTINGS = [("All Teams", "Team C"), ("Team B", "Ops"), ("Ops", "All Teams")]
BINDINGS = {  # name: (role, groups)
    "users": ("Synapse User", ["All Teams"]),
    "contributors": ("Synapse Contributor", ["Team C"]),
    "operators": ("Synapse Compute Operator", ["Ops"]),
}
# Manual grants, made before the operator starts: one nobody wants, one a binding wants too (adopted,
# never owned), one a binding may come to want.
MANUAL = [("Synapse Administrator", USERS[20]), ("Synapse User", USERS[0]), ("Synapse Contributor", USERS[19])]

Key = tuple[str, str, str]  # (roleId, principalId, scope)


def soak_org() -> dict[str, Any]:
    return {
        "tenant": {"domain": DOMAIN},
        "apps": [{"name": "synapse-scim-operator", "secret": "operator-secret-1"}],
        "users": [{"userPrincipalName": u} for u in USERS],
        "groups": [
            {"displayName": "Team A", "members": USERS[0:5]},
            {"displayName": "Team B", "members": USERS[5:10]},
            {"displayName": "Team C", "members": USERS[10:15]},
            {"displayName": "Ops", "members": USERS[15:18]},
            {"displayName": "All Teams", "members": [{"group": "Team A"}, {"group": "Team B"}]},
        ],
        "workspaces": [{"name": "analytics"}],
    }


@dataclass
class Directory:
    """What the soak has made the sandbox's directory: the model the expected grants come from."""

    members: dict[str, set[str]]  # group -> direct members (user UPNs or group names)
    disabled: set[str] = field(default_factory=set)

    @classmethod
    def from_org(cls, org: dict[str, Any]) -> Directory:
        return cls(
            {g["displayName"]: {m["group"] if isinstance(m, dict) else m for m in g["members"]} for g in org["groups"]}
        )

    def users_of(self, group: str) -> set[str]:
        seen, todo, users = {group}, [group], set()
        while todo:
            for m in self.members[todo.pop()]:
                if m in self.members:
                    if m not in seen:
                        seen.add(m)
                        todo.append(m)
                elif m not in self.disabled:
                    users.add(m)
        return users


@dataclass
class Report:
    seed: int
    duration_s: float
    fault_rate: float
    sync_interval_s: float
    race_window_s: float
    faults_injected: int = 0
    faults_by_kind: dict[str, int] = field(default_factory=dict)
    token_expiries: int = 0
    kills: int = 0
    directory_changes: int = 0
    changes_by_kind: dict[str, int] = field(default_factory=dict)
    azure_requests: int = 0
    creates: int = 0
    deletes: int = 0
    deletes_racing_a_change: int = 0
    polls: int = 0
    convergence_s: float | None = None
    violations: list[str] = field(default_factory=list)


class Soak:
    def __init__(
        self,
        h: Harness,
        *,
        duration: float,
        seed: int,
        fault_rate: float = 0.2,
        sync_interval: float = 30.0,
        race_window: float = 45.0,
        kill_every: float = 20.0,
        change_every: float = 2.0,
        expire_every: float = 15.0,
        log: Any = print,
    ) -> None:
        self.h, self.duration, self.rng, self.log = h, duration, random.Random(seed), log
        self.fault_rate, self.sync_interval, self.race_window = fault_rate, sync_interval, race_window
        self.kill_every, self.change_every, self.expire_every = kill_every, change_every, expire_every
        self.report = Report(seed, duration, fault_rate, sync_interval, race_window)
        self.dir = Directory.from_org(soak_org())
        self.ids: dict[str, str] = {}  # UPN -> object id
        self.states: list[tuple[float, float, frozenset[Key]]] = []  # (change sent, answered, wanted)
        self.by_assignment_id: dict[str, Key] = {}
        self.manual: dict[str, Key] = {}  # assignment id -> key
        self.seq = 0
        self.fault_kinds: Counter[str] = Counter()

    # -- the model ----------------------------------------------------------------------------------

    def wanted(self) -> frozenset[Key]:
        return frozenset(
            (ROLES[role], self.ids[u], SCOPE)
            for role, groups in BINDINGS.values()
            for g in groups
            for u in self.dir.users_of(g)
        )

    def wanted_in_window(self, key: Key, start: float, end: float) -> list[bool]:
        """For every directory state that may have been current at some instant in [start, end],
        whether it wanted `key` (a state counts from just before its change was sent until the next
        change was answered)."""
        out = []
        for i, (sent, _, wanted) in enumerate(self.states):
            until = self.states[i + 1][1] if i + 1 < len(self.states) else float("inf")
            if sent <= end and until >= start:
                out.append(key in wanted)
        return out

    def current_state(self, at: float) -> frozenset[Key]:
        """The directory state whose change had been answered by `at`."""
        return next((w for _, answered, w in reversed(self.states) if answered <= at), self.states[0][2])

    # -- setup --------------------------------------------------------------------------------------

    def setup(self) -> None:
        h = self.h
        for u in USERS:
            self.ids[u] = h.user_id(u)
        for role, user in MANUAL:
            manual_id = str(uuid.UUID(int=self.rng.getrandbits(128)))
            a = h.sb.admin.add_assignment("analytics", role, self.ids[user], id=manual_id)
            self.manual[a["id"].lower()] = (a["roleDefinitionId"], a["principalId"].lower(), a["scope"])
        for role_id in ROLES.values():
            for u in USERS:
                key = (role_id, self.ids[u], SCOPE)
                self.by_assignment_id[assignment_id(Grant(*key)).lower()] = key
        now = time.time()
        self.states.append((now, now, self.wanted()))
        h.start_operator()
        h.workspace(syncInterval=f"{self.sync_interval:g}s", removalGuard={"maxRemovals": 1000, "maxPercent": 100})
        for name, (role, groups) in BINDINGS.items():
            h.binding(name, [role], [{"kind": "Group", "name": g} for g in groups])
        for name in BINDINGS:
            h.wait_condition(RB_PLURAL, name, timeout=120)
        self.seq = max((e["seq"] for e in h.sb.admin.request_log()), default=0)
        self.check_requests()
        self.log(
            f"soak: seed {self.report.seed}, {len(self.wanted())} wanted grants, "
            f"{len(self.manual)} manual assignments, converged before the faults"
        )

    # -- what happens -----------------------------------------------------------------------------

    def change_directory(self) -> None:
        rng, d, admin = self.rng, self.dir, self.h.sb.admin
        kind = rng.choice(["add", "add", "remove", "remove", "disable", "enable", "nest"])
        before = time.time()
        if kind == "add":
            group = rng.choice(TEAMS)
            user = rng.choice([u for u in USERS if u not in d.members[group]])
            admin.add_member(group, user)
            d.members[group].add(user)
        elif kind == "remove":
            group = rng.choice(TEAMS)
            users = sorted(m for m in d.members[group] if m in self.ids)
            if not users:
                return
            user = rng.choice(users)
            admin.remove_member(group, self.ids[user])
            d.members[group].discard(user)
        elif kind == "disable":
            if len(d.disabled) >= 4:
                return
            user = rng.choice([u for u in USERS if u not in d.disabled])
            admin.disable_user(user)
            d.disabled.add(user)
        elif kind == "enable":
            if not d.disabled:
                return
            user = rng.choice(sorted(d.disabled))
            admin.enable_user(user)
            d.disabled.discard(user)
        else:
            parent, child = rng.choice(NESTINGS)
            if child in d.members[parent]:
                gid = self.h.group_id(child)
                admin.remove_member(parent, gid)
                d.members[parent].discard(child)
                kind = "unnest"
            else:
                admin.add_member(parent, child)
                d.members[parent].add(child)
        self.states.append((before, time.time(), self.wanted()))
        self.report.directory_changes += 1
        self.report.changes_by_kind[kind] = self.report.changes_by_kind.get(kind, 0) + 1

    def kill(self) -> None:
        h = self.h
        if h.operator is not None and h.operator.poll() is None:
            h.operator.kill()
            h.operator.wait()
            self.report.kills += 1
        h.operator = None

    def ensure_running(self) -> None:
        h = self.h
        if h.operator is None or h.operator.poll() is not None:
            if h.operator is not None and h.operator.returncode not in (-9, 0):
                self.violation(f"the operator exited by itself ({h.operator.returncode})")
            h.operator = None
            h.start_operator()

    # -- checks -----------------------------------------------------------------------------------

    def violation(self, what: str) -> None:
        self.report.violations.append(what)
        self.log(f"soak: VIOLATION: {what}")

    def check_requests(self) -> None:
        entries = self.h.sb.admin.request_log(since=self.seq)
        for e in entries:
            self.seq = max(self.seq, e["seq"])
            if e.get("fault"):
                self.report.faults_injected += 1
                self.fault_kinds[str(e["fault"])] += 1
            self.report.azure_requests += 1  # login, graph and synapse: the faults hit all three
            if e.get("operation") == "createRoleAssignment" and str(e["status"]).startswith("2"):
                self.report.creates += 1
            if e.get("operation") != "deleteRoleAssignment" or not str(e["status"]).startswith("2"):
                continue
            self.report.deletes += 1
            aid = e["path"].split("?")[0].rstrip("/").rsplit("/", 1)[-1].lower()
            if aid in self.manual:
                self.violation(f"manual assignment {aid} {self.manual[aid]} deleted at {e['time']:.3f}")
                continue
            key = self.by_assignment_id.get(aid)
            if key is None:
                self.violation(f"deleted an assignment the soak cannot account for: {e['path']}")
                continue
            window = self.wanted_in_window(key, e["time"] - self.race_window, e["time"])
            if all(window):
                self.violation(f"deleted {key} at {e['time']:.3f}, wanted throughout the {self.race_window:g}s before")
            elif key in self.current_state(e["time"]):
                # Wanted again by the time it was deleted: the operator acted on a read from before
                # the change (allowed within the race window); it re-grants on its next sync.
                self.report.deletes_racing_a_change += 1

    def check_assignments(self) -> list[dict[str, Any]]:
        listed = self.h.assignments()
        keys = Counter((a["roleDefinitionId"], a["principalId"].lower(), a["scope"]) for a in listed)
        for key, n in keys.items():
            if n > 1:
                self.violation(f"duplicate assignment {key} x{n}")
        ids = {a["id"].lower() for a in listed}
        for aid, key in self.manual.items():
            if aid not in ids:
                self.violation(f"manual assignment {aid} {key} missing")
        return listed

    def check_bindings_exist(self) -> None:
        for name in BINDINGS:
            if self.h.get(RB_PLURAL, name) is None:
                self.violation(f"binding {name} lost")

    def converged(self) -> bool:
        listed = {(a["roleDefinitionId"], a["principalId"].lower(), a["scope"]) for a in self.h.assignments()}
        if listed != set(self.wanted()) | set(self.manual.values()):
            return False
        for plural, names in ((RB_PLURAL, list(BINDINGS)), (WS_PLURAL, ["analytics"])):
            for name in names:
                obj = self.h.get(plural, name) or {}
                c = self.h.condition(plural, name)
                if not c or c["status"] != "True" or c.get("observedGeneration") != obj["metadata"]["generation"]:
                    return False
        return True

    # -- the run ----------------------------------------------------------------------------------

    def run(self) -> Report:
        h, rng = self.h, self.rng
        self.setup()
        rule = h.sb.admin.inject_fault(
            {
                "service": "*",
                "rate": self.fault_rate,
                "seed": self.report.seed,
                "kinds": ["429", "500", "503", "timeout", "reset"],
                "retry_after": 1,
                "hold": 2,
            }
        )
        start = time.monotonic()
        end = start + self.duration
        next_change = start + rng.expovariate(1 / self.change_every)
        next_kill = start + rng.uniform(0.05, 0.25) * self.duration  # at least one kill, early on
        next_expire = start + rng.expovariate(1 / self.expire_every)
        restart_at: float | None = None
        next_binding_check = start
        while (now := time.monotonic()) < end:
            if now >= next_change:
                self.change_directory()
                next_change = now + rng.expovariate(1 / self.change_every)
            if now >= next_kill and restart_at is None:
                self.kill()
                restart_at = now + rng.uniform(0.0, 3.0)
                next_kill = now + rng.expovariate(1 / self.kill_every)
            if restart_at is not None and now >= restart_at:
                self.ensure_running()
                restart_at = None
            if now >= next_expire:
                h.sb.admin.expire_tokens()
                self.report.token_expiries += 1
                next_expire = now + rng.expovariate(1 / self.expire_every)
            if restart_at is None:
                self.ensure_running()
            if now >= next_binding_check:
                self.check_bindings_exist()
                next_binding_check = now + 5.0
            self.check_requests()
            self.check_assignments()
            self.report.polls += 1
            time.sleep(0.3)

        h.sb.admin.remove_fault(rule["id"])
        self.ensure_running()
        stopped = time.monotonic()
        self.log(
            f"soak: faults stopped after {stopped - start:.0f}s; waiting for convergence "
            f"(at most two sync intervals, {2 * self.sync_interval:g}s)"
        )
        while not self.converged():
            self.check_requests()
            self.check_assignments()
            if time.monotonic() - stopped > 2 * self.sync_interval:
                listed = {(a["roleDefinitionId"], a["principalId"].lower(), a["scope"]) for a in h.assignments()}
                want = set(self.wanted()) | set(self.manual.values())
                self.violation(
                    f"not converged {2 * self.sync_interval:g}s after the faults stopped: missing "
                    f"{sorted(want - listed)}, unexpected {sorted(listed - want)}, conditions "
                    + json.dumps({n: h.condition(RB_PLURAL, n) for n in BINDINGS})
                )
                break
            time.sleep(0.5)
        else:
            self.report.convergence_s = round(time.monotonic() - stopped, 1)
        self.check_requests()
        self.check_assignments()
        self.check_bindings_exist()
        self.report.faults_by_kind = dict(self.fault_kinds)
        return self.report


def summary(report: Report) -> str:
    r = report
    return (
        f"soak: seed {r.seed}, {r.duration_s:g}s: {r.faults_injected} faults injected {r.faults_by_kind} "
        f"of {r.azure_requests} Azure requests, {r.token_expiries} token expiries, {r.kills} kills, "
        f"{r.directory_changes} directory changes {r.changes_by_kind}, {r.creates} creates, {r.deletes} deletes "
        f"({r.deletes_racing_a_change} racing a change), converged {r.convergence_s}s after the faults "
        f"stopped, {len(r.violations)} violations"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--duration", type=float, default=600.0, help="seconds of faults (default 600)")
    parser.add_argument("--seed", type=int, default=None, help="RNG seed (default: random, printed)")
    parser.add_argument("--fault-rate", type=float, default=0.2)
    parser.add_argument("--kill-every", type=float, default=20.0, help="mean seconds between SIGKILLs")
    parser.add_argument("--change-every", type=float, default=2.0, help="mean seconds between directory changes")
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "results")
    args = parser.parse_args(argv)
    seed = args.seed if args.seed is not None else random.SystemRandom().randrange(2**31)
    print(f"soak: seed {seed}", flush=True)

    import tempfile

    from kubernetes import client

    from synapse_scim_sandbox.devcluster import ControlPlane

    with ControlPlane() as cluster, tempfile.TemporaryDirectory(prefix="synapse-scim-soak-") as tmp:
        namespace = f"soak-{uuid.uuid4().hex[:8]}"
        with cluster.api_client() as api:
            client.CoreV1Api(api).create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=namespace)))
        with running_harness(cluster, namespace, soak_org(), Path(tmp)) as h:
            report = Soak(
                h,
                duration=args.duration,
                seed=seed,
                fault_rate=args.fault_rate,
                kill_every=args.kill_every,
                change_every=args.change_every,
                log=lambda m: print(m, flush=True),
            ).run()
    print(summary(report))
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / f"soak-{dt.datetime.now(dt.UTC):%Y%m%d-%H%M%S}.json"
    path.write_text(json.dumps(asdict(report), indent=2) + "\n")
    print(f"soak: report written to {path}")
    return 1 if report.violations else 0


if __name__ == "__main__":
    sys.exit(main())

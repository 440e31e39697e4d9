"""Soak with faults and crashes: the operator (`synapse-scim run`, its SCIM endpoint on) against the local
control plane and the Azure sandbox while 20% of Azure calls fail (429 with Retry-After, 500, 503,
timeouts, connection resets; tokens expired now and then, Graph's principal lookups included), the
directory changes at random, an identity provider pushes random SCIM changes through the real endpoint
(bench/soak_scim.py: users matched by UPN or by object id and users Entra ID does not know, member adds
and removes, deactivations and reactivations, user deletions, group deletions and re-creations, bursts of
50 requests at once, some cut by a SIGKILL), and the operator process is SIGKILLed at random moments and
restarted. Bindings with ScimGroup subjects (one mixing a Graph group and a ScimGroup) are part of it.

Checked continuously (the sandbox's assignments and request log, polled) and at the end:
- no manual assignment is ever deleted (nor missing from a listing);
- nothing is deleted that a binding wanted at that moment: a deletion of a grant that every combination
  of the bindings, the directory and the pushed groups, each as it was at some instant of the
  `race_window` seconds before it, wanted is a violation (the operator learns the three by separate
  paths and may act on a read a few seconds old: a change inside that window excuses it, and is
  counted; bench/soak_model.py). A state wants
  what the Graph groups and the pushed groups give (a matched, active, enabled member of a bound pushed
  group) and protects every grant of a role whose binding has a pushed group deleted (held: the
  binding is incomplete, nothing in its pairs is pruned). Graph failures hit the lookups that match
  pushed users too, and SIGKILLs cut pushes: neither may turn into a revocation;
- no duplicate assignments (the same principal, role and scope twice);
- no binding lost (each still exists) or stuck (after the faults stop: Ready, current generation);
- every SCIM push is answered as expected once retried (rejected requests, by code, besides the
  injected refusals: 0);
- after the faults stop, the assignments equal the expected set within two sync intervals, and each
  binding's status.scim counts what the model says (matched, unmatched, inactive, disabled);
- then, deterministically: a bound pushed group deleted (and a Graph removal in the same role) and
  the ScimProvider deleted (and a matched user disabled in Entra ID) revoke nothing while they last;
  re-created, everything converges again.

    SYNAPSE_SCIM_TOOLS="$(hack/build-tools.sh)" .venv/bin/python bench/soak.py --duration 600 [--seed N]

writes bench/results/soak-<date>-<time>.json (the report, with the machine, the date and the commit);
tests/soak runs the same for a couple of minutes.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import random
import signal
import sys
import time
import uuid
from collections import Counter
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from soak_kube import Episode, KubeFaults, LeaseTimeline, Replicas, replica_of
from soak_model import BindingsPart, Directory, PushedPart, WorldState, excuse, explain, in_window, protects
from soak_scim import PROVIDER, PushedUser, PushRejected, ScimEndpoint, ScimPusher, ScimWorld
from support.harness import RB_PLURAL, WS_PLURAL, Harness, running_harness  # tests/support, installed by `make venv`
from synapse_scim.core.model import Grant, assignment_id

REPO = Path(__file__).resolve().parents[1]

DOMAIN = "contoso.onmicrosoft.com"
GROUP, VERSION = "synapse-scim.io", "v1alpha1"
CREDENTIAL_FINALIZER = "synapse-scim.io/credential-in-use"
SCOPE = "workspaces/analytics"
ROLES = {
    "Synapse User": "2a385764-43e8-416c-9825-7b18d05a2c4b",
    "Synapse Contributor": "7572bffe-f453-4b66-912a-46cc5ef38fda",
    "Synapse Compute Operator": "e3844cc7-4670-42cb-9349-9bdac1ee7881",
    "Synapse Administrator": "6e4bf58a-b8e1-4cc3-bbf9-d73143322b78",
    "Synapse Artifact User": "53faaa0e-40b6-40c8-a2ff-e38f2d388875",
    "Synapse Credential User": "5eb298b4-692c-4241-9cf0-f58a3b42bb25",
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
# Bindings with ScimGroup subjects (provider okta): name: (role, Graph groups, pushed groups). The
# analysts share their role with "users" (a held pair holds both); "mixed" names a Graph group too.
SCIM_BINDINGS = {
    "scim-engineers": ("Synapse Artifact User", [], ["Data Engineers"]),
    "scim-analysts": ("Synapse User", [], ["Analysts"]),
    "mixed": ("Synapse Credential User", ["Team A"], ["Contractors"]),
}
ALL_BINDINGS = [*BINDINGS, *SCIM_BINDINGS]
# Manual grants, made before the operator starts: one nobody wants, one a binding wants too (adopted,
# never owned), one a binding may come to want; one in a role only pushed groups give.
MANUAL = [
    ("Synapse Administrator", USERS[20]),
    ("Synapse User", USERS[0]),
    ("Synapse Contributor", USERS[19]),
    ("Synapse Artifact User", USERS[21]),
]
BURST = 50  # requests of a burst push, sent at once

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
class Report:
    seed: int
    duration_s: float
    fault_rate: float
    sync_interval_s: float
    race_window_s: float
    faults_injected: int = 0
    faults_by_kind: dict[str, int] = field(default_factory=dict)
    faults_by_operation: dict[str, int] = field(default_factory=dict)  # service.operation (Graph's lookups too)
    token_expiries: int = 0
    kills: int = 0
    directory_changes: int = 0
    changes_by_kind: dict[str, int] = field(default_factory=dict)
    azure_requests: int = 0
    creates: int = 0
    deletes: int = 0
    deletes_racing_a_change: int = 0
    # Deletions no single recorded state excuses, but a combination of the three parts as of different
    # instants of the race window does (a sync that saw a SCIM change before a Graph one: soak_model.py).
    deletes_excused_across_parts: int = 0
    polls: int = 0
    scim_changes: int = 0
    scim_changes_by_kind: dict[str, int] = field(default_factory=dict)
    scim_bursts: int = 0
    scim_requests: int = 0  # answered
    scim_unanswered: int = 0  # connection refused, reset or timed out (the endpoint was killed): retried
    scim_kills_during_pushes: int = 0
    scim_rejected: int = 0  # unexpected answers (retried when an identity provider would retry)
    scim_rejected_by_code: dict[str, int] = field(default_factory=dict)
    scim_rejections: list[str] = field(default_factory=list)  # the first few, with their answers
    scim_injected_rejections: int = 0  # the refusals the soak asked for (the bare remove of all members)
    scim_deferred_by_code: dict[str, int] = field(default_factory=dict)  # 429/503 with Retry-After, retried
    hold_checks: dict[str, str] = field(default_factory=dict)  # the final phase: what was held, what came back
    convergence_s: float | None = None
    violations: list[str] = field(default_factory=list)
    # Replicas under leader election and Kubernetes faults (--replicas, --kube-faults).
    replicas: int = 1
    kube_faults: bool = False
    episodes: list[dict[str, Any]] = field(default_factory=list)  # every fault episode, in order
    fault_table: dict[str, dict[str, Any]] = field(default_factory=dict)  # kind -> injected, recovery, violations
    lease_lost_exits: int = 0  # replicas that exited because they could not renew (expected after pauses)
    writes_checked: int = 0  # Synapse writes checked against the Lease's holder when they arrived
    writes_by_non_holders: int = 0
    leaderless_total_s: float | None = None
    leaderless_longest_s: float | None = None


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
        push_every: float = 1.5,
        burst_every: float = 25.0,
        replicas: int = 1,
        kube_faults: bool = False,
        kube_fault_every: float = 60.0,
        object_fault_every: float = 30.0,
        pause_range: tuple[float, float] = (30.0, 60.0),
        log: Any = print,
    ) -> None:
        self.h, self.duration, self.rng, self.log = h, duration, random.Random(seed), log
        self.n_replicas, self.kube_faults_on = replicas, kube_faults
        self.kube_fault_every, self.object_fault_every = kube_fault_every, object_fault_every
        self.fault_rate, self.sync_interval, self.race_window = fault_rate, sync_interval, race_window
        self.kill_every, self.change_every, self.expire_every = kill_every, change_every, expire_every
        self.push_every, self.burst_every = push_every, burst_every
        self.report = Report(seed, duration, fault_rate, sync_interval, race_window)
        self.report.replicas, self.report.kube_faults = replicas, kube_faults
        self.bindings = dict(BINDINGS)  # the Graph-only bindings as they are now (edits change them)
        self.absent: set[str] = set()  # bindings deleted (and not yet created again)
        self.episodes: list[Episode] = []  # replica and object faults (the control plane's: self.kube)
        self.pending: list[tuple[Episode, Callable[[], bool]]] = []  # episodes waiting to see recovery
        self.writes: list[dict[str, Any]] = []  # Synapse PUTs and DELETEs of the request log
        self.violation_times: list[float] = []
        self.replica_restart: dict[str, float] = {}  # name -> when to start it again (monotonic)
        self.kube: KubeFaults | None = None
        if kube_faults:
            self.kube = KubeFaults(h.cluster, self.rng, pause_range, log)
            # A paused API server must not hang the soak's own requests: every call times out.
            import urllib3

            pool = h.api.rest_client.pool_manager
            pool.connection_pool_kw["timeout"] = urllib3.Timeout(connect=3, read=10)
            pool.clear()
        self.dir = Directory.from_org(soak_org())
        self.ids: dict[str, str] = {}  # UPN -> object id
        self.states: list[WorldState] = []
        self.by_assignment_id: dict[str, Key] = {}
        self.manual: dict[str, Key] = {}  # assignment id -> key
        self.seq = 0
        self.fault_kinds: Counter[str] = Counter()
        self.fault_operations: Counter[str] = Counter()
        self.scim_kinds: Counter[str] = Counter()
        self.endpoint = ScimEndpoint(h.tmp, h.namespace)
        self.replicas: Replicas | None = None
        self.timeline: LeaseTimeline | None = None
        if replicas > 1:
            self.endpoint.for_replicas(replicas)
            names = [f"r{i}" for i in range(replicas)]
            self.replicas = Replicas(h, names, lambda name: self.replica_env(names.index(name), name))
        self.pusher: ScimPusher | None = None
        self.world: ScimWorld | None = None  # made in setup, once the Entra ids are known
        self.provider_missing = False
        self.restart_at: float | None = None

    # -- the model ----------------------------------------------------------------------------------

    def scim_members(self, groups: list[str]) -> list[PushedUser]:
        """The distinct pushed users of the groups that exist now."""
        assert self.world is not None
        keys: set[str] = set()
        for g in groups:
            keys |= self.world.group_members(g) or set()
        return [self.world.users[k] for k in sorted(keys)]

    def world_state(self, sent: float) -> WorldState:
        """The world now, in the three parts the operator learns by separate paths (bench/soak_model.py);
        a part equal to the last state's is that very object (its derived sets are worked out once)."""
        present = [rg for name, rg in self.bindings.items() if name not in self.absent]
        graph = tuple(
            (role, tuple(groups)) for role, groups in [*present, *((r, g) for r, g, _ in SCIM_BINDINGS.values())]
        )
        pushed: dict[str, set[str]] = {}
        if self.world is not None and not self.provider_missing:
            for role, _, scim_groups in SCIM_BINDINGS.values():
                for user in self.scim_members(scim_groups):
                    if user.active and user.upn is not None:
                        pushed.setdefault(role, set()).add(user.upn)
        parts = (
            BindingsPart(graph),
            self.dir.frozen(),
            PushedPart(frozenset((r, frozenset(u)) for r, u in pushed.items()), self.held_roles()),
        )
        if self.states:
            last = self.states[-1]
            parts = tuple(
                old if old == new else new
                for old, new in zip((last.bindings, last.directory, last.pushed), parts, strict=True)
            )
        return WorldState(sent, time.time(), *parts)

    def keys(self, wanted: frozenset[tuple[str, str]]) -> frozenset[Key]:
        return frozenset((ROLES[role], self.ids[upn], SCOPE) for role, upn in wanted)

    def wanted(self) -> frozenset[Key]:
        return self.keys(self.world_state(time.time()).wanted())

    def held_roles(self) -> frozenset[str]:
        """Roles whose pairs nothing may prune: a binding of theirs names a pushed group that is deleted
        (or a provider that is missing), so it is incomplete."""
        if self.world is None:
            return frozenset()
        return frozenset(
            role
            for role, _, scim_groups in SCIM_BINDINGS.values()
            if self.provider_missing or any(self.world.groups[g].id is None for g in scim_groups)
        )

    def record(self, before: float) -> None:
        self.states.append(self.world_state(before))

    def scim_counts(self, binding: str) -> dict[str, int]:
        """What status.scim of a binding must say."""
        _, _, scim_groups = SCIM_BINDINGS[binding]
        assert self.world is not None
        members = self.scim_members(scim_groups)
        return {
            "groups": sum(self.world.groups[g].id is not None for g in scim_groups),
            "members": len(members),
            "matched": sum(u.active and u.upn is not None and u.upn not in self.dir.disabled for u in members),
            "unmatched": sum(u.active and u.upn is None for u in members),
            "inactive": sum(not u.active for u in members),
            "disabled": sum(u.active and u.upn is not None and u.upn in self.dir.disabled for u in members),
        }

    def names(self, key: Key) -> tuple[str, str]:
        """(role, UPN) of a key."""
        role = next(r for r, i in ROLES.items() if i == key[0])
        return role, next((u for u, i in self.ids.items() if i == key[1]), key[1])

    def why_wanted(self, key: Key, start: float, end: float) -> str:
        """For a violation's message: the states of the window, each as what protected the grant (G: a
        Graph group, P: a pushed group, H: its role held), and who the user is in the model now."""
        role, upn = self.names(key)
        states = explain(self.states, role, upn, start, end)
        groups = sorted(g for g in self.dir.members if upn in self.dir.users_of(g))
        pushed = []
        if self.world is not None:
            for name, group in self.world.groups.items():
                for k in group.members:
                    user = self.world.users[k]
                    if user.upn == upn:
                        pushed.append(f"{name}({'active' if user.active else 'inactive'})")
        return f"{upn}: states {states}; now in {groups}, pushed in {pushed}, disabled {upn in self.dir.disabled}"

    def current_state(self, at: float) -> frozenset[Key]:
        """The wanted grants of the state whose change had been answered by `at`."""
        state = next((s for s in reversed(self.states) if s.answered <= at), self.states[0])
        return self.keys(state.wanted())

    # -- setup --------------------------------------------------------------------------------------

    def start_operator(self) -> None:
        if self.replicas is None:
            self.h.start_operator(**self.endpoint.env())
            return
        for name in self.replicas.names:
            self.replicas.start(name)

    def replica_env(self, index: int, name: str) -> dict[str, str]:
        return {**self.endpoint.env(index), "SYNAPSE_SCIM_LEADER_ELECTION": "on", "POD_NAME": name}

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
        self.world = ScimWorld.new(USERS, self.ids, self.rng)
        self.endpoint.create(h)
        self.pusher = ScimPusher(self.endpoint.base_urls, self.endpoint.token, self.endpoint.ca_path)
        if self.replicas is not None:
            from kubernetes import client

            self.timeline = LeaseTimeline(client.CoordinationV1Api(h.api), h.namespace).start()
        self.start_operator()
        self.initial_push()
        self.record(time.time())
        h.workspace(syncInterval=f"{self.sync_interval:g}s", removalGuard={"maxRemovals": 1000, "maxPercent": 100})
        for name, (role, groups) in BINDINGS.items():
            h.binding(name, [role], [{"kind": "Group", "name": g} for g in groups])
        for name, (role, groups, scim_groups) in SCIM_BINDINGS.items():
            subjects = [{"kind": "Group", "name": g} for g in groups]
            subjects += [{"kind": "ScimGroup", "provider": PROVIDER, "name": g} for g in scim_groups]
            h.binding(name, [role], subjects)
        if not self.await_convergence("before the faults", 120.0):
            raise AssertionError(
                "the soak's world did not converge before the faults:\n" + "\n".join(self.report.violations)
            )
        self.seq = max((e["seq"] for e in h.sb.admin.request_log()), default=0)
        self.check_requests()
        self.log(
            f"soak: seed {self.report.seed}, {len(self.wanted())} wanted grants "
            f"({sum(1 for k in self.wanted() if k[0] in {ROLES[r] for r, _, _ in SCIM_BINDINGS.values()})} in the "
            f"roles of ScimGroup subjects), {len(self.manual)} manual assignments, converged before the faults"
        )

    def initial_push(self) -> None:
        """What the identity provider pushes first: two thirds of its users, each group with a few."""
        assert self.world is not None and self.pusher is not None
        deadline = time.monotonic() + 60
        while True:  # the endpoint is up once it answers
            try:
                self.pusher.http.get(self.endpoint.base_url + "/ServiceProviderConfig").raise_for_status()
                break
            except Exception:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.3)
        users = list(self.world.users.values())
        for user in self.rng.sample(users, k=2 * len(users) // 3):
            user.id = self.pusher.create_user(user)
        created = [u for u in users if u.id is not None]
        for group in self.world.groups.values():
            group.members = {u.key for u in self.rng.sample(created, k=6)}
            group.id = self.pusher.create_group(group.name, [self.world.users[k].id or "" for k in group.members])

    # -- what happens -----------------------------------------------------------------------------

    def change_directory(self) -> None:
        rng, d, admin = self.rng, self.dir, self.h.sb.admin
        kind = rng.choice(["add", "add", "remove", "remove", "disable", "enable", "nest"])
        before = time.time()
        if kind == "add":
            group = rng.choice(TEAMS)
            outside = [u for u in USERS if u not in d.members[group]]
            if not outside:  # every user joined it already (an hour's random adds can get there)
                return
            user = rng.choice(outside)
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
        self.record(before)
        self.report.directory_changes += 1
        self.report.changes_by_kind[kind] = self.report.changes_by_kind.get(kind, 0) + 1

    def push_scim(self) -> None:
        """One SCIM change, at random."""
        rng = self.rng
        assert self.world is not None and self.pusher is not None
        world, pusher = self.world, self.pusher
        users = list(world.users.values())
        created = world.created()
        live = [g for g in world.groups.values() if g.id is not None]
        kind = rng.choice(
            [
                *("user_add", "member_add", "member_add", "member_remove", "member_remove", "deactivate"),
                *("reactivate", "user_delete", "group_delete", "group_recreate", "injected_refusal"),
            ]
        )
        ops: list[Callable[[], None]] = []
        if kind == "user_add":
            absent = [u for u in users if u.id is None]
            if not absent:
                return
            user = rng.choice(absent)

            def op() -> None:
                user.id = pusher.create_user(user)

            ops.append(op)
        elif kind == "member_add":
            pairs = [(g, u) for g in live for u in created if u.key not in g.members]
            if not pairs:
                return
            group, user = rng.choice(pairs)
            ops.append(self.member_add(group, user))
        elif kind == "member_remove":
            pairs = [(g, world.users[k]) for g in live for k in sorted(g.members)]
            if not pairs:
                return
            group, user = rng.choice(pairs)
            ops.append(self.member_remove(group, user))
        elif kind in ("deactivate", "reactivate"):
            candidates = [u for u in created if u.active == (kind == "deactivate")]
            if not candidates:
                return
            ops.append(self.set_active(rng.choice(candidates), kind == "reactivate"))
        elif kind == "user_delete":
            if len(created) < len(users) // 2:
                return
            user = rng.choice(created)

            def op() -> None:
                pusher.delete("Users", user.id or "")
                world.remove_user(user.key)

            ops.append(op)
        elif kind == "group_delete":
            if len(live) < len(world.groups):  # one deleted group at a time
                return
            group = rng.choice(live)

            def op() -> None:
                pusher.delete("Groups", group.id or "")
                group.id = None
                group.members = set()

            ops.append(op)
        elif kind == "group_recreate":
            gone = [g for g in world.groups.values() if g.id is None]
            if not gone:
                return
            ops.append(self.group_create(rng.choice(gone), rng.sample(created, k=min(len(created), 5))))
        else:  # the bare remove of every member: refused (400), nothing changes
            if not live:
                return
            group = rng.choice(live)
            refusal = pusher.pool.submit(
                pusher.refused,
                "PATCH",
                f"/Groups/{group.id}",
                {
                    "schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
                    "Operations": [{"op": "remove", "path": "members"}],
                },
                400,
            )
            # Waited for as the pushes are: a killed operator is restarted meanwhile (the request is
            # sent again until it is answered, so waiting on it here alone would wait for ever).
            self.wait_answers([refusal])
            if not refusal.result():
                self.violation(f"the bare remove of every member of {group.name} was not refused with 400")
            self.count_scim(kind)
            return
        # Now and then the operator is killed while the push is on its way (a tenth of the pushes).
        self.run_pushes(ops, kill_after=rng.uniform(0.0, 0.05) if rng.random() < 0.1 else None)
        self.count_scim(kind)

    def member_add(self, group: Any, user: PushedUser) -> Callable[[], None]:
        assert self.pusher is not None
        pusher = self.pusher

        def op() -> None:
            pusher.add_members(group.id, [user.id or ""])
            group.members.add(user.key)

        return op

    def member_remove(self, group: Any, user: PushedUser) -> Callable[[], None]:
        assert self.pusher is not None
        pusher, dialect = self.pusher, self.rng.choice(["okta", "entra"])

        def op() -> None:
            pusher.remove_member(group.id, user.id or "", dialect)
            group.members.discard(user.key)

        return op

    def set_active(self, user: PushedUser, active: bool) -> Callable[[], None]:
        assert self.pusher is not None
        pusher = self.pusher

        def op() -> None:
            pusher.set_active(user.id or "", active)
            user.active = active

        return op

    def group_create(self, group: Any, members: list[PushedUser]) -> Callable[[], None]:
        assert self.pusher is not None
        pusher = self.pusher

        def op() -> None:
            group.id = pusher.create_group(group.name, [u.id or "" for u in members])
            group.members = {u.key for u in members}

        return op

    def burst(self) -> None:
        """BURST requests at once, all growing the grants or all shrinking them (so that whatever order they
        land in, every state between is between the one before and the one after); a SIGKILL cuts half of them."""
        rng = self.rng
        assert self.world is not None
        world = self.world
        live = [g for g in world.groups.values() if g.id is not None]
        created = world.created()
        ops: list[Callable[[], None]] = []
        if rng.random() < 0.5:
            kind = "burst_grow"
            adds = [(g, u) for g in live for u in created if u.key not in g.members]
            inactive = [u for u in created if not u.active]
            chosen = rng.sample(adds + inactive, k=min(BURST, len(adds) + len(inactive)))
            for c in chosen:
                ops.append(self.member_add(*c) if isinstance(c, tuple) else self.set_active(c, True))
        else:
            kind = "burst_shrink"
            removes = [(g, world.users[k]) for g in live for k in sorted(g.members)]
            active = [u for u in created if u.active]
            chosen = rng.sample(removes + active, k=min(BURST, len(removes) + len(active)))
            for c in chosen:
                ops.append(self.member_remove(*c) if isinstance(c, tuple) else self.set_active(c, False))
        if not ops:
            return
        self.report.scim_bursts += 1
        kill_after = rng.uniform(0.05, 0.6) if rng.random() < 0.5 else None
        self.run_pushes(ops, kill_after=kill_after)
        self.count_scim(kind, len(ops))

    def run_pushes(self, ops: list[Callable[[], None]], kill_after: float | None = None) -> None:
        """Send the pushes at once and wait for their answers (restarting a killed operator meanwhile);
        the state they make is recorded once, from before the first was sent until the last answered."""
        assert self.pusher is not None
        before = time.time()
        futures = [self.pusher.pool.submit(op) for op in ops]
        self.wait_answers(futures, kill_after)
        for f in futures:
            exc = f.exception()
            if isinstance(exc, PushRejected):
                self.log(f"soak: SCIM push not applied: {exc}")
            elif exc is not None:
                raise exc
        self.record(before)

    def wait_answers(self, futures: list[Future[Any]], kill_after: float | None = None) -> None:
        """Until every request is answered, restarting a killed operator meanwhile; ``kill_after``: kill
        it (or a replica) that many seconds in, with the requests in flight."""
        started = time.monotonic()
        while not all(f.done() for f in futures):
            if kill_after is not None and time.monotonic() - started >= kill_after:
                kill_after = None
                if self.replicas is not None:  # whichever replica: each serves SCIM
                    alive = [n for n in self.replicas.names if self.replicas.alive(n)]
                    if alive:
                        self.kill_replica(self.rng.choice(alive), "replica_kill_during_push")
                        self.report.scim_kills_during_pushes += 1
                elif self.h.operator is not None and self.h.operator.poll() is None:
                    self.kill()
                    self.report.scim_kills_during_pushes += 1
                    self.restart_at = time.monotonic() + self.rng.uniform(0.5, 3.0)
            self.tick_restart()
            time.sleep(0.02)

    def count_scim(self, kind: str, n: int = 1) -> None:
        self.scim_kinds[kind] += n
        self.report.scim_changes += n

    def kill(self) -> None:
        h = self.h
        if h.operator is not None and h.operator.poll() is None:
            h.operator.kill()
            h.operator.wait()
            self.report.kills += 1
        h.operator = None

    def tick_restart(self) -> None:
        if self.replicas is not None:
            self.tick_replicas()
            return
        if self.restart_at is not None and time.monotonic() >= self.restart_at:
            self.ensure_running()
            self.restart_at = None

    # -- replicas (leader election) ---------------------------------------------------------------

    def kill_replica(self, name: str, kind: str) -> None:
        assert self.replicas is not None
        if self.replicas.kill(name):
            self.report.kills += 1
            self.episodes.append(Episode(kind, time.time(), time.time(), detail=name))
        self.replica_restart[name] = time.monotonic() + self.rng.uniform(0.0, 3.0)

    def replica_event(self) -> None:
        """The leader SIGKILLed, the leader paused past its Lease, or a standby SIGKILLed."""
        assert self.replicas is not None and self.timeline is not None
        replicas = self.replicas
        alive = [n for n in replicas.names if replicas.alive(n) and n not in replicas.paused]
        holder = self.timeline.current()
        kinds = ["leader_kill", "leader_kill", "leader_pause", "standby_kill"]
        unused = [k for k in kinds if not any(e.kind == k for e in self.episodes)]
        kind = self.rng.choice(unused or kinds)
        if holder not in alive:
            return  # no live leader to act on now (a takeover is under way)
        standbys = [n for n in alive if n != holder]
        if kind == "standby_kill":
            if standbys:
                self.kill_replica(self.rng.choice(standbys), kind)
            return
        if kind == "leader_kill":
            self.kill_replica(holder, kind)
            self.episodes[-1].from_start = True
        else:  # paused past its Lease (15 s): it must wake up, send nothing, and exit
            pause = self.rng.uniform(20.0, 30.0)
            replicas.pause(holder, time.monotonic() + pause)
            self.episodes.append(Episode(kind, time.time(), detail=f"{holder} for {pause:.1f} s", from_start=True))
        self.report.kills += 1
        episode = self.episodes[-1]
        self.pending.append((episode, lambda: self.timeline is not None and self.taken_over(holder, episode)))

    def taken_over(self, old: str, episode: Episode) -> bool:
        """A live leader renewed the Lease after `episode` started (a killed or paused process renews
        nothing): the takeover, by the other replica or by the killed one restarted (same pod name, so
        it takes its own Lease back at once, as client-go does). Recovered at that renewal."""
        assert self.timeline is not None
        renewals = [s.renewed for s in self.timeline.samples if s.renewed and s.renewed > episode.started]
        if renewals:
            episode.recovered = min(renewals)
        return bool(renewals)

    def tick_replicas(self) -> None:
        assert self.replicas is not None
        now = time.monotonic()
        for name in self.replicas.resume_due(now):
            for e in reversed(self.episodes):
                if e.kind == "leader_pause" and e.detail.startswith(name + " ") and e.ended is None:
                    e.ended = time.time()
                    break
        for name, code in self.replicas.exited():
            if code == 3:  # LEASE_LOST_EXIT: it could not renew (paused, or the API server away)
                self.report.lease_lost_exits += 1
            elif code not in (-9, 0):
                self.violation(f"replica {name} exited by itself ({code})")
            self.replica_restart.setdefault(name, now + self.rng.uniform(0.0, 3.0))
        for name in self.replicas.names:
            due = self.replica_restart.get(name)
            if self.replicas.procs[name] is None and (due is None or now >= due):
                self.replica_restart.pop(name, None)
                self.replicas.start(name)

    # -- Kubernetes objects changed under the operator ---------------------------------------------

    def object_fault(self) -> None:
        """A binding edited while its workspace syncs, a binding deleted and created again, or the
        workspace's credential Secret deleted and created again (its finalizer taken off by hand)."""
        kinds = ["binding_edit", "binding_recreate", "secret_recreate"]
        unused = [k for k in kinds if not any(e.kind == k for e in self.episodes)]
        kind = self.rng.choice(unused or kinds)
        h, before = self.h, time.time()
        try:
            if kind == "binding_edit":
                role, groups = self.bindings["operators"]
                new = ["Ops", "Team A"] if groups == ["Ops"] else ["Ops"]
                obj = h.custom.patch_namespaced_custom_object(
                    GROUP,
                    VERSION,
                    h.namespace,
                    RB_PLURAL,
                    "operators",
                    {"spec": {"subjects": [{"kind": "Group", "name": g} for g in new]}},
                )
                self.bindings["operators"] = (role, new)
                self.record(before)
                episode = Episode(kind, before, time.time(), detail=f"operators: groups {new}")
                generation = obj["metadata"]["generation"]
                self.pending.append((episode, lambda: self.ready_at(RB_PLURAL, "operators", generation)))
            elif kind == "binding_recreate":
                if "contributors" in self.absent:
                    return
                h.delete(RB_PLURAL, "contributors")
                self.absent.add("contributors")
                self.record(before)
                episode = Episode(kind, before, time.time(), detail="contributors (deletionPolicy Delete)")
                self.pending.append((episode, lambda: self.recreate_when_gone("contributors")))
            else:
                secret = "synapse-sp"
                data = h.core.read_namespaced_secret(secret, h.namespace).data
                h.core.patch_namespaced_secret(secret, h.namespace, {"metadata": {"finalizers": None}})
                h.core.delete_namespaced_secret(secret, h.namespace)
                deadline = time.monotonic() + 10
                while time.monotonic() < deadline and self.secret_finalizers(secret) is not None:
                    time.sleep(0.1)
                h.core.create_namespaced_secret(h.namespace, {"metadata": {"name": secret}, "data": data})
                episode = Episode(kind, before, time.time(), detail="finalizer taken off, deleted, created again")
                self.pending.append((episode, lambda: CREDENTIAL_FINALIZER in (self.secret_finalizers(secret) or [])))
        except Exception as exc:  # the API server away (a fault of its own): not injected
            self.log(f"soak: {kind} not done: {exc!r}"[:300])
            return
        self.episodes.append(episode)

    def secret_finalizers(self, name: str) -> list[str] | None:
        try:
            return list(self.h.core.read_namespaced_secret(name, self.h.namespace).metadata.finalizers or [])
        except Exception as exc:
            if getattr(exc, "status", None) == 404:
                return None
            raise

    def ready_at(self, plural: str, name: str, generation: int) -> bool:
        obj = self.h.get(plural, name) or {}
        c = next((c for c in (obj.get("status") or {}).get("conditions") or () if c["type"] == "Ready"), None)
        return bool(c and c["status"] == "True" and (c.get("observedGeneration") or 0) >= generation)

    def recreate_when_gone(self, name: str) -> bool:
        """Once the deleted binding is gone (its grants revoked by its finalizer), create it again."""
        if self.h.get(RB_PLURAL, name) is not None:
            return False
        role, groups = self.bindings[name]
        before = time.time()
        self.h.binding(name, [role], [{"kind": "Group", "name": g} for g in groups])
        self.absent.discard(name)
        self.record(before)
        return True

    def acting_again(self, episode: Episode) -> bool:
        """After a control-plane fault: recovered when the leader renewed its Lease after the control
        plane was back (replicas), or when the API server was back (one replica, no Lease)."""
        if episode.ended is None:
            return False
        if self.timeline is None:
            episode.recovered = episode.ended
            return True
        renewals = [s.renewed for s in self.timeline.samples if s.renewed and s.renewed > episode.ended]
        if renewals:
            episode.recovered = min(renewals)
        return bool(renewals)

    def tick_pending(self) -> None:
        if self.kube is not None and self.kube.busy:
            return  # the API server may be away: look after it is back
        still = []
        for episode, recovered in self.pending:
            try:
                done = recovered()
            except Exception:
                done = False
            if done:
                episode.recovered = episode.recovered or time.time()  # unless the check knew better
            else:
                still.append((episode, recovered))
        self.pending = still

    def ensure_running(self) -> None:
        if self.replicas is not None:
            self.tick_replicas()
            return
        h = self.h
        if h.operator is None or h.operator.poll() is not None:
            if h.operator is not None and h.operator.returncode not in (-9, 0):
                self.violation(f"the operator exited by itself ({h.operator.returncode})")
            h.operator = None
            self.start_operator()

    # -- checks -----------------------------------------------------------------------------------

    def violation(self, what: str) -> None:
        self.violation_times.append(time.time())
        self.report.violations.append(what)
        self.log(f"soak: VIOLATION: {what}")

    def check_requests(self) -> None:
        entries = self.h.sb.admin.request_log(since=self.seq)
        for e in entries:
            self.seq = max(self.seq, e["seq"])
            if e.get("fault"):
                self.report.faults_injected += 1
                self.fault_kinds[str(e["fault"])] += 1
                self.fault_operations[f"{e.get('service')}.{e.get('operation')}"] += 1
            self.report.azure_requests += 1  # login, graph and synapse: the faults hit all three
            if e.get("service") == "synapse" and e.get("method") in ("PUT", "DELETE"):
                self.writes.append(e)
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
            role, upn = self.names(key)
            start = e["time"] - self.race_window
            if (found := excuse(self.states, role, upn, start, e["time"])) is None:
                self.violation(
                    f"deleted {key} at {e['time']:.3f} by {replica_of(e)}, wanted or held by every combination "
                    f"of bindings, directory and pushed groups of the {self.race_window:g}s before: "
                    f"{self.why_wanted(key, e['time'] - self.race_window, e['time'])}"
                )
            elif key in self.current_state(e["time"]):
                # Wanted again by the time it was deleted: the operator acted on a read from before
                # the change (allowed within the race window); it re-grants on its next sync.
                self.report.deletes_racing_a_change += 1
            if found is not None and all(
                protects(s.bindings, s.directory, s.pushed, role, upn) for s in in_window(self.states, start, e["time"])
            ):
                # Excused only by parts of different instants (bench/soak_model.py): counted and told.
                self.report.deletes_excused_across_parts += 1
                b, d, p = found
                self.log(
                    f"soak: deletion of {key} at {e['time']:.3f} by {replica_of(e)} excused by the bindings of "
                    f"{b.sent:.2f}, the directory of {d.sent:.2f} and the pushed groups of {p.sent:.2f}: "
                    f"{self.why_wanted(key, start, e['time'])}"
                )

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
        if self.kube is not None and self.kube.busy:
            return  # the API server may be away
        for name in ALL_BINDINGS:
            if name in self.absent:
                continue
            try:
                missing = self.h.get(RB_PLURAL, name) is None
            except Exception:  # the API server away (a fault): look again later
                return
            if missing and name not in self.absent:
                self.violation(f"binding {name} lost")

    def listed_keys(self) -> set[Key]:
        return {(a["roleDefinitionId"], a["principalId"].lower(), a["scope"]) for a in self.h.assignments()}

    def differences(self) -> list[str]:
        """What keeps the world from being converged (empty: converged)."""
        out = []
        listed = self.listed_keys()
        want = set(self.wanted()) | set(self.manual.values())
        if listed != want:
            out.append(f"missing {sorted(want - listed)}, unexpected {sorted(listed - want)}")
        present = [b for b in ALL_BINDINGS if b not in self.absent]
        for plural, names in ((RB_PLURAL, present), (WS_PLURAL, ["analytics"])):
            for name in names:
                obj = self.h.get(plural, name) or {}
                c = self.h.condition(plural, name)
                if not c or c["status"] != "True" or c.get("observedGeneration") != obj["metadata"]["generation"]:
                    out.append(f"{plural}/{name} not Ready: {c}")
                elif name in SCIM_BINDINGS and (obj.get("status") or {}).get("scim") != self.scim_counts(name):
                    out.append(f"{name} status.scim {obj['status'].get('scim')}, the model {self.scim_counts(name)}")
        return out

    def await_convergence(self, what: str, limit: float | None = None) -> float | None:
        """Wait until the assignments and statuses are what the model says; a violation past `limit`
        (two sync intervals by default). Returns the seconds it took."""
        limit = 2 * self.sync_interval if limit is None else limit
        since = time.monotonic()
        while self.differences():
            self.check_requests()
            self.check_assignments()
            self.tick_pending()
            if time.monotonic() - since > limit:
                self.violation(f"not converged {limit:g}s {what}: " + "; ".join(self.differences()))
                return None
            time.sleep(0.5)
        return round(time.monotonic() - since, 1)

    # -- the final phase: holds -------------------------------------------------------------------

    def wait_reason(self, bindings: list[str], reason: str, timeout: float = 60.0) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if all((self.h.condition(RB_PLURAL, b) or {}).get("reason") == reason for b in bindings):
                return True
            self.check_requests()
            time.sleep(0.3)
        self.violation(
            f"{bindings} never said {reason} within {timeout:g}s: "
            + json.dumps({b: self.h.condition(RB_PLURAL, b) for b in bindings})
        )
        return False

    def check_held(self, what: str, snapshot: set[Key]) -> None:
        """Nothing of `snapshot` in a held role may be gone while it is held (a few syncs' worth of waiting first)."""
        time.sleep(6.0)  # pokes, the tenant watch's poll (1 s), retries of faulted reads
        self.check_requests()
        held = {ROLES[role] for role in self.held_roles()}
        snapshot = {k for k in snapshot if k[0] in held}
        gone = snapshot - self.listed_keys()
        if gone:
            self.violation(f"{what}: held grants revoked: {sorted(gone)}")
        self.report.hold_checks[what] = f"{len(snapshot)} grants kept" if not gone else f"{len(gone)} revoked"

    def hold_phase(self) -> None:
        """A bound pushed group deleted, then the provider: their members' grants (and every grant of
        their roles) are held while they are gone, and revoked or kept as the model says once back."""
        assert self.world is not None and self.pusher is not None
        world, d, admin = self.world, self.dir, self.h.sb.admin
        analysts = world.groups["Analysts"]
        matched = [u for u in world.created() if u.upn and u.active and u.upn not in d.disabled]
        if not analysts.members & {u.key for u in matched} and matched:
            self.run_pushes([self.member_add(analysts, matched[0])])
            self.await_convergence("after a member was added before the hold checks")
        # 1. The group deleted, and a Graph removal of the same role (Synapse User, through All Teams).
        snapshot = self.listed_keys()
        before = time.time()
        self.pusher.delete("Groups", analysts.id or "")
        members = [world.users[k] for k in sorted(analysts.members)]
        analysts.id, analysts.members = None, set()
        team = next((t for t in ("Team A", "Team B") if any(m in self.ids for m in d.members[t])), None)
        if team is not None:
            user = sorted(m for m in d.members[team] if m in self.ids)[0]
            admin.remove_member(team, self.ids[user])
            d.members[team].discard(user)
        self.record(before)
        if self.wait_reason(["scim-analysts"], "ScimGroupNotFound"):
            self.check_held("group deleted", snapshot)
        self.run_pushes([self.group_create(analysts, [u for u in members if u.id is not None])])
        self.await_convergence("after the deleted group was pushed again")
        # 2. The provider deleted (its objects stay), and a matched member disabled in Entra ID.
        snapshot = self.listed_keys()
        before = time.time()
        self.endpoint.delete_provider(self.h)
        self.provider_missing = True
        held = [u for b in SCIM_BINDINGS.values() for u in self.scim_members(b[2]) if u.upn and u.active]
        held = [u for u in held if u.upn not in d.disabled]
        if held:
            admin.disable_user(held[0].upn)
            d.disabled.add(held[0].upn or "")
        self.record(before)
        if self.wait_reason(list(SCIM_BINDINGS), "ScimProviderNotFound"):
            self.check_held("provider deleted", snapshot)
        before = time.time()
        self.endpoint.recreate_provider(self.h)
        self.provider_missing = False
        self.record(before)
        self.await_convergence("after the deleted provider was created again")

    # -- the run ----------------------------------------------------------------------------------

    def run(self) -> Report:
        h, rng = self.h, self.rng
        try:
            self.setup()
            self.chaos()
        finally:
            if self.kube is not None:
                self.kube.wait()
            if self.replicas is not None:
                self.replicas.stop()
            if self.timeline is not None:
                self.timeline.stop()
            if self.pusher is not None:
                self.pusher.close()
                self.report.scim_requests = self.pusher.requests
                self.report.scim_unanswered = self.pusher.unanswered
                self.report.scim_rejected_by_code = dict(self.pusher.rejected)
                self.report.scim_rejected = sum(self.pusher.rejected.values())
                self.report.scim_rejections = list(self.pusher.rejections)
                self.report.scim_injected_rejections = sum(self.pusher.injected.values())
                self.report.scim_deferred_by_code = dict(self.pusher.deferred)
            self.report.faults_by_kind = dict(self.fault_kinds)
            self.report.faults_by_operation = dict(sorted(self.fault_operations.items()))
            self.report.scim_changes_by_kind = dict(self.scim_kinds)
        if self.report.scim_rejected:
            self.violation(
                f"SCIM requests rejected: {self.report.scim_rejected_by_code}: "
                + "; ".join(self.report.scim_rejections)
            )
        del h, rng
        return self.report

    def chaos(self) -> None:
        h, rng = self.h, self.rng
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
        next_push = start + rng.expovariate(1 / self.push_every)
        next_burst = start + rng.uniform(0.1, 0.3) * self.duration  # at least one burst, early on
        next_kill = start + rng.uniform(0.05, 0.25) * self.duration  # at least one kill, early on
        next_expire = start + rng.expovariate(1 / self.expire_every)
        next_binding_check = start
        never = float("inf")
        next_kube = start + rng.uniform(0.05, 0.2) * self.duration if self.kube is not None else never
        next_object = start + rng.expovariate(1 / self.object_fault_every) if self.kube_faults_on else never
        self.t0 = time.time()
        while (now := time.monotonic()) < end:
            kube_busy = self.kube is not None and self.kube.busy
            if self.kube is not None and now >= next_kube and not kube_busy and not self.pending_control_plane():
                episode = self.kube.start()
                self.log(f"soak: {episode.kind}")
                self.pending.append((episode, lambda e=episode: self.acting_again(e)))
                next_kube = now + rng.expovariate(1 / self.kube_fault_every)
            if now >= next_object and not kube_busy:
                self.object_fault()
                next_object = time.monotonic() + rng.expovariate(1 / self.object_fault_every)
            self.tick_pending()
            if now >= next_change:
                self.change_directory()
                next_change = now + rng.expovariate(1 / self.change_every)
            if now >= next_push:
                self.push_scim()
                next_push = time.monotonic() + rng.expovariate(1 / self.push_every)
            if now >= next_burst:
                self.burst()
                next_burst = time.monotonic() + rng.expovariate(1 / self.burst_every)
            if now >= next_kill and self.replicas is not None:
                self.replica_event()
                next_kill = now + rng.expovariate(1 / self.kill_every)
            elif now >= next_kill and self.restart_at is None:
                self.kill()
                self.restart_at = now + rng.uniform(0.0, 3.0)
                next_kill = now + rng.expovariate(1 / self.kill_every)
            self.tick_restart()
            if now >= next_expire:
                h.sb.admin.expire_tokens()
                self.report.token_expiries += 1
                next_expire = now + rng.expovariate(1 / self.expire_every)
            if self.restart_at is None:
                self.ensure_running()
            if now >= next_binding_check:
                self.check_bindings_exist()
                next_binding_check = now + 5.0
            self.check_requests()
            self.check_assignments()
            self.report.polls += 1
            time.sleep(0.3)

        h.sb.admin.remove_fault(rule["id"])
        self.restart_at = None
        self.end_kube_faults()
        self.ensure_running()
        # The identity provider pushes again what a deleted group should be (its final state is then
        # the one the model states without holds; the final phase checks holds deterministically).
        assert self.world is not None
        gone = [g for g in self.world.groups.values() if g.id is None]
        if gone:
            created = self.world.created()
            self.run_pushes([self.group_create(g, self.rng.sample(created, k=min(len(created), 5))) for g in gone])
            self.count_scim("group_recreate", len(gone))
        self.log(
            f"soak: faults stopped after {time.monotonic() - start:.0f}s; waiting for convergence "
            f"(at most two sync intervals, {2 * self.sync_interval:g}s)"
        )
        self.report.convergence_s = self.await_convergence("after the faults stopped")
        self.check_requests()
        self.check_assignments()
        self.check_bindings_exist()
        if self.report.convergence_s is not None:
            self.hold_phase()
            self.check_requests()
            self.check_assignments()
            self.check_bindings_exist()
        self.account()

    def pending_control_plane(self) -> bool:
        """A control-plane fault whose recovery is not seen yet: the next one waits for it."""
        return self.kube is not None and any(e.recovered is None for e in self.kube.episodes[-1:])

    def end_kube_faults(self) -> None:
        """The faults stop: the control plane back, paused replicas resumed, deleted bindings back."""
        if self.kube is not None:
            self.kube.wait()
        if self.replicas is not None:
            self.replicas.resume_due(float("inf"))
            for e in self.episodes:
                if e.kind == "leader_pause" and e.ended is None:
                    e.ended = time.time()
        deadline = time.monotonic() + 120
        while self.absent and time.monotonic() < deadline:
            self.tick_pending()
            self.tick_restart()
            time.sleep(0.5)
        for name in self.absent:
            self.violation(f"binding {name} deleted {120}s ago is still not gone")

    def account(self) -> None:
        """The Lease proof, the leaderless time and the table of faults."""
        r, t0 = self.report, getattr(self, "t0", time.time())
        # The faults' recoveries seen only once the faults stopped. A fault injected in the last seconds
        # may recover only at the next full sync (a Secret created again gets its finalizer back then):
        # waited for up to the convergence bound, two sync intervals.
        deadline = time.monotonic() + 2 * self.sync_interval
        self.tick_pending()
        while self.pending and time.monotonic() < deadline:
            time.sleep(0.5)
            self.tick_pending()
        for episode, _ in self.pending:
            self.log(f"soak: no recovery seen from {episode.kind} at {episode.started - t0:.0f}s ({episode.detail})")
        if self.timeline is not None:
            self.timeline.stop()
            r.writes_checked = len(self.writes)
            wrong = self.timeline.check_writes(self.writes)
            r.writes_by_non_holders = len(wrong)
            for what in wrong:
                self.violation(what)
            r.leaderless_total_s, r.leaderless_longest_s = self.timeline.leaderless()
        episodes = sorted(
            [*self.episodes, *(self.kube.episodes if self.kube is not None else [])], key=lambda e: e.started
        )
        r.episodes = [e.row(t0) for e in episodes]
        table: dict[str, dict[str, Any]] = {}
        for e in episodes:
            row = table.setdefault(e.kind, {"injected": 0, "recoveries_s": [], "violations": 0})
            row["injected"] += 1
            if e.recovery_s is not None:
                row["recoveries_s"].append(e.recovery_s)
            until = (e.ended or e.started) + self.race_window
            row["violations"] += sum(1 for v in self.violation_times if e.started - 1 <= v <= until)
        for kind, n in sorted(self.fault_kinds.items()):
            table[f"azure_{kind}"] = {"injected": n, "recoveries_s": [], "violations": None}
        if r.token_expiries:
            table["azure_token_expiry"] = {"injected": r.token_expiries, "recoveries_s": [], "violations": None}
        for row in table.values():
            rec = sorted(row.pop("recoveries_s"))
            row["recovery_p50_s"] = rec[len(rec) // 2] if rec else None
            row["recovery_max_s"] = rec[-1] if rec else None
            row["recovered"] = len(rec)
        r.fault_table = table


def summary(report: Report) -> str:
    r = report
    return (
        f"soak: seed {r.seed}, {r.duration_s:g}s: {r.faults_injected} faults injected {r.faults_by_kind} "
        f"of {r.azure_requests} Azure requests, {r.token_expiries} token expiries, {r.kills} kills, "
        f"{r.directory_changes} directory changes {r.changes_by_kind}, {r.creates} creates, {r.deletes} deletes "
        f"({r.deletes_racing_a_change} racing a change, {r.deletes_excused_across_parts} excused only across "
        f"parts); {r.scim_changes} SCIM changes pushed "
        f"{r.scim_changes_by_kind} in {r.scim_requests} answered requests ({r.scim_bursts} bursts, "
        f"{r.scim_kills_during_pushes} kills during pushes, {r.scim_unanswered} unanswered and retried), "
        f"{r.scim_rejected} rejected {r.scim_rejected_by_code} besides {r.scim_injected_rejections} injected; "
        f"converged {r.convergence_s}s after the faults stopped; holds {r.hold_checks}; "
        + (
            f"{r.replicas} replicas: {r.lease_lost_exits} exits on a lost Lease, {r.writes_checked} Synapse writes "
            f"checked against the Lease ({r.writes_by_non_holders} by a non-holder), no leader "
            f"{r.leaderless_total_s}s in all (longest {r.leaderless_longest_s}s); "
            if r.replicas > 1
            else ""
        )
        + "".join(
            f"{kind} x{row['injected']} (recovery p50 {row['recovery_p50_s']}s max {row['recovery_max_s']}s); "
            for kind, row in r.fault_table.items()
            if not kind.startswith("azure_")
        )
        + f"{len(r.violations)} violations"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--duration", type=float, default=600.0, help="seconds of faults (default 600)")
    parser.add_argument("--seed", type=int, default=None, help="RNG seed (default: random, printed)")
    parser.add_argument("--fault-rate", type=float, default=0.2)
    parser.add_argument("--kill-every", type=float, default=20.0, help="mean seconds between SIGKILLs")
    parser.add_argument("--change-every", type=float, default=2.0, help="mean seconds between directory changes")
    parser.add_argument("--push-every", type=float, default=1.5, help="mean seconds between single SCIM pushes")
    parser.add_argument("--burst-every", type=float, default=25.0, help="mean seconds between bursts of 50 pushes")
    parser.add_argument("--replicas", type=int, default=1, help="replicas under leader election (default 1: none)")
    parser.add_argument(
        "--kube-faults",
        action="store_true",
        help="kill and pause the API server and etcd, expire watches, edit and delete objects",
    )
    parser.add_argument(
        "--kube-fault-every", type=float, default=60.0, help="mean seconds between control-plane faults"
    )
    parser.add_argument("--object-fault-every", type=float, default=30.0, help="mean seconds between object faults")
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "results")
    parser.add_argument(
        "--keep", type=Path, default=None, help="keep the operators' logs in this directory (default: deleted)"
    )
    args = parser.parse_args(argv)
    seed = args.seed if args.seed is not None else random.SystemRandom().randrange(2**31)
    print(f"soak: seed {seed}", flush=True)
    # SIGTERM (`timeout`, a CI's cancel) unwinds like Ctrl-C: the replicas, the sandbox and the control
    # plane are stopped on the way out instead of outliving the soak.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))

    import contextlib
    import tempfile

    from kubernetes import client

    from scale_bench import source_version
    from scale_procs import machine
    from synapse_scim_sandbox.devcluster import ControlPlane

    if args.keep is not None:
        args.keep.mkdir(parents=True, exist_ok=True)
    with (
        ControlPlane() as cluster,
        contextlib.nullcontext(str(args.keep))
        if args.keep is not None
        else tempfile.TemporaryDirectory(prefix="synapse-scim-soak-") as tmp,
    ):
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
                push_every=args.push_every,
                burst_every=args.burst_every,
                replicas=args.replicas,
                kube_faults=args.kube_faults,
                kube_fault_every=args.kube_fault_every,
                object_fault_every=args.object_fault_every,
                log=lambda m: print(m, flush=True),
            ).run()
    print(summary(report))
    args.out.mkdir(parents=True, exist_ok=True)
    now = dt.datetime.now(dt.UTC)
    path = args.out / f"soak-{now:%Y%m%d-%H%M%S}.json"
    run = {
        "date": f"{now:%Y-%m-%d %H:%M} UTC",
        "machine": machine(),
        "source": source_version(),
        "command": " ".join(["python bench/soak.py", *(argv if argv is not None else sys.argv[1:])]),
    }
    path.write_text(json.dumps({**run, **asdict(report)}, indent=2) + "\n")
    print(f"soak: report written to {path}")
    return 1 if report.violations else 0


if __name__ == "__main__":
    sys.exit(main())

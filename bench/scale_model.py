"""The scale benchmark's world, computed without the operator: scenarios, the seed organisation, the
SynapseRoleBindings, the role assignments they must produce, the least work that takes, and the
membership changes whose propagation is timed.

Everything here is pure and deterministic (seeded): the sandbox process builds the same seed from
the same Scenario, and the expected assignments are derived from the seed itself (a breadth-first
expansion of the member lists), not from the sandbox or the operator.
"""

from __future__ import annotations

import math
import random
import uuid
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from synapse_scim_sandbox import synthetic_org
from synapse_scim_sandbox.workspaces import load_builtin_roles

GRAPH_PAGE = 999  # what the operator asks for ($top) on transitiveMembers: Graph's maximum
ROLE_IDS = {r.name: r.id for r in load_builtin_roles()}
APP = "synapse-scim-operator"
APP_SECRET = "scale-bench-secret"

# (share of bindings, scope kind or None for the workspace, roles to draw from): most bindings grant
# workspace-wide roles, some operate one Spark pool, a few use one linked service or credential.
ROLE_MIX: tuple[tuple[float, str | None, tuple[str, ...]], ...] = (
    (
        0.60,
        None,
        (
            "Synapse User",
            "Synapse Contributor",
            "Synapse Artifact User",
            "Synapse Artifact Publisher",
            "Synapse Monitoring Operator",
            "Synapse Compute Operator",
        ),
    ),
    (0.25, "bigDataPool", ("Synapse Compute Operator", "Synapse Contributor", "Synapse User")),
    (0.10, "linkedService", ("Synapse Credential User", "Synapse User")),
    (0.05, "credential", ("Synapse Credential User",)),
)
SCOPE_COLLECTION = {"bigDataPool": "bigDataPools", "linkedService": "linkedServices", "credential": "credentials"}


@dataclass(frozen=True)
class Scenario:
    name: str
    users: int
    groups: int
    bindings: int
    workspaces: int = 1
    members_per_group: int = 20
    nesting: float = 0.1  # share of groups nested into an earlier group
    large_groups: int = 0  # the first groups get large_group_size members (several Graph pages)
    large_group_size: int = 1500
    service_principals: int = 10
    shared: float = 0.15  # share of bindings that bind a group another binding binds already
    nested_bound: float = 0.2  # share of bindings that bind a group with nested child groups
    manual_adopted: float = 0.01  # manual assignments that equal a wanted grant (adopted, never written)
    manual_other: int = 3  # manual assignments per workspace that nobody wants (left alone)
    seed: int = 6


SCENARIOS: dict[str, Scenario] = {
    "tiny": Scenario(
        "tiny",
        users=60,
        groups=8,
        bindings=5,
        workspaces=2,
        members_per_group=8,
        nesting=0.4,
        service_principals=3,
        manual_adopted=0.05,
        manual_other=1,
    ),
    "S": Scenario(
        "S",
        users=1_000,
        groups=50,
        bindings=20,
        members_per_group=20,
        nesting=0.1,
        large_groups=1,
        large_group_size=1_200,
    ),
    "M": Scenario(
        "M",
        users=10_000,
        groups=500,
        bindings=100,
        members_per_group=20,
        nesting=0.15,
        large_groups=3,
        large_group_size=2_500,
    ),
    "L": Scenario(
        "L",
        users=50_000,
        groups=2_000,
        bindings=500,
        workspaces=5,
        members_per_group=25,
        nesting=0.2,
        large_groups=10,
        large_group_size=2_500,
        service_principals=100,
    ),
    # 20 workspaces of 100 bindings each. 30 members a group and 20 large groups (2,500 members, three
    # Graph pages each) bring the wanted assignments to about 200,000 (202,627 with seed 6), the size
    # of Synapse tenants the issue asks about; the nesting share is L's.
    "XL": Scenario(
        "XL",
        users=100_000,
        groups=5_000,
        bindings=2_000,
        workspaces=20,
        members_per_group=30,
        nesting=0.2,
        large_groups=20,
        large_group_size=2_500,
        service_principals=200,
    ),
}

Grant = tuple[str, str, str]  # (roleId, principalId, scope), lower-case ids


def workspace_names(s: Scenario) -> list[str]:
    return [f"ws{i}" for i in range(s.workspaces)]


def build_seed(s: Scenario) -> dict[str, Any]:
    """The sandbox seed: the synthetic organisation, the workspaces and the manual assignments."""
    seed = synthetic_org(
        users=s.users,
        groups=s.groups,
        members_per_group=s.members_per_group,
        nesting=s.nesting,
        service_principals=s.service_principals,
        large_groups=s.large_groups,
        large_group_size=s.large_group_size,
        workspaces=workspace_names(s),
        pools=3,
        seed=s.seed,
        app_secret=APP_SECRET,
    )
    world = World(s, seed)
    for ws in seed["workspaces"]:
        ws["assignments"] = [
            {"role": role, "principal": principal, "scope": scope, "id": aid}
            for aid, (role, principal, scope) in world.manual[ws["name"]].items()
        ]
    return seed


@dataclass
class Binding:
    name: str
    workspace: str
    roles: list[str]
    scope: dict[str, str] | None
    groups: list[str]  # group ids
    by_id: list[bool]  # name the group by id (else by displayName)

    def manifest(self, group_names: dict[str, str]) -> dict[str, Any]:
        subjects = [
            {"kind": "Group", "id": g} if by_id else {"kind": "Group", "name": group_names[g]}
            for g, by_id in zip(self.groups, self.by_id, strict=True)
        ]
        spec: dict[str, Any] = {"workspaceRef": {"name": self.workspace}, "roles": self.roles, "subjects": subjects}
        if self.scope:
            spec["scope"] = self.scope
        return {
            "apiVersion": "synapse-scim.io/v1alpha1",
            "kind": "SynapseRoleBinding",
            "metadata": {"name": self.name},
            "spec": spec,
        }

    def scope_path(self) -> str:
        if not self.scope:
            return f"workspaces/{self.workspace}"
        ((kind, item),) = self.scope.items()
        return f"workspaces/{self.workspace}/{SCOPE_COLLECTION[kind]}/{item}"


@dataclass
class World:
    """The directory as the seed defines it, the bindings, and what they grant."""

    scenario: Scenario
    seed: dict[str, Any]
    members: dict[str, set[str]] = field(default_factory=dict)  # group id -> direct member ids
    group_names: dict[str, str] = field(default_factory=dict)
    enabled: set[str] = field(default_factory=set)  # enabled users and service principals
    users: list[str] = field(default_factory=list)
    bindings: list[Binding] = field(default_factory=list)
    manual: dict[str, dict[str, Grant]] = field(default_factory=dict)  # ws -> assignment id -> grant

    def __post_init__(self) -> None:
        for u in self.seed["users"]:
            self.users.append(u["id"])
            if u.get("accountEnabled", True):
                self.enabled.add(u["id"])
        self.enabled.update(sp["id"] for sp in self.seed["servicePrincipals"])
        for g in self.seed["groups"]:
            self.members[g["id"]] = set(g["members"])
            self.group_names[g["id"]] = g["displayName"]
        self.bindings = self._bindings()
        self.manual = self._manual()

    # ------------------------------------------------------------------ directory
    def transitive(self, group: str) -> set[str]:
        """Every object under the group (users, service principals and nested groups), cycles allowed."""
        seen: set[str] = set()
        todo = [group]
        while todo:
            for m in self.members.get(todo.pop(), ()):
                if m not in seen and m != group:
                    seen.add(m)
                    if m in self.members:
                        todo.append(m)
        return seen

    def principals(self, group: str) -> set[str]:
        """The enabled users and service principals a group grants to (what the operator assigns)."""
        return {m for m in self.transitive(group) if m in self.enabled}

    def ancestors(self, obj: str) -> set[str]:
        """Every group `obj` is in, directly or through nesting."""
        parents: dict[str, set[str]] = defaultdict(set)
        for g, ms in self.members.items():
            for m in ms:
                if m in self.members:
                    parents[m].add(g)
        direct = {g for g, ms in self.members.items() if obj in ms}
        out, todo = set(direct), list(direct)
        while todo:
            for p in parents.get(todo.pop(), ()):
                if p not in out:
                    out.add(p)
                    todo.append(p)
        return out

    # ------------------------------------------------------------------ bindings
    def _bindings(self) -> list[Binding]:
        s = self.scenario
        rng = random.Random(s.seed * 7919 + 1)
        groups = list(self.members)
        nested = [g for g in groups if any(m in self.members for m in self.members[g])]
        wss = workspace_names(s)
        bound: list[str] = []
        out = []
        for i in range(s.bindings):
            r = rng.random()
            if bound and r < s.shared:
                group = rng.choice(bound)
            elif nested and r < s.shared + s.nested_bound:
                group = rng.choice(nested)
            else:
                group = rng.choice(groups)
            chosen = [group]
            if rng.random() < 0.2:  # a second group now and then
                chosen.append(rng.choice(groups))
            chosen = list(dict.fromkeys(chosen))
            bound.extend(chosen)
            pick, acc = rng.random(), 0.0
            kind, roles_from = ROLE_MIX[-1][1], ROLE_MIX[-1][2]
            for share, k, rs in ROLE_MIX:
                acc += share
                if pick < acc:
                    kind, roles_from = k, rs
                    break
            roles = rng.sample(roles_from, min(len(roles_from), 1 + (rng.random() < 0.35)))
            scope = None if kind is None else {kind: f"{SCOPE_COLLECTION[kind][:-1]}{rng.randrange(3)}"}
            out.append(
                Binding(f"rb-{i:04d}", wss[i % len(wss)], roles, scope, chosen, [rng.random() < 0.3 for _ in chosen])
            )
        return out

    def desired(self) -> dict[str, set[Grant]]:
        """Per workspace, every (role, principal, scope) the bindings want."""
        out: dict[str, set[Grant]] = {ws: set() for ws in workspace_names(self.scenario)}
        cache: dict[str, set[str]] = {}
        for b in self.bindings:
            scope = b.scope_path()
            for g in b.groups:
                if g not in cache:
                    cache[g] = self.principals(g)
                for role in b.roles:
                    rid = ROLE_IDS[role]
                    out[b.workspace].update((rid, p, scope) for p in cache[g])
        return out

    def _manual(self) -> dict[str, dict[str, Grant]]:
        s = self.scenario
        rng = random.Random(s.seed * 104729 + 2)
        desired = self.desired()
        out: dict[str, dict[str, Grant]] = {}
        for ws in workspace_names(s):
            wanted = sorted(desired[ws])
            picks = rng.sample(wanted, min(len(wanted), max(1, round(s.manual_adopted * len(wanted)))))
            admins = [
                (ROLE_IDS["Synapse Administrator"], rng.choice(self.users), f"workspaces/{ws}")
                for _ in range(s.manual_other)
            ]
            grants = list(dict.fromkeys([*picks, *admins]))  # one assignment per tuple, as Synapse allows
            out[ws] = {str(uuid.UUID(int=rng.getrandbits(128), version=4)): g for g in grants}
        return out

    def expected(self) -> dict[str, set[Grant]]:
        """What each workspace must hold once converged: the wanted grants and the manual ones."""
        desired = self.desired()
        return {ws: desired[ws] | set(self.manual[ws].values()) for ws in desired}

    # ------------------------------------------------------------------ the least work
    def minimum(
        self, *, page_size: int, latency: dict[str, float], write_concurrency: int, read_concurrency: int
    ) -> dict[str, Any]:
        """The Azure calls a perfect operator makes to converge from empty, and how long they take at
        best. Reads: one resolve per distinct subject, ceil(transitive members / 999) transitiveMembers
        pages per distinct bound group, one role-definition list and ceil(assignments / page size)
        assignment-list pages per workspace; writes: the wanted grants no assignment provides yet;
        tokens: one per audience (Graph, Synapse) for the one app registration."""
        desired = self.desired()
        manual = {ws: set(m.values()) for ws, m in self.manual.items()}
        writes = {ws: len(desired[ws] - manual[ws]) for ws in desired}
        subjects = {(g, by_id) for b in self.bindings for g, by_id in zip(b.groups, b.by_id, strict=True)}
        bound = {g for b in self.bindings for g in b.groups}
        pages = {g: max(1, math.ceil(len(self.transitive(g)) / GRAPH_PAGE)) for g in bound}
        list_pages = {ws: max(1, math.ceil(len(manual[ws]) / page_size)) for ws in desired}
        calls = {
            "synapse.createRoleAssignment": sum(writes.values()),
            "graph.transitiveMembers": sum(pages.values()),
            "graph.listGroups": sum(1 for _, by_id in subjects if not by_id),
            "graph.getGroup": sum(1 for _, by_id in subjects if by_id),
            "synapse.listRoleDefinitions": len(desired),
            "synapse.listRoleAssignments": sum(list_pages.values()),
            "login.token": 2,
        }
        g, syn = latency["graph"], latency["synapse"]
        # Reads: subjects are resolved, then their groups expanded, read_concurrency at a time (a group's
        # pages follow each other); each workspace's role definitions and first assignment list run
        # meanwhile. Writes: write_concurrency at a time per workspace, workspaces in parallel, so the
        # workspace with the most writes decides.
        graph_s = (
            math.ceil(len(subjects) / read_concurrency)
            + max(math.ceil(sum(pages.values()) / read_concurrency), max(pages.values(), default=0))
        ) * g
        synapse_read_s = max(((1 + list_pages[ws]) * syn for ws in desired), default=0.0)
        reads_s = max(graph_s, synapse_read_s)
        writes_s = max((math.ceil(n / write_concurrency) * syn for n in writes.values()), default=0.0)
        return {
            "calls": calls,
            "total": sum(calls.values()),
            "writes_per_workspace": writes,
            "distinct_subjects": len(subjects),
            "distinct_bound_groups": len(bound),
            "graph_pages_per_group_max": max(pages.values(), default=0),
            "reads_s": round(reads_s, 3),
            "writes_s": round(writes_s, 3),
            "lower_bound_s": round(reads_s + writes_s, 3),
            "formula": "lower bound = max(graph reads, Synapse reads) + max over workspaces of "
            "ceil(needed writes / write concurrency) x Synapse latency; graph reads = "
            "(ceil(subjects / read concurrency) + max(ceil(pages / read concurrency), most pages "
            "of one group)) x Graph latency; Synapse reads = (1 + assignment-list pages) x Synapse "
            "latency for the workspace with most pages; workspaces run in parallel; login latency 0",
        }

    def stats(self) -> dict[str, Any]:
        desired = self.desired()
        return {
            "users": len(self.users),
            "groups": len(self.members),
            "service_principals": len(self.seed["servicePrincipals"]),
            "direct_memberships": sum(len(m) for m in self.members.values()),
            "nested_groups": sum(1 for ms in self.members.values() for m in ms if m in self.members),
            "workspaces": self.scenario.workspaces,
            "bindings": len(self.bindings),
            "bindings_on_nested_groups": sum(
                1 for b in self.bindings if any(m in self.members for g in b.groups for m in self.members[g])
            ),
            "wanted_assignments": sum(len(d) for d in desired.values()),
            "manual_assignments": sum(len(m) for m in self.manual.values()),
            "largest_bound_group": max((len(self.transitive(g)) for b in self.bindings for g in b.groups), default=0),
        }

    # ------------------------------------------------------------------ membership changes
    def grants_of(self, principal: str) -> dict[str, set[Grant]]:
        """The wanted grants of one principal, per workspace (from the groups it is in now)."""
        groups = self.ancestors(principal)
        out: dict[str, set[Grant]] = defaultdict(set)
        if principal not in self.enabled:
            return out
        for b in self.bindings:
            if groups.intersection(b.groups):
                for role in b.roles:
                    out[b.workspace].add((ROLE_IDS[role], principal, b.scope_path()))
        return out

    def plan_changes(
        self,
        n: int,
        seed: int,
        max_removals: int = 5,
        kinds: tuple[str, ...] = ("add", "remove", "add-nested", "remove-nested"),
    ) -> list[Change]:
        """`n` membership changes, each on a different user (so their effects never overlap), cycling
        through `kinds`: add to a bound group, remove from a bound group, add to a nested child group of
        a bound group, remove from such a child group. Each must create or delete at least one
        assignment and at most `max_removals` (under the removal guard's floor). Applied to this
        world as they are planned, so `expected()` afterwards is the state after all of them."""
        rng = random.Random(seed)
        bound = sorted({g for b in self.bindings for g in b.groups})
        children = sorted({c for g in bound for c in self.transitive(g) if c in self.members and c not in bound})
        used: set[str] = set()
        manual = {ws: set(m.values()) for ws, m in self.manual.items()}
        out: list[Change] = []
        attempts = 0
        while len(out) < n and attempts < 200 * n:
            attempts += 1
            kind = kinds[len(out) % len(kinds)]
            pool = children if kind.endswith("nested") and children else bound
            group = rng.choice(pool)
            if kind.startswith("add"):
                user = rng.choice(self.users)
                if user in self.members[group]:
                    continue
            else:
                direct = sorted(m for m in self.members[group] if m in self.enabled and m not in self.members)
                if not direct:
                    continue
                user = rng.choice(direct)
            if user in used or user not in self.enabled:
                continue
            before = self.grants_of(user)
            (self.members[group].add if kind.startswith("add") else self.members[group].discard)(user)
            after = self.grants_of(user)
            creates = {ws: after[ws] - before[ws] - manual.get(ws, set()) for ws in after}
            deletes = {ws: before[ws] - after[ws] - manual.get(ws, set()) for ws in before}
            creates = {ws: g for ws, g in creates.items() if g}
            deletes = {ws: g for ws, g in deletes.items() if g}
            n_del = sum(len(g) for g in deletes.values())
            if not (creates or deletes) or n_del > max_removals:
                (self.members[group].discard if kind.startswith("add") else self.members[group].add)(user)
                continue
            used.add(user)
            out.append(Change(kind, group, self.group_names[group], user, creates, deletes))
        if len(out) < n:
            raise ValueError(f"only {len(out)} of {n} membership changes with an effect could be found")
        return out


@dataclass
class Change:
    kind: str  # add | remove | add-nested | remove-nested
    group: str
    group_name: str
    user: str
    creates: dict[str, set[Grant]]
    deletes: dict[str, set[Grant]]

    @property
    def adds(self) -> bool:
        return self.kind.startswith("add")

    def effects(self) -> Iterable[tuple[str, str, Grant]]:
        for ws, grants in self.creates.items():
            for g in grants:
                yield "create", ws, g
        for ws, grants in self.deletes.items():
            for g in grants:
                yield "delete", ws, g

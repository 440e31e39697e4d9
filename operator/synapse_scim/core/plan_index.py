"""What the last plans of one workspace computed, kept between syncs, so that the next plan redoes only
what changed (docs/architecture.md#incremental-planning).

Every rule of the planner but the removal guard is local to one role/scope pair: which grants to
create, which assignments are removal candidates or newly orphaned, which pairs still owe removals.
So the index keeps

- the workspace's assignments by pair (each slice deduplicated and in the planner's order) and a
  binding's wishes by pair (``BindingSplit``, made once per ``BindingState`` object);
- each pair's decision (``PairDecision``), with the inputs it was made from: it is reused while they
  are the very same objects, and remade from scratch otherwise;
- each binding's drift report, with the decisions and the names it was made from;
- the bindings that wish each principal (names of unexpected items come from any binding's wishes).

Reuse is decided by object identity, never by a version number a caller must remember to bump: an
input that is a new object is a change. The controller keeps unchanged bindings' states as the same
objects between syncs (reads/binding_memory.py) and the assignments as the list ``apply`` returned,
so a one-member change remakes one pair's decision and the reports over it. The planner's full
recomputation is the same code with an empty index; tests/unit/test_plan_index.py checks that both
agree on random sequences of changes.
"""

from __future__ import annotations

import bisect
import itertools
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from synapse_scim.core.model import (
    Assignment,
    BindingKey,
    BindingReport,
    BindingState,
    Create,
    DeletionPolicy,
    DesiredGrant,
    normalize_id,
    pair_key,
)

__all__ = ["BindingSplit", "PairDecision", "PlanIndex", "assignment_sort_key", "decide_pair", "split_binding"]

Pair = tuple[str, str]
TupleKey = tuple[str, str, str]


def assignment_sort_key(a: Assignment) -> tuple[str, ...]:
    """The planner's total order of assignments (deterministic output, one representative per id)."""
    return (*a.grant.key, normalize_id(a.id), a.id, a.scope, a.principal_type or "")


@dataclass(frozen=True, slots=True, eq=False)
class BindingSplit:
    """One binding's state, arranged by pair. Made once per state object; compared by identity."""

    state: BindingState
    claim_pairs: frozenset[Pair]  # current claims, in comparison form
    all_pairs: frozenset[Pair]  # current and previous claims, in comparison form
    wishes: Mapping[Pair, tuple[DesiredGrant, ...]]  # live bindings only (a deleting one's wishes are void)
    own: tuple[tuple[TupleKey, DesiredGrant], ...]  # its first wish per grant, in key order (its report)
    principals: Mapping[str, DesiredGrant]  # principal id -> its first wish naming it (names in reports)
    roles: Mapping[str, DesiredGrant]  # role id -> its first wish naming it

    @property
    def live(self) -> bool:
        return not self.state.deleting


def split_binding(state: BindingState) -> BindingSplit:
    wishes: dict[Pair, list[DesiredGrant]] = {}
    own: dict[TupleKey, DesiredGrant] = {}
    principals: dict[str, DesiredGrant] = {}
    roles: dict[str, DesiredGrant] = {}
    if not state.deleting:
        for dg in sorted(state.desired, key=lambda d: d.sort_key):
            g = dg.grant
            wishes.setdefault(g.pair, []).append(dg)
            own.setdefault(g.key, dg)
            principals.setdefault(g.principal_id, dg)
            roles.setdefault(g.role_id, dg)
    claims = frozenset(pair_key(r, s) for r, s in state.claims)
    return BindingSplit(
        state=state,
        claim_pairs=claims,
        all_pairs=claims | frozenset(pair_key(r, s) for r, s in state.previous_claims),
        wishes={p: tuple(ws) for p, ws in wishes.items()},
        own=tuple(sorted(own.items(), key=lambda kv: kv[0])),
        principals=principals,
        roles=roles,
    )


@dataclass(frozen=True, slots=True, eq=False)
class PairDecision:
    """What the rules decide for one role/scope pair (rules 1-3 of docs/architecture.md)."""

    creates: tuple[Create, ...]  # in key order
    candidates: tuple[Assignment, ...]  # removal candidates (rule 3), in the planner's order
    newly_orphaned: frozenset[str]
    managed: int  # managed assignments in the pair (the guard's denominator)
    unmanaged: int
    owed: bool  # a managed assignment nobody wants is still there (rule 3, carried claims)
    actual_keys: frozenset[TupleKey]
    # Assignments nobody wants, in the planner's order: (assignment, managed, removal candidate).
    unexpected: tuple[tuple[Assignment, bool, bool], ...]


def decide_pair(
    pair: Pair, splits: Sequence[BindingSplit], actual: Sequence[Assignment], orphaned: frozenset[str]
) -> PairDecision:
    """Rules 1-3 for one pair, from the bindings that claim it or wish in it (in key order) and its
    assignments (deduplicated, in the planner's order)."""
    wanted: dict[TupleKey, list[DesiredGrant]] = {}
    writers: dict[TupleKey, set[BindingKey]] = {}
    writer = protected = live = orphan = False
    for s in splits:
        b = s.state
        claims = pair in s.all_pairs
        if b.deleting:
            if claims and b.deletion_policy is DeletionPolicy.ORPHAN:
                orphan = True
            elif claims and b.active_enforcer:
                writer = True
            continue
        enforcer = b.active_enforcer
        for dg in s.wishes.get(pair, ()):
            wanted.setdefault(dg.grant.key, []).append(dg)
            if enforcer:
                writers.setdefault(dg.grant.key, set()).add(b.key)
        if claims:
            live = True
            writer = writer or enforcer
            protected = protected or not enforcer or not b.complete
    orphan = orphan and not live

    actual_keys = frozenset(a.grant.key for a in actual)
    creates: list[Create] = []
    for key in sorted(writers):
        if key in actual_keys:
            continue
        rep = min(wanted[key], key=lambda dg: dg.sort_key)
        creates.append(Create(rep.grant, rep.principal, rep.role_name, tuple(sorted(writers[key])), rep.via))

    managed_n = unmanaged_n = 0
    owed = False
    candidates: list[Assignment] = []
    newly_orphaned: set[str] = set()
    unexpected: list[tuple[Assignment, bool, bool]] = []
    for a in actual:
        # The id's canonical form only when it matters (orphans are rare; a pair can hold thousands).
        managed = a.owned and (not orphaned or normalize_id(a.id) not in orphaned)
        if managed:
            managed_n += 1
        else:
            unmanaged_n += 1
        if a.grant.key in wanted:
            continue
        candidate = False
        if managed:
            owed = True
            if orphan:
                newly_orphaned.add(normalize_id(a.id))
            elif writer and not protected:
                candidates.append(a)
                candidate = True
        unexpected.append((a, managed, candidate))
    return PairDecision(
        creates=tuple(creates),
        candidates=tuple(candidates),
        newly_orphaned=frozenset(newly_orphaned),
        managed=managed_n,
        unmanaged=unmanaged_n,
        owed=owed,
        actual_keys=actual_keys,
        unexpected=tuple(unexpected),
    )


def _slices(actual: Iterable[Assignment]) -> dict[Pair, tuple[Assignment, ...]]:
    # One representative per listed id (paging overlaps must not turn into double deletes), by pair.
    by_id: dict[str, Assignment] = {}
    for a in sorted(actual, key=assignment_sort_key):
        by_id.setdefault(normalize_id(a.id), a)
    by_pair: dict[Pair, list[Assignment]] = {}
    for a in by_id.values():
        by_pair.setdefault(a.grant.pair, []).append(a)
    return {p: tuple(v) for p, v in by_pair.items()}


class PlanIndex:
    """One workspace's index, kept between its syncs by the controller (an empty one plans from scratch).

    Not thread-safe; one sync of a workspace at a time uses it (the controller's registry ensures that).
    """

    def __init__(self) -> None:
        self._actual: tuple[Assignment, ...] | None = None  # the assignments the slices were made from
        self._slices: dict[Pair, tuple[Assignment, ...]] = {}
        self._splits: dict[BindingKey, BindingSplit] = {}
        self._wishers: dict[str, set[BindingKey]] = {}  # principal id -> live bindings wishing it
        self._role_wishers: dict[str, set[BindingKey]] = {}
        self._names_version = 0  # bumped whenever a live binding's wishes may have changed
        self._decisions: dict[Pair, tuple[tuple[object, ...], PairDecision]] = {}
        self._orphaned: frozenset[str] = frozenset()
        self._names: dict[Pair, tuple[tuple[PairDecision, int, tuple[tuple[str, str], ...]], tuple[str, ...]]] = {}
        self._reports: dict[BindingKey, tuple[tuple[object, ...], BindingReport]] = {}
        self.decided = 0  # pair decisions made (not reused) since the index was created: for tests and benchmarks
        self.reported = 0  # binding reports made (not reused)

    # ---------------------------------------------------------------------------- inputs
    def load(self, actual: tuple[Assignment, ...], states: Iterable[BindingState]) -> list[BindingSplit]:
        """Bring the index in line with a plan's inputs; the splits of ``states``, in the same order."""
        if actual is not self._actual:
            self._slices = _slices(actual)
            self._actual = actual
        splits: list[BindingSplit] = []
        seen: set[BindingKey] = set()
        for state in states:
            seen.add(state.key)
            old = self._splits.get(state.key)
            if old is not None and old.state is state:
                splits.append(old)
                continue
            new = split_binding(state)
            self._replace(state.key, old, new)
            splits.append(new)
        for gone in [k for k in self._splits if k not in seen]:
            self._replace(gone, self._splits[gone], None)
        return splits

    def _replace(self, key: BindingKey, old: BindingSplit | None, new: BindingSplit | None) -> None:
        for split, index_op in ((old, "discard"), (new, "add")):
            if split is None:
                continue
            for pid in split.principals:
                wishers = self._wishers.setdefault(pid, set())
                getattr(wishers, index_op)(key)
                if not wishers:
                    del self._wishers[pid]
            for rid in split.roles:
                wishers = self._role_wishers.setdefault(rid, set())
                getattr(wishers, index_op)(key)
                if not wishers:
                    del self._role_wishers[rid]
        if new is None:
            del self._splits[key]
            self._reports.pop(key, None)
        else:
            self._splits[key] = new
        self._names_version += 1

    @property
    def actual(self) -> tuple[Assignment, ...]:
        """The deduplicated assignments, pair by pair."""
        return tuple(itertools.chain.from_iterable(self._slices[p] for p in sorted(self._slices)))

    def pairs(self, splits: Iterable[BindingSplit]) -> list[Pair]:
        """Every pair the assignments or the bindings touch, in order."""
        found = set(self._slices)
        for s in splits:
            found |= s.all_pairs
            found.update(s.wishes)
        return sorted(found)

    # ---------------------------------------------------------------------------- decisions
    def decide(
        self, pairs: Sequence[Pair], splits: Sequence[BindingSplit], orphaned: frozenset[str]
    ) -> dict[Pair, PairDecision]:
        """Each pair's decision: the one kept when its inputs are the same objects, else made anew."""
        touching: dict[Pair, list[BindingSplit]] = {p: [] for p in pairs}
        for s in sorted(splits, key=lambda s: s.state.key):
            for p in s.all_pairs | s.wishes.keys():
                touching[p].append(s)
        out: dict[Pair, PairDecision] = {}
        kept: dict[Pair, tuple[tuple[object, ...], PairDecision]] = {}
        same_orphans = orphaned == self._orphaned  # a new set each sync, rarely new contents
        self._orphaned = orphaned
        for p in pairs:
            slice_ = self._slices.get(p, ())
            inputs: tuple[object, ...] = (slice_, *touching[p])
            old = self._decisions.get(p)
            if old is not None and same_orphans and _same(old[0], inputs):
                decision = old[1]
            else:
                decision = decide_pair(p, touching[p], slice_, orphaned)
                self.decided += 1
            kept[p] = (inputs, decision)
            out[p] = decision
        self._decisions = kept
        return out

    @property
    def managed(self) -> int:
        """Managed assignments (the operator's, not orphaned) as the last plan decided them."""
        return sum(d.managed for _, d in self._decisions.values())

    # ---------------------------------------------------------------------------- names and reports
    def names(self, pair: Pair, decision: PairDecision, role_names: tuple[tuple[str, str], ...]) -> tuple[str, ...]:
        """The (principal, role) names of a pair's unexpected items, flattened: from the role definitions
        where given, else from the first wish anywhere in the workspace that names them, else the id."""
        old = self._names.get(pair)
        if old is not None and old[0][0] is decision and old[0][1] == self._names_version and old[0][2] == role_names:
            return old[1]
        defined = dict(role_names)
        out: list[str] = []
        for a, _, _ in decision.unexpected:
            g = a.grant
            out.append(self._first_display(g.principal_id, a.principal_id))
            out.append(defined[g.role_id] if g.role_id in defined else self._first_role_name(g.role_id, a.role_id))
        names = tuple(out)
        if old is not None and old[1] == names:
            names = old[1]  # the same object: the reports over this pair need not be made again
        self._names[pair] = ((decision, self._names_version, role_names), names)
        return names

    def _first_display(self, pid: str, default: str) -> str:
        wishes = [self._splits[k].principals[pid] for k in self._wishers.get(pid, ())]
        return min(wishes, key=lambda dg: dg.sort_key).principal.display if wishes else default

    def _first_role_name(self, rid: str, default: str) -> str:
        wishes = [self._splits[k].roles[rid] for k in self._role_wishers.get(rid, ())]
        return min(wishes, key=lambda dg: dg.sort_key).role_name if wishes else default

    def report(self, key: BindingKey, inputs: tuple[object, ...]) -> BindingReport | None:
        """The report kept for ``key`` if it was made from the same inputs."""
        old = self._reports.get(key)
        return old[1] if old is not None and _same(old[0], inputs) else None

    def keep_report(self, key: BindingKey, inputs: tuple[object, ...], report: BindingReport) -> None:
        self._reports[key] = (inputs, report)
        self.reported += 1

    # ---------------------------------------------------------------------------- writes
    def apply(self, creates: Iterable[Create], deletes: Iterable[Assignment]) -> tuple[Assignment, ...]:
        """The assignments after ``creates`` and ``deletes`` ran, as ``planner.apply`` computes them, with
        only the written pairs' slices remade; the result is what the next plan should be given."""
        gone: dict[Pair, set[str]] = {}
        for a in deletes:
            gone.setdefault(a.grant.pair, set()).add(normalize_id(a.id))
        added: dict[Pair, dict[TupleKey, Assignment]] = {}
        for c in creates:
            added.setdefault(c.grant.pair, {}).setdefault(
                c.grant.key,
                c.assignment(),
            )
        for p in gone.keys() | added.keys():
            removed = gone.get(p, set())
            kept = [a for a in self._slices.get(p, ()) if not removed or normalize_id(a.id) not in removed]
            new = added.get(p, {})
            if new:
                present = {a.grant.key for a in kept}
                ids = {normalize_id(a.id) for a in kept}
                # 409 RoleAssignmentAlreadyExists: a tuple already granted changes nothing.
                fresh = [a for key, a in new.items() if key not in present and normalize_id(a.id) not in ids]
                if len(fresh) > 64:  # a first sync's thousands of grants: one sort, not thousands of inserts
                    kept = sorted([*kept, *fresh], key=assignment_sort_key)
                else:
                    for a in fresh:
                        bisect.insort(kept, a, key=assignment_sort_key)  # the slice stays in order
            old_slice = self._slices.get(p, ())
            if kept:
                self._slices[p] = tuple(kept)
            else:
                self._slices.pop(p, None)
            self._carry_decision(p, old_slice, self._slices.get(p, ()), removed, fresh if new else [])
        self._actual = self.actual
        return self._actual

    def _carry_decision(
        self,
        pair: Pair,
        old_slice: tuple[Assignment, ...],
        new_slice: tuple[Assignment, ...],
        removed: set[str],
        fresh: list[Assignment],
    ) -> None:
        """The pair's decision after its own writes, without deciding it again: the creates made are
        no longer to make, the candidates deleted no longer there. Only when the writes are exactly what
        the kept decision asked for (else the next plan decides the pair again)."""
        kept = self._decisions.get(pair)
        if kept is None or not kept[0] or kept[0][0] is not old_slice:
            return
        inputs, d = kept
        made = {a.grant.key for a in fresh}
        to_make = {c.grant.key for c in d.creates}
        candidates = {normalize_id(a.id) for a in d.candidates}
        if (
            not made <= to_make
            or not removed <= candidates
            or len(old_slice) - len(removed) + len(fresh) != len(new_slice)
        ):
            del self._decisions[pair]
            return
        unexpected = tuple(u for u in d.unexpected if not removed or normalize_id(u[0].id) not in removed)
        orphans = sum(1 for a in fresh if normalize_id(a.id) in self._orphaned)
        carried = PairDecision(
            creates=tuple(c for c in d.creates if c.grant.key not in made),
            candidates=tuple(a for a in d.candidates if normalize_id(a.id) not in removed),
            newly_orphaned=d.newly_orphaned,
            # What was deleted was managed (a candidate); what was made is ours, and managed unless an
            # orphan mark left on its deterministic id says otherwise.
            managed=d.managed + len(fresh) - orphans - len(removed),
            unmanaged=d.unmanaged + orphans,
            owed=any(managed for _, managed, _ in unexpected),
            actual_keys=frozenset(a.grant.key for a in new_slice) if removed else d.actual_keys | made,
            unexpected=unexpected,
        )
        self._decisions[pair] = ((new_slice, *inputs[1:]), carried)


def _same(a: tuple[object, ...], b: tuple[object, ...]) -> bool:
    """Element-wise identity (a new object is a change; equal contents are not looked at)."""
    return len(a) == len(b) and all(x is y for x, y in zip(a, b, strict=True))

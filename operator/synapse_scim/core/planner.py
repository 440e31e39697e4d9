"""The pure planner: desired grants + listed assignments -> what to create, remove, hold, report.

Everything the operator decides about a workspace is decided here, from plain data, so that it can be
tested exhaustively and reasoned about without Azure. ``reads.inputs.read_workspace`` builds the
``WorkspaceInputs``; ``plan_workspace`` returns a ``Plan``; the controller executes it and
`synapse-scim plan` prints it.

The rules, and why each holds, are in docs/architecture.md#the-planners-rules. The comments below
cite them by number; a change to a rule changes that section in the same commit.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping

from synapse_scim.core.model import (
    Assignment,
    BindingKey,
    BindingReport,
    BindingState,
    DeletionPolicy,
    DesiredGrant,
    DriftItem,
    Grant,
    Plan,
    PlanSummary,
    Principal,
    WorkspaceInputs,
    normalize_id,
    pair_key,
)
from synapse_scim.core.plan_index import BindingSplit, PairDecision, PlanIndex, assignment_sort_key
from synapse_scim.core.reasons import Reason

__all__ = [
    "HOLD_READS_INCOMPLETE",
    "HOLD_REMOVALS",
    "apply",
    "compute_plan_id",
    "describe",
    "desired_grants",
    "guard_trips",
    "plan_workspace",
]

HOLD_REMOVALS = Reason.REMOVALS_HELD
HOLD_READS_INCOMPLETE = Reason.READS_INCOMPLETE

Pair = tuple[str, str]
TupleKey = tuple[str, str, str]


def desired_grants(
    binding: BindingKey,
    role_ids: Mapping[str, str],
    principals: Iterable[tuple[Principal, tuple[str, ...]]],
    scope: str,
) -> frozenset[DesiredGrant]:
    """Every (role, principal) combination of one binding at its scope.

    ``role_ids`` maps role *names* (as written in the spec) to resolved ids; ``principals`` are
    the resolved subjects with the chain of group names each came through (``()`` if direct).
    The same principal reached through two groups yields two DesiredGrants for one Grant; the
    planner treats them as one grant and keeps the explanations apart.
    """
    resolved = list(principals)
    return frozenset(
        DesiredGrant(
            grant=Grant(role_id, principal.id, scope),
            principal=principal,
            role_name=role_name,
            binding=binding,
            via=tuple(via),
        )
        for role_name, role_id in role_ids.items()
        for principal, via in resolved
    )


def compute_plan_id(deletions: Iterable[Assignment]) -> str:
    """Short stable id of a set of deletions: what a person approves.

    It hashes the exact set of assignment ids, so an approval covers precisely the removals that
    were reviewed; if the directory moves and the set changes, the id changes and the old
    approval no longer matches.
    """
    ids = sorted({normalize_id(a.id) for a in deletions})
    return hashlib.sha256("\n".join(ids).encode()).hexdigest()[:12]


def guard_trips(n: int, owned: int, max_removals: int, max_percent: int, percent_floor: int) -> bool:
    """The removal guard's trip condition (rule 5, docs/architecture.md#the-planners-rules).

    ``n > max_removals`` or (``n > percent_floor`` and ``n`` is more than ``max_percent`` % of
    the owned assignments). Integer arithmetic, so 20 % of 25 is exactly 5.
    """
    if n > max_removals:
        return True
    return owned > 0 and n > percent_floor and 100 * n > max_percent * owned


def plan_workspace(inputs: WorkspaceInputs, *, reports: bool = True, index: PlanIndex | None = None) -> Plan:
    """Plan one sync of one workspace. Pure and deterministic.

    ``reports=False`` leaves ``Plan.reports`` and ``Plan.deleting_reports`` empty: a caller that only
    needs the writes (and reports on a second plan after them) does not pay for per-binding drift
    reports twice.

    ``index``: what the last plans of this workspace computed (core/plan_index.py); the plan is the
    same with or without it, only cheaper when few inputs changed. Without one, everything is computed.

    The rules (1 union, 2 creates, 3 pruning domain and orphans, 4 full knowledge, 5 removal guard,
    6 reports, 7 finalizing, 8 determinism, 9 suspended workspace) are stated, with their reasons, in
    docs/architecture.md#the-planners-rules.
    """
    index = PlanIndex() if index is None else index
    splits = index.load(inputs.actual, sorted(inputs.bindings, key=lambda b: b.key))
    pairs = index.pairs(splits)
    # Rules 1-3 pair by pair: the creates, the removal candidates, the orphan marks.
    decisions = index.decide(pairs, splits, inputs.orphaned_ids)
    creates = sorted((c for d in decisions.values() for c in d.creates), key=lambda c: c.grant.key)
    candidates = [a for d in decisions.values() for a in d.candidates]
    newly_orphaned = frozenset().union(*(d.newly_orphaned for d in decisions.values()))

    # Rules 4 and 5.
    deletes: list[Assignment] = []
    held: list[Assignment] = []
    hold_reason: Reason | None = None
    plan_id: str | None = None
    if candidates and not inputs.actual_complete:
        held, hold_reason = candidates, HOLD_READS_INCOMPLETE
    elif candidates:
        guard = inputs.guard
        owned_count = sum(d.managed for d in decisions.values())
        if guard_trips(len(candidates), owned_count, guard.max_removals, guard.max_percent, guard.percent_floor):
            plan_id = compute_plan_id(candidates)
            approved = (inputs.approved_plan_id or "").strip().lower()
            if approved == plan_id:
                deletes = candidates
            else:
                held, hold_reason = candidates, HOLD_REMOVALS
        else:
            deletes = candidates

    held_pairs = {a.grant.pair for a in held}

    # Rule 3, carried claims: a pair a live binding no longer claims stays claimed while managed,
    # undesired assignments there still await its removal (held, or not reached); otherwise the
    # status written after this sync would forget it, and nothing would ever remove them.
    owed_pairs = {p for p, d in decisions.items() if d.owed}
    carried: dict[BindingKey, frozenset[tuple[str, str]]] = {}
    for split in splits:
        b = split.state
        if b.deleting or not b.active_enforcer or not owed_pairs:
            continue
        keep = frozenset(
            (r, s)
            for r, s in b.previous_claims
            if pair_key(r, s) not in split.claim_pairs and pair_key(r, s) in owed_pairs
        )
        if keep:
            carried[b.key] = keep
    finalizable = frozenset(
        s.state.key
        for s in splits
        if s.state.deleting and _may_finalize(s.state, set(s.all_pairs), inputs.actual_complete, held_pairs)
    )

    drift: dict[BindingKey, BindingReport] = {}
    leaving: dict[BindingKey, BindingReport] = {}
    if reports:
        # Rule 6: a live binding over its current claims; a deleting one, whose wishes are void, over
        # the pairs its clean-up covers, so that its status says what its finalizer waits for.
        withheld = bool(held)
        for split in splits:
            b = split.state
            current = sorted(split.all_pairs if _cleans_up(b) else ()) if b.deleting else sorted(split.claim_pairs)
            report = _report(index, split, current, decisions, inputs.role_names, withheld)
            (leaving if b.deleting else drift)[b.key] = report
    ordered_deletes = tuple(sorted(deletes, key=assignment_sort_key))
    ordered_held = tuple(sorted(held, key=assignment_sort_key))
    if inputs.suspended:
        # Rule 9: a suspended workspace is written nothing, but what it would do is still reported.
        return Plan(
            held=ordered_held,
            hold_reason=hold_reason,
            plan_id=plan_id,
            reports=drift,
            deleting_reports=leaving,
            carried_claims=carried,
        )
    return Plan(
        creates=tuple(creates),
        deletes=ordered_deletes,
        held=ordered_held,
        hold_reason=hold_reason,
        plan_id=plan_id,
        newly_orphaned=newly_orphaned,
        finalizable=finalizable,
        reports=drift,
        deleting_reports=leaving,
        carried_claims=carried,
    )


def _cleans_up(b: BindingState) -> bool:
    """Whether a deleting binding's pairs are its to clean up: revoked (rule 3) or marked orphaned."""
    return b.deletion_policy is DeletionPolicy.ORPHAN or b.active_enforcer


def _may_finalize(b: BindingState, pairs: set[Pair], actual_complete: bool, held_pairs: set[Pair]) -> bool:
    if b.deletion_policy is DeletionPolicy.ORPHAN:
        # Orphan marks must cover every assignment, including ones an incomplete list did not show.
        return actual_complete
    if not b.active_enforcer:
        return True  # an Observe or suspended binding removes nothing, so it has nothing to wait for
    # Leaving with removals of its pairs still withheld would leave them owned but unclaimed forever.
    return actual_complete and not (pairs & held_pairs)


def _report(
    index: PlanIndex,
    split: BindingSplit,
    current: list[Pair],
    decisions: Mapping[Pair, PairDecision],
    role_names: tuple[tuple[str, str], ...],
    withheld: bool,
) -> BindingReport:
    """Rule 6 for one binding: its wishes against the assignments, and what else is in its pairs. Kept
    in the index while the decisions and names it was made from are the same objects."""
    b = split.state
    own = () if b.deleting else split.own
    names = [index.names(p, decisions[p], role_names) for p in current]
    made_from: tuple[object, ...] = (
        split,
        withheld,
        *(decisions[p] for p in current),
        *names,
        *(decisions[p] for p in sorted(split.wishes)),
    )
    kept = index.report(b.key, made_from)
    if kept is not None:
        return kept
    missing = tuple(
        DriftItem(
            principal=dg.principal.display or dg.grant.principal_id,
            principal_id=dg.grant.principal_id,
            role=dg.role_name or dg.grant.role_id,
            role_id=dg.grant.role_id,
            scope=dg.grant.scope,
            managed=True,
        )
        for key, dg in own
        if key not in decisions[dg.grant.pair].actual_keys
    )
    items: list[tuple[Assignment, bool, bool, str, str]] = []
    unmanaged = 0
    for p, pair_names in zip(current, names, strict=True):
        d = decisions[p]
        unmanaged += d.unmanaged  # someone else's, wanted or not: the operator never removes them
        items.extend(
            (a, managed, candidate, pair_names[2 * i], pair_names[2 * i + 1])
            for i, (a, managed, candidate) in enumerate(d.unexpected)
        )
    if len(current) > 1:
        items.sort(key=lambda item: assignment_sort_key(item[0]))
    # Every removal candidate is deleted now or withheld (all of them, when the guard or incomplete
    # reads hold any).
    pending = sum(1 for item in items if item[2])
    report = BindingReport(
        desired=len(own),
        in_sync=len(own) - len(missing),
        pending_removal=pending,
        unmanaged=unmanaged,
        held=pending if withheld else 0,
        missing=missing,
        unexpected=tuple(
            DriftItem(
                principal=principal,
                principal_id=a.principal_id,
                role=role,
                role_id=a.role_id,
                scope=a.scope,
                managed=managed,
            )
            for a, managed, _, principal, role in items
        ),
        problems=() if b.deleting else b.errors,
    )
    index.keep_report(b.key, made_from, report)
    return report


def apply(actual: Iterable[Assignment], plan: Plan) -> tuple[Assignment, ...]:
    """The assignment list after ``plan`` ran (creates with their deterministic ids, then
    deletes), as Synapse would list it. For tests and dry runs: planning against the result with
    the same bindings must yield an empty plan.
    """
    gone = {normalize_id(a.id) for a in plan.deletes}
    result = [a for a in actual if normalize_id(a.id) not in gone]
    present = {a.grant.key for a in result}
    for c in plan.creates:
        if c.grant.key in present:
            continue  # 409 RoleAssignmentAlreadyExists: the tuple is granted, nothing changes
        present.add(c.grant.key)
        result.append(c.assignment())
    return tuple(sorted(result, key=assignment_sort_key))


def describe(plan: Plan) -> PlanSummary:
    """Counts of a plan, for one log line."""
    return PlanSummary(
        creates=len(plan.creates),
        deletes=len(plan.deletes),
        held=len(plan.held),
        newly_orphaned=len(plan.newly_orphaned),
        hold_reason=plan.hold_reason,
        plan_id=plan.plan_id,
    )

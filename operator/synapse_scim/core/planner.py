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
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping

from synapse_scim.core.model import (
    Assignment,
    BindingKey,
    BindingReport,
    BindingState,
    Create,
    DeletionPolicy,
    DesiredGrant,
    DriftItem,
    Grant,
    Plan,
    PlanSummary,
    Principal,
    WorkspaceInputs,
    assignment_id,
    normalize_id,
    pair_key,
)
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


def _assignment_sort_key(a: Assignment) -> tuple[str, ...]:
    return (*a.grant.key, normalize_id(a.id), a.id, a.scope, a.principal_type or "")


def plan_workspace(inputs: WorkspaceInputs, *, reports: bool = True) -> Plan:
    """Plan one sync of one workspace. Pure and deterministic.

    ``reports=False`` leaves ``Plan.reports`` and ``Plan.deleting_reports`` empty: a caller that only
    needs the writes (and reports on a second plan after them) does not pay for per-binding drift
    reports twice.

    The rules (1 union, 2 creates, 3 pruning domain and orphans, 4 full knowledge, 5 removal guard,
    6 reports, 7 finalizing, 8 determinism, 9 suspended workspace) are stated, with their reasons, in
    docs/architecture.md#the-planners-rules.
    """
    bindings = sorted(inputs.bindings, key=lambda b: b.key)
    live = [b for b in bindings if not b.deleting]
    orphaned = inputs.orphaned_ids

    # One representative per listed id; paging overlaps must not turn into double deletes.
    by_id: dict[str, Assignment] = {}
    for a in sorted(inputs.actual, key=_assignment_sort_key):
        by_id.setdefault(normalize_id(a.id), a)
    actual = list(by_id.values())
    actual_keys: set[TupleKey] = {a.grant.key for a in actual}

    def is_managed(a: Assignment) -> bool:
        return a.owned and normalize_id(a.id) not in orphaned

    # Rule 1: every wish of a live binding, grouped by grant. The binding that carries a wish
    # is what counts (not DesiredGrant.binding), so a mislabelled wish cannot borrow another's mode.
    wanted: dict[TupleKey, list[DesiredGrant]] = defaultdict(list)
    writers: dict[TupleKey, set[BindingKey]] = defaultdict(set)
    for b in live:
        for dg in b.desired:
            wanted[dg.grant.key].append(dg)
            if b.active_enforcer:
                writers[dg.grant.key].add(b.key)

    # Rule 2.
    creates: list[Create] = []
    for key in sorted(writers):
        if key in actual_keys:
            continue
        rep = min(wanted[key], key=lambda dg: dg.sort_key)
        creates.append(Create(rep.grant, rep.principal, rep.role_name, tuple(sorted(writers[key])), rep.via))

    # Rule 3.
    def claims_of(b: BindingState) -> set[Pair]:
        return {pair_key(r, s) for r, s in b.all_claims}

    writer_pairs: set[Pair] = set()
    protected_pairs: set[Pair] = set()
    live_pairs: set[Pair] = set()
    orphan_pairs: set[Pair] = set()
    for b in bindings:
        pairs = claims_of(b)
        if b.deleting:
            if b.deletion_policy is DeletionPolicy.ORPHAN:
                orphan_pairs |= pairs
            elif b.active_enforcer:
                writer_pairs |= pairs
            continue
        live_pairs |= pairs
        if b.active_enforcer:
            writer_pairs |= pairs
        if not b.active_enforcer or not b.complete:
            protected_pairs |= pairs
    orphan_pairs -= live_pairs

    candidates: list[Assignment] = []
    newly_orphaned: set[str] = set()
    for a in actual:
        if not is_managed(a) or a.grant.key in wanted:
            continue
        pair = a.grant.pair
        if pair in orphan_pairs:
            newly_orphaned.add(normalize_id(a.id))
        elif pair in writer_pairs and pair not in protected_pairs:
            candidates.append(a)

    # Rules 4 and 5.
    deletes: list[Assignment] = []
    held: list[Assignment] = []
    hold_reason: Reason | None = None
    plan_id: str | None = None
    if candidates and not inputs.actual_complete:
        held, hold_reason = candidates, HOLD_READS_INCOMPLETE
    elif candidates:
        guard = inputs.guard
        owned_count = sum(1 for a in actual if is_managed(a))
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
    owed_pairs = {a.grant.pair for a in actual if is_managed(a) and a.grant.key not in wanted}
    carried: dict[BindingKey, frozenset[tuple[str, str]]] = {}
    for b in live:
        if not b.active_enforcer or not owed_pairs:
            continue
        current = {pair_key(r, s) for r, s in b.claims}
        keep = frozenset(
            (r, s) for r, s in b.previous_claims if pair_key(r, s) not in current and pair_key(r, s) in owed_pairs
        )
        if keep:
            carried[b.key] = keep
    finalizable = frozenset(
        b.key for b in bindings if b.deleting and _may_finalize(b, claims_of(b), inputs.actual_complete, held_pairs)
    )

    drift: dict[BindingKey, BindingReport] = {}
    leaving: dict[BindingKey, BindingReport] = {}
    if reports:
        # Rule 6: a live binding over its current claims; a deleting one, whose wishes are void, over
        # the pairs its clean-up covers, so that its status says what its finalizer waits for.
        scopes = [(b, {pair_key(r, s) for r, s in b.claims}, False) for b in live]
        scopes += [(b, claims_of(b) if _cleans_up(b) else set(), True) for b in bindings if b.deleting]
        made = _reports(inputs, scopes, actual, wanted, is_managed, deletes, held)
        drift = {k: made[k] for k in (b.key for b in live)}
        leaving = {b.key: made[b.key] for b in bindings if b.deleting}
    if inputs.suspended:
        # Rule 9: a suspended workspace is written nothing, but what it would do is still reported.
        return Plan(
            held=tuple(sorted(held, key=_assignment_sort_key)),
            hold_reason=hold_reason,
            plan_id=plan_id,
            reports=drift,
            deleting_reports=leaving,
            carried_claims=carried,
        )
    return Plan(
        creates=tuple(creates),
        deletes=tuple(sorted(deletes, key=_assignment_sort_key)),
        held=tuple(sorted(held, key=_assignment_sort_key)),
        hold_reason=hold_reason,
        plan_id=plan_id,
        newly_orphaned=frozenset(newly_orphaned),
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


def _reports(
    inputs: WorkspaceInputs,
    scopes: list[tuple[BindingState, set[Pair], bool]],
    actual: list[Assignment],
    wanted: Mapping[TupleKey, list[DesiredGrant]],
    is_managed: Callable[[Assignment], bool],
    deletes: list[Assignment],
    held: list[Assignment],
) -> dict[BindingKey, BindingReport]:
    # Names for unexpected items: from role definitions if given, else from anybody's wishes.
    role_names: dict[str, str] = {}
    principal_names: dict[str, str] = {}
    for key in sorted(wanted):
        for dg in sorted(wanted[key], key=lambda d: d.sort_key):
            role_names.setdefault(dg.grant.role_id, dg.role_name)
            principal_names.setdefault(dg.grant.principal_id, dg.principal.display)
    role_names.update(dict(inputs.role_names))

    deleted_ids = {normalize_id(a.id) for a in deletes}
    held_ids = {normalize_id(a.id) for a in held}
    # Each assignment's grant is built once and filed under its role/scope pair: a binding looks only
    # at the pairs it claims (bindings x assignments Grant constructions made big workspaces slow).
    by_pair: dict[tuple[str, str], list[tuple[int, Assignment, Grant]]] = {}
    actual_keys: set[TupleKey] = set()
    for i, a in enumerate(actual):
        g = a.grant
        actual_keys.add(g.key)
        by_pair.setdefault(g.pair, []).append((i, a, g))
    reports: dict[BindingKey, BindingReport] = {}
    # Each binding, the pairs its report covers, and whether it is deleting (its wishes are void).
    for b, current, deleting in scopes:
        own: dict[TupleKey, DesiredGrant] = {}
        for dg in () if deleting else sorted(b.desired, key=lambda d: d.sort_key):
            own.setdefault(dg.grant.key, dg)
        missing = tuple(
            DriftItem(
                principal=dg.principal.display or dg.grant.principal_id,
                principal_id=dg.grant.principal_id,
                role=dg.role_name or dg.grant.role_id,
                role_id=dg.grant.role_id,
                scope=dg.grant.scope,
                managed=True,
            )
            for key, dg in sorted(own.items())
            if key not in actual_keys
        )
        unexpected: list[DriftItem] = []
        pending = held_here = unmanaged = 0
        in_pairs = sorted(item for pair in current for item in by_pair.get(pair, ()))  # actual's order
        for _, a, g in in_pairs:
            managed = is_managed(a)
            if not managed:
                unmanaged += 1  # someone else's, wanted or not: the operator never removes it
            if g.key in wanted:
                continue
            aid = normalize_id(a.id)
            if aid in deleted_ids or aid in held_ids:
                pending += 1
                held_here += aid in held_ids
            unexpected.append(
                DriftItem(
                    principal=principal_names.get(g.principal_id, a.principal_id),
                    principal_id=a.principal_id,
                    role=role_names.get(g.role_id, a.role_id),
                    role_id=a.role_id,
                    scope=a.scope,
                    managed=bool(managed),
                )
            )
        reports[b.key] = BindingReport(
            desired=len(own),
            in_sync=len(own) - len(missing),
            pending_removal=pending,
            unmanaged=unmanaged,
            held=held_here,
            missing=missing,
            unexpected=tuple(unexpected),
            problems=() if deleting else b.errors,
        )
    return reports


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
        result.append(
            Assignment(
                id=assignment_id(c.grant),
                role_id=c.grant.role_id,
                principal_id=c.grant.principal_id,
                scope=c.grant.scope,
                principal_type=str(c.principal_type),
            )
        )
    return tuple(sorted(result, key=_assignment_sort_key))


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

"""Property-based tests: the planner's safety promises hold for arbitrary small worlds.

The universe is deliberately tiny (2 roles x 2 scopes x 4 principals = 16 tuples) so that
random bindings collide on pairs and tuples all the time, which is where the rules interact.
"""

from __future__ import annotations

import dataclasses

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from planner_builders import CONTRIBUTOR, POOL, PUBLISHER, WS, key, manual, owned, user, want

from synapse_scim.core.model import (
    Assignment,
    BindingState,
    DeletionPolicy,
    ManagementPolicy,
    Plan,
    RemovalGuard,
    WorkspaceInputs,
    normalize_id,
)
from synapse_scim.core.planner import HOLD_READS_INCOMPLETE, HOLD_REMOVALS, apply, plan_workspace

ROLES = (CONTRIBUTOR, PUBLISHER)
SCOPES = (WS, POOL)
PAIRS = tuple((r, s) for r in ROLES for s in SCOPES)
PRINCIPALS = tuple(user(i) for i in range(4))
TUPLES = tuple((r, p, s) for r, s in PAIRS for p in PRINCIPALS)

# Small worlds, one draw per subset: the whole module runs in a few seconds on 2 cores.
PROPS = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@st.composite
def binding_states(draw: st.DrawFn, index: int) -> BindingState:
    bk = key(f"b{index}")
    claims = _subset(PAIRS, draw(st.integers(1, 2 ** len(PAIRS) - 1)))
    desired_tuples = _subset(TUPLES, draw(st.integers(0, 2 ** len(TUPLES) - 1)))
    via = draw(st.sampled_from([(), ("G",), ("G", "Nested")]))
    return BindingState(
        key=bk,
        # Biased towards the common case (Enforce, active, complete) so removals actually happen
        # often; the rarer states still show up in most runs and protect pairs when they do.
        mode=draw(_mostly(ManagementPolicy.ENFORCE, ManagementPolicy.OBSERVE)),
        suspended=draw(_mostly(False, True)),
        deleting=draw(_mostly(False, True)),
        deletion_policy=draw(st.sampled_from(list(DeletionPolicy))),
        claims=claims,
        previous_claims=claims | _subset(PAIRS, draw(st.integers(0, 2 ** len(PAIRS) - 1))),
        # Adapters only ever desire within the pairs they claim.
        desired=frozenset(want(bk, r, p, s, via) for r, p, s in desired_tuples if (r, s) in claims),
        complete=draw(_mostly(True, False)),
    )


def _subset(items: tuple, mask: int) -> frozenset:
    # One integer per subset instead of one draw per element: generation dominates the runtime.
    return frozenset(item for i, item in enumerate(items) if mask >> i & 1)


def _mostly(usual: object, rare: object) -> st.SearchStrategy:
    return st.sampled_from([usual, usual, usual, rare])


def _shout(a: Assignment) -> Assignment:
    # The service may echo ids, GUIDs and scopes in another case; identity must survive it.
    return Assignment(a.id.upper(), a.role_id.upper(), a.principal_id.upper(), a.scope.upper(), a.principal_type)


@st.composite
def worlds(draw: st.DrawFn) -> WorkspaceInputs:
    n = draw(st.integers(0, 4))
    bindings = tuple(draw(binding_states(i)) for i in range(n))
    # Per tuple one base-4 digit: 0/1 absent, 2 owned, 3 manual; and one bit for "echoed in upper case".
    kinds = draw(st.integers(0, 4 ** len(TUPLES) - 1))
    shout = draw(st.integers(0, 2 ** len(TUPLES) - 1))
    actual: list[Assignment] = []
    for i, (r, p, s) in enumerate(TUPLES):
        kind = kinds // 4**i % 4
        if kind < 2:
            continue
        a = owned(r, p, s) if kind == 2 else manual(r, p, s)
        actual.append(_shout(a) if shout >> i & 1 else a)
    owned_ids = tuple(sorted(a.id for a in actual if a.owned))
    orphaned = _subset(owned_ids, draw(st.integers(0, 2 ** len(owned_ids) - 1)) & draw(st.integers(0, 2**16 - 1)))
    guard = draw(
        st.one_of(
            st.just(RemovalGuard.disabled()),
            st.builds(
                RemovalGuard,
                st.sampled_from([0, 1, 2, 3, 50]),
                st.sampled_from([0, 10, 20, 50, 100]),
                st.sampled_from([0, 1, 2, 5]),
            ),
        )
    )
    return WorkspaceInputs(
        bindings=bindings,
        actual=tuple(actual),
        actual_complete=draw(_mostly(True, False)),
        guard=guard,
        orphaned_ids=orphaned,
    )


def _desired_by_live(ins: WorkspaceInputs) -> set[tuple[str, str, str]]:
    return {dg.grant.key for b in ins.bindings if not b.deleting for dg in b.desired}


def _converge(ins: WorkspaceInputs) -> tuple[WorkspaceInputs, Plan]:
    """Plan, approve a held plan once, apply, record orphans: the world after one full sync."""
    plan = plan_workspace(ins)
    if plan.hold_reason == HOLD_REMOVALS:
        ins = dataclasses.replace(ins, approved_plan_id=plan.plan_id)
        plan = plan_workspace(ins)
    after = dataclasses.replace(
        ins, actual=apply(ins.actual, plan), orphaned_ids=ins.orphaned_ids | plan.newly_orphaned
    )
    return after, plan


@PROPS
@given(worlds())
def test_never_deletes_unowned_or_orphaned_assignments(ins: WorkspaceInputs) -> None:
    plan = plan_workspace(ins)
    for a in (*plan.deletes, *plan.held):
        assert a.owned and normalize_id(a.id) not in ins.orphaned_ids
    for aid in plan.newly_orphaned:
        assert aid not in ins.orphaned_ids
        assert any(normalize_id(a.id) == aid and a.owned for a in ins.actual)


@PROPS
@given(worlds())
def test_never_deletes_what_a_live_binding_desires(ins: WorkspaceInputs) -> None:
    plan = plan_workspace(ins)
    desired = _desired_by_live(ins)
    assert not any(a.grant.key in desired for a in (*plan.deletes, *plan.held))
    assert not any(normalize_id(a.id) in plan.newly_orphaned and a.grant.key in desired for a in ins.actual)


@PROPS
@given(worlds())
def test_deletes_only_on_a_complete_list(ins: WorkspaceInputs) -> None:
    plan = plan_workspace(ins)
    if not ins.actual_complete:
        assert plan.deletes == ()
        assert plan.hold_reason in (None, HOLD_READS_INCOMPLETE) and plan.plan_id is None
    assert bool(plan.held) == (plan.hold_reason is not None)


@PROPS
@given(worlds())
def test_deletes_only_in_pairs_a_writer_claims_and_nobody_protects(ins: WorkspaceInputs) -> None:
    plan = plan_workspace(ins)
    for a in plan.deletes:
        pair = a.grant.pair
        claimers = [b for b in ins.bindings if pair in {(r.lower(), s.lower()) for r, s in b.all_claims}]
        assert any(
            b.active_enforcer and (not b.deleting or b.deletion_policy is DeletionPolicy.DELETE) for b in claimers
        )
        assert all(b.active_enforcer and b.complete for b in claimers if not b.deleting)
        # A leaving Orphan binding's pair is only pruned when a live binding is in charge of it.
        if any(b.deleting and b.deletion_policy is DeletionPolicy.ORPHAN for b in claimers):
            assert any(not b.deleting for b in claimers)


@PROPS
@given(worlds())
def test_creates_only_what_an_enforcing_active_binding_wants_and_is_missing(ins: WorkspaceInputs) -> None:
    plan = plan_workspace(ins)
    present = {a.grant.key for a in ins.actual}
    for c in plan.creates:
        assert c.grant.key not in present
        wanters = [b for b in ins.bindings if any(dg.grant.key == c.grant.key for dg in b.desired)]
        enforcing = sorted(b.key for b in wanters if not b.deleting and b.active_enforcer)
        assert enforcing and list(c.bindings) == enforcing
    assert len({c.grant.key for c in plan.creates}) == len(plan.creates)
    # And everything such a binding wants is either present or created.
    wanted = {dg.grant.key for b in ins.bindings if not b.deleting and b.active_enforcer for dg in b.desired}
    assert wanted <= present | {c.grant.key for c in plan.creates}


@PROPS
@given(worlds())
def test_guard_never_lets_an_unapproved_mass_removal_through(ins: WorkspaceInputs) -> None:
    plan = plan_workspace(ins)
    g = ins.guard
    if plan.deletes and plan.plan_id is None:
        n = len(plan.deletes)
        owned_count = sum(
            1
            for a in {normalize_id(a.id): a for a in ins.actual}.values()
            if a.owned and normalize_id(a.id) not in ins.orphaned_ids
        )
        assert n <= g.max_removals
        assert n <= g.percent_floor or 100 * n <= g.max_percent * owned_count
    if plan.hold_reason == HOLD_REMOVALS:
        assert plan.plan_id and plan.deletes == ()


@PROPS
@given(worlds())
def test_applying_a_plan_converges_to_an_empty_plan(ins: WorkspaceInputs) -> None:
    ins = dataclasses.replace(ins, actual_complete=True)
    after, _ = _converge(ins)
    again = plan_workspace(after)
    assert again.creates == () and again.deletes == () and again.held == ()
    assert again.is_empty


@PROPS
@given(worlds())
def test_applying_with_the_guard_disabled_converges_in_one_step(ins: WorkspaceInputs) -> None:
    ins = dataclasses.replace(ins, actual_complete=True, guard=RemovalGuard.disabled())
    plan = plan_workspace(ins)
    assert plan.held == ()
    after = dataclasses.replace(
        ins, actual=apply(ins.actual, plan), orphaned_ids=ins.orphaned_ids | plan.newly_orphaned
    )
    assert plan_workspace(after).is_empty


@PROPS
@given(worlds(), st.randoms(use_true_random=False))
def test_plan_is_independent_of_input_order(ins: WorkspaceInputs, rnd) -> None:
    bindings = list(ins.bindings)
    actual = list(ins.actual)
    rnd.shuffle(bindings)
    rnd.shuffle(actual)
    shuffled = dataclasses.replace(ins, bindings=tuple(bindings), actual=tuple(actual))
    p1, p2 = plan_workspace(ins), plan_workspace(shuffled)
    assert p1 == p2
    assert list(p1.reports) == list(p2.reports)


@PROPS
@given(worlds())
def test_reports_add_up(ins: WorkspaceInputs) -> None:
    plan = plan_workspace(ins)
    assert set(plan.reports) == {b.key for b in ins.bindings if not b.deleting}
    assert set(plan.deleting_reports) == {b.key for b in ins.bindings if b.deleting}
    removing = {normalize_id(a.id) for a in (*plan.deletes, *plan.held)}
    for b in ins.bindings:
        if b.deleting:
            r = plan.deleting_reports[b.key]
            assert r.desired == r.in_sync == r.missing_count == 0 and r.problems == ()
            if b.active_enforcer and b.deletion_policy is DeletionPolicy.DELETE and ins.actual_complete:
                # What its report shows held is exactly what keeps its finalizer (rule 7).
                assert (b.key in plan.finalizable) == (r.held == 0) or ins.suspended
            continue
        r = plan.reports[b.key]
        assert r.desired == r.in_sync + r.missing_count == len({dg.grant.key for dg in b.desired})
        unexpected_unmanaged = sum(1 for u in r.unexpected if not u.managed)
        assert r.pending_removal <= len(r.unexpected) - unexpected_unmanaged
        assert r.held <= r.pending_removal
        current = {(rr.lower(), s.lower()) for rr, s in b.claims}
        listed = {normalize_id(a.id): a for a in ins.actual if a.grant.pair in current}
        # Anything this binding's claims cover that is being removed shows up as pending here.
        assert r.pending_removal == len(set(listed) & removing)
        # unmanaged: every listed assignment in its claims that is not the operator's own (manual or
        # orphaned), the wanted ones included; those are not unexpected, so not in the drift list.
        theirs = [a for a in listed.values() if not a.owned or normalize_id(a.id) in ins.orphaned_ids]
        assert r.unmanaged == len(theirs) >= unexpected_unmanaged


@PROPS
@given(worlds())
def test_held_removals_stay_claimed_after_the_status_write(ins: WorkspaceInputs) -> None:
    # The next sync sees, as previous claims, what this one writes: current claims plus carried ones.
    plan = plan_workspace(ins)
    if not plan.held:
        return

    def written(b: BindingState) -> BindingState:
        if b.deleting:  # a deleting binding's status keeps its claims
            return b
        return dataclasses.replace(b, previous_claims=b.claims | plan.carried_claims.get(b.key, frozenset()))

    approved = dataclasses.replace(
        ins,
        bindings=tuple(written(b) for b in ins.bindings),
        actual_complete=True,
        guard=RemovalGuard.disabled(),
    )
    gone = {normalize_id(a.id) for a in plan_workspace(approved).deletes}
    assert {normalize_id(a.id) for a in plan.held} <= gone

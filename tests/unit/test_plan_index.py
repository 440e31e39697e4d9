"""Incremental planning (core/plan_index.py) decides exactly what a full recomputation decides.

A world is driven through a random sequence of changes (bindings changed, added, removed, their wishes
spelled differently; the plan's writes applied, in full or in part; the assignments re-listed with
manual grants coming and going; orphans, guard, approval, suspension and role names changed). After
every change the plan made with the index kept since the start must equal the plan made from scratch,
with and without reports; and the assignments the index says follow a plan's writes must be those
``planner.apply`` computes.
"""

from __future__ import annotations

import dataclasses
import uuid

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from planner_builders import CONTRIBUTOR, POOL, PUBLISHER, WS, key, manual, owned, user, want

from synapse_scim.core.model import (
    Assignment,
    BindingState,
    DeletionPolicy,
    ManagementPolicy,
    Principal,
    PrincipalType,
    RemovalGuard,
    WorkspaceInputs,
    normalize_id,
)
from synapse_scim.core.plan_index import PlanIndex
from synapse_scim.core.planner import apply, plan_workspace

ROLES = (CONTRIBUTOR, PUBLISHER)
SCOPES = (WS, POOL)
PAIRS = tuple((r, s) for r in ROLES for s in SCOPES)
PRINCIPALS = tuple(user(i) for i in range(4))
TUPLES = tuple((r, p, s) for r, s in PAIRS for p in PRINCIPALS)
NAMES = 4  # binding names b0..b3

PROPS = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _subset(items: tuple, mask: int) -> frozenset:
    return frozenset(item for i, item in enumerate(items) if mask >> i & 1)


def _mostly(usual: object, rare: object) -> st.SearchStrategy:
    return st.sampled_from([usual, usual, usual, rare])


@st.composite
def states(draw: st.DrawFn, index: int) -> BindingState:
    bk = key(f"b{index}")
    claims = _subset(PAIRS, draw(st.integers(1, 2 ** len(PAIRS) - 1)))
    desired_tuples = _subset(TUPLES, draw(st.integers(0, 2 ** len(TUPLES) - 1)))
    via = draw(st.sampled_from([(), ("G",), ("G", "Nested")]))
    # A principal's display may differ between bindings (a rename seen by one read and not another):
    # the names in reports must still come from the same wish as in a full plan.
    renamed = draw(st.booleans())

    def principal(p: Principal) -> Principal:
        return Principal(p.id, PrincipalType.USER, f"{p.display}-{index}") if renamed else p

    return BindingState(
        key=bk,
        mode=draw(_mostly(ManagementPolicy.ENFORCE, ManagementPolicy.OBSERVE)),
        suspended=draw(_mostly(False, True)),
        deleting=draw(_mostly(False, True)),
        deletion_policy=draw(st.sampled_from(list(DeletionPolicy))),
        claims=claims,
        previous_claims=claims | _subset(PAIRS, draw(st.integers(0, 2 ** len(PAIRS) - 1))),
        desired=frozenset(
            want(bk, r, principal(p), s, via) for r, p, s in desired_tuples if (r, s) in claims or draw(st.booleans())
        ),
        complete=draw(_mostly(True, False)),
    )


def _manual_extra(n: int) -> Assignment:
    # A manual grant whose id is not the deterministic one, sometimes of a tuple also granted by us.
    r, p, s = TUPLES[n % len(TUPLES)]
    return Assignment(str(uuid.uuid5(uuid.NAMESPACE_DNS, f"extra{n}")), r, p.id, s, "User")


@st.composite
def listings(draw: st.DrawFn) -> tuple[Assignment, ...]:
    kinds = draw(st.integers(0, 4 ** len(TUPLES) - 1))
    out: list[Assignment] = []
    for i, (r, p, s) in enumerate(TUPLES):
        kind = kinds // 4**i % 4
        if kind == 2:
            out.append(owned(r, p, s))
        elif kind == 3:
            out.append(manual(r, p, s))
    out += [_manual_extra(n) for n in draw(st.lists(st.integers(0, 40), max_size=3))]
    if out and draw(st.booleans()):
        out.append(out[0])  # paging overlap: the same assignment listed twice
    return tuple(out)


GUARDS = st.one_of(
    st.just(RemovalGuard.disabled()),
    st.builds(RemovalGuard, st.sampled_from([0, 1, 3, 50]), st.sampled_from([0, 20, 100]), st.sampled_from([0, 2])),
)

STEPS = st.one_of(
    st.tuples(st.just("binding"), st.integers(0, NAMES - 1), st.data()),
    st.tuples(st.just("remove"), st.integers(0, NAMES - 1)),
    st.tuples(st.just("copy"), st.integers(0, NAMES - 1)),
    st.tuples(st.just("write"), st.sampled_from(["all", "creates", "deletes", "half"])),
    st.tuples(st.just("relist"), listings()),
    st.tuples(st.just("orphan"), st.integers(0, 2**8 - 1)),
    st.tuples(st.just("guard"), GUARDS),
    st.tuples(st.just("approve"), st.booleans()),
    st.tuples(st.just("complete"), st.booleans()),
    st.tuples(st.just("suspend"), st.booleans()),
    st.tuples(st.just("roles"), st.booleans()),
)


@PROPS
@given(first=st.lists(st.integers(0, NAMES - 1), max_size=NAMES, unique=True), actual=listings(), data=st.data())
def test_incremental_plans_equal_full_plans(
    first: list[int], actual: tuple[Assignment, ...], data: st.DataObject
) -> None:
    bindings = {i: data.draw(states(i)) for i in first}
    ins = WorkspaceInputs(bindings=tuple(bindings.values()), actual=actual, actual_complete=True)
    index = PlanIndex()
    last = plan_workspace(ins, index=index)
    assert last == plan_workspace(ins)
    for step in data.draw(st.lists(STEPS, min_size=1, max_size=12)):
        match step:
            case ("binding", i, d):
                bindings[i] = d.draw(states(i))
            case ("remove", i):
                bindings.pop(i, None)
            case ("copy", i) if i in bindings:
                bindings[i] = dataclasses.replace(bindings[i])  # equal, but a new object
            case ("write", which):
                creates, deletes = last.creates, last.deletes
                if which == "creates":
                    deletes = ()
                elif which == "deletes":
                    creates = ()
                elif which == "half":  # some writes failed
                    creates, deletes = creates[::2], deletes[1::2]
                written = dataclasses.replace(last, creates=creates, deletes=deletes)
                expected = apply(ins.actual, written)
                after = index.apply(creates, deletes)
                assert _by_id(after) == _by_id(expected)
                ins = dataclasses.replace(ins, actual=after, orphaned_ids=ins.orphaned_ids | last.newly_orphaned)
            case ("relist", listing):
                ins = dataclasses.replace(ins, actual=listing)
            case ("orphan", mask):
                owned_ids = tuple(sorted(normalize_id(a.id) for a in ins.actual if a.owned))
                ins = dataclasses.replace(ins, orphaned_ids=_subset(owned_ids, mask))
            case ("guard", guard):
                ins = dataclasses.replace(ins, guard=guard)
            case ("approve", yes):
                ins = dataclasses.replace(ins, approved_plan_id=last.plan_id if yes else None)
            case ("complete", yes):
                ins = dataclasses.replace(ins, actual_complete=yes)
            case ("suspend", yes):
                ins = dataclasses.replace(ins, suspended=yes)
            case ("roles", yes):
                ins = dataclasses.replace(ins, role_names={CONTRIBUTOR: "Contributor (defined)"} if yes else ())
        ins = dataclasses.replace(ins, bindings=tuple(bindings[i] for i in sorted(bindings)))
        reports = data.draw(st.booleans())
        last = plan_workspace(ins, index=index, reports=reports)
        assert last == plan_workspace(ins, reports=reports)


def _by_id(actual: tuple[Assignment, ...]) -> dict[str, tuple[str, str, str]]:
    return {normalize_id(a.id): a.grant.key for a in actual}


def test_one_changed_binding_remakes_only_its_pairs_decisions_and_the_reports_over_them() -> None:
    """The point of the index: a change to one binding redoes its pair, not the workspace."""
    people = [user(i) for i in range(40)]

    def state(name: str, role: str, scope: str, members: list[Principal]) -> BindingState:
        bk = key(name)
        return BindingState(
            key=bk,
            complete=True,
            claims={(role, scope)},
            previous_claims={(role, scope)},
            desired=frozenset(want(bk, role, p, scope, ("G",)) for p in members),
        )

    bindings = [
        state("a", CONTRIBUTOR, WS, people[:20]),
        state("b", PUBLISHER, WS, people[10:30]),
        state("c", CONTRIBUTOR, POOL, people[20:]),
        state("d", PUBLISHER, POOL, people[:5]),
    ]
    ins = WorkspaceInputs(bindings=tuple(bindings), actual=(), actual_complete=True)
    index = PlanIndex()
    plan = plan_workspace(ins, index=index)
    ins = dataclasses.replace(ins, actual=index.apply(plan.creates, plan.deletes))
    plan_workspace(ins, index=index)
    decided, reported = index.decided, index.reported

    # One member joins the group behind binding "c" (Contributor on the pool).
    bindings[2] = state("c", CONTRIBUTOR, POOL, [*people[20:], user(99)])
    ins = dataclasses.replace(ins, bindings=tuple(bindings))
    plan = plan_workspace(ins, index=index)
    assert [c.grant.principal_id for c in plan.creates] == [user(99).id]
    assert index.decided - decided == 1  # only the (Contributor, pool) pair
    assert index.reported - reported == 1  # only binding c's report
    assert plan == plan_workspace(ins)

    # The grant is made: the plan after it carries the pair's decision over the write, deciding nothing.
    ins = dataclasses.replace(ins, actual=index.apply(plan.creates, plan.deletes))
    after = plan_workspace(ins, index=index)
    assert after.is_empty and index.decided - decided == 1
    assert after == plan_workspace(ins)


def test_a_renamed_principal_is_renamed_in_reports_of_pairs_the_change_did_not_touch() -> None:
    """Names of unexpected items come from any binding's wishes: a rename seen by binding "a" (in one
    pair) shows in binding "b"'s report of another pair, although that pair's decision is unchanged."""
    u = user(1)
    a = BindingState(key=key("a"), complete=True, claims={(CONTRIBUTOR, WS)}, desired={want("a", CONTRIBUTOR, u)})
    b = BindingState(key=key("b"), complete=True, mode=ManagementPolicy.OBSERVE, claims={(PUBLISHER, POOL)})
    ins = WorkspaceInputs(bindings=(a, b), actual=(manual(PUBLISHER, u, POOL),), actual_complete=True)
    index = PlanIndex()
    assert plan_workspace(ins, index=index).reports[key("b")].unexpected[0].principal == u.display

    renamed = Principal(u.id, PrincipalType.USER, "renamed@contoso.com")
    a2 = dataclasses.replace(a, desired={want("a", CONTRIBUTOR, renamed)})
    ins = dataclasses.replace(ins, bindings=(a2, b))
    plan = plan_workspace(ins, index=index)
    assert plan.reports[key("b")].unexpected[0].principal == "renamed@contoso.com"
    assert plan == plan_workspace(ins)


def test_a_first_sync_of_many_grants_lands_in_the_index_as_apply_computes_it() -> None:
    """More than 64 creates in one pair take the index's one-sort path; few take the insert path."""
    people = [user(i) for i in range(200)]
    bk = key("many")
    state = BindingState(
        key=bk, complete=True, claims={(CONTRIBUTOR, WS)}, desired=frozenset(want(bk, CONTRIBUTOR, p) for p in people)
    )
    existing = (manual(CONTRIBUTOR, people[0]), owned(CONTRIBUTOR, people[1]), owned(PUBLISHER, people[2]))
    ins = WorkspaceInputs(bindings=(state,), actual=existing, actual_complete=True)
    index = PlanIndex()
    plan = plan_workspace(ins, index=index)
    assert len(plan.creates) == 198
    after = index.apply(plan.creates, plan.deletes)
    assert _by_id(after) == _by_id(apply(ins.actual, plan))
    assert plan_workspace(dataclasses.replace(ins, actual=after), index=index).is_empty


def test_a_decision_carried_over_a_write_says_what_the_pair_still_owes_and_holds() -> None:
    """The decisions the index carries over its own writes (no deciding again) equal full plans: the
    last removal of a dropped pair ends its carried claim; a grant made again on an orphaned id is not
    the operator's to manage."""
    u, v = user(1), user(2)
    bk = key("b")
    # b dropped (Contributor, workspace) for (Contributor, pool): u's old grant there is revoked.
    b = BindingState(
        key=bk,
        complete=True,
        claims={(CONTRIBUTOR, POOL)},
        previous_claims={(CONTRIBUTOR, WS)},
        desired={want(bk, CONTRIBUTOR, u, POOL), want(bk, CONTRIBUTOR, v, POOL)},
    )
    orphaned_again = owned(CONTRIBUTOR, v, POOL).id  # left behind by an Orphan binding, then deleted by hand
    ins = WorkspaceInputs(
        bindings=(b,), actual=(owned(CONTRIBUTOR, u, WS),), actual_complete=True, orphaned_ids={orphaned_again}
    )
    index = PlanIndex()
    plan = plan_workspace(ins, index=index)
    assert plan.carried_claims == {bk: frozenset({(CONTRIBUTOR, WS)})} and len(plan.deletes) == 1
    decided = index.decided
    ins = dataclasses.replace(ins, actual=index.apply(plan.creates, plan.deletes))
    after = plan_workspace(ins, index=index)
    assert index.decided == decided  # carried, not decided again
    assert after == plan_workspace(ins)
    assert after.carried_claims == {}
    assert after.reports[bk].unmanaged == 1  # v's grant, made on an orphaned id

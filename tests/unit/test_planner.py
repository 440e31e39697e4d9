"""Example-based tests of the planner: one test per rule of docs/architecture.md#the-planners-rules."""

from __future__ import annotations

import dataclasses

import pytest
from planner_builders import (
    CONTRIBUTOR,
    POOL,
    PUBLISHER,
    WS,
    binding,
    inputs,
    key,
    manual,
    owned,
    user,
    want,
)

from synapse_scim.core.model import (
    Assignment,
    BindingKey,
    BindingReport,
    Grant,
    Principal,
    PrincipalType,
    Problem,
    RemovalGuard,
    assignment_id,
)
from synapse_scim.core.planner import (
    HOLD_READS_INCOMPLETE,
    HOLD_REMOVALS,
    apply,
    compute_plan_id,
    describe,
    desired_grants,
    guard_trips,
    plan_workspace,
)

A, B, C, D = user(1), user(2), user(3), user(4)


def grants_of(items) -> set[tuple[str, str, str]]:
    return {(x.grant.role_id, x.grant.principal_id, x.grant.scope) for x in items}


def t(role: str, p: Principal, scope: str = WS) -> tuple[str, str, str]:
    return (role, p.id, scope)


# --- desired_grants -------------------------------------------------------------------------


def test_desired_grants_is_roles_times_principals_at_the_scope() -> None:
    bk = key("b")
    result = desired_grants(
        bk, {"Synapse Contributor": CONTRIBUTOR, "Synapse Artifact Publisher": PUBLISHER}, [(A, ()), (B, ("G",))], POOL
    )
    assert {(d.grant.role_id, d.principal.id, d.grant.scope, d.role_name, d.via) for d in result} == {
        (CONTRIBUTOR, A.id, POOL, "Synapse Contributor", ()),
        (PUBLISHER, A.id, POOL, "Synapse Artifact Publisher", ()),
        (CONTRIBUTOR, B.id, POOL, "Synapse Contributor", ("G",)),
        (PUBLISHER, B.id, POOL, "Synapse Artifact Publisher", ("G",)),
    }
    assert all(d.binding == bk for d in result)


def test_desired_grants_keeps_both_explanations_of_one_grant() -> None:
    result = desired_grants(key("b"), {"Synapse Contributor": CONTRIBUTOR}, [(A, ("G1",)), (A, ("G2", "Inner"))], WS)
    assert len(result) == 2
    assert len({d.grant for d in result}) == 1


# --- creates --------------------------------------------------------------------------------


def test_empty_inputs_yield_empty_plan() -> None:
    plan = plan_workspace(inputs())
    assert plan.is_empty and plan.reports == {} and plan.finalizable == frozenset()


def test_enforce_binding_creates_missing_grants_with_principal_type_and_bindings() -> None:
    sp = Principal("AAAAAAAA-0000-0000-0000-000000000009", PrincipalType.SERVICE_PRINCIPAL, "etl")
    plan = plan_workspace(
        inputs(binding("b1", [(CONTRIBUTOR, A), (CONTRIBUTOR, sp)]), binding("b2", [(CONTRIBUTOR, A)]))
    )
    assert [(c.grant.principal_id, c.principal_type, c.bindings) for c in plan.creates] == [
        (A.id, PrincipalType.USER, (key("b1"), key("b2"))),
        (sp.id.lower(), PrincipalType.SERVICE_PRINCIPAL, (key("b1"),)),
    ]
    assert plan.creates[0].assignment_id == assignment_id(Grant(CONTRIBUTOR, A.id, WS))
    assert plan.creates[0].role_name == "Synapse Contributor"
    assert not plan.deletes and not plan.held


def test_409_adoption() -> None:
    # A manual grant of the same tuple already gives the access: no create, counted in sync...
    b = binding("b", [(CONTRIBUTOR, A)])
    plan = plan_workspace(inputs(b, actual=[manual(CONTRIBUTOR, A)]))
    assert plan.creates == () and plan.is_empty
    assert plan.reports[key("b")].in_sync == 1 and plan.reports[key("b")].missing == ()
    # ...and it stays manual: when nobody wants it any more it is reported, never deleted.
    plan = plan_workspace(inputs(binding("b", []), actual=[manual(CONTRIBUTOR, A)]))
    assert plan.deletes == () and plan.held == ()
    assert [u.managed for u in plan.reports[key("b")].unexpected] == [False]


def test_grant_present_in_other_case_is_not_created_again() -> None:
    # The service may echo GUIDs and scopes in another case; identity must not depend on it.
    listed = Assignment(
        assignment_id(Grant(CONTRIBUTOR, A.id, WS)).upper(), CONTRIBUTOR.upper(), A.id.upper(), "Workspaces/WS", "User"
    )
    plan = plan_workspace(inputs(binding("b", [(CONTRIBUTOR, A)]), actual=[listed]))
    assert plan.is_empty
    assert listed.owned


# --- pruning --------------------------------------------------------------------------------


def test_member_removed_from_directory_is_revoked() -> None:
    plan = plan_workspace(
        inputs(binding("b", [(CONTRIBUTOR, A)]), actual=[owned(CONTRIBUTOR, A), owned(CONTRIBUTOR, B)])
    )
    assert grants_of(plan.deletes) == {t(CONTRIBUTOR, B)}
    assert plan.hold_reason is None and plan.plan_id is None


def test_manual_grant_is_reported_never_deleted() -> None:
    plan = plan_workspace(
        inputs(binding("b", [(CONTRIBUTOR, A)]), actual=[owned(CONTRIBUTOR, A), manual(CONTRIBUTOR, B)])
    )
    assert plan.deletes == () and plan.held == ()
    report = plan.reports[key("b")]
    assert [(u.principal_id, u.managed) for u in report.unexpected] == [(B.id, False)]
    assert report.unmanaged == 1 and report.pending_removal == 0


def test_assignment_outside_every_claim_is_left_alone() -> None:
    # Owned, unwanted, but at a (role, scope) no binding manages: not the planner's business.
    plan = plan_workspace(
        inputs(
            binding("b", [(CONTRIBUTOR, A)]),
            actual=[owned(CONTRIBUTOR, A), owned(PUBLISHER, B), owned(CONTRIBUTOR, B, POOL)],
        )
    )
    assert plan.is_empty and plan.reports[key("b")].unexpected == ()


def test_user_in_two_bindings_keeps_grant_when_one_binding_is_deleted() -> None:
    plan = plan_workspace(
        inputs(
            binding("b1", [(CONTRIBUTOR, A), (CONTRIBUTOR, B)], deleting=True),
            binding("b2", [(CONTRIBUTOR, A)]),
            actual=[owned(CONTRIBUTOR, A), owned(CONTRIBUTOR, B)],
        )
    )
    assert grants_of(plan.deletes) == {t(CONTRIBUTOR, B)}
    assert key("b1") in plan.finalizable and set(plan.reports) == {key("b2")}


def test_deleting_binding_wishes_count_for_nothing() -> None:
    plan = plan_workspace(inputs(binding("b1", [(CONTRIBUTOR, A)], deleting=True), actual=[owned(CONTRIBUTOR, A)]))
    assert grants_of(plan.deletes) == {t(CONTRIBUTOR, A)} and plan.creates == ()
    assert plan.finalizable == {key("b1")}


def test_role_removed_from_spec_is_pruned_via_previous_claims() -> None:
    b = binding(
        "b",
        [(CONTRIBUTOR, A)],
        claims={(CONTRIBUTOR, WS)},
        previous_claims={(CONTRIBUTOR, WS), (PUBLISHER, WS)},
    )
    plan = plan_workspace(inputs(b, actual=[owned(CONTRIBUTOR, A), owned(PUBLISHER, A)]))
    assert grants_of(plan.deletes) == {t(PUBLISHER, A)}
    # The report covers current claims only: the dropped role is no longer "this binding's drift".
    assert plan.reports[key("b")].unexpected == ()


def test_a_dropped_role_stays_claimed_while_its_removals_are_held() -> None:
    # status.claims is rewritten after every sync; without the carry, a held removal of a dropped
    # role would fall out of every claim after one more sync and never be removed.
    b = binding(
        "b", [(CONTRIBUTOR, A)], claims={(CONTRIBUTOR, WS)}, previous_claims={(CONTRIBUTOR, WS), (PUBLISHER, WS)}
    )
    actual = [owned(CONTRIBUTOR, A), owned(PUBLISHER, A), owned(PUBLISHER, B)]
    held = plan_workspace(inputs(b, actual=actual, guard=RemovalGuard(max_removals=1)))
    assert grants_of(held.held) == {t(PUBLISHER, A), t(PUBLISHER, B)} and held.deletes == ()
    assert held.carried_claims == {key("b"): frozenset({(PUBLISHER, WS)})}
    # Once the removals went, nothing is owed there and the pair is let go.
    done = plan_workspace(inputs(b, actual=apply(actual, plan_workspace(inputs(b, actual=actual)))))
    assert done.is_empty and done.carried_claims == {}


def test_only_owed_clean_up_is_carried() -> None:
    dropped = {(CONTRIBUTOR, WS), (PUBLISHER, WS)}
    # Nothing managed left at the dropped pair, a manual grant only: nothing to carry.
    b = binding("b", [(CONTRIBUTOR, A)], claims={(CONTRIBUTOR, WS)}, previous_claims=dropped)
    assert plan_workspace(inputs(b, actual=[manual(PUBLISHER, A)])).carried_claims == {}
    # What another binding wants is not owed clean-up.
    other = binding("o", [(PUBLISHER, A)], roles=(PUBLISHER,))
    assert plan_workspace(inputs(b, other, actual=[owned(PUBLISHER, A)])).carried_claims == {}
    # An Observe or suspended binding removes nothing, so it keeps no claim for a clean-up it owes nobody.
    for kw in ({"mode": "Observe"}, {"suspended": True}):
        quiet = binding("b", [(CONTRIBUTOR, A)], claims={(CONTRIBUTOR, WS)}, previous_claims=dropped, **kw)
        assert plan_workspace(inputs(quiet, actual=[owned(PUBLISHER, B)])).carried_claims == {}
    # An incomplete enforcer keeps it: its removals are only postponed.
    incomplete = binding("b", [], claims={(CONTRIBUTOR, WS)}, previous_claims=dropped, complete=False)
    plan = plan_workspace(inputs(incomplete, actual=[owned(PUBLISHER, B)]))
    assert plan.deletes == () and plan.carried_claims == {key("b"): frozenset({(PUBLISHER, WS)})}


def test_scope_change_prunes_the_old_scope_and_creates_at_the_new() -> None:
    b = binding("b", [(CONTRIBUTOR, A)], scope=POOL, previous_claims={(CONTRIBUTOR, WS)})
    plan = plan_workspace(inputs(b, actual=[owned(CONTRIBUTOR, A, WS)]))
    assert grants_of(plan.creates) == {t(CONTRIBUTOR, A, POOL)}
    assert grants_of(plan.deletes) == {t(CONTRIBUTOR, A, WS)}


def test_observe_mode_writes_nothing_and_reports_drift() -> None:
    b = binding("b", [(CONTRIBUTOR, A)], mode="Observe")
    plan = plan_workspace(inputs(b, actual=[owned(CONTRIBUTOR, B), manual(CONTRIBUTOR, C)]))
    assert plan.is_empty
    report = plan.reports[key("b")]
    assert [m.principal_id for m in report.missing] == [A.id]
    assert {(u.principal_id, u.managed) for u in report.unexpected} == {(B.id, True), (C.id, False)}
    assert report.pending_removal == 0 and report.unmanaged == 1
    assert report.summary() == {"desired": 1, "inSync": 0, "missing": 1, "pendingRemoval": 0, "unmanaged": 1}


def test_observe_binding_protects_its_pairs_from_an_enforcing_binding() -> None:
    plan = plan_workspace(
        inputs(binding("enf", [(CONTRIBUTOR, A)]), binding("obs", [], mode="Observe"), actual=[owned(CONTRIBUTOR, B)])
    )
    assert plan.deletes == () and plan.held == ()


def test_observe_binding_wishes_are_wanted_so_nobody_removes_them() -> None:
    plan = plan_workspace(
        inputs(
            binding("enf", [(CONTRIBUTOR, A)]),
            binding("obs", [(PUBLISHER, B)], roles=(PUBLISHER,), mode="Observe"),
            binding("enf2", [], roles=(PUBLISHER,)),
            actual=[owned(PUBLISHER, B)],
        )
    )
    assert plan.deletes == () and grants_of(plan.creates) == {t(CONTRIBUTOR, A)}


def test_suspended_binding_writes_nothing_and_protects_its_pairs() -> None:
    plan = plan_workspace(
        inputs(
            binding("s", [(CONTRIBUTOR, A)], suspended=True),
            binding("e", [], roles=(CONTRIBUTOR,)),
            actual=[owned(CONTRIBUTOR, B)],
        )
    )
    assert plan.creates == () and plan.deletes == ()
    assert [m.principal_id for m in plan.reports[key("s")].missing] == [A.id]


def test_incomplete_read_protects_its_pairs() -> None:
    # b2's group read failed: it claims CONTRIBUTOR@WS but its wishes are unknown there.
    plan = plan_workspace(
        inputs(
            binding("b1", [(CONTRIBUTOR, A), (PUBLISHER, A)], roles=(CONTRIBUTOR, PUBLISHER)),
            binding("b2", [], complete=False, errors=[Problem("DirectoryReadFailed", "429", "G")]),
            actual=[owned(CONTRIBUTOR, B), owned(PUBLISHER, B)],
        )
    )
    # The pair b2 claims is protected; the other pair is pruned as usual.
    assert grants_of(plan.deletes) == {t(PUBLISHER, B)}
    assert plan.reports[key("b2")].problems == (Problem("DirectoryReadFailed", "429", "G"),)


def test_incomplete_binding_still_creates_what_it_knows() -> None:
    plan = plan_workspace(inputs(binding("b", [(CONTRIBUTOR, A)], complete=False), actual=[owned(CONTRIBUTOR, B)]))
    assert grants_of(plan.creates) == {t(CONTRIBUTOR, A)} and plan.deletes == ()


def test_incomplete_binding_with_unresolved_roles_protects_previous_claims() -> None:
    b = binding("b", [], claims=set(), previous_claims={(CONTRIBUTOR, WS)}, complete=False)
    plan = plan_workspace(inputs(b, binding("e", []), actual=[owned(CONTRIBUTOR, A)]))
    assert plan.deletes == ()


def test_incomplete_assignment_list_holds_every_removal_but_still_creates() -> None:
    ins = inputs(binding("b", [(CONTRIBUTOR, A)]), actual=[owned(CONTRIBUTOR, B)], actual_complete=False)
    plan = plan_workspace(ins)
    assert plan.deletes == () and grants_of(plan.held) == {t(CONTRIBUTOR, B)}
    assert plan.hold_reason == HOLD_READS_INCOMPLETE and plan.plan_id is None
    assert grants_of(plan.creates) == {t(CONTRIBUTOR, A)}
    # No approval can turn an unreliable list into removals.
    approved = plan_workspace(dataclasses.replace(ins, approved_plan_id=compute_plan_id(plan.held)))
    assert approved.deletes == ()
    assert plan.reports[key("b")].pending_removal == 1 and plan.reports[key("b")].held == 1


# --- removal guard --------------------------------------------------------------------------


def _mass_removal(n_keep: int, n_remove: int, **kw):
    keep = [user(i) for i in range(n_keep)]
    gone = [user(1000 + i) for i in range(n_remove)]
    b = binding("b", [(CONTRIBUTOR, p) for p in keep])
    return inputs(b, actual=[owned(CONTRIBUTOR, p) for p in keep + gone], **kw)


def test_guard_holds_mass_removal_until_plan_id_approved() -> None:
    ins = _mass_removal(10, 60)
    plan = plan_workspace(ins)
    assert plan.deletes == () and len(plan.held) == 60
    assert plan.hold_reason == HOLD_REMOVALS and plan.plan_id
    assert plan.reports[key("b")].pending_removal == 60 and plan.reports[key("b")].held == 60

    approved = plan_workspace(dataclasses.replace(ins, approved_plan_id=plan.plan_id))
    assert len(approved.deletes) == 60 and approved.held == () and approved.hold_reason is None
    assert approved.plan_id == plan.plan_id  # still named, so the executed plan can be logged


def test_approval_is_case_and_whitespace_tolerant() -> None:
    ins = _mass_removal(0, 60)
    plan_id = plan_workspace(ins).plan_id
    assert plan_id is not None
    assert plan_workspace(dataclasses.replace(ins, approved_plan_id=f" {plan_id.upper()} ")).deletes


def test_old_approval_does_not_carry_over() -> None:
    first = plan_workspace(_mass_removal(10, 60))
    # The directory moved: one more person left. The approved id no longer names this set.
    later = plan_workspace(_mass_removal(10, 61, approved_plan_id=first.plan_id))
    assert later.deletes == () and len(later.held) == 61
    assert later.plan_id != first.plan_id and later.hold_reason == HOLD_REMOVALS


def test_guard_trips_on_percentage_above_the_floor() -> None:
    # 6 of 30 owned = 20 %: not more than 20 %, goes. 7 of 30 = 23 %: held.
    assert plan_workspace(_mass_removal(24, 6)).deletes
    assert plan_workspace(_mass_removal(23, 7)).hold_reason == HOLD_REMOVALS


def test_small_workspace_is_not_held_on_every_offboarding() -> None:
    # 1 removal of 3 owned is 33 %, but at or below the floor of 5 the percentage does not apply.
    assert len(plan_workspace(_mass_removal(2, 1)).deletes) == 1
    assert len(plan_workspace(_mass_removal(0, 5)).deletes) == 5  # even 100 % of a tiny workspace
    assert plan_workspace(_mass_removal(0, 6)).hold_reason == HOLD_REMOVALS


def test_guard_max_removals_zero_requires_approval_for_every_removal() -> None:
    ins = _mass_removal(100, 1, guard=RemovalGuard(max_removals=0))
    plan = plan_workspace(ins)
    assert plan.hold_reason == HOLD_REMOVALS and len(plan.held) == 1
    assert len(plan_workspace(dataclasses.replace(ins, approved_plan_id=plan.plan_id)).deletes) == 1


def test_guard_absolute_cap_applies_regardless_of_percentage() -> None:
    assert plan_workspace(_mass_removal(1000, 51)).hold_reason == HOLD_REMOVALS
    assert not plan_workspace(_mass_removal(1000, 50)).held


def test_guard_percentage_counts_only_owned_not_orphaned_assignments() -> None:
    # 6 removals; 30 owned would be 20 % (fine), but 20 of them are orphaned: 6 of 10 = 60 %.
    ins = _mass_removal(24, 6)
    orphans = [a.id for a in ins.actual if a.principal_id in {user(i).id for i in range(20)}]
    plan = plan_workspace(dataclasses.replace(ins, orphaned_ids=frozenset(orphans)))
    assert plan.hold_reason == HOLD_REMOVALS


@pytest.mark.parametrize(
    ("n", "owned_count", "max_removals", "max_percent", "floor", "trips"),
    [
        (0, 0, 0, 0, 0, False),
        (1, 100, 0, 20, 5, True),
        (5, 5, 50, 20, 5, False),
        (6, 6, 50, 20, 5, True),
        (6, 30, 50, 20, 5, False),
        (51, 10_000, 50, 20, 5, True),
        (6, 6, 50, 100, 5, False),
        (1, 1, 50, 0, 0, True),
    ],
)
def test_guard_trip_condition(
    n: int, owned_count: int, max_removals: int, max_percent: int, floor: int, trips: bool
) -> None:
    assert guard_trips(n, owned_count, max_removals, max_percent, floor) is trips


def test_plan_id_is_a_stable_hash_of_the_deleted_ids() -> None:
    a, b = owned(CONTRIBUTOR, A), owned(CONTRIBUTOR, B)
    assert compute_plan_id([a, b]) == compute_plan_id([b, a, a])
    assert compute_plan_id([a]) != compute_plan_id([a, b])
    assert len(compute_plan_id([a])) == 12


# --- deletion policy ------------------------------------------------------------------------


def test_deleting_binding_with_delete_policy_removes_what_only_it_wanted() -> None:
    plan = plan_workspace(
        inputs(binding("b", [(CONTRIBUTOR, A)], deleting=True), actual=[owned(CONTRIBUTOR, A), manual(CONTRIBUTOR, B)])
    )
    assert grants_of(plan.deletes) == {t(CONTRIBUTOR, A)} and plan.finalizable == {key("b")}


def test_orphan_policy_leaves_assignments_and_marks_them_orphaned() -> None:
    a, m = owned(CONTRIBUTOR, A), manual(CONTRIBUTOR, B)
    ins = inputs(binding("b", [(CONTRIBUTOR, A)], deleting=True, deletion_policy="Orphan"), actual=[a, m])
    plan = plan_workspace(ins)
    assert plan.deletes == () and plan.held == ()
    assert plan.newly_orphaned == {a.id}  # manual grants are not ours to mark
    assert plan.finalizable == {key("b")}
    # Once recorded, a later binding claiming the pair sees it as manual: reported, never deleted.
    later = plan_workspace(inputs(binding("new", []), actual=[a, m], orphaned_ids=plan.newly_orphaned))
    assert later.is_empty
    assert [u.managed for u in later.reports[key("new")].unexpected] == [False, False]


def test_orphan_policy_yields_to_a_live_binding_that_claims_the_pair() -> None:
    # The live binding stays in charge of its pair, so offboarding through it keeps working.
    plan = plan_workspace(
        inputs(
            binding("old", [(CONTRIBUTOR, A)], deleting=True, deletion_policy="Orphan"),
            binding("live", [(CONTRIBUTOR, C)]),
            actual=[owned(CONTRIBUTOR, A), owned(CONTRIBUTOR, C)],
        )
    )
    assert plan.newly_orphaned == frozenset() and grants_of(plan.deletes) == {t(CONTRIBUTOR, A)}


def test_orphan_does_not_mark_what_another_binding_still_wants() -> None:
    plan = plan_workspace(
        inputs(
            binding("old", [(CONTRIBUTOR, A)], roles=(CONTRIBUTOR, PUBLISHER), deleting=True, deletion_policy="Orphan"),
            binding("live", [(CONTRIBUTOR, A)], roles=(PUBLISHER,), claims={(PUBLISHER, WS)}),
            actual=[owned(CONTRIBUTOR, A)],
        )
    )
    assert plan.newly_orphaned == frozenset() and plan.is_empty


def test_orphan_wins_over_a_co_deleting_delete_binding() -> None:
    a = owned(CONTRIBUTOR, A)
    plan = plan_workspace(
        inputs(
            binding("keep", [(CONTRIBUTOR, A)], deleting=True, deletion_policy="Orphan"),
            binding("drop", [(CONTRIBUTOR, A)], deleting=True),
            actual=[a],
        )
    )
    assert plan.deletes == () and plan.newly_orphaned == {a.id}


def test_orphan_policy_waits_for_a_complete_list_before_finalizing() -> None:
    plan = plan_workspace(
        inputs(
            binding("b", [], deleting=True, deletion_policy="Orphan"),
            actual=[owned(CONTRIBUTOR, A)],
            actual_complete=False,
        )
    )
    assert plan.finalizable == frozenset()


def test_deleting_observe_or_suspended_binding_removes_nothing_and_may_finalize() -> None:
    for kw in ({"mode": "Observe"}, {"suspended": True}):
        plan = plan_workspace(inputs(binding("b", [], deleting=True, **kw), actual=[owned(CONTRIBUTOR, A)]))
        assert plan.is_empty and plan.finalizable == {key("b")}


def test_deleting_binding_waits_while_its_removals_are_held() -> None:
    ins = _mass_removal(0, 60)
    ins = dataclasses.replace(ins, bindings=tuple(dataclasses.replace(b, deleting=True) for b in ins.bindings))
    plan = plan_workspace(ins)
    assert plan.hold_reason == HOLD_REMOVALS and plan.finalizable == frozenset()
    # Its report says what its finalizer waits for: nothing desired, 60 removals, all held.
    r = plan.deleting_reports[key("b")]
    assert (r.desired, r.in_sync, r.missing_count, r.pending_removal, r.held) == (0, 0, 0, 60, 60)
    approved = plan_workspace(dataclasses.replace(ins, approved_plan_id=plan.plan_id))
    assert approved.finalizable == {key("b")} and len(approved.deletes) == 60
    assert (approved.deleting_reports[key("b")].pending_removal, approved.deleting_reports[key("b")].held) == (60, 0)


def test_deleting_binding_with_incomplete_list_does_not_finalize() -> None:
    plan = plan_workspace(
        inputs(binding("b", [], deleting=True), actual=[owned(CONTRIBUTOR, A)], actual_complete=False)
    )
    assert plan.finalizable == frozenset() and plan.hold_reason == HOLD_READS_INCOMPLETE


# --- reports --------------------------------------------------------------------------------


def test_report_counts_in_sync_missing_pending_and_unmanaged() -> None:
    b = binding(
        "b",
        [(CONTRIBUTOR, A), (CONTRIBUTOR, B)],
        errors=[Problem("SubjectNotFound", "no such group", "Ghosts")],
    )
    plan = plan_workspace(inputs(b, actual=[owned(CONTRIBUTOR, A), owned(CONTRIBUTOR, C), manual(CONTRIBUTOR, D)]))
    r = plan.reports[key("b")]
    assert (r.desired, r.in_sync, r.missing_count, r.pending_removal, r.unmanaged, r.held) == (2, 1, 1, 1, 1, 0)
    assert r.problems == (Problem("SubjectNotFound", "no such group", "Ghosts"),)
    assert [(m.principal, m.role) for m in r.missing] == [("user2@contoso.com", "Synapse Contributor")]


def test_a_manual_grant_a_binding_wants_counts_in_sync_and_unmanaged() -> None:
    # A's grant was made by hand: it gives the access (in sync), and it is someone else's (unmanaged),
    # so it stays when the binding goes. B's, wanted by the other binding at the same role and scope,
    # is someone else's too. Neither is unexpected, so neither is in the drift list.
    wants_a, wants_b = binding("a", [(CONTRIBUTOR, A)]), binding("b", [(CONTRIBUTOR, B)])
    plan = plan_workspace(inputs(wants_a, wants_b, actual=[manual(CONTRIBUTOR, A), manual(CONTRIBUTOR, B)]))
    assert plan.is_empty
    r = plan.reports[key("a")]
    assert (r.desired, r.in_sync, r.missing_count, r.pending_removal, r.unmanaged) == (1, 1, 0, 0, 2)
    assert r.unexpected == ()
    # An orphaned grant is someone else's as much as a manual one.
    o = owned(CONTRIBUTOR, A)
    orphaned = plan_workspace(inputs(binding("a", [(CONTRIBUTOR, A)]), actual=[o], orphaned_ids=[o.id]))
    assert (orphaned.reports[key("a")].in_sync, orphaned.reports[key("a")].unmanaged) == (1, 1)
    # The operator's own grant is not.
    assert plan_workspace(inputs(binding("a", [(CONTRIBUTOR, A)]), actual=[o])).reports[key("a")].unmanaged == 0


def test_grant_reached_through_two_groups_counts_once() -> None:
    bk = key("b")
    b = dataclasses.replace(
        binding("b", []),
        desired=frozenset({want(bk, CONTRIBUTOR, A, via=("G1",)), want(bk, CONTRIBUTOR, A, via=("G2",))}),
    )
    plan = plan_workspace(inputs(b))
    assert len(plan.creates) == 1 and plan.creates[0].via == ("G1",)
    assert plan.reports[bk].desired == 1 and plan.reports[bk].missing_count == 1


def test_unexpected_items_get_names_from_role_definitions_and_other_wishes() -> None:
    # B is wanted at the pool by another binding, so its display name is known; the role name
    # comes from the role definitions the adapter passed along.
    plan = plan_workspace(
        inputs(
            binding("b", [], roles=(PUBLISHER,)),
            binding("pool", [(CONTRIBUTOR, B)], scope=POOL),
            actual=[owned(PUBLISHER, B), owned(PUBLISHER, C)],
            role_names={PUBLISHER: "Synapse Artifact Publisher"},
        )
    )
    assert [(u.principal, u.role) for u in plan.reports[key("b")].unexpected] == [
        ("user2@contoso.com", "Synapse Artifact Publisher"),
        (C.id, "Synapse Artifact Publisher"),
    ]


def test_reports_exist_for_live_bindings_and_deleting_ones_apart() -> None:
    plan = plan_workspace(inputs(binding("live"), binding("gone", deleting=True)))
    assert list(plan.reports) == [key("live")] and list(plan.deleting_reports) == [key("gone")]
    assert plan_workspace(inputs(binding("gone", deleting=True)), reports=False).deleting_reports == {}


def test_a_deleting_binding_reports_over_the_pairs_it_cleans_up() -> None:
    # Its wishes are void; its current and previous claims are what it cleans up (rule 3), and a
    # manual grant there stays, counted as unmanaged. A pair a live binding wants stays out of it.
    role_dropped = binding("b", [(CONTRIBUTOR, A)], roles=(CONTRIBUTOR,), deleting=True)
    role_dropped = dataclasses.replace(role_dropped, previous_claims=frozenset({(CONTRIBUTOR, WS), (PUBLISHER, WS)}))
    plan = plan_workspace(
        inputs(
            role_dropped,
            binding("live", [(CONTRIBUTOR, C)]),
            actual=[owned(CONTRIBUTOR, A), owned(PUBLISHER, B), owned(CONTRIBUTOR, C), manual(CONTRIBUTOR, D)],
        )
    )
    r = plan.deleting_reports[key("b")]
    assert (r.desired, r.pending_removal, r.held, r.unmanaged) == (0, 2, 0, 1)
    assert {u.principal_id for u in r.unexpected} == {A.id, B.id, D.id}
    # An Observe or suspended binding with deletionPolicy Delete removes nothing: nothing to report.
    for kw in ({"mode": "Observe"}, {"suspended": True}):
        quiet = plan_workspace(inputs(binding("b", [], deleting=True, **kw), actual=[owned(CONTRIBUTOR, A)]))
        assert quiet.deleting_reports[key("b")] == BindingReport(
            desired=0, in_sync=0, pending_removal=0, unmanaged=0, held=0
        )


# --- determinism, apply, describe -----------------------------------------------------------


def test_plan_is_sorted_and_independent_of_input_order() -> None:
    bs = [binding("z", [(CONTRIBUTOR, C), (CONTRIBUTOR, A)]), binding("a", [(PUBLISHER, B)], roles=(PUBLISHER,))]
    actual = [owned(CONTRIBUTOR, D), owned(PUBLISHER, D), owned(CONTRIBUTOR, B)]
    p1 = plan_workspace(inputs(*bs, actual=actual))
    p2 = plan_workspace(inputs(*reversed(bs), actual=list(reversed(actual))))
    assert p1 == p2 and list(p1.reports) == list(p2.reports) == [key("a"), key("z")]
    assert [c.grant.key for c in p1.creates] == sorted(c.grant.key for c in p1.creates)
    assert [d.grant.key for d in p1.deletes] == sorted(d.grant.key for d in p1.deletes)


def test_duplicate_listing_is_deleted_once() -> None:
    a = owned(CONTRIBUTOR, B)
    plan = plan_workspace(inputs(binding("b"), actual=[a, a, dataclasses.replace(a, id=a.id.upper())]))
    assert len(plan.deletes) == 1


def test_apply_then_replan_is_empty() -> None:
    ins = inputs(
        binding("b", [(CONTRIBUTOR, A), (CONTRIBUTOR, B)]),
        actual=[owned(CONTRIBUTOR, C), manual(CONTRIBUTOR, B), manual(CONTRIBUTOR, D)],
    )
    plan = plan_workspace(ins)
    after = apply(ins.actual, plan)
    assert grants_of(after) == {t(CONTRIBUTOR, A), t(CONTRIBUTOR, B), t(CONTRIBUTOR, D)}
    assert plan_workspace(dataclasses.replace(ins, actual=after)).is_empty


def test_apply_treats_an_existing_tuple_as_409_success() -> None:
    plan = plan_workspace(inputs(binding("b", [(CONTRIBUTOR, A)])))
    after = apply([manual(CONTRIBUTOR, A)], plan)
    assert after == (manual(CONTRIBUTOR, A),)


def test_describe_counts_for_logs() -> None:
    plan = plan_workspace(_mass_removal(3, 60))
    summary = describe(plan)
    assert (summary.creates, summary.deletes, summary.held, summary.newly_orphaned) == (0, 0, 60, 0)
    assert str(summary) == f"creates=0 deletes=0 held=60 (RemovalsHeld, plan {plan.plan_id}) orphaned=0"
    assert str(describe(plan_workspace(inputs(binding("b", [(CONTRIBUTOR, A)]))))) == (
        "creates=1 deletes=0 held=0 orphaned=0"
    )


def test_binding_key_of_wish_does_not_borrow_another_bindings_mode() -> None:
    # A wish mislabelled with an Enforce binding's key, carried by an Observe binding, is not created.
    obs = dataclasses.replace(binding("obs", [], mode="Observe"), desired=frozenset({want("enf", CONTRIBUTOR, A)}))
    plan = plan_workspace(inputs(obs, binding("enf", [])))
    assert plan.creates == ()
    assert isinstance(next(iter(plan.reports)), BindingKey)


def test_a_plan_without_reports_has_the_same_writes():
    from planner_builders import CONTRIBUTOR, binding, inputs, owned, user

    state = inputs(
        binding("a", [(CONTRIBUTOR, user(1)), (CONTRIBUTOR, user(2))]),
        actual=[owned(CONTRIBUTOR, user(3)), owned(CONTRIBUTOR, user(1))],
    )
    full, lean = plan_workspace(state), plan_workspace(state, reports=False)
    writes = ("creates", "deletes", "held", "plan_id")
    assert [getattr(lean, w) for w in writes] == [getattr(full, w) for w in writes]
    assert full.creates and full.deletes and full.reports and lean.reports == {}


def test_a_suspended_workspace_writes_nothing_but_still_reports_and_holds() -> None:
    """Rule 9: spec.suspend of the workspace empties every write of the plan, and no binding leaves
    (its finalizer would otherwise let grants go that nobody revoked); reports and held removals stay."""
    leaving = binding("gone", [(CONTRIBUTOR, B)], deleting=True)
    ins = inputs(binding("b", [(CONTRIBUTOR, A)]), leaving, actual=[owned(CONTRIBUTOR, B)])
    active = plan_workspace(ins)
    assert active.creates and active.deletes and active.finalizable == {key("gone")}
    suspended = plan_workspace(dataclasses.replace(ins, suspended=True))
    assert (suspended.creates, suspended.deletes, suspended.finalizable) == ((), (), frozenset())
    assert suspended.reports == active.reports  # status still tells what would change

    orphaning = inputs(
        binding("old", [(CONTRIBUTOR, C)], deleting=True, deletion_policy="Orphan"), actual=[owned(CONTRIBUTOR, C)]
    )
    assert plan_workspace(orphaning).newly_orphaned
    quiet = plan_workspace(dataclasses.replace(orphaning, suspended=True))
    assert quiet.newly_orphaned == frozenset() and quiet.finalizable == frozenset()

    held = plan_workspace(dataclasses.replace(_mass_removal(10, 60), suspended=True))
    assert len(held.held) == 60 and held.hold_reason == HOLD_REMOVALS and held.plan_id

"""Identity rules and invariants of the plain data model."""

from __future__ import annotations

import dataclasses
import uuid

import pytest
from planner_builders import CONTRIBUTOR, WS, binding, manual, owned, user

from synapse_scim.core.model import (
    ASSIGNMENT_NAMESPACE,
    Assignment,
    BindingKey,
    BindingReport,
    BindingState,
    Grant,
    Principal,
    PrincipalType,
    RemovalGuard,
    WorkspaceInputs,
    assignment_id,
    truncated,
)


def test_assignment_namespace_never_changes() -> None:
    # Changing it would make every existing assignment look manual: offboarding would stop.
    assert str(ASSIGNMENT_NAMESPACE) == "4196fcf3-be31-5425-b204-fa9283927a2a"
    assert assignment_id(Grant(CONTRIBUTOR, "11111111-1111-1111-1111-111111111111", "workspaces/ws")) == str(
        uuid.uuid5(ASSIGNMENT_NAMESPACE, f"{CONTRIBUTOR}|11111111-1111-1111-1111-111111111111|workspaces/ws")
    )


def test_assignment_id_is_deterministic_and_case_insensitive() -> None:
    g = Grant(CONTRIBUTOR, "AbCdEf00-1111-1111-1111-111111111111", "workspaces/ws/bigDataPools/P1")
    same = Grant(CONTRIBUTOR.upper(), "abcdef00-1111-1111-1111-111111111111", "Workspaces/WS/bigdatapools/p1/")
    assert assignment_id(g) == assignment_id(same) == assignment_id(g)
    assert uuid.UUID(assignment_id(g)).version == 5
    assert assignment_id(g) != assignment_id(Grant(CONTRIBUTOR, g.principal_id, "workspaces/ws"))


def test_grant_equality_ignores_case_but_keeps_the_scope_spelling_for_the_put() -> None:
    g = Grant(CONTRIBUTOR.upper(), "ABC", "/workspaces/ws/bigDataPools/p1")
    assert g.role_id == CONTRIBUTOR and g.principal_id == "abc"
    assert g.scope == "workspaces/ws/bigDataPools/p1"
    assert g == Grant(CONTRIBUTOR, "abc", "workspaces/WS/bigdatapools/P1")
    assert len({g, Grant(CONTRIBUTOR, "abc", "workspaces/WS/bigdatapools/P1")}) == 1
    assert g != (CONTRIBUTOR, "abc", g.scope)


def test_owned_is_id_matching_its_own_tuple() -> None:
    a = owned(CONTRIBUTOR, user(1))
    assert a.owned and not manual(CONTRIBUTOR, user(1)).owned
    assert dataclasses.replace(a, id=a.id.upper()).owned
    # Our id on a different tuple is not ours (someone re-used the id, or the tuple changed).
    assert not dataclasses.replace(a, principal_id=user(2).id).owned
    assert a.grant == Grant(CONTRIBUTOR, user(1).id, WS)


def test_principal_normalises_id_and_type() -> None:
    p = Principal("ABC", "ServicePrincipal", "etl")  # type: ignore[arg-type]
    assert p.id == "abc" and p.type is PrincipalType.SERVICE_PRINCIPAL and p.type == "ServicePrincipal"
    with pytest.raises(ValueError):
        Principal("x", "Robot", "r")  # type: ignore[arg-type]


def test_binding_key_prints_as_namespace_slash_name() -> None:
    assert str(BindingKey("data-platform", "engineers")) == "data-platform/engineers"
    assert sorted([BindingKey("b", "a"), BindingKey("a", "z")]) == [BindingKey("a", "z"), BindingKey("b", "a")]


def test_models_are_frozen_and_hashable() -> None:
    b = binding("b", [(CONTRIBUTOR, user(1))])
    ins = WorkspaceInputs(bindings=(b,), actual=(owned(CONTRIBUTOR, user(2)),), actual_complete=True)
    assert hash(b) == hash(binding("b", [(CONTRIBUTOR, user(1))]))
    assert hash(ins) == hash(WorkspaceInputs(bindings=[b], actual=[owned(CONTRIBUTOR, user(2))], actual_complete=True))
    with pytest.raises(dataclasses.FrozenInstanceError):
        b.suspended = True  # type: ignore[misc]
    assert not hasattr(b, "__dict__")  # slots


def test_binding_state_rejects_unknown_policies_and_needs_completeness() -> None:
    with pytest.raises(ValueError):
        BindingState(key=BindingKey("n", "b"), complete=True, mode="Enforcing")  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        BindingState(key=BindingKey("n", "b"), complete=True, deletion_policy="Keep")  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        BindingState(key=BindingKey("n", "b"))  # type: ignore[call-arg]


def test_workspace_inputs_normalise_orphaned_ids_and_role_names() -> None:
    ins = WorkspaceInputs(
        bindings=(),
        actual=(),
        actual_complete=True,
        orphaned_ids=frozenset({"ABC"}),
        role_names={"X": "Name"},  # type: ignore[arg-type]
    )
    assert ins.orphaned_ids == {"abc"} and ins.role_names == (("x", "Name"),)


@pytest.mark.parametrize("field", ["max_removals", "max_percent", "percent_floor"])
def test_removal_guard_rejects_negative_values_naming_the_field(field: str) -> None:
    with pytest.raises(ValueError, match=field):
        RemovalGuard(**{field: -1})


def test_removal_guard_defaults_and_percent_cap() -> None:
    assert RemovalGuard() == RemovalGuard(max_removals=50, max_percent=20, percent_floor=5)
    with pytest.raises(ValueError, match="max_percent"):
        RemovalGuard(max_percent=101)


def test_truncated_keeps_the_first_items_and_flags_the_cut() -> None:
    assert truncated(list(range(60))) == (tuple(range(50)), True)
    assert truncated([1, 2], limit=2) == ((1, 2), False)
    assert truncated((), limit=0) == ((), False)
    with pytest.raises(ValueError):
        truncated([1], limit=-1)


def test_binding_report_summary_uses_status_field_names() -> None:
    r = BindingReport(desired=3, in_sync=2, pending_removal=1, unmanaged=4, held=0)
    assert r.summary() == {"desired": 3, "inSync": 2, "missing": 0, "pendingRemoval": 1, "unmanaged": 4}


def test_assignment_principal_type_is_free_form() -> None:
    # A 2020 recording returned "0"; the list must still parse.
    assert Assignment("i", CONTRIBUTOR, "p", WS, "0").principal_type == "0"

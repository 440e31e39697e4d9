"""The soak's judgement of deletions (bench/soak_model.py): a deletion is a violation only when every
combination of the bindings, the directory and the pushed groups, each as it was at some instant of
the race window, wants the grant or holds its role. Pure: no servers."""

from __future__ import annotations

from soak_model import BindingsPart, Directory, PushedPart, WorldState, excuse, explain

USER = "Synapse User"
BINDINGS = BindingsPart((("Synapse User", ("All Teams",)),))
NONE_PUSHED = PushedPart(frozenset(), frozenset())


def pushed(*upns: str, held: frozenset[str] = frozenset()) -> PushedPart:
    return PushedPart(frozenset({(USER, frozenset(upns))}) if upns else frozenset(), held)


def directory(nested: bool, disabled: set[str] | None = None) -> Directory:
    return Directory(
        {"All Teams": {"Team B"}, "Team B": {"s05", *({"Ops"} if nested else set())}, "Ops": {"s16"}},
        disabled or set(),
    )


def state(t: float, d: Directory, p: PushedPart, b: BindingsPart = BINDINGS) -> WorldState:
    return WorldState(t, t + 0.01, b, d.frozen(), p)


def test_a_graph_change_crossing_a_pushed_removal_excuses_the_deletion() -> None:
    # The replica soak's case: s16 given through Analysts, then through a nesting made just before the
    # PATCH that removed it from Analysts. Every state wants s16; a sync that saw the removal but not
    # yet the nesting (the delta poll comes later) revokes it, correctly.
    states = [
        state(100.0, directory(nested=False), pushed("s16")),
        state(149.40, directory(nested=True), pushed("s16")),
        state(149.41, directory(nested=True), pushed()),
    ]
    assert all(("Synapse User", "s16") in s.wanted() for s in states)
    found = excuse(states, USER, "s16", 104.6, 149.64)
    assert found is not None
    _, d, p = found
    assert d is states[0] and p is states[2]


def test_a_grant_the_directory_gave_throughout_is_a_violation_whatever_was_pushed() -> None:
    states = [
        state(100.0, directory(nested=True), pushed("s16")),
        state(120.0, directory(nested=True), pushed()),
    ]
    assert excuse(states, USER, "s16", 110.0, 150.0) is None
    assert explain(states, USER, "s16", 110.0, 150.0) == ["100.00/100.01:GP", "120.00/120.01:G"]


def test_a_held_role_protects_in_every_combination() -> None:
    held = frozenset({USER})
    states = [
        state(100.0, directory(nested=True), pushed(held=held)),
        state(120.0, directory(nested=False), pushed(held=held)),
    ]
    assert excuse(states, USER, "s16", 110.0, 150.0) is None
    assert explain(states, USER, "s16", 110.0, 150.0) == ["100.00/100.01:GH", "120.00/120.01:H"]


def test_an_account_disabled_at_some_instant_excuses_a_pushed_grant() -> None:
    states = [
        state(100.0, directory(nested=False), pushed("s16")),
        state(120.0, directory(nested=False, disabled={"s16"}), pushed("s16")),
        state(121.0, directory(nested=False), pushed("s16")),
    ]
    assert excuse(states, USER, "s16", 110.0, 150.0) is not None


def test_states_outside_the_window_excuse_nothing() -> None:
    states = [
        state(10.0, directory(nested=False), pushed()),  # wanted by nothing, long before
        state(20.0, directory(nested=False), pushed("s16")),
        state(30.0, directory(nested=True), pushed("s16")),
    ]
    # The first state ended when the second was answered (20.01): a window from 21 on does not see it.
    assert excuse(states, USER, "s16", 21.0, 70.0) is None
    assert excuse(states, USER, "s16", 20.0, 70.0) is not None


def test_a_binding_edit_counts_as_its_own_part() -> None:
    # operators edited from [Ops] to [Ops, Team A] while s07 left Ops: a sync may list the old spec
    # after the directory already lost s07 from Ops.
    old = BindingsPart((("Synapse Compute Operator", ("Ops",)),))
    new = BindingsPart((("Synapse Compute Operator", ("Ops", "Team A")),))
    with_s07 = Directory({"Ops": {"s07"}, "Team A": {"s07"}})
    without = Directory({"Ops": set(), "Team A": {"s07"}})
    states = [
        WorldState(100.0, 100.01, old, with_s07.frozen(), NONE_PUSHED),
        WorldState(120.0, 120.01, new, with_s07.frozen(), NONE_PUSHED),
        WorldState(121.0, 121.01, new, without.frozen(), NONE_PUSHED),
    ]
    assert all(("Synapse Compute Operator", "s07") in s.wanted() for s in states)
    assert excuse(states, "Synapse Compute Operator", "s07", 110.0, 125.0) is not None
    assert excuse(states, "Synapse Compute Operator", "s07", 120.5, 125.0) is None

"""core/matching.py: which Entra account a pushed SCIM user is, under a provider's rules."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import pytest
from hypothesis import given
from hypothesis import strategies as st

from synapse_scim.core.matching import (
    DEFAULT_RULES,
    Account,
    Ambiguous,
    Disabled,
    Inactive,
    Lookup,
    LookupAttribute,
    Matched,
    MatchRule,
    NotMatched,
    ScimIdentity,
    describe,
    identity,
    lookups,
    match,
    pending,
    rule_lookups,
    unresolved_problem,
)
from synapse_scim.core.model import Principal, PrincipalType
from synapse_scim.core.reasons import Reason

ALICE_ID = "11111111-1111-1111-1111-111111111111"
BOB_ID = "22222222-2222-2222-2222-222222222222"


def account(oid: str, upn: str, *, mail: str = "", enabled: bool = True) -> Account:
    return Account(Principal(oid, PrincipalType.USER, upn), enabled, upn, mail)


ALICE = account(ALICE_ID, "alice@contoso.com", mail="alice@contoso.com")
BOB = account(BOB_ID, "bob@contoso.com", mail="shared@contoso.com")


def answers(user: ScimIdentity, rules: Sequence[MatchRule], known: Mapping[Lookup, Sequence[Account]]):
    """Every lookup the user needs, answered from `known` (an absent key: Graph found nothing)."""
    return {look: tuple(known.get(look, ())) for look in lookups((user,), rules)}


def test_identity_takes_the_work_email_first_and_defaults_active() -> None:
    user = identity(
        "scim-1",
        {
            "userName": "Alice@Contoso.com",
            "externalId": "00u1",
            "emails": [
                {"value": "home@example.com", "type": "home", "primary": True},
                {"value": "alice@contoso.com", "type": "work"},
            ],
            "displayName": "Alice",
        },
    )
    assert user.emails == ("alice@contoso.com", "home@example.com")
    assert user.active is True
    assert user.external_id == "00u1"
    assert identity("x", {"userName": "a", "active": False}).active is False


def test_external_id_is_tried_only_when_it_is_a_guid() -> None:
    assert rule_lookups(ScimIdentity("1", "a", external_id="00u1"), MatchRule.EXTERNAL_ID) == ()
    assert rule_lookups(ScimIdentity("1", "a", external_id=ALICE_ID.upper()), MatchRule.EXTERNAL_ID) == (
        (LookupAttribute.ID, ALICE_ID),
    )


def test_user_name_lookups_fold_case_and_add_the_guest_form() -> None:
    looks = rule_lookups(ScimIdentity("1", "Bob@Fabrikam.com"), MatchRule.USER_NAME)
    assert looks == (
        (LookupAttribute.USER_PRINCIPAL_NAME, "bob@fabrikam.com"),
        (LookupAttribute.GUEST_PREFIX, "bob_fabrikam.com#ext#@"),
    )
    guest = rule_lookups(ScimIdentity("1", "bob_fabrikam.com#EXT#@contoso.onmicrosoft.com"), MatchRule.USER_NAME)
    assert guest == ((LookupAttribute.USER_PRINCIPAL_NAME, "bob_fabrikam.com#ext#@contoso.onmicrosoft.com"),)


def test_match_by_object_id() -> None:
    user = ScimIdentity("1", "someone-else@okta.local", external_id=ALICE_ID)
    verdict = match(user, DEFAULT_RULES, answers(user, DEFAULT_RULES, {(LookupAttribute.ID, ALICE_ID): [ALICE]}))
    assert verdict == Matched(ALICE, MatchRule.EXTERNAL_ID)
    assert describe(verdict) == "matched by externalId"


def test_match_by_user_name_whatever_its_case() -> None:
    user = ScimIdentity("1", "ALICE@contoso.com")
    known = {(LookupAttribute.USER_PRINCIPAL_NAME, "alice@contoso.com"): [ALICE]}
    assert match(user, DEFAULT_RULES, answers(user, DEFAULT_RULES, known)) == Matched(ALICE, MatchRule.USER_NAME)


def test_match_a_guest_by_its_ext_form() -> None:
    guest = account("33333333-3333-3333-3333-333333333333", "bob_fabrikam.com#EXT#@contoso.onmicrosoft.com")
    user = ScimIdentity("1", "bob@fabrikam.com")
    known = {(LookupAttribute.GUEST_PREFIX, "bob_fabrikam.com#ext#@"): [guest]}
    assert match(user, DEFAULT_RULES, answers(user, DEFAULT_RULES, known)) == Matched(guest, MatchRule.USER_NAME)


def test_match_by_email_when_user_name_finds_nothing() -> None:
    user = ScimIdentity("1", "00u42", emails=("Alice@Contoso.com",))
    known = {(LookupAttribute.MAIL, "alice@contoso.com"): [ALICE]}
    assert match(user, DEFAULT_RULES, answers(user, DEFAULT_RULES, known)) == Matched(ALICE, MatchRule.EMAIL)


def test_no_match_names_the_rules_tried_and_becomes_an_unresolved_entry() -> None:
    user = ScimIdentity("1", "nobody@contoso.com", emails=("nobody@contoso.com",))
    verdict = match(user, DEFAULT_RULES, answers(user, DEFAULT_RULES, {}))
    assert verdict == NotMatched((MatchRule.USER_NAME, MatchRule.EMAIL))
    problem = unresolved_problem(user, verdict, "okta")
    assert problem is not None
    assert problem.reason is Reason.PRINCIPAL_NOT_MATCHED
    assert problem.subject == "ScimUser okta/nobody@contoso.com"
    assert "userName, email" in problem.message


def test_two_accounts_are_ambiguous_and_stop_the_search() -> None:
    # Two accounts share the mail; a later rule must not pick one of them on a guess.
    user = ScimIdentity("1", "x", emails=("shared@contoso.com",))
    other = account(ALICE_ID, "alice@contoso.com", mail="shared@contoso.com")
    known = {(LookupAttribute.MAIL, "shared@contoso.com"): [BOB, other]}
    verdict = match(user, DEFAULT_RULES, answers(user, DEFAULT_RULES, known))
    assert isinstance(verdict, Ambiguous)
    assert [a.principal.id for a in verdict.accounts] == [ALICE_ID, BOB_ID]
    problem = unresolved_problem(user, verdict, "okta")
    assert problem is not None and problem.reason is Reason.PRINCIPAL_AMBIGUOUS


def test_an_earlier_rule_that_matches_wins_over_a_later_one() -> None:
    user = ScimIdentity("1", "alice@contoso.com", external_id=BOB_ID)
    known = {(LookupAttribute.ID, BOB_ID): [BOB], (LookupAttribute.USER_PRINCIPAL_NAME, "alice@contoso.com"): [ALICE]}
    assert match(user, DEFAULT_RULES, answers(user, DEFAULT_RULES, known)) == Matched(BOB, MatchRule.EXTERNAL_ID)
    rules = (MatchRule.USER_NAME, MatchRule.EXTERNAL_ID)
    assert match(user, rules, answers(user, rules, known)) == Matched(ALICE, MatchRule.USER_NAME)


def test_a_rule_left_out_is_not_tried() -> None:
    user = ScimIdentity("1", "alice@contoso.com")
    rules = (MatchRule.EMAIL,)
    assert lookups((user,), rules) == frozenset()
    assert match(user, rules, {}) == NotMatched(())


def test_a_disabled_account_gets_nothing_and_is_no_unresolved_entry() -> None:
    off = account(ALICE_ID, "alice@contoso.com", enabled=False)
    user = ScimIdentity("1", "alice@contoso.com")
    known = {(LookupAttribute.USER_PRINCIPAL_NAME, "alice@contoso.com"): [off]}
    verdict = match(user, DEFAULT_RULES, answers(user, DEFAULT_RULES, known))
    assert verdict == Disabled(off, MatchRule.USER_NAME)
    assert unresolved_problem(user, verdict, "okta") is None


def test_a_deactivated_user_needs_no_lookup_and_gets_nothing() -> None:
    user = ScimIdentity("1", "alice@contoso.com", active=False)
    assert lookups((user,), DEFAULT_RULES) == frozenset()
    assert match(user, DEFAULT_RULES, {}) == Inactive()
    assert unresolved_problem(user, Inactive(), "okta") is None


def test_a_lookup_without_an_answer_is_an_error_not_a_non_match() -> None:
    # A failed lookup must never read as "no such account" (that would revoke).
    with pytest.raises(KeyError):
        match(ScimIdentity("1", "alice@contoso.com"), DEFAULT_RULES, {})


names = st.text(alphabet="abcXYZ.@_#", min_size=0, max_size=12)


@given(
    user_name=names,
    emails=st.lists(names, max_size=2),
    rules=st.permutations(list(MatchRule)).flatmap(lambda p: st.integers(1, 3).map(lambda n: tuple(p[:n]))),
    hits=st.dictionaries(st.integers(0, 5), st.lists(st.sampled_from([ALICE, BOB]), max_size=2), max_size=6),
)
def test_every_verdict_is_decided_by_the_first_rule_that_finds_an_account(
    user_name: str, emails: list[str], rules: tuple[MatchRule, ...], hits: dict[int, list[Account]]
) -> None:
    user = ScimIdentity("1", user_name, emails=tuple(emails))
    needed = sorted(lookups((user,), rules))
    found = {look: tuple(hits.get(i, ())) for i, look in enumerate(needed)}
    verdict = match(user, rules, found)
    first = next(
        (r for r in rules if {a.principal.id for look in rule_lookups(user, r) for a in found[look]}),
        None,
    )
    if first is None:
        assert isinstance(verdict, NotMatched)
        assert set(verdict.rules) <= set(rules)
    else:
        assert isinstance(verdict, Matched | Ambiguous)
        assert verdict.rule is first


def test_lookups_are_asked_stage_by_stage_and_stop_at_the_first_answer() -> None:
    user = ScimIdentity("1", "alice@contoso.com", emails=("alice@contoso.com",))
    upn = (LookupAttribute.USER_PRINCIPAL_NAME, "alice@contoso.com")
    guest = (LookupAttribute.GUEST_PREFIX, "alice_contoso.com#ext#@")
    mail = (LookupAttribute.MAIL, "alice@contoso.com")
    assert pending(user, DEFAULT_RULES, {}) == upn  # externalId is no GUID: not tried
    assert pending(user, DEFAULT_RULES, {upn: (ALICE,)}) is None  # found: nothing else is asked
    assert match(user, DEFAULT_RULES, {upn: (ALICE,)}) == Matched(ALICE, MatchRule.USER_NAME)
    assert pending(user, DEFAULT_RULES, {upn: ()}) == guest
    assert pending(user, DEFAULT_RULES, {upn: (), guest: ()}) == mail
    assert pending(user, DEFAULT_RULES, {upn: (), guest: (), mail: ()}) is None
    assert pending(ScimIdentity("2", "x@y", active=False), DEFAULT_RULES, {}) is None


def test_an_exact_upn_is_not_made_ambiguous_by_a_guest_form() -> None:
    guest = account(BOB_ID, "alice_contoso.com#EXT#@fabrikam.onmicrosoft.com")
    user = ScimIdentity("1", "alice@contoso.com")
    found = {
        (LookupAttribute.USER_PRINCIPAL_NAME, "alice@contoso.com"): (ALICE,),
        (LookupAttribute.GUEST_PREFIX, "alice_contoso.com#ext#@"): (guest,),
    }
    assert match(user, DEFAULT_RULES, found) == Matched(ALICE, MatchRule.USER_NAME)


@given(
    user_name=names,
    emails=st.lists(names, max_size=2),
    rules=st.permutations(list(MatchRule)).flatmap(lambda p: st.integers(1, 3).map(lambda n: tuple(p[:n]))),
    hits=st.dictionaries(st.integers(0, 5), st.lists(st.sampled_from([ALICE, BOB]), max_size=2), max_size=6),
)
def test_asking_what_pending_asks_until_it_is_done_gives_the_verdict_of_asking_everything(
    user_name: str, emails: list[str], rules: tuple[MatchRule, ...], hits: dict[int, list[Account]]
) -> None:
    user = ScimIdentity("1", user_name, emails=tuple(emails))
    every = {look: tuple(hits.get(i, ())) for i, look in enumerate(sorted(lookups((user,), rules)))}
    asked: dict[Lookup, tuple[Account, ...]] = {}
    while (look := pending(user, rules, asked)) is not None:
        assert look not in asked
        asked[look] = every[look]
    assert match(user, rules, asked) == match(user, rules, every)
    assert len(asked) <= len(every)

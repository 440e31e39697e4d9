"""core/scim/filters.py: what identity providers filter by, case rules, members, and refusals."""

from __future__ import annotations

import pytest
from scim2_models import InvalidFilterException

from synapse_scim.core.scim.filters import Lookup, compile_filter
from synapse_scim.core.scim.resources import Kind, load

USER = load(
    Kind.USER,
    {
        "userName": "Test.User@okta.local",
        "externalId": "JYoung",
        "displayName": "Test User",
        "title": "Engineer",
        "emails": [{"type": "work", "value": "Test.User@okta.local"}, {"type": "home", "value": "home@example.org"}],
        "active": True,
    },
    "2819c223-7f76-453a-919d-413861904646",
)
GROUP = load(Kind.GROUP, {"displayName": "Data Engineers", "externalId": "0a1b"}, "g-1")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('userName eq "Test.User@okta.local"', True),
        ('userName eq "TEST.USER@OKTA.LOCAL"', True),  # Okta's spec test: upper-case copy
        ('userName eq "someone@okta.local"', False),
        ('externalId eq "jyoung"', True),  # case-insensitive, as the issue asks
        ("externalId eq jyoung", True),  # Entra's documented unquoted form
        ('displayName eq "test user"', True),
        ('id eq "2819c223-7f76-453a-919d-413861904646"', True),
        ('emails[type eq "work"].value eq "test.user@okta.local"', True),
        ('emails[type eq "home"].value eq "test.user@okta.local"', False),
        ('emails[type eq "work"]', True),
        ('userName co "user@"', True),
        ('userName sw "test."', True),
        ('userName sw "user"', False),
        ('userName ew ".local"', True),
        ("title pr", True),
        ("nickName pr", False),
        ('userName eq "x" or displayName eq "Test User"', True),
        ('userName eq "Test.User@okta.local" and active eq true', True),
        ('userName eq "Test.User@okta.local" and active eq false', False),
        ('not (title eq "Engineer")', False),
        ('urn:ietf:params:scim:schemas:core:2.0:User:userName eq "test.user@okta.local"', True),
        ('USERNAME eq "test.user@okta.local"', True),  # attribute names without case (RFC 7643 §2.1)
    ],
)
def test_user_filters(text: str, expected: bool) -> None:
    assert compile_filter(Kind.USER, text).matches(USER) is expected


@pytest.mark.parametrize(
    ("text", "members", "expected"),
    [
        ('id eq "g-1" and members[value eq "u1"]', {"u1", "u2"}, True),
        ('id eq "g-1" and members[value eq "u3"]', {"u1", "u2"}, False),
        ('members[value eq "u1" or value eq "u9"]', {"u1"}, True),
        ('members.value eq "u2"', {"u2"}, True),
        ('members eq "u2"', {"u2"}, True),
        ("members pr", set(), False),
        ("members pr", {"u1"}, True),
        ('displayName eq "DATA ENGINEERS"', set(), True),
        ('externalId eq "0A1B"', set(), True),
        ('not (members[value eq "u1"])', {"u1"}, False),
    ],
)
def test_group_filters(text: str, members: set[str], expected: bool) -> None:
    assert compile_filter(Kind.GROUP, text).matches(GROUP, frozenset(members)) is expected


@pytest.mark.parametrize(
    ("kind", "text", "lookup"),
    [
        (Kind.USER, 'userName eq "A@B.c"', Lookup("userName", "a@b.c")),
        (Kind.USER, 'externalId eq "X"', Lookup("externalId", "x")),
        (Kind.USER, 'id eq "AbC"', Lookup("id", "AbC")),  # ids compare exactly
        (Kind.GROUP, 'displayName eq "Eng"', Lookup("displayName", "eng")),
        (Kind.GROUP, 'id eq "g" and members[value eq "u"]', Lookup("id", "g")),
        (Kind.GROUP, 'displayName eq "Eng" and id eq "g"', Lookup("id", "g")),
        (Kind.USER, 'userName eq "a" or userName eq "b"', None),
        (Kind.USER, 'userName co "a"', None),
        (Kind.USER, 'not (userName eq "a")', None),
        (Kind.USER, 'emails[type eq "work"].value eq "a"', None),
    ],
)
def test_lookup_is_an_equality_every_match_has(kind: Kind, text: str, lookup: Lookup | None) -> None:
    assert compile_filter(kind, text).lookup == lookup


@pytest.mark.parametrize(
    ("kind", "text"),
    [
        (Kind.USER, 'unknownAttribute eq "x"'),
        (Kind.USER, "userName eq"),
        (Kind.USER, 'userName xx "a"'),
        (Kind.USER, 'userName eq "a" and'),
        (Kind.USER, '(userName eq "a"'),
        (Kind.USER, 'members[value eq "a"]'),
        (Kind.USER, 'emails[unknown eq "x"]'),
        (Kind.USER, 'userName eq "a" or "1" eq "1"'),  # injection attempt: not a filter
        (Kind.GROUP, 'userName eq "x"'),
        (Kind.GROUP, 'members co "u"'),
        (Kind.GROUP, 'members[display eq "Bob"]'),
        (Kind.GROUP, 'members[value sw "u"]'),
        (Kind.USER, "x" * 3000),
        (Kind.USER, 'active eq "notabool"'),
    ],
)
def test_unsupported_or_invalid_filters_are_invalid_filter(kind: Kind, text: str) -> None:
    with pytest.raises(InvalidFilterException) as info:
        compile_filter(kind, text)
    assert info.value.status == 400
    assert info.value.scim_type == "invalidFilter"


def test_a_quoted_value_cannot_break_out_of_its_string() -> None:
    compiled = compile_filter(Kind.USER, r'userName eq "x\" or userName pr"')
    assert compiled.lookup == Lookup("userName", 'x" or username pr')
    assert not compiled.matches(USER)

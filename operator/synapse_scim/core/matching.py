"""Which Entra principal a user pushed by SCIM is: the matching rules of a ScimProvider, and their verdict.

Pure: the adapters look the candidates up in Graph (adapters/principal_lookups.py); this module says
which lookups a pushed user needs and what their answers mean. The rules are tried in the provider's
order (docs/scim.md, "Matching pushed users"):

- ``externalId``: the SCIM externalId as the Entra object id (Entra's provisioning can map objectId
  there); only tried when the value is a GUID;
- ``userName``: the SCIM userName as the userPrincipalName, without case; for a guest, whose UPN is
  ``bob_fabrikam.com#EXT#@contoso.onmicrosoft.com``, the guest form of ``bob@fabrikam.com`` too;
- ``email``: the work e-mail (else the primary one, else the first) as ``mail``.

The first rule that finds anything decides: one account is a match, several are ambiguous and stop
the search (a later rule finding one of them would be a guess). A rule that finds nothing hands over to
the next. An account Graph says is disabled gets nothing, as on the Graph path; so does a user the
identity provider deactivated (``active: false``), whom nobody needs to look up.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from synapse_scim.core.model import Principal, Problem
from synapse_scim.core.reasons import Reason

__all__ = [
    "DEFAULT_RULES",
    "Account",
    "Ambiguous",
    "Disabled",
    "Inactive",
    "Lookup",
    "LookupAttribute",
    "Match",
    "MatchRule",
    "Matched",
    "NotMatched",
    "ScimIdentity",
    "describe",
    "identity",
    "lookups",
    "match",
    "pending",
    "stages",
    "unresolved_problem",
]

GUID = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")


class MatchRule(StrEnum):
    """One way to find a pushed user's Entra account (ScimProvider spec.principalMatching.rules)."""

    EXTERNAL_ID = "externalId"
    USER_NAME = "userName"
    EMAIL = "email"


DEFAULT_RULES: tuple[MatchRule, ...] = (MatchRule.EXTERNAL_ID, MatchRule.USER_NAME, MatchRule.EMAIL)


class LookupAttribute(StrEnum):
    """What a Graph lookup compares (adapters/principal_lookups.py turns each into one request)."""

    ID = "id"  # GET /users/{id}
    USER_PRINCIPAL_NAME = "userPrincipalName"  # $filter=userPrincipalName eq '…' (Graph compares without case)
    GUEST_PREFIX = "guestPrefix"  # $filter=startswith(userPrincipalName, '<local>_<domain>#EXT#@')
    MAIL = "mail"  # $filter=mail eq '…'


# (attribute, value): the value in comparison form (lower-cased NFC), so equal lookups share a cache entry.
Lookup = tuple[LookupAttribute, str]


def fold(value: str) -> str:
    return unicodedata.normalize("NFC", unicodedata.normalize("NFC", value.strip()).lower())


@dataclass(frozen=True, slots=True)
class Account:
    """An Entra user as a lookup found it."""

    principal: Principal
    enabled: bool  # the adapter raises when Graph does not say: never taken as enabled on a guess
    user_principal_name: str = ""
    mail: str = ""


@dataclass(frozen=True, slots=True)
class ScimIdentity:
    """What matching needs of a pushed user."""

    id: str  # the SCIM id
    user_name: str
    external_id: str | None = None
    emails: tuple[str, ...] = ()  # the work one first, then the primary one, then the others
    active: bool = True
    display: str = ""

    @property
    def label(self) -> str:
        return self.user_name or self.display or self.id


def identity(scim_id: str, attributes: Mapping[str, Any]) -> ScimIdentity:
    """A pushed user's identity from its stored SCIM attributes."""
    emails: list[tuple[int, str]] = []
    for i, e in enumerate(attributes.get("emails") or ()):
        if isinstance(e, Mapping) and isinstance(e.get("value"), str) and e["value"].strip():
            rank = 0 if str(e.get("type") or "").lower() == "work" else 1 if e.get("primary") is True else 2
            emails.append((rank * 1000 + i, e["value"].strip()))
    external = attributes.get("externalId")
    display = attributes.get("displayName")
    return ScimIdentity(
        id=scim_id,
        user_name=str(attributes.get("userName") or ""),
        external_id=str(external) if isinstance(external, str) and external.strip() else None,
        emails=tuple(dict.fromkeys(v for _, v in sorted(emails))),
        active=attributes.get("active") is not False,  # absent means active (RFC 7643 leaves it optional)
        display=str(display) if isinstance(display, str) else "",
    )


def stages(user: ScimIdentity, rule: MatchRule) -> tuple[Lookup, ...]:
    """The lookups one rule needs for a user, in the order they are tried (none when the user lacks
    what the rule compares). Each is a stage: a later one is asked only when the earlier ones found
    nothing, so an exact userPrincipalName is never made ambiguous by a guest's #EXT# form, and an
    identity provider's push of 1,000 users that all match by UPN costs 1,000 lookups, not 3,000."""
    if rule is MatchRule.EXTERNAL_ID:
        value = (user.external_id or "").strip()
        return ((LookupAttribute.ID, value.lower()),) if GUID.match(value) else ()
    if rule is MatchRule.USER_NAME:
        name = fold(user.user_name)
        if not name:
            return ()
        found: list[Lookup] = [(LookupAttribute.USER_PRINCIPAL_NAME, name)]
        if "@" in name and "#ext#" not in name:
            local, _, domain = name.rpartition("@")
            found.append((LookupAttribute.GUEST_PREFIX, f"{local}_{domain}#ext#@"))
        return tuple(found)
    mail = fold(user.emails[0]) if user.emails else ""
    return ((LookupAttribute.MAIL, mail),) if mail else ()


def rule_lookups(user: ScimIdentity, rule: MatchRule) -> tuple[Lookup, ...]:
    """Every lookup a rule may need for a user (all its stages)."""
    return stages(user, rule)


def lookups(users: Iterable[ScimIdentity], rules: Sequence[MatchRule]) -> frozenset[Lookup]:
    """Every lookup the active users may need under the rules (a deactivated user needs none); `pending`
    says which of them are needed next, given the answers so far."""
    return frozenset(look for u in users if u.active for rule in rules for look in rule_lookups(u, rule))


def pending(user: ScimIdentity, rules: Sequence[MatchRule], found: Mapping[Lookup, Sequence[Account]]) -> Lookup | None:
    """The next lookup the user's verdict needs, given the answers in ``found``; None once it can be
    decided (match() then needs nothing else)."""
    if not user.active:
        return None
    for rule in rules:
        for look in stages(user, rule):
            if look not in found:
                return look
            if found[look]:
                return None
    return None


@dataclass(frozen=True, slots=True)
class Matched:
    account: Account
    rule: MatchRule


@dataclass(frozen=True, slots=True)
class Disabled:
    """Matched an account Graph says is disabled: it gets nothing."""

    account: Account
    rule: MatchRule


@dataclass(frozen=True, slots=True)
class Inactive:
    """The identity provider deactivated the user (active: false): it gets nothing."""


@dataclass(frozen=True, slots=True)
class Ambiguous:
    rule: MatchRule
    accounts: tuple[Account, ...]


@dataclass(frozen=True, slots=True)
class NotMatched:
    rules: tuple[MatchRule, ...]  # the rules that could be tried


Match = Matched | Disabled | Inactive | Ambiguous | NotMatched


def match(user: ScimIdentity, rules: Sequence[MatchRule], found: Mapping[Lookup, Sequence[Account]]) -> Match:
    """The verdict on a user from the answers to its lookups. A lookup missing from ``found`` is a
    programming error (KeyError): a failed lookup must never read as "no such account"."""
    if not user.active:
        return Inactive()
    tried: list[MatchRule] = []
    for rule in rules:
        looks = stages(user, rule)
        if looks:
            tried.append(rule)
        for look in looks:
            accounts = {a.principal.id: a for a in found[look]}
            if len(accounts) > 1:
                return Ambiguous(rule, tuple(accounts[k] for k in sorted(accounts)))
            if accounts:
                account = next(iter(accounts.values()))
                return Matched(account, rule) if account.enabled else Disabled(account, rule)
    return NotMatched(tuple(tried))


def describe(verdict: Match) -> str:
    """How a user matched, as plan and explain print it: ``matched by userName``."""
    if isinstance(verdict, Matched):
        return f"matched by {verdict.rule}"
    if isinstance(verdict, Disabled):
        return f"matched by {verdict.rule}, disabled in Entra ID"
    if isinstance(verdict, Inactive):
        return "deactivated by the identity provider"
    if isinstance(verdict, Ambiguous):
        return f"{len(verdict.accounts)} accounts match by {verdict.rule}"
    return "no account matches"


def unresolved_problem(user: ScimIdentity, verdict: Match, provider: str) -> Problem | None:
    """The status.unresolved entry of a user that gets nothing because no single account is it (None
    for a match, a disabled account or a deactivated user: those are the directory's own answers)."""
    if isinstance(verdict, Ambiguous):
        ids = ", ".join(a.principal.display or a.principal.id for a in verdict.accounts[:5])
        return Problem(
            Reason.PRINCIPAL_AMBIGUOUS,
            f"pushed user {user.label} matches {len(verdict.accounts)} Entra accounts by {verdict.rule} ({ids}): "
            "it gets nothing; make the value unique in Entra ID, or map the Entra object id into the "
            "identity provider's externalId",
            subject=f"ScimUser {provider}/{user.label}",
        )
    if isinstance(verdict, NotMatched):
        tried = ", ".join(verdict.rules) or "none (no externalId GUID, userName or e-mail)"
        return Problem(
            Reason.PRINCIPAL_NOT_MATCHED,
            f"pushed user {user.label} matches no Entra account (rules tried: {tried}): it gets nothing; "
            "push the user's userPrincipalName as userName, its object id as externalId, or its mail as "
            "the work e-mail (ScimProvider spec.principalMatching.rules)",
            subject=f"ScimUser {provider}/{user.label}",
        )
    return None

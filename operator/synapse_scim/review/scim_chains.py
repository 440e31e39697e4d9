"""How a group an identity provider pushed brings a principal in: ``okta: Data Engineers →
alice@contoso.com (matched by userName)``, and what became of a binding's other pushed members.

Derived from the read the plan was made from (reads/scim_reads.py: the groups, and the verdict of the
matching rules on every member, core/matching.py); nothing is read again.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from synapse_scim.core.matching import (
    Ambiguous,
    Disabled,
    Match,
    Matched,
    ScimIdentity,
    describe,
    fold,
    unresolved_problem,
)
from synapse_scim.core.model import BindingKey, normalize_id
from synapse_scim.reads.scim_reads import ScimResolution, ScimSubjects

# (binding "ns/name", the group's label "okta: Data Engineers", principal id)
MatchKey = tuple[str, str, str]


@dataclass(frozen=True)
class ScimMatch:
    """The pushed user of a pushed group that is a principal, and the rule that said so."""

    provider: str
    group_id: str
    group: str  # the group's displayName
    user_id: str  # the SCIM id
    user_name: str
    rule: str
    match: str  # describe(verdict): "matched by userName"

    @property
    def label(self) -> str:
        return f"{self.provider}: {self.group}"

    def member_text(self, display: str) -> str:
        """The principal at the end of a chain, with how it matched (and the pushed userName when it is
        not the principal's own name, as when the rule was externalId or email)."""
        pushed = "" if fold(self.user_name) == fold(display) else f", pushed as {self.user_name}"
        return f"{display} ({self.match}{pushed})"

    def as_dict(self) -> dict[str, Any]:
        return {
            "provider": self.provider,
            "group": {"id": self.group_id, "displayName": self.group},
            "user": {"id": self.user_id, "userName": self.user_name},
            "rule": self.rule,
            "match": self.match,
        }


def scim_matches(scim: ScimResolution, subjects: dict[BindingKey, ScimSubjects]) -> dict[MatchKey, ScimMatch]:
    """Every matched member of every binding's pushed groups. Where several pushed users of one group
    are the same principal, the one first by userName (then SCIM id) stands for them."""
    out: dict[MatchKey, ScimMatch] = {}
    for key, subject in sorted(subjects.items()):
        for group in subject.groups:
            for user in sorted(group.members, key=lambda u: (fold(u.user_name), u.id)):
                verdict = scim.verdicts.get((key.namespace, group.provider, user.id))
                if not isinstance(verdict, Matched):
                    continue
                principal = normalize_id(verdict.account.principal.id)
                out.setdefault(
                    (str(key), group.label, principal),
                    ScimMatch(
                        provider=group.provider,
                        group_id=group.id,
                        group=group.display,
                        user_id=user.id,
                        user_name=user.label,
                        rule=str(verdict.rule),
                        match=describe(verdict),
                    ),
                )
    return out


def counts_text(subject: ScimSubjects) -> str:
    """status.scim of a binding as a line: 4 pushed members in 1 group (okta: Data Engineers): 2 matched, …"""
    c = subject.counts
    if c is None:
        return ""
    groups = f"{c.groups} group" + ("" if c.groups == 1 else "s")
    names = f" ({', '.join(g.label for g in subject.groups)})" if subject.groups else ""
    return (
        f"{c.members} pushed member{'' if c.members == 1 else 's'} in {groups}{names}: {c.matched} matched, "
        f"{c.unmatched} unmatched, {c.inactive} inactive, {c.disabled} disabled"
    )


def scim_dict(subject: ScimSubjects) -> dict[str, Any]:
    """A binding's pushed groups for plan's JSON: status.scim's counts, the groups, and the pushed users
    that get nothing because no single account is them (status.unresolved)."""
    return {
        "counts": subject.counts.as_status() if subject.counts else None,
        "groups": [
            {"provider": g.provider, "id": g.id, "displayName": g.display, "members": len(g.members)}
            for g in subject.groups
        ],
        "unresolved": [{"reason": p.reason, "subject": p.subject, "message": p.message} for p in subject.notices],
    }


@dataclass(frozen=True)
class PushedUser:
    """A pushed member of a binding's pushed group that gets nothing from it, for `explain`: deactivated
    by the identity provider, matched to a disabled account, or matching no single account."""

    binding: str
    provider: str
    group: str  # the group's label: "okta: Data Engineers"
    user: ScimIdentity
    verdict: Match

    def text(self) -> str:
        return (
            f"gets nothing from SynapseRoleBinding {self.binding}: pushed user {self.provider}/{self.user.label} "
            f"in {self.group}: {describe(self.verdict)}"
        )

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "binding": self.binding,
            "provider": self.provider,
            "group": self.group,
            "user": {"id": self.user.id, "userName": self.user.user_name},
            "match": describe(self.verdict),
        }
        problem = unresolved_problem(self.user, self.verdict, self.provider)
        if problem is not None:
            out.update(reason=problem.reason, message=problem.message)
        return out


def pushed_users(
    scim: ScimResolution, subjects: dict[BindingKey, ScimSubjects], ref: str, principal_id: str | None = None
) -> list[PushedUser]:
    """The pushed members that get nothing and are ``ref`` (by userName or SCIM id), or whose verdict
    names the account ``principal_id`` (a disabled match, one of an ambiguous match's accounts)."""
    wanted = fold(ref)
    account = normalize_id(principal_id) if principal_id else None
    out: list[PushedUser] = []
    for key, subject in sorted(subjects.items()):
        for group in subject.groups:
            for user in sorted(group.members, key=lambda u: (fold(u.user_name), u.id)):
                verdict = scim.verdicts.get((key.namespace, group.provider, user.id))
                if verdict is None or isinstance(verdict, Matched):
                    continue
                accounts = (
                    (verdict.account,)
                    if isinstance(verdict, Disabled)
                    else verdict.accounts
                    if isinstance(verdict, Ambiguous)
                    else ()
                )
                named = wanted in (fold(user.user_name), fold(user.id))
                if named or (account is not None and any(a.principal.id == account for a in accounts)):
                    out.append(PushedUser(str(key), group.provider, group.label, user, verdict))
    return out

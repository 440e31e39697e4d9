"""What Graph answered to the principal lookups of pushed SCIM users, kept between syncs per tenant.

core/matching.py says which lookups a pushed user needs ((attribute, folded value)) and what their
answers mean; `Directory.find_accounts` asks Graph. This module keeps the answers, an empty one
("no such account") included, and the tenant watch (controller/tenant.py) keeps them true with
users/delta: a reported user drops every answer that contains it and every lookup it could now be
found by (`lookup_keys`). A read that raced with an invalidation is used once but not kept (the
epoch), as in directory_cache.py.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable
from typing import TYPE_CHECKING, Any

from synapse_scim.core.matching import Account, Lookup, LookupAttribute, fold

if TYPE_CHECKING:  # directory.py imports lookup_keys from here
    from synapse_scim.adapters.directory import Directory

GUEST_MARK = "#ext#@"  # folded: a guest's UPN is `bob_fabrikam.com#EXT#@contoso.onmicrosoft.com`


class PrincipalLookupCache:
    """One tenant's lookup answers, invalidated by users/delta."""

    def __init__(self) -> None:
        self.answers: dict[Lookup, tuple[Account, ...]] = {}
        self._holding: dict[str, set[Lookup]] = {}  # account id -> the lookups whose answer has it
        self.epoch = 0  # bumped by every invalidation: a read started before it is not kept
        self.hits = 0
        self.misses = 0

    def __len__(self) -> int:
        return len(self.answers)

    def get(self, look: Lookup) -> tuple[Account, ...] | None:
        found = self.answers.get(look)
        if found is None:
            self.misses += 1
        else:
            self.hits += 1
        return found

    def keep(self, look: Lookup, accounts: tuple[Account, ...], epoch: int) -> None:
        if epoch != self.epoch:
            return
        self._drop(look)
        self.answers[look] = accounts
        for account in accounts:
            self._holding.setdefault(account.principal.id, set()).add(look)

    def invalidate(self, ids: Iterable[str], keys: Iterable[Lookup]) -> set[Lookup]:
        """Forget every answer that contains one of the `ids` accounts, and the answers of `keys`;
        the lookups forgotten."""
        changed = {i.lower() for i in ids}
        keys = set(keys)
        if not changed and not keys:
            return set()
        self.epoch += 1
        gone = {look for i in changed for look in self._holding.get(i, ())} | (keys & self.answers.keys())
        for look in gone:
            self._drop(look)
        return gone

    def _drop(self, look: Lookup) -> None:
        for account in self.answers.pop(look, ()):
            holding = self._holding.get(account.principal.id)
            if holding is not None:
                holding.discard(look)
                if not holding:
                    del self._holding[account.principal.id]

    def clear(self) -> None:
        self.epoch += 1
        self.answers.clear()
        self._holding.clear()


async def find_accounts(
    directory: Directory,
    looks: Collection[Lookup],
    cache: PrincipalLookupCache | None = None,
    *,
    use_cache: bool = True,
) -> dict[Lookup, tuple[Account, ...]]:
    """The answer to every lookup: from the cache when `use_cache` (and it has one), else from Graph.
    Graph's answers are kept in the cache either way (unless an invalidation came meanwhile).
    Raises DirectoryError as `Directory.find_accounts` does: nothing is answered then."""
    found: dict[Lookup, tuple[Account, ...]] = {}
    missing: list[Lookup] = []
    for look in dict.fromkeys(looks):
        hit = cache.get(look) if cache is not None and use_cache else None
        if hit is None:
            missing.append(look)
        else:
            found[look] = hit
    if not missing:
        return found
    epoch = cache.epoch if cache is not None else 0  # before the read: a change during it wins
    fresh = await directory.find_accounts(missing)
    if cache is not None:
        for look, accounts in fresh.items():
            cache.keep(look, accounts, epoch)
    found.update(fresh)
    return found


def lookup_keys(user: dict[str, Any]) -> set[Lookup]:
    """Every lookup that could find this user object (as users/delta reports it): its id, its
    userPrincipalName, its guest prefix when the UPN is a guest's (`bob_fabrikam.com#EXT#@…` ->
    `bob_fabrikam.com#ext#@`), and its mail. A property it does not carry gives no key."""
    keys: set[Lookup] = set()
    oid = user.get("id")
    if isinstance(oid, str) and oid.strip():
        keys.add((LookupAttribute.ID, oid.strip().lower()))
    upn = user.get("userPrincipalName")
    if isinstance(upn, str) and (name := fold(upn)):
        keys.add((LookupAttribute.USER_PRINCIPAL_NAME, name))
        head, mark, _ = name.partition(GUEST_MARK)
        if mark and head:
            keys.add((LookupAttribute.GUEST_PREFIX, head + mark))
    mail = user.get("mail")
    if isinstance(mail, str) and (folded := fold(mail)):
        keys.add((LookupAttribute.MAIL, folded))
    return keys

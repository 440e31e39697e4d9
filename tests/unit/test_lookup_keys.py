"""principal_lookups.py without Graph: the keys a users/delta object could be found by, and the
lookup cache's bookkeeping (invalidation by account and by key, the epoch, clear)."""

from __future__ import annotations

from synapse_scim.adapters.principal_lookups import PrincipalLookupCache, lookup_keys
from synapse_scim.core.matching import DEFAULT_RULES, Account, LookupAttribute, ScimIdentity, lookups
from synapse_scim.core.model import Principal, PrincipalType

ID, UPN, GUEST, MAIL = (
    LookupAttribute.ID,
    LookupAttribute.USER_PRINCIPAL_NAME,
    LookupAttribute.GUEST_PREFIX,
    LookupAttribute.MAIL,
)
BOB = "5C0A9F0E-1111-4222-8333-444455556666"


def account(oid: str, upn: str = "") -> Account:
    return Account(Principal(oid, PrincipalType.USER, upn), True, upn)


def test_a_member_is_found_by_id_upn_and_mail():
    user = {
        "id": BOB,
        "userPrincipalName": "Bob@Contoso.com",
        "mail": " Bob.Baker@Contoso.com ",
        "accountEnabled": True,
    }
    assert lookup_keys(user) == {(ID, BOB.lower()), (UPN, "bob@contoso.com"), (MAIL, "bob.baker@contoso.com")}


def test_a_guest_is_found_by_its_prefix_too():
    user = {"id": BOB, "userPrincipalName": "bob_fabrikam.com#EXT#@contoso.onmicrosoft.com", "mail": None}
    assert lookup_keys(user) == {
        (ID, BOB.lower()),
        (UPN, "bob_fabrikam.com#ext#@contoso.onmicrosoft.com"),
        (GUEST, "bob_fabrikam.com#ext#@"),
    }


def test_the_keys_are_the_ones_matching_asks_for():
    """A pushed user's lookups and the guest's delta keys meet (same folding, same prefix form)."""
    pushed = ScimIdentity("scim-1", "Bob@Fabrikam.com", external_id=BOB, emails=("Bob@Fabrikam.com",))
    guest = {
        "id": BOB.lower(),
        "userPrincipalName": "bob_fabrikam.com#EXT#@contoso.onmicrosoft.com",
        "mail": "bob@fabrikam.com",
    }
    asked = lookups([pushed], DEFAULT_RULES)
    assert asked - lookup_keys(guest) == {(UPN, "bob@fabrikam.com")}  # a member's UPN, which the guest is not


def test_a_removed_user_or_a_partial_object_gives_the_keys_it_carries():
    assert lookup_keys({"id": BOB, "@removed": {"reason": "changed"}}) == {(ID, BOB.lower())}
    assert lookup_keys({"id": BOB, "accountEnabled": False}) == {(ID, BOB.lower())}
    assert lookup_keys({"id": "", "userPrincipalName": "", "mail": ""}) == set()
    assert lookup_keys({"userPrincipalName": "#EXT#@contoso.onmicrosoft.com"}) == {
        (UPN, "#ext#@contoso.onmicrosoft.com")
    }, "no guest prefix without a local part"


def test_invalidation_drops_the_answers_that_hold_an_account_and_those_of_the_keys():
    cache = PrincipalLookupCache()
    alice, bob = account("a1", "alice@contoso.com"), account("b2", "bob@contoso.com")
    cache.keep((UPN, "alice@contoso.com"), (alice,), cache.epoch)
    cache.keep((MAIL, "team@contoso.com"), (alice, bob), cache.epoch)
    cache.keep((MAIL, "nobody@contoso.com"), (), cache.epoch)
    assert len(cache) == 3
    epoch = cache.epoch
    assert cache.invalidate(["A1"], [(MAIL, "nobody@contoso.com"), (ID, "not-cached")]) == {
        (UPN, "alice@contoso.com"),
        (MAIL, "team@contoso.com"),
        (MAIL, "nobody@contoso.com"),
    }
    assert len(cache) == 0 and cache.epoch == epoch + 1
    cache.keep((UPN, "bob@contoso.com"), (bob,), epoch)
    assert cache.get((UPN, "bob@contoso.com")) is None, "a read started before the invalidation is not kept"
    cache.keep((UPN, "bob@contoso.com"), (bob,), cache.epoch)
    assert cache.invalidate(["b2"], []) == {(UPN, "bob@contoso.com")}
    assert cache.invalidate(["b2"], []) == set(), "the account's index went with its answers"


def test_an_answer_kept_again_replaces_the_old_one_and_its_index():
    cache = PrincipalLookupCache()
    look = (MAIL, "team@contoso.com")
    cache.keep(look, (account("a1"),), cache.epoch)
    cache.keep(look, (account("b2"),), cache.epoch)
    assert cache.invalidate(["a1"], []) == set() and cache.get(look) == (account("b2"),)


def test_clear_forgets_everything_and_bumps_the_epoch():
    cache = PrincipalLookupCache()
    cache.keep((ID, "a1"), (account("a1"),), cache.epoch)
    epoch = cache.epoch
    cache.clear()
    assert len(cache) == 0 and cache.epoch == epoch + 1 and cache.invalidate(["a1"], []) == set()
    assert cache.get((ID, "a1")) is None and cache.misses == 1

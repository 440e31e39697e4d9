"""Principal lookups against the sandbox (real msgraph SDK over HTTPS): Directory.find_accounts by id,
userPrincipalName (without case), guest prefix and mail, in JSON batches of 20 (at most 4 at once);
an inner 429 raises with its Retry-After; and the per-tenant cache (principal_lookups.py): hits cost
no request, invalidation by account id and by key, and a read that raced with one is not kept."""

from __future__ import annotations

import asyncio
import math
from typing import Any

import pytest

from support.sandbox import graph_calls, uid
from synapse_scim.adapters.directory import Directory, DirectoryError
from synapse_scim.adapters.principal_lookups import PrincipalLookupCache, find_accounts
from synapse_scim.core.matching import Account, Lookup, LookupAttribute
from synapse_scim_sandbox import Sandbox

ID, UPN, GUEST, MAIL = (
    LookupAttribute.ID,
    LookupAttribute.USER_PRINCIPAL_NAME,
    LookupAttribute.GUEST_PREFIX,
    LookupAttribute.MAIL,
)
GUEST_UPN = "bob_fabrikam.com#EXT#@contoso.onmicrosoft.com"


@pytest.fixture
async def people(sb: Sandbox) -> Sandbox:
    """The example organisation, plus a guest, a user with an awkward mail, and two users sharing a mail."""
    await sb.admin.add_user(GUEST_UPN, "Bob (Fabrikam)", mail="Bob@Fabrikam.com")
    await sb.admin.add_user("o'neil+data@contoso.com", "Olive O'Neil", mail="o'neil+data&co@contoso.com")
    await sb.admin.add_user("sam.one@contoso.com", "Sam One", mail="team@contoso.com")
    await sb.admin.add_user("sam.two@contoso.com", "Sam Two", mail="Team@Contoso.com")
    await sb.admin.reset_counters()
    return sb


def ids(accounts: tuple[Account, ...]) -> set[str]:
    return {a.principal.id for a in accounts}


async def test_each_attribute_finds_its_users(people: Sandbox, directory: Directory):
    alice = uid(people, "alice@contoso.com")
    looks: list[Lookup] = [
        (ID, alice),
        (UPN, "alice@contoso.com"),
        (GUEST, "bob_fabrikam.com#ext#@"),
        (MAIL, "bob@fabrikam.com"),
        (UPN, "o'neil+data@contoso.com"),
        (MAIL, "o'neil+data&co@contoso.com"),
    ]
    found = await directory.find_accounts(looks)
    assert set(found) == set(looks)
    (by_id,) = found[(ID, alice)]
    assert by_id.principal.display == "alice@contoso.com" and by_id.principal.type == "User" and by_id.enabled
    assert found[(UPN, "alice@contoso.com")] == (by_id,)
    guest = uid(people, GUEST_UPN)
    assert ids(found[(GUEST, "bob_fabrikam.com#ext#@")]) == {guest}
    (by_mail,) = found[(MAIL, "bob@fabrikam.com")]
    assert by_mail.principal.id == guest and by_mail.user_principal_name == GUEST_UPN
    assert by_mail.mail == "Bob@Fabrikam.com"
    olive = uid(people, "o'neil+data@contoso.com")
    assert ids(found[(UPN, "o'neil+data@contoso.com")]) == {olive}, "quote and + survive"
    assert ids(found[(MAIL, "o'neil+data&co@contoso.com")]) == {olive}, "& survives"
    assert await graph_calls(people) == {"graph.batch.200": 1}
    inner = sorted(e["operation"] for e in await people.admin.request_log(service="graph") if e["batched"])
    assert inner == ["getUser"] + ["listUsers"] * 5


async def test_a_upn_is_found_whatever_its_case(people: Sandbox, directory: Directory):
    await people.admin.add_user("Carl.Mixed@Contoso.com", "Carl")
    # The lookup holds the folded value; Graph (and the sandbox) compare without case.
    found = await directory.find_accounts([(UPN, "carl.mixed@contoso.com"), (GUEST, "BOB_FABRIKAM.COM#EXT#@".lower())])
    (carl,) = found[(UPN, "carl.mixed@contoso.com")]
    assert carl.user_principal_name == "Carl.Mixed@Contoso.com"
    assert ids(found[(GUEST, "bob_fabrikam.com#ext#@")]) == {uid(people, GUEST_UPN)}


async def test_no_match_two_matches_and_a_disabled_account(people: Sandbox, directory: Directory):
    judy = uid(people, "judy@contoso.com")  # seeded disabled
    looks: list[Lookup] = [
        (ID, "00000000-0000-0000-0000-000000000001"),
        (UPN, "nobody@contoso.com"),
        (GUEST, "nobody_fabrikam.com#ext#@"),
        (MAIL, "nobody@contoso.com"),
        (MAIL, "team@contoso.com"),
        (UPN, "judy@contoso.com"),
    ]
    found = await directory.find_accounts(looks)
    assert all(found[look] == () for look in looks[:4]), "a 404 by id and empty filters find nothing"
    assert ids(found[(MAIL, "team@contoso.com")]) == {
        uid(people, "sam.one@contoso.com"),
        uid(people, "sam.two@contoso.com"),
    }
    (disabled,) = found[(UPN, "judy@contoso.com")]
    assert disabled.principal.id == judy and disabled.enabled is False


async def test_250_lookups_cost_13_batches_at_most_4_at_once(people: Sandbox, directory: Directory):
    looks: list[Lookup] = [(MAIL, f"nobody{i}@contoso.com") for i in range(249)] + [(UPN, "alice@contoso.com")]
    in_flight, most = 0, 0
    batch = directory._batch

    async def counting(*args: Any, **kwargs: Any) -> Any:
        nonlocal in_flight, most
        in_flight += 1
        most = max(most, in_flight)
        try:
            return await batch(*args, **kwargs)
        finally:
            in_flight -= 1

    directory._batch = counting  # type: ignore[method-assign]
    await people.admin.set_latency(graph=0.05)
    found = await directory.find_accounts(looks)
    assert len(found) == 250 and ids(found[(UPN, "alice@contoso.com")]) == {uid(people, "alice@contoso.com")}
    assert await graph_calls(people) == {"graph.batch.200": math.ceil(250 / 20)}
    assert 1 < most <= 4


async def test_a_429_inside_a_batch_raises_with_its_retry_after(people: Sandbox, directory: Directory):
    await people.admin.inject_fault(
        {"service": "graph", "operation": "listUsers", "status": 429, "retry_after": 7, "count": 1}
    )
    with pytest.raises(DirectoryError) as info:
        await directory.find_accounts([(UPN, "alice@contoso.com"), (ID, uid(people, "bob@contoso.com"))])
    assert info.value.reason == "DirectoryReadFailed" and not info.value.definitive
    assert info.value.retry_after == 7
    assert await graph_calls(people) == {"graph.batch.200": 1}, "the SDK does not retry an inner 429"


async def test_a_user_without_account_state_fails_the_lookup(people: Sandbox, directory: Directory):
    await people.admin.inject_fault(
        {"service": "graph", "operation": "listUsers", "kind": "omit", "omit": ["accountEnabled"]}
    )
    with pytest.raises(DirectoryError) as info:
        await directory.find_accounts([(UPN, "alice@contoso.com")])
    assert info.value.reason == "DirectoryReadFailed" and "accountEnabled" in str(info.value)


async def test_the_cache_answers_a_second_time_without_graph(people: Sandbox, directory: Directory):
    cache = PrincipalLookupCache()
    looks: list[Lookup] = [(UPN, "alice@contoso.com"), (MAIL, "nobody@contoso.com")]
    first = await find_accounts(directory, looks, cache)
    assert len(cache) == 2 and first[(MAIL, "nobody@contoso.com")] == ()
    again = await find_accounts(directory, looks, cache)
    assert again == first and cache.hits == 2
    assert await graph_calls(people) == {"graph.batch.200": 1}, "an empty answer is kept too"
    await find_accounts(directory, looks, cache, use_cache=False)
    assert await graph_calls(people) == {"graph.batch.200": 2}, "use_cache=False reads Graph"
    more = await find_accounts(directory, [*looks, (UPN, "bob@contoso.com")], cache)
    assert len(more) == 3
    inner = [e for e in await people.admin.request_log(service="graph") if e["batched"]]
    assert len(inner) == 5, "only the miss went to Graph"


async def test_invalidation_by_account_id_and_by_key(people: Sandbox, directory: Directory):
    cache = PrincipalLookupCache()
    alice = uid(people, "alice@contoso.com")
    looks: list[Lookup] = [(ID, alice), (UPN, "alice@contoso.com"), (MAIL, "carl@contoso.com")]
    await find_accounts(directory, looks, cache)
    assert cache.invalidate([alice.upper()], []) == {(ID, alice), (UPN, "alice@contoso.com")}
    assert cache.get((UPN, "alice@contoso.com")) is None and cache.get((MAIL, "carl@contoso.com")) == ()
    await people.admin.add_user("carl@contoso.com", "Carl", mail="Carl@contoso.com")
    assert await find_accounts(directory, [(MAIL, "carl@contoso.com")], cache) == {(MAIL, "carl@contoso.com"): ()}
    assert cache.invalidate([], [(MAIL, "carl@contoso.com")]) == {(MAIL, "carl@contoso.com")}
    found = await find_accounts(directory, looks, cache)
    assert ids(found[(MAIL, "carl@contoso.com")]) == {uid(people, "carl@contoso.com")}
    assert len(cache) == 3
    epoch = cache.epoch
    assert cache.invalidate([], []) == set() and cache.epoch == epoch, "nothing changed: nothing to bump"


async def test_an_answer_read_across_an_invalidation_is_used_but_not_kept(people: Sandbox, directory: Directory):
    cache = PrincipalLookupCache()
    find = directory.find_accounts

    async def racing(looks: Any) -> Any:
        found = await find(looks)
        cache.invalidate([], [(MAIL, "erin@contoso.com")])  # a delta round landed during the read
        return found

    directory.find_accounts = racing  # type: ignore[method-assign]
    found = await find_accounts(directory, [(UPN, "erin@contoso.com")], cache)
    assert ids(found[(UPN, "erin@contoso.com")]) == {uid(people, "erin@contoso.com")}
    assert len(cache) == 0 and cache.get((UPN, "erin@contoso.com")) is None
    directory.find_accounts = find  # type: ignore[method-assign]
    await find_accounts(directory, [(UPN, "erin@contoso.com")], cache)
    assert len(cache) == 1


async def test_concurrent_lookups_through_one_cache(people: Sandbox, directory: Directory):
    cache = PrincipalLookupCache()
    results = await asyncio.gather(
        *(find_accounts(directory, [(UPN, "alice@contoso.com"), (MAIL, f"x{i}@contoso.com")], cache) for i in range(3))
    )
    assert all(ids(r[(UPN, "alice@contoso.com")]) == {uid(people, "alice@contoso.com")} for r in results)
    assert len(cache) == 4

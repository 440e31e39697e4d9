"""The tenant cache forgets exactly what a Graph delta round touches, and never keeps a read that raced
with an invalidation of what it read."""

from __future__ import annotations

from synapse_scim.adapters.directory import Expansion
from synapse_scim.adapters.directory_cache import DirectoryCache
from synapse_scim.core.model import Principal


def user(uid: str) -> Principal:
    return Principal(id=uid, type="User", display=f"{uid}@contoso.com")


def expansion(*groups: str, members: tuple[str, ...] = (), disabled: tuple[str, ...] = ()) -> Expansion:
    return Expansion(
        principals=tuple(user(m) for m in members), groups=frozenset(groups), disabled_ids=frozenset(disabled)
    )


def filled() -> DirectoryCache:
    cache = DirectoryCache()
    # engineers contains spark (nested); analysts stands alone
    cache.keep_expansion("engineers", expansion("engineers", "spark", members=("alice", "bob")), cache.epoch)
    cache.keep_expansion("spark", expansion("spark", members=("bob",)), cache.epoch)
    cache.keep_expansion("analysts", expansion("analysts", members=("carol",), disabled=("dave",)), cache.epoch)
    cache.keep_group(("Group", "Data Engineers", None), Principal("engineers", "Group", "Data Engineers"), 0)
    cache.keep_group(("Group", "Analysts", None), Principal("analysts", "Group", "Analysts"), 0)
    return cache


def test_a_change_in_a_nested_group_invalidates_every_cached_parent():
    cache = filled()
    affected = cache.invalidate({"spark"}, {})
    assert affected == {"spark", "engineers"}
    assert cache.expansion("engineers") is None and cache.expansion("spark") is None
    assert cache.expansion("analysts") is not None


def test_a_change_elsewhere_leaves_the_cache_alone_and_reports_only_that_group():
    cache = filled()
    assert cache.invalidate({"unrelated"}, {}) == {"unrelated"}
    assert set(cache.expansions) == {"engineers", "spark", "analysts"}


def test_no_change_is_no_invalidation():
    cache = filled()
    epoch = cache.epoch
    assert cache.invalidate(set(), {}) == set()
    assert cache.epoch == epoch


def test_a_renamed_group_forgets_its_name_lookup():
    cache = filled()
    cache.invalidate({"analysts"}, {"analysts": "Business Analysts"})
    assert cache.group(("Group", "Analysts", None)) is None
    assert cache.group(("Group", "Data Engineers", None)) is not None


def test_a_new_group_with_a_cached_name_forgets_the_lookup_it_may_make_ambiguous():
    cache = filled()
    cache.invalidate({"new-id"}, {"new-id": "data engineers"})
    assert cache.group(("Group", "Data Engineers", None)) is None
    assert cache.expansion("engineers") is not None  # its members did not change


def test_a_read_that_raced_with_an_invalidation_is_not_kept():
    cache = DirectoryCache()
    started = cache.epoch
    cache.invalidate({"spark"}, {})  # Graph reported a change while the read was in flight
    cache.keep_expansion("spark", expansion("spark", members=("bob",)), started)
    cache.keep_group(("Group", "Spark Team", None), Principal("spark", "Group", "Spark Team"), started)
    assert cache.expansion("spark") is None
    assert cache.group(("Group", "Spark Team", None)) is None


def test_an_account_change_invalidates_the_groups_that_contain_it_disabled_ones_included():
    cache = filled()
    assert cache.invalidate_members({"BOB"}) == {"engineers", "spark"}
    assert cache.invalidate_members({"dave"}) == {"analysts"}  # re-enabled: was left out as disabled
    assert cache.invalidate_members({"nobody"}) == set()


def test_clear_forgets_everything_and_outdates_reads_in_flight():
    cache = filled()
    started = cache.epoch
    cache.clear()
    cache.keep_expansion("analysts", expansion("analysts"), started)
    assert not cache.expansions and not cache.groups


def test_hits_and_misses_are_counted():
    cache = filled()
    cache.expansion("engineers")
    cache.expansion("missing")
    cache.group(("Group", "Analysts", None))
    assert (cache.hits, cache.misses) == (2, 1)

"""The Kubernetes store's index as the watch feeds it (`indexed`: the index alone), without a cluster: a
listing taken before this replica's own write does not delete what was written; an older event never
overrides a newer one or a deletion."""

from __future__ import annotations

from typing import Any

from synapse_scim.adapters.scim.kube_store import GROUPS, SHARDS, USERS, KubeScimStore
from synapse_scim.core.scim.resources import Kind


def _user(name: str, version: int, user_name: str) -> dict[str, Any]:
    return {
        "metadata": {"name": name, "resourceVersion": str(version)},
        "spec": {"attributes": {"userName": user_name}, "created": "t", "lastModified": "t"},
    }


async def test_a_listing_older_than_an_own_write_keeps_it() -> None:
    store = KubeScimStore(None, "ns", "okta")  # type: ignore[arg-type]
    store.take_event(USERS, "ADDED", _user("u1", 105, "ada"))  # written by this replica at 105
    store.take_listing(USERS, set(), "100")  # a listing taken before the write
    assert store.indexed(Kind.USER, "u1") is not None
    store.take_listing(USERS, set(), "110")  # a listing after it: the user is gone
    assert store.indexed(Kind.USER, "u1") is None
    store.take_event(USERS, "MODIFIED", _user("u1", 107, "ada"))  # a late event of before the deletion
    assert store.indexed(Kind.USER, "u1") is None
    assert await store.lookup(Kind.USER, "userName", "ada") == []


async def test_an_older_event_does_not_override_a_newer_one() -> None:
    store = KubeScimStore(None, "ns", "okta")  # type: ignore[arg-type]
    store.take_event(USERS, "MODIFIED", _user("u1", 20, "new-name"))
    store.take_event(USERS, "MODIFIED", _user("u1", 10, "old-name"))
    [found] = await store.lookup(Kind.USER, "userName", "new-name")
    assert found.version == "20" and await store.lookup(Kind.USER, "userName", "old-name") == []


async def test_a_sharded_group_is_the_union_of_its_current_shard_set() -> None:
    store = KubeScimStore(None, "ns", "okta")  # type: ignore[arg-type]
    group = {
        "metadata": {"name": "g", "resourceVersion": "5"},
        "spec": {"attributes": {"displayName": "G"}, "members": ["f-left-inline"], "shardSet": "ab12"},
    }

    def shard(shard_set: str, digit: str, members: list[str], version: int) -> dict[str, Any]:
        return {
            "metadata": {"name": f"g-{shard_set}-{digit}", "resourceVersion": str(version)},
            "spec": {"group": "g", "shardSet": shard_set, "shard": digit, "members": members},
        }

    store.take_event(SHARDS, "ADDED", shard("ab12", "0", ["0a", "0b"], 3))  # shards may come first
    store.take_event(SHARDS, "ADDED", shard("ffff", "1", ["1-stale"], 4))  # another (abandoned) set
    store.take_event(GROUPS, "ADDED", group)
    store.take_event(SHARDS, "ADDED", shard("ab12", "f", ["f1"], 6))
    record = store.indexed(Kind.GROUP, "g")
    assert record is not None and set(record.members) == {"f-left-inline", "0a", "0b", "f1"}
    store.take_event(SHARDS, "DELETED", shard("ab12", "0", ["0a", "0b"], 7))
    record = store.indexed(Kind.GROUP, "g")
    assert record is not None and set(record.members) == {"f-left-inline", "f1"}

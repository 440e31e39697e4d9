"""The Kubernetes store against the real kube-apiserver: what the in-memory store does, kept in custom
resources; a sharded large group; concurrent writes of one group; a second replica's index."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
from kubernetes import client
from scim2_models import NotFoundException, UniquenessException

from synapse_scim.adapters.scim.kube_store import GROUPS, SHARDS, USERS, KubeScimStore
from synapse_scim.core.scim.errors import VersionConflict
from synapse_scim.core.scim.resources import Kind
from synapse_scim.core.scim.service import ScimService

BASE = "https://scim.example/scim/v2/ns/okta"
GROUP, VERSION = "synapse-scim.io", "v1alpha1"


@pytest.fixture
def custom(cluster: Any) -> Any:
    with cluster.api_client() as api:
        yield client.CustomObjectsApi(api)


async def _store(custom: Any, namespace: str, provider: str = "okta", **kwargs: Any) -> KubeScimStore:
    store = KubeScimStore(custom, namespace, provider, **kwargs)
    await asyncio.wait_for(store.start(), 30)
    return store


@pytest.fixture
async def store(custom: Any, namespace: str) -> AsyncIterator[KubeScimStore]:
    found = await _store(custom, namespace)
    yield found
    found.close()


async def _eventually(check: Any, within: float = 10.0) -> None:
    deadline = asyncio.get_running_loop().time() + within
    while True:
        try:
            if await check():
                return
        except AssertionError:
            if asyncio.get_running_loop().time() > deadline:
                raise
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("not in time")
        await asyncio.sleep(0.05)


def _objects(custom: Any, namespace: str, plural: str) -> list[dict[str, Any]]:
    return custom.list_namespaced_custom_object(GROUP, VERSION, namespace, plural)["items"]


async def test_users_and_groups_round_trip_and_another_replica_sees_them(
    custom: Any, namespace: str, store: KubeScimStore
) -> None:
    service = ScimService(store)
    user = await service.create(
        Kind.USER,
        {
            "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
            "userName": "Ada@Example.com",
            "externalId": "00u1",
            "displayName": "Ada Lovelace",
            "active": True,
            "emails": [{"value": "ada@example.com", "type": "work", "primary": True}],
        },
        BASE,
    )
    assert user.status == 201
    uid = user.body["id"]
    group = await service.create(Kind.GROUP, {"displayName": "Data Engineers", "members": [{"value": uid}]}, BASE)
    gid = group.body["id"]
    # The objects: named by the ids, labelled with the provider, what kubectl get shows.
    [user_obj] = _objects(custom, namespace, USERS)
    assert user_obj["metadata"]["name"] == uid
    assert user_obj["metadata"]["labels"]["synapse-scim.io/scim-provider"] == "okta"
    assert user_obj["spec"]["attributes"]["userName"] == "Ada@Example.com"
    [group_obj] = _objects(custom, namespace, GROUPS)
    assert (group_obj["metadata"]["name"], group_obj["spec"]["members"], group_obj["spec"]["memberCount"]) == (
        gid,
        [uid],
        1,
    )
    # A second replica (its own list and watch) answers the same.
    other = await _store(custom, namespace)
    try:
        again = ScimService(other)
        assert (await again.get(Kind.USER, uid, BASE)).body == (await service.get(Kind.USER, uid, BASE)).body
        assert (await again.get(Kind.GROUP, gid, BASE)).body == (await service.get(Kind.GROUP, gid, BASE)).body
        found = await again.list(Kind.USER, BASE, filter='userName eq "ada@EXAMPLE.com"')
        assert [each["id"] for each in found.body["Resources"]] == [uid]
        found = await again.list(Kind.USER, BASE, filter='externalId eq "00u1"')
        assert found.body["totalResults"] == 1
        found = await again.list(Kind.GROUP, BASE, filter=f'id eq "{gid}" and members[value eq "{uid}"]')
        assert found.body["totalResults"] == 1
        # A write through the first arrives at the second through its watch.
        await service.patch(Kind.USER, uid, {"Operations": [{"op": "replace", "value": {"active": False}}]}, BASE)

        async def deactivated() -> bool:
            return (await again.get(Kind.USER, uid, BASE)).body["active"] is False

        await _eventually(deactivated)
        # Uniqueness, from the index.
        with pytest.raises(UniquenessException):
            await other.create(Kind.USER, {"userName": "ADA@example.com"})
        # Delete: the user leaves the group; both replicas agree.
        await service.delete(Kind.USER, uid)
        assert (await store.get(Kind.GROUP, gid)).members == ()

        async def gone() -> bool:
            return await other.get(Kind.USER, uid) is None and (await other.get(Kind.GROUP, gid)).members == ()

        await _eventually(gone)
    finally:
        other.close()


async def test_a_write_keeps_labels_someone_else_added(custom: Any, namespace: str, store: KubeScimStore) -> None:
    record = await store.create(Kind.USER, {"userName": "barbara"})
    patch = {"metadata": {"labels": {"backup.example.com/restored": "yes"}}}
    custom.patch_namespaced_custom_object(GROUP, VERSION, namespace, USERS, record.id, patch)

    async def labelled() -> bool:
        return (await store.get(Kind.USER, record.id)).version != record.version

    await _eventually(labelled)
    current = await store.get(Kind.USER, record.id)
    await store.update(current, {"userName": "barbara", "title": "x"}, None, expected_version=current.version)
    [obj] = _objects(custom, namespace, USERS)
    assert obj["metadata"]["labels"] == {
        "synapse-scim.io/scim-provider": "okta",
        "app.kubernetes.io/managed-by": "synapse-scim",
        "backup.example.com/restored": "yes",
    }
    assert obj["spec"]["attributes"]["title"] == "x"


async def test_a_stale_version_is_a_conflict_and_the_index_is_refreshed(store: KubeScimStore) -> None:
    record = await store.create(Kind.USER, {"userName": "grace"})
    newer = await store.update(record, {"userName": "grace", "displayName": "G"}, None, expected_version=record.version)
    with pytest.raises(VersionConflict):
        await store.update(record, {"userName": "grace", "title": "x"}, None, expected_version=record.version)
    assert (await store.get(Kind.USER, record.id)).version == newer.version
    with pytest.raises(NotFoundException):
        await store.delete(Kind.USER, str(uuid.uuid4()))


async def test_a_large_group_is_sharded_and_round_trips(custom: Any, namespace: str, store: KubeScimStore) -> None:
    members = tuple(str(uuid.uuid4()) for _ in range(10_000))  # the store takes ids; the service checks them
    record = await store.create(Kind.GROUP, {"displayName": "Everyone"}, members)
    assert set(record.members) == set(members) and len(record.members) == 10_000
    [group_obj] = _objects(custom, namespace, GROUPS)
    assert group_obj["spec"]["shardSet"] and group_obj["spec"]["members"] == []
    assert group_obj["spec"]["memberCount"] == 10_000
    shards = _objects(custom, namespace, SHARDS)
    assert len(shards) == 16
    assert all(s["spec"]["members"] and all(m[0] == s["spec"]["shard"] for m in s["spec"]["members"]) for s in shards)
    assert max(len(str(s["spec"]["members"])) for s in shards) < 1_000_000 // 3  # far below etcd's 1.5 MiB
    # Another replica reads the same members; a change touches the group and one shard.
    other = await _store(custom, namespace)
    try:
        assert set((await other.get(Kind.GROUP, record.id)).members) == set(members)
        newcomer = "0" + str(uuid.uuid4())[1:]
        current = await store.get(Kind.GROUP, record.id)
        updated = await store.update(
            current,
            current.attributes,
            (*(m for m in current.members if m != members[0]), newcomer),
            expected_version=current.version,
        )
        assert newcomer in updated.members and members[0] not in updated.members
        assert len(updated.members) == 10_000

        async def seen() -> bool:
            found = await other.get(Kind.GROUP, record.id)
            return newcomer in found.members and members[0] not in found.members

        await _eventually(seen)
        await store.delete(Kind.GROUP, record.id)
        assert _objects(custom, namespace, SHARDS) == []
    finally:
        other.close()


async def test_a_group_growing_past_the_inline_limit_turns_sharded(custom: Any, namespace: str) -> None:
    store = await _store(custom, namespace, inline_limit=10)
    try:
        ids = tuple(str(uuid.uuid4()) for _ in range(15))
        record = await store.create(Kind.GROUP, {"displayName": "g"}, ids[:5])
        grown = await store.update(record, record.attributes, ids, expected_version=record.version)
        assert set(grown.members) == set(ids)
        [group_obj] = _objects(custom, namespace, GROUPS)
        assert group_obj["spec"]["shardSet"] and group_obj["spec"]["members"] == []
        assert sum(len(s["spec"]["members"]) for s in _objects(custom, namespace, SHARDS)) == 15
    finally:
        store.close()


@pytest.mark.parametrize("inline_limit", [8192, 4], ids=["inline", "sharded"])
async def test_two_concurrent_patches_of_one_group_lose_no_member(
    custom: Any, namespace: str, inline_limit: int
) -> None:
    """Two replicas (two stores, each its own index) PATCH the same group at the same time, many times:
    every member added is there at the end."""
    first = await _store(custom, namespace, inline_limit=inline_limit)
    second = await _store(custom, namespace, inline_limit=inline_limit)
    try:
        users = [await first.create(Kind.USER, {"userName": f"u{i}"}) for i in range(24)]
        group = await first.create(
            Kind.GROUP, {"displayName": "g"}, (users[0].id, users[1].id, users[2].id, users[3].id, users[4].id)
        )
        await _eventually(lambda: _has(second, Kind.GROUP, group.id))
        await _eventually(lambda: _has(second, Kind.USER, users[-1].id))
        one, two = ScimService(first), ScimService(second)

        async def add(service: ScimService, user_ids: list[str]) -> None:
            for user_id in user_ids:
                body = {"Operations": [{"op": "Add", "path": "members", "value": [{"value": user_id}]}]}
                answer = await service.patch(Kind.GROUP, group.id, body, BASE)
                assert answer.status == 204

        await asyncio.gather(add(one, [u.id for u in users[5:14]]), add(two, [u.id for u in users[14:]]))
        expected = {u.id for u in users}

        async def complete() -> bool:
            for store in (first, second):
                found = await store.get(Kind.GROUP, group.id)
                assert set(found.members) == expected, len(expected - set(found.members))
            return True

        await _eventually(complete)
    finally:
        first.close()
        second.close()


async def _has(store: KubeScimStore, kind: Kind, resource_id: str) -> bool:
    return await store.get(kind, resource_id) is not None


async def test_providers_are_kept_apart(custom: Any, namespace: str, store: KubeScimStore) -> None:
    entra = await _store(custom, namespace, provider="entra")
    try:
        await store.create(Kind.USER, {"userName": "shared-name"})
        await entra.create(Kind.USER, {"userName": "shared-name"})  # unique per provider only
        assert await entra.count(Kind.USER) == 1 and await store.count(Kind.USER) == 1
    finally:
        entra.close()


@pytest.mark.parametrize("inline_limit", [8192, 4], ids=["inline", "sharded"])
async def test_a_replica_whose_watch_is_behind_finds_what_another_replica_just_wrote(
    custom: Any, namespace: str, inline_limit: int
) -> None:
    """The two-replica soak's 404s: a group created through one replica, PATCHed at once through the
    other, whose watch had not brought it yet (after an API server restart it can be seconds behind). A
    replica looks in the API server before it says a user or group does not exist. Here the second
    replica's watch is stopped, so everything the first writes afterwards is unseen by its index."""
    first = await _store(custom, namespace, inline_limit=inline_limit)
    second = await _store(custom, namespace, inline_limit=inline_limit)
    other = await _store(custom, namespace, provider="entra")
    try:
        second.close()  # its watch delivers nothing more: it is as far behind as a replica can be
        users = [await first.create(Kind.USER, {"userName": f"late{i}"}) for i in range(6)]
        group = await first.create(Kind.GROUP, {"displayName": "late"}, tuple(u.id for u in users[:5]))
        stranger = await other.create(Kind.USER, {"userName": "someone-else"})

        found = await second.get(Kind.GROUP, group.id)
        assert found is not None and set(found.members) == {u.id for u in users[:5]}
        assert await second.missing_users(frozenset({users[5].id, "no-such-user"})) == {"no-such-user"}
        # A PATCH through the replica that is behind: applied, not 404 (nor 400 for its new member).
        body = {"Operations": [{"op": "Add", "path": "members", "value": [{"value": users[5].id}]}]}
        answer = await ScimService(second).patch(Kind.GROUP, group.id, body, BASE)
        assert answer.status == 204
        await _eventually(
            lambda: _members_are(first, group.id, {u.id for u in users}),
        )
        # What is not there, or another provider's, is still not found; a name no object can have is
        # answered without asking the API server.
        assert await second.get(Kind.USER, str(uuid.uuid4())) is None
        assert await second.get(Kind.USER, stranger.id) is None
        assert await second.get(Kind.GROUP, "Not A Name!") is None
    finally:
        first.close()
        second.close()
        other.close()


async def _members_are(store: KubeScimStore, group_id: str, expected: set[str]) -> bool:
    found = await store.get(Kind.GROUP, group_id)
    assert found is not None and set(found.members) == expected
    return True

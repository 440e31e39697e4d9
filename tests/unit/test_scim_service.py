"""core/scim/service.py over the in-memory store: the operations, uniqueness, references, paging order,
and two concurrent PATCHes of one group losing no member."""

from __future__ import annotations

import asyncio
import itertools
from typing import Any

import pytest
from scim2_models import SCIMException

from synapse_scim.core.scim.errors import VersionConflict, error_body, from_exception
from synapse_scim.core.scim.memory import MemoryStore
from synapse_scim.core.scim.resources import PATCH_SCHEMA, Kind
from synapse_scim.core.scim.service import ScimService
from synapse_scim.core.scim.store import Record

BASE = "https://scim.example.test/scim/v2/ns/okta"


def ops(*operations: dict[str, Any]) -> dict[str, Any]:
    return {"schemas": [PATCH_SCHEMA], "Operations": list(operations)}


@pytest.fixture
def service() -> ScimService:
    counter = itertools.count(1)
    return ScimService(MemoryStore(new_id=lambda: f"00000000-0000-4000-8000-{next(counter):012d}"))


async def add_user(service: ScimService, name: str, **more: Any) -> str:
    answer = await service.create(Kind.USER, {"userName": name, "active": True, **more}, BASE)
    assert answer.body is not None
    return str(answer.body["id"])


async def test_create_answers_201_with_the_full_resource_and_no_password(service: ScimService) -> None:
    answer = await service.create(
        Kind.USER,
        {
            "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
            "userName": "test.user@okta.local",
            "name": {"givenName": "Test", "familyName": "User"},
            "emails": [{"primary": True, "value": "test.user@okta.local", "type": "work"}],
            "displayName": "Test User",
            "locale": "en-US",
            "externalId": "00ujl29u0le5T6Aj10h7",
            "groups": [],
            "password": "1mz050nq",
            "active": True,
        },
        BASE,
    )
    assert answer.status == 201 and answer.body is not None
    assert answer.body["userName"] == "test.user@okta.local"
    assert answer.body["meta"]["location"] == f"{BASE}/Users/{answer.body['id']}"
    assert answer.body["meta"]["resourceType"] == "User"
    assert "password" not in str(answer.body)
    assert answer.change is not None and answer.change.operation == "create"


async def test_duplicate_user_name_without_case_is_409_uniqueness(service: ScimService) -> None:
    await add_user(service, "Bob@Example.com")
    with pytest.raises(SCIMException) as info:
        await add_user(service, "bob@example.COM")
    assert (info.value.status, info.value.scim_type) == (409, "uniqueness")
    listed = await service.list(Kind.USER, BASE, filter='userName eq "BOB@example.com"')
    assert listed.body is not None and listed.body["totalResults"] == 1  # the filter finds what uniqueness finds


async def test_no_match_is_200_with_an_empty_list(service: ScimService) -> None:
    answer = await service.list(Kind.USER, BASE, filter='userName eq "f4a1c0de-2b1e-4c1b-9b1e-1e1e1e1e1e1e"')
    assert answer.status == 200 and answer.body is not None
    assert answer.body["totalResults"] == 0 and answer.body["Resources"] == []


async def test_unknown_id_is_404(service: ScimService) -> None:
    with pytest.raises(SCIMException) as info:
        await service.get(Kind.USER, "nope", BASE)
    status, body = from_exception(info.value)
    assert status == 404 and body["status"] == "404"


async def test_paging_is_stable_whatever_the_page_size(service: ScimService) -> None:
    for index in range(23):
        await add_user(service, f"user{index:02d}@x.test")

    async def ids(count: int) -> list[str]:
        out: list[str] = []
        start = 1
        while True:
            answer = await service.list(Kind.USER, BASE, start_index=str(start), count=str(count))
            assert answer.body is not None and answer.body["startIndex"] == start
            page = [each["id"] for each in answer.body["Resources"]]
            out += page
            start += count
            if start > answer.body["totalResults"]:
                return out

    assert await ids(5) == await ids(7) == await ids(100)
    assert len(await ids(5)) == 23


async def test_group_lifecycle_with_members(service: ScimService) -> None:
    alice = await add_user(service, "alice@x.test", displayName="Alice")
    bob = await add_user(service, "bob@x.test")
    created = await service.create(Kind.GROUP, {"displayName": "Eng", "members": []}, BASE)
    assert created.body is not None
    gid = created.body["id"]
    answer = await service.patch(
        Kind.GROUP, gid, ops({"op": "Add", "path": "members", "value": [{"value": alice}, {"value": bob}]}), BASE
    )
    assert answer.status == 204 and answer.change is not None and answer.change.detail == "members +2 -0"
    got = await service.get(Kind.GROUP, gid, BASE)
    assert got.body is not None
    assert [(m["value"], m.get("display")) for m in got.body["members"]] == [(alice, "Alice"), (bob, "bob@x.test")]
    found = await service.list(Kind.GROUP, BASE, filter=f'id eq "{gid}" and members[value eq "{alice}"]')
    assert found.body is not None and found.body["totalResults"] == 1
    without = await service.get(Kind.GROUP, gid, BASE, excluded="members")
    assert without.body is not None and "members" not in without.body
    # Entra's default removal removes only the listed member
    await service.patch(Kind.GROUP, gid, ops({"op": "Remove", "path": "members", "value": [{"value": alice}]}), BASE)
    got = await service.get(Kind.GROUP, gid, BASE)
    assert got.body is not None and [m["value"] for m in got.body["members"]] == [bob]
    # deactivation keeps the membership; deletion ends it
    await service.patch(Kind.USER, bob, ops({"op": "replace", "value": {"active": False}}), BASE)
    got = await service.get(Kind.GROUP, gid, BASE)
    assert got.body is not None and [m["value"] for m in got.body["members"]] == [bob]
    assert (await service.delete(Kind.USER, bob)).status == 204
    got = await service.get(Kind.GROUP, gid, BASE)
    assert got.body is not None and got.body["members"] == []


async def test_unknown_members_are_refused_and_nothing_changes(service: ScimService) -> None:
    alice = await add_user(service, "alice@x.test")
    created = await service.create(Kind.GROUP, {"displayName": "Eng", "members": [{"value": alice}]}, BASE)
    assert created.body is not None
    gid = created.body["id"]
    with pytest.raises(SCIMException) as info:
        await service.patch(
            Kind.GROUP,
            gid,
            ops(
                {"op": "replace", "path": "displayName", "value": "X"},
                {"op": "add", "path": "members", "value": [{"value": "ghost"}]},
            ),
            BASE,
        )
    assert info.value.status == 400 and "ghost" in info.value.detail
    got = await service.get(Kind.GROUP, gid, BASE)
    assert (
        got.body is not None
        and got.body["displayName"] == "Eng"
        and [m["value"] for m in got.body["members"]] == [alice]
    )
    with pytest.raises(SCIMException):
        await service.create(Kind.GROUP, {"displayName": "Other", "members": [{"value": "ghost"}]}, BASE)
    with pytest.raises(SCIMException):
        await service.replace(Kind.GROUP, gid, {"displayName": "Eng", "members": [{"value": "ghost"}]}, BASE)


async def test_bare_remove_of_members_changes_nothing(service: ScimService) -> None:
    alice = await add_user(service, "alice@x.test")
    created = await service.create(Kind.GROUP, {"displayName": "Eng", "members": [{"value": alice}]}, BASE)
    assert created.body is not None
    with pytest.raises(SCIMException) as info:
        await service.patch(Kind.GROUP, created.body["id"], ops({"op": "remove", "path": "members"}), BASE)
    assert info.value.status == 400
    got = await service.get(Kind.GROUP, created.body["id"], BASE)
    assert got.body is not None and len(got.body["members"]) == 1


async def test_okta_put_replaces_membership_and_keeps_the_id(service: ScimService) -> None:
    alice = await add_user(service, "alice@x.test")
    bob = await add_user(service, "bob@x.test")
    created = await service.create(Kind.GROUP, {"displayName": "Eng", "members": [{"value": alice}]}, BASE)
    assert created.body is not None
    gid = created.body["id"]
    answer = await service.replace(
        Kind.GROUP, gid, {"id": gid, "displayName": "Eng 2", "members": [{"value": bob}]}, BASE
    )
    assert answer.status == 200 and answer.body is not None
    assert answer.body["id"] == gid and answer.body["displayName"] == "Eng 2"
    assert [m["value"] for m in answer.body["members"]] == [bob]
    with pytest.raises(SCIMException):
        await service.replace(Kind.GROUP, gid, {"id": "another", "displayName": "Eng 2"}, BASE)


async def test_okta_put_of_a_user_keeps_its_id_and_deactivates(service: ScimService) -> None:
    uid = await add_user(service, "u@x.test")
    answer = await service.replace(Kind.USER, uid, {"id": uid, "userName": "u@x.test", "active": False}, BASE)
    assert answer.body is not None and answer.body["active"] is False and answer.body["id"] == uid


async def test_rename_to_a_taken_name_is_409(service: ScimService) -> None:
    await service.create(Kind.GROUP, {"displayName": "Eng"}, BASE)
    other = await service.create(Kind.GROUP, {"displayName": "Ops"}, BASE)
    assert other.body is not None
    with pytest.raises(SCIMException) as info:
        await service.patch(
            Kind.GROUP, other.body["id"], ops({"op": "replace", "path": "displayName", "value": "ENG"}), BASE
        )
    assert info.value.status == 409


class RacingStore(MemoryStore):
    """Lets every read of a group finish before any write: the interleaving that loses members when a
    server writes back whole state without checking the version."""

    def __init__(self) -> None:
        super().__init__()
        self.readers = 0
        self.gate = asyncio.Event()
        self.conflicts = 0

    async def update(
        self, record: Record, attributes: dict[str, Any], members: tuple[str, ...] | None, *, expected_version: str
    ) -> Record:
        if record.kind is Kind.GROUP and not self.gate.is_set():
            self.readers += 1
            if self.readers == 2:
                self.gate.set()
            await self.gate.wait()
        try:
            return await super().update(record, attributes, members, expected_version=expected_version)
        except VersionConflict:
            self.conflicts += 1
            raise


async def test_two_concurrent_patches_of_one_group_lose_no_member() -> None:
    # Two replicas (two services over one store): each applies its request again to a fresh read.
    store = RacingStore()
    service, other_replica = ScimService(store), ScimService(store)
    alice = await add_user(service, "alice@x.test")
    bob = await add_user(service, "bob@x.test")
    created = await service.create(Kind.GROUP, {"displayName": "Eng"}, BASE)
    assert created.body is not None
    gid = created.body["id"]
    await asyncio.gather(
        service.patch(Kind.GROUP, gid, ops({"op": "add", "path": "members", "value": [{"value": alice}]}), BASE),
        other_replica.patch(Kind.GROUP, gid, ops({"op": "add", "path": "members", "value": [{"value": bob}]}), BASE),
    )
    assert store.conflicts == 1
    got = await service.get(Kind.GROUP, gid, BASE)
    assert got.body is not None and sorted(m["value"] for m in got.body["members"]) == sorted([alice, bob])


class SlowStore(MemoryStore):
    """Reads and writes that take a while, as the Kubernetes API's do: concurrent requests interleave."""

    async def get(self, kind: Kind, resource_id: str) -> Record | None:
        await asyncio.sleep(0.001)
        return await super().get(kind, resource_id)

    async def update(
        self, record: Record, attributes: dict[str, Any], members: tuple[str, ...] | None, *, expected_version: str
    ) -> Record:
        await asyncio.sleep(0.002)
        return await super().update(record, attributes, members, expected_version=expected_version)


async def test_a_burst_of_patches_of_one_group_on_one_replica_all_land() -> None:
    # An identity provider's burst: 50 PATCHes of the same few objects at once. Optimistic retries alone
    # gave up after WRITE_ATTEMPTS and answered 409 (the soak saw it); one replica queues its own writes
    # of one object instead.
    service = ScimService(SlowStore())
    users = [await add_user(service, f"u{i}@x.test") for i in range(50)]
    created = await service.create(Kind.GROUP, {"displayName": "Eng"}, BASE)
    assert created.body is not None
    gid = created.body["id"]
    answers = await asyncio.gather(
        *(
            service.patch(Kind.GROUP, gid, ops({"op": "add", "path": "members", "value": [{"value": u}]}), BASE)
            for u in users[:40]
        ),
        *(service.patch(Kind.USER, u, ops({"op": "replace", "value": {"active": False}}), BASE) for u in users[40:]),
        *(service.patch(Kind.USER, u, ops({"op": "replace", "value": {"active": True}}), BASE) for u in users[40:]),
    )
    assert all(a.status in (200, 204) for a in answers)
    got = await service.get(Kind.GROUP, gid, BASE)
    assert got.body is not None and sorted(m["value"] for m in got.body["members"]) == sorted(users[:40])
    assert not service.locks  # none kept once their writers are done


def test_error_body_has_status_as_a_string() -> None:
    assert error_body(409, "taken", "uniqueness") == {
        "schemas": ["urn:ietf:params:scim:api:messages:2.0:Error"],
        "status": "409",
        "detail": "taken",
        "scimType": "uniqueness",
    }
    assert "scimType" not in error_body(404, "gone")


@pytest.mark.parametrize(
    "payload",
    [
        {"userName": None},
        {},
        {"userName": "x", "active": "maybe"},
        "not an object",
        {"userName": "x", "emails": "not a list"},
    ],
)
async def test_invalid_user_bodies_are_400(service: ScimService, payload: Any) -> None:
    with pytest.raises(SCIMException) as info:
        await service.create(Kind.USER, payload, BASE)
    assert info.value.status == 400
    assert await service.store.count(Kind.USER) == 0


async def test_entra_group_create_with_its_extra_schema_and_meta(service: ScimService) -> None:
    answer = await service.create(
        Kind.GROUP,
        {
            "externalId": "8aa1a0c0-c4c3-4bc0-b4a5-2ef676900159",
            "id": "c4d56c0e-1111-2222-3333-444444444444",
            "displayName": "displayName",
            "meta": {"resourceType": "Group"},
            "schemas": [
                "urn:ietf:params:scim:schemas:core:2.0:Group",
                "http://schemas.microsoft.com/2006/11/ResourceManagement/ADSCIM/2.0/Group",
            ],
            "members": [],
        },
        BASE,
    )
    assert answer.status == 201 and answer.body is not None
    assert answer.body["id"] != "c4d56c0e-1111-2222-3333-444444444444"  # ids are ours
    assert answer.body["schemas"] == ["urn:ietf:params:scim:schemas:core:2.0:Group"]


async def test_a_record_hands_out_a_fresh_copy_of_its_attributes(service: ScimService) -> None:
    """Records keep their attributes encoded (memory); a caller changing what it read changes nothing stored."""
    attributes = {
        "userName": "fresh@example.com",
        "name": {"givenName": "Fresh"},
        "emails": [{"value": "é@example.com"}],
    }
    created = await service.create(Kind.USER, attributes, BASE)
    assert created.body is not None
    uid = str(created.body["id"])
    record = await service.store.get(Kind.USER, uid)
    assert isinstance(record, Record) and isinstance(record.encoded, bytes)
    read = record.attributes
    read["name"]["givenName"] = "Changed"
    read["userName"] = "changed@example.com"
    again = await service.store.get(Kind.USER, uid)
    assert again is not None and again.attributes["name"] == {"givenName": "Fresh"}
    assert again.attributes["userName"] == "fresh@example.com"
    assert again.attributes["emails"] == [{"value": "é@example.com"}]
    assert Record.of(Kind.USER, uid, record.attributes, "1", "t", "t").attributes == record.attributes

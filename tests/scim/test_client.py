"""The endpoint driven by an independent client: scim2-client 0.13.2 over httpx2, against the real aiohttp
server (tests/scim/conftest.py). The client builds its models from our /Schemas (discover), so the
resources it returns are its own classes, not scim2_models.User."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx2
import pytest
from scim2_client.engines.httpx2 import AsyncSCIMClient
from scim2_models import (
    EnterpriseUser,
    Group,
    ListResponse,
    PatchOp,
    PatchOperation,
    SCIMException,
    SearchRequest,
    ServiceProviderConfig,
    User,
)

from .conftest import OKTA_TOKEN, Endpoint

UserE = User[EnterpriseUser]


@pytest.fixture
async def client(endpoint: Endpoint) -> AsyncIterator[AsyncSCIMClient]:
    async with httpx2.AsyncClient(
        base_url=endpoint.base() + "/", headers={"Authorization": f"Bearer {OKTA_TOKEN}"}
    ) as http:
        scim = AsyncSCIMClient(http)
        await scim.discover()
        yield scim


async def test_discovery(client: AsyncSCIMClient) -> None:
    config = await client.query(ServiceProviderConfig)
    assert isinstance(config, ServiceProviderConfig)
    assert config.patch is not None and config.patch.supported
    assert config.filter is not None and config.filter.max_results == 200


async def test_user_lifecycle(client: AsyncSCIMClient) -> None:
    created = await client.create(UserE(user_name="bjensen@example.com", display_name="Barbara", active=True))
    assert created.id is not None and created.id
    found = await client.query(UserE, query_parameters=SearchRequest(filter='userName eq "BJENSEN@example.com"'))
    assert isinstance(found, ListResponse) and found.total_results == 1
    assert found.resources is not None and found.resources[0].id == created.id
    patched = await client.modify(
        UserE,
        created.id,
        PatchOp[UserE](operations=[PatchOperation[UserE](op=PatchOperation.Op.replace_, path="active", value=False)]),
    )
    assert patched.id is not None and patched.active is False
    replaced = await client.replace(
        UserE(id=created.id, user_name="bjensen@example.com", display_name="Babs", active=True)
    )
    assert replaced.id is not None and replaced.display_name == "Babs" and replaced.id == created.id
    await client.delete(UserE, created.id)
    with pytest.raises(SCIMException) as info:
        await client.query(UserE, created.id)
    assert info.value.status == 404


async def test_duplicate_user_is_409(client: AsyncSCIMClient) -> None:
    await client.create(UserE(user_name="dup@example.com"))
    with pytest.raises(SCIMException) as info:
        await client.create(UserE(user_name="DUP@example.com"))
    assert info.value.status == 409 and info.value.scim_type == "uniqueness"


async def test_group_membership(client: AsyncSCIMClient) -> None:
    alice = await client.create(UserE(user_name="alice@example.com", display_name="Alice"))
    bob = await client.create(UserE(user_name="bob@example.com"))
    assert alice.id is not None and bob.id is not None
    group = await client.create(Group(display_name="Data Engineers", members=[]))
    assert group.id is not None and group.id
    add = PatchOp[Group](
        operations=[
            PatchOperation[Group](
                op=PatchOperation.Op.add, path="members", value=[{"value": alice.id}, {"value": bob.id}]
            )
        ]
    )
    await client.modify(Group, group.id, add)
    read = await client.query(Group, group.id)
    assert read.id is not None and read.members is not None
    assert sorted(member.value for member in read.members if member.value) == sorted([alice.id, bob.id])
    remove = PatchOp[Group](
        operations=[PatchOperation[Group](op=PatchOperation.Op.remove, path=f'members[value eq "{alice.id}"]')]
    )
    await client.modify(Group, group.id, remove)
    read = await client.query(Group, group.id)
    assert read.id is not None and [m.value for m in read.members or []] == [bob.id]
    listed = await client.query(Group, query_parameters=SearchRequest(filter='displayName eq "data engineers"'))
    assert isinstance(listed, ListResponse) and listed.total_results == 1


async def test_paging_through_the_client(client: AsyncSCIMClient) -> None:
    for index in range(12):
        await client.create(UserE(user_name=f"pager{index:02d}@example.com"))
    seen: list[str] = []
    start = 1
    while True:
        page = await client.query(UserE, query_parameters=SearchRequest(start_index=start, count=5))
        assert isinstance(page, ListResponse) and page.start_index == start
        seen += [each.id for each in page.resources or []]
        start += 5
        if start > (page.total_results or 0):
            break
    assert len(seen) == len(set(seen)) == 12

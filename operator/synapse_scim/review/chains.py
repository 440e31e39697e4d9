"""Which chain of groups brings a member into a group: Data Engineers > Spark Team > alice.

The operator expands groups with transitiveMembers, which is flat: it says who is in, not through
which nested group. To explain a grant, this walks the direct ``members`` of each group breadth first
(so the chain shown is a shortest one), reading every group once and stopping at cycles. Reads only.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from kiota_abstractions.base_request_configuration import RequestConfiguration
from msgraph.generated.groups.item.members.members_request_builder import MembersRequestBuilder
from msgraph.generated.models.o_data_errors.o_data_error import ODataError

from synapse_scim.adapters.directory import MEMBER_FIELDS, PAGE_SIZE, Directory, directory_error, principal_from_json
from synapse_scim.core.model import Principal, normalize_id


@dataclass(frozen=True)
class Member:
    principal: Principal
    enabled: bool


class GroupWalker:
    """Direct members of groups and directory objects by id, each read at most once per run."""

    def __init__(self, directory: Directory, concurrency: int = 8) -> None:
        self.directory = directory
        self.client = directory.client
        self._members: dict[str, asyncio.Task[tuple[Member, ...]]] = {}
        self._objects: dict[str, asyncio.Task[Principal | None]] = {}
        self._paths: dict[str, asyncio.Task[dict[str, tuple[str, ...]]]] = {}
        self._sem = asyncio.Semaphore(concurrency)

    def members(self, group_id: str) -> asyncio.Task[tuple[Member, ...]]:
        key = normalize_id(group_id)
        if key not in self._members:
            self._members[key] = asyncio.ensure_future(self._read_members(key))
        return self._members[key]

    async def _read_members(self, group_id: str) -> tuple[Member, ...]:
        query = MembersRequestBuilder.MembersRequestBuilderGetQueryParameters(select=MEMBER_FIELDS, top=PAGE_SIZE)
        info = self.client.groups.by_group_id(group_id).members.to_get_request_information(
            request_configuration=RequestConfiguration(query_parameters=query)
        )
        found: list[Member] = []
        async with self._sem:
            try:
                # Raw JSON pages (the directory adapter's pager): building SDK models costs ~8 ms per member.
                async for page in self.directory.pages(info):
                    for obj in page.get("value") or ():
                        principal = principal_from_json(obj)
                        if principal is not None:
                            found.append(Member(principal, obj.get("accountEnabled") is not False))
            except Exception as exc:
                raise directory_error(exc, f"direct members of group {group_id}") from exc
        return tuple(sorted(found, key=lambda m: (m.principal.display.lower(), m.principal.id)))

    def object(self, object_id: str) -> asyncio.Task[Principal | None]:
        """A user, group or service principal by object id; None when the directory has no such object
        (an assignment can outlive its principal)."""
        key = normalize_id(object_id)
        if key not in self._objects:
            self._objects[key] = asyncio.ensure_future(self._read_object(key))
        return self._objects[key]

    async def _read_object(self, object_id: str) -> Principal | None:
        async with self._sem:
            try:
                obj = await self.directory.get_json(
                    self.client.directory_objects.by_directory_object_id(object_id).to_get_request_information()
                )
            except ODataError as exc:
                if exc.response_status_code == 404:
                    return None
                raise directory_error(exc, f"directory object {object_id}") from exc
            except Exception as exc:
                raise directory_error(exc, f"directory object {object_id}") from exc
        return principal_from_json(obj)

    def paths(self, group: Principal) -> asyncio.Task[dict[str, tuple[str, ...]]]:
        """Every member reachable from ``group`` (users, service principals, nested groups) -> the
        display names of the groups on a shortest way down, ``group`` first and the member's direct
        group last. Ties are broken by display name, so the answer does not depend on read order."""
        if group.id not in self._paths:
            self._paths[group.id] = asyncio.ensure_future(self._walk(group))
        return self._paths[group.id]

    async def _walk(self, top: Principal) -> dict[str, tuple[str, ...]]:
        chains: dict[str, tuple[str, ...]] = {}
        seen = {top.id}
        frontier: list[tuple[Principal, tuple[str, ...]]] = [(top, (top.display,))]
        while frontier:
            listed = await asyncio.gather(*(self.members(g.id) for g, _ in frontier))
            next_frontier: list[tuple[Principal, tuple[str, ...]]] = []
            for (_, chain), members in zip(frontier, listed, strict=True):
                for m in members:
                    if m.principal.id in chains or m.principal.id == top.id:
                        continue
                    chains[m.principal.id] = chain
                    if m.principal.type == "Group" and m.principal.id not in seen:
                        seen.add(m.principal.id)  # a cycle comes back to a group already walked: stop there
                        next_frontier.append((m.principal, (*chain, m.principal.display)))
            frontier = next_frontier
        return chains


def chain_text(chain: tuple[str, ...], member: str) -> str:
    return " → ".join((*chain, member))

"""Directory reads of one sync: each subject and group is read once, however many bindings name it.

With a tenant cache, group lookups and expansions come from it when ``use_cache`` (an incremental
sync: Graph delta has invalidated whatever changed) and fresh reads are stored back into it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import TypeVar

from synapse_scim.adapters.directory import Directory, Expansion
from synapse_scim.adapters.directory_cache import DirectoryCache, SubjectKey
from synapse_scim.core.model import Principal

T = TypeVar("T")


class DirectoryReads:
    def __init__(
        self,
        directory: Directory,
        concurrency: int,
        cache: DirectoryCache | None = None,
        use_cache: bool = False,
        semaphore: asyncio.Semaphore | None = None,
    ) -> None:
        self.directory = directory
        self.cache = cache
        self.use_cache = use_cache and cache is not None
        self._subjects: dict[SubjectKey, asyncio.Task[Principal]] = {}
        self._groups: dict[str, asyncio.Task[Expansion]] = {}
        self._sem = semaphore or asyncio.Semaphore(concurrency)

    async def _limited(self, coro: Awaitable[T]) -> T:
        async with self._sem:
            return await coro

    def resolve(self, kind: str, name: str | None, id: str | None) -> asyncio.Task[Principal]:
        key = (kind, name, id)
        if key not in self._subjects:
            self._subjects[key] = asyncio.ensure_future(self._resolve(key))
        return self._subjects[key]

    async def _resolve(self, key: SubjectKey) -> Principal:
        kind, name, id = key
        # Users and service principals are always read: their accountEnabled is not in group delta.
        cache = self.cache if kind == "Group" else None
        if cache is not None and self.use_cache and (hit := cache.group(key)) is not None:
            return hit
        epoch = cache.epoch if cache is not None else 0
        found = await self._limited(self.directory.resolve(kind, name=name, id=id))
        if cache is not None:
            cache.keep_group(key, found, epoch)
        return found

    def expand(self, group: Principal) -> asyncio.Task[Expansion]:
        if group.id not in self._groups:
            self._groups[group.id] = asyncio.ensure_future(self._expand(group))
        return self._groups[group.id]

    async def _expand(self, group: Principal) -> Expansion:
        cache = self.cache
        if cache is not None and self.use_cache and (hit := cache.expansion(group.id)) is not None:
            return hit
        epoch = cache.epoch if cache is not None else 0
        found = await self._limited(self.directory.expand(group))
        if cache is not None:
            cache.keep_expansion(group.id, found, epoch)
        return found

    def used(self, key: SubjectKey) -> tuple[Principal | None, Expansion | None]:
        """The lookup and the expansion this sync used for a subject (None where it has none, or failed)."""
        task = self._subjects.get(key)
        if task is None or not task.done() or task.cancelled() or task.exception() is not None:
            return None, None
        group = task.result()
        expansion = self._groups.get(group.id)
        if expansion is None or not expansion.done() or expansion.cancelled() or expansion.exception() is not None:
            return group, None
        return group, expansion.result()

    def cancel(self) -> None:
        for task in (*self._subjects.values(), *self._groups.values()):
            task.cancel()

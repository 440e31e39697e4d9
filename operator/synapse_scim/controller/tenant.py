"""One watch per Entra tenant: Graph delta rounds every poll interval, a cache they keep true, and
the workspaces they wake.

Many workspaces (and their bindings) share one tenant. Asking Graph what changed costs one round
trip for the whole tenant (a JSON batch of groups/delta for memberships and users/delta for disabled
or deleted accounts, which group delta does not report), however many groups are bound. The answer
invalidates exactly the cached group expansions and name lookups it touches (a change in a nested
group invalidates every cached parent that expanded through it) and pokes only the workspaces
whose bindings use those groups.

Safety: the cache only ever serves syncs that the watch can vouch for. It is emptied whenever the
watch loses track (no delta link yet, or the link expired). A failed poll keeps the links and the
cache: the next round from the same links reports every change made meanwhile. A read that raced
with an invalidation of the group it read is used once but not kept.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from synapse_scim.adapters.credentials import CredentialError
from synapse_scim.adapters.directory import Directory, DirectoryError
from synapse_scim.adapters.directory_cache import DirectoryCache
from synapse_scim.core.reasons import Reason

log = logging.getLogger("synapse_scim.tenant")

TenantKey = tuple[str, str]  # (tenant id, Graph endpoint)
WorkspaceKey = tuple[str, str]  # (namespace, name)


@dataclass
class Subscription:
    directory: Directory
    poke: Callable[[], None]
    # The workspace's current Directory, rebuilt when its credential Secret changed (None: same as before).
    connect: Callable[[], Awaitable[Directory]] | None = None
    groups: frozenset[str] = frozenset()  # every group its bindings expand, nested ones included
    users: frozenset[str] = frozenset()  # accounts its bindings name directly (User subjects)


@dataclass
class TenantWatch:
    key: TenantKey
    interval: float
    cache: DirectoryCache = field(default_factory=DirectoryCache)
    link: str | None = None
    user_link: str | None = None
    subscribers: dict[WorkspaceKey, Subscription] = field(default_factory=dict)
    polls: int = 0
    task: asyncio.Task[None] | None = None

    @property
    def trusted(self) -> bool:
        """Whether the cache reflects every change Graph reported (a sync may use it)."""
        return self.link is not None and self.user_link is not None

    async def prime(self, directory: Directory) -> None:
        """Take delta links before anything is read, so no change slips between the reads and the links."""
        if self.trusted:
            return
        try:
            groups, users = await directory.deltas(None, None)
            self.link, self.user_link = groups.link, users.link
        except (CredentialError, DirectoryError) as exc:
            self.link = self.user_link = None
            log.warning("cannot start watching directory changes in tenant %s: %s", self.key[0], exc)
            return
        self.cache.clear()

    def forget(self) -> None:
        self.link = self.user_link = None
        self.cache.clear()

    async def poll(self) -> set[WorkspaceKey]:
        """One delta round for the tenant; pokes (and returns) the workspaces it concerns."""
        self.polls += 1
        if not self.subscribers:
            return set()
        await self._reconnect()
        if not self.subscribers:
            return set()
        ws_key, sub = next(iter(self.subscribers.items()))
        if not self.trusted:
            await self.prime(sub.directory)
            if not self.trusted:
                return set()
            return self._poke(set(self.subscribers), "a full read after the change watch (re)started")
        try:
            groups, users = await sub.directory.deltas(self.link, self.user_link)
        except (CredentialError, DirectoryError) as exc:
            reason = getattr(exc, "reason", "")
            log.warning("directory change poll failed for tenant %s (via %s/%s): %s", self.key[0], *ws_key, exc)
            if reason == Reason.DELTA_EXPIRED:
                self.forget()
                return set()
            # Rotate to another workspace's credential next time; a credential that stopped working
            # must show in its workspace's status now, not at the next full sync.
            self.subscribers.pop(ws_key)
            self.subscribers[ws_key] = sub
            if isinstance(exc, CredentialError) or reason == Reason.AUTHENTICATION_FAILED:
                sub.poke()
                return {ws_key}
            return set()
        # Both links move only once both rounds are in: a failed second round repeats the first.
        self.link = groups.link or self.link
        self.user_link = users.link or self.user_link
        affected = self.cache.invalidate(groups.changed_groups, groups.names)
        affected |= self.cache.invalidate_members(users.changed_groups)
        if not affected and not users.changed_groups:
            return set()
        changed_users = {u.lower() for u in users.changed_groups}
        hit = {k for k, s in self.subscribers.items() if s.groups & affected or not changed_users.isdisjoint(s.users)}
        return self._poke(
            hit, f"{len(groups.changed_groups)} group(s) and {len(users.changed_groups)} account(s) changed"
        )

    async def _reconnect(self) -> None:
        """A rotated or broken credential Secret shows at once: its workspace syncs now."""
        for key, sub in list(self.subscribers.items()):
            if sub.connect is None:
                continue
            try:
                directory = await sub.connect()
            except Exception as exc:  # whatever broke, the workspace's own sync reports it
                log.warning("credential of %s/%s: %s", *key, exc)
                sub.poke()
                continue
            if directory is not sub.directory:
                sub.directory = directory
                sub.poke()

    def _poke(self, keys: set[WorkspaceKey], why: str) -> set[WorkspaceKey]:
        for k in keys:
            log.info("directory change for %s/%s: %s", *k, why)
            self.subscribers[k].poke()
        return keys

    async def run(self) -> None:
        while self.subscribers:
            await asyncio.sleep(self.interval)
            try:
                await self.poll()
            except Exception:  # the watch must outlive any one bad round
                log.exception("group change poll of tenant %s failed", self.key[0])


class Tenants:
    """The watches of every tenant the operator's workspaces live in."""

    def __init__(self, interval: float) -> None:
        self.interval = interval
        self.watches: dict[TenantKey, TenantWatch] = {}

    async def subscribe(
        self,
        tenant: TenantKey,
        workspace: WorkspaceKey,
        directory: Directory,
        poke: Callable[[], None],
        connect: Callable[[], Awaitable[Directory]] | None = None,
    ) -> TenantWatch:
        """Register (or refresh) a workspace's interest in its tenant; primes the watch on first use."""
        for key, watch in list(self.watches.items()):
            if key != tenant and workspace in watch.subscribers:
                self.unsubscribe(workspace)  # the workspace moved to another tenant
        watch = self.watches.setdefault(tenant, TenantWatch(tenant, self.interval))
        sub = watch.subscribers.get(workspace)
        if sub is None:
            watch.subscribers[workspace] = Subscription(directory, poke, connect)
        else:
            sub.directory, sub.poke, sub.connect = directory, poke, connect
        await watch.prime(directory)
        if watch.task is None or watch.task.done():
            watch.task = asyncio.create_task(watch.run(), name=f"tenant-watch-{tenant[0]}")
        return watch

    def unsubscribe(self, workspace: WorkspaceKey) -> None:
        for key, watch in list(self.watches.items()):
            watch.subscribers.pop(workspace, None)
            if not watch.subscribers:
                if watch.task is not None:
                    watch.task.cancel()
                del self.watches[key]

    async def close(self) -> None:
        tasks = [w.task for w in self.watches.values() if w.task is not None]
        self.watches.clear()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

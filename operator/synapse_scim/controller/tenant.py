"""One watch per Entra tenant: Graph delta rounds every poll interval, a cache they keep true, and
the workspaces they wake.

Many workspaces (and their bindings) share one tenant. Asking Graph what changed costs one round
trip for the whole tenant (a JSON batch of groups/delta for memberships, and users/delta and
servicePrincipals/delta for disabled or deleted accounts, which group delta does not report),
however many groups are bound. The answer invalidates exactly the cached group expansions and name
lookups it touches (a change in a nested group invalidates every cached parent that expanded through
it; a changed account, every expansion that contains it) and pokes only the workspaces whose
bindings use those groups or name those accounts. A changed user also invalidates the principal
lookups of pushed SCIM users it concerns (adapters/principal_lookups.py) and pokes the workspaces
whose pushed users made them.

Safety: the cache only ever serves syncs that the watch can vouch for (`trusted`).
- No delta links yet, or Graph says a link expired (410, or a 4xx syncStateNotFound/resyncRequired,
  on the first page or a later one): the links are dropped and the cache emptied; the next poll
  takes new links and every workspace reads afresh.
- A poll that fails otherwise (throttled, 5xx, a credential): the watch is *behind*. It vouches for
  nothing until a poll succeeds, so every sync meanwhile reads the directory fresh. It keeps its links
  (the next round from them reports every change made meanwhile) and its cache (to know whom those
  changes concern). When Graph said Retry-After, even inside a 200 batch, it is not asked again
  before then.
A read that raced with an invalidation of the group it read is used once but not kept.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from synapse_scim import metrics
from synapse_scim.adapters.credentials import CredentialError
from synapse_scim.adapters.directory import DeltaLinks, Directory, DirectoryError
from synapse_scim.adapters.directory_cache import DirectoryCache
from synapse_scim.adapters.principal_lookups import PrincipalLookupCache
from synapse_scim.core.matching import Lookup
from synapse_scim.core.reasons import TOKEN_REFUSED_REASONS, Reason

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
    users: frozenset[str] = frozenset()  # accounts its bindings name directly (User and ServicePrincipal subjects)
    lookups: frozenset[Lookup] = frozenset()  # the principal lookups of the pushed SCIM users it grants to


@dataclass
class TenantWatch:
    key: TenantKey
    interval: float
    cache: DirectoryCache = field(default_factory=DirectoryCache)
    lookups: PrincipalLookupCache = field(default_factory=PrincipalLookupCache)  # emptied with `cache`
    links: DeltaLinks | None = None  # groups, users, service principals: all three, or none
    behind: bool = False  # the last poll failed: changes since the links may be unseen
    retry_at: float | None = None  # event-loop time before which Graph asked not to be asked again
    subscribers: dict[WorkspaceKey, Subscription] = field(default_factory=dict)
    polls: int = 0
    task: asyncio.Task[None] | None = None

    @property
    def trusted(self) -> bool:
        """Whether the cache reflects every change Graph reported (a sync may use it)."""
        return self.links is not None and not self.behind

    def _waiting(self) -> float:
        """Seconds left of the Retry-After Graph gave (0: ask now)."""
        if self.retry_at is None:
            return 0.0
        return max(0.0, self.retry_at - asyncio.get_running_loop().time())

    def _wait(self, exc: Exception) -> None:
        retry_after = getattr(exc, "retry_after", None)
        self.retry_at = asyncio.get_running_loop().time() + retry_after if retry_after else None

    async def prime(self, directory: Directory) -> Exception | None:
        """Take delta links before anything is read, so no change slips between the reads and the links.
        Returns what made it fail, if it did.

        A watch that is only behind keeps its links: new ones would skip the changes it has not seen."""
        if self.links is not None or self._waiting():
            return None
        try:
            found = await directory.deltas(DeltaLinks(None, None, None))
        except (CredentialError, DirectoryError) as exc:
            self._wait(exc)
            self._count("error")
            log.warning("cannot start watching directory changes in tenant %s: %s", self.key[0], exc)
            return exc
        if None in found.links:
            self._count("error")
            log.warning("cannot start watching directory changes in tenant %s: Graph gave no delta link", self.key[0])
            return None
        self._count("success")
        self.links, self.behind, self.retry_at = found.links, False, None
        self.cache.clear()
        self.lookups.clear()
        return None

    def _count(self, result: str) -> None:
        metrics.DIRECTORY_POLLS.labels(result).inc()

    def forget(self) -> None:
        self.links = None
        self.behind = False
        self.cache.clear()
        self.lookups.clear()

    async def poll(self) -> set[WorkspaceKey]:
        """One delta round for the tenant; pokes (and returns) the workspaces it concerns."""
        self.polls += 1
        if not self.subscribers:
            return set()
        await self._reconnect()
        if not self.subscribers:
            return set()
        ws_key, sub = next(iter(self.subscribers.items()))
        if self._waiting():
            log.debug("directory change poll of tenant %s waits %.0fs more (Retry-After)", self.key[0], self._waiting())
            return set()
        if self.links is None:
            failed = await self.prime(sub.directory)
            if failed is not None and refused(failed):
                sub.poke()  # its sync signs in afresh (reconcile.py), and the next prime uses the new token
                return {ws_key}
            if not self.trusted:
                return set()
            return self._poke(set(self.subscribers), "a full read after the change watch (re)started")
        try:
            found = await sub.directory.deltas(self.links)
        except (CredentialError, DirectoryError) as exc:
            self._count("error")
            reason = getattr(exc, "reason", "")
            log.warning("directory change poll failed for tenant %s (via %s/%s): %s", self.key[0], *ws_key, exc)
            if reason == Reason.DELTA_EXPIRED:
                self.forget()
                return set()
            if not self.behind:
                log.warning(
                    "directory changes in tenant %s are unseen until a poll succeeds: syncs read the directory fresh",
                    self.key[0],
                )
            self.behind = True
            self._wait(exc)
            # Rotate to another workspace's credential next time; a credential that stopped working
            # must show in its workspace's status now, not at the next full sync.
            self.subscribers.pop(ws_key)
            self.subscribers[ws_key] = sub
            if refused(exc):
                sub.poke()  # its sync shows it, and drops a credential whose token was refused
                return {ws_key}
            return set()
        self._count("success")
        # The links move only once every round is in: a failed round repeats them all.
        self.links = DeltaLinks(*(new or old for new, old in zip(found.links, self.links, strict=True)))
        self.behind, self.retry_at = False, None
        groups, accounts = found.groups, found.users.changed_groups | found.service_principals.changed_groups
        affected = self.cache.invalidate(groups.changed_groups, groups.names)
        affected |= self.cache.invalidate_members(accounts)
        # A reported user changes the lookups it can now be found by (its keys as reported) and every
        # cached answer that holds it (found by keys it may no longer have, or with a changed state).
        looks = set(found.users.lookup_keys)
        looks |= self.lookups.invalidate(found.users.changed_groups, looks)
        if not affected and not accounts:
            return set()
        changed = {a.lower() for a in accounts}
        hit = {
            k
            for k, s in self.subscribers.items()
            if s.groups & affected or not changed.isdisjoint(s.users) or not looks.isdisjoint(s.lookups)
        }
        return self._poke(
            hit,
            f"{len(groups.changed_groups)} group(s), {len(found.users.changed_groups)} user(s) and "
            f"{len(found.service_principals.changed_groups)} service principal(s) changed",
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
            await asyncio.sleep(max(self.interval, self._waiting()))
            try:
                await self.poll()
            except Exception:  # the watch must outlive any one bad round
                self._count("error")
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


def refused(exc: Exception) -> bool:
    """A credential that stopped working, or a token Azure refused: the workspace's sync must run now
    (to show it, and to sign in afresh), not at its next full sync; the watch cannot cure it alone."""
    return isinstance(exc, CredentialError) or getattr(exc, "reason", "") in TOKEN_REFUSED_REASONS

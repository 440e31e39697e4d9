"""Pushed users are looked up in Graph as they arrive, before any group brings them in (docs/scim.md,
"Propagation").

Identity providers push users first and memberships after: Okta's initial push of a 1,000-member group
sends 1,000 user POSTs (about 20 s at the endpoint's rate limit) before the PATCHes that add them. A
user of a provider that some workspace's bindings name is matched right away, into the tenant's lookup
cache, so that the sync the membership change starts finds every answer there instead of making the
1,000 Graph lookups on the way to the grants. The cache is the one the syncs use, kept true by
users/delta; a prefetch that fails is simply not kept, and the sync looks the user up itself.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Protocol

from synapse_scim.controller.registry import WorkspaceKey
from synapse_scim.core.errors import ReasonedError
from synapse_scim.core.matching import Account, Lookup, identity, pending
from synapse_scim.core.scim.resources import Kind
from synapse_scim.reads.scim_reads import ProviderKey, ScimProviderView

DELAY = 0.2  # seconds users are gathered before their lookups go out (in batches of 20)
ROUNDS = 4  # rules' stages asked at most per prefetch (core/matching.py: stages)

log = logging.getLogger("synapse_scim.scim")

Fetch = Callable[[set[Lookup]], Awaitable[Mapping[Lookup, tuple[Account, ...]]]]


class Providers(Protocol):
    async def provider(self, namespace: str, name: str) -> ScimProviderView: ...


@dataclass
class Target:
    """A workspace whose bindings name pushed groups: the providers, and how it looks users up (its
    directory client through its tenant's lookup cache)."""

    providers: frozenset[ProviderKey]
    fetch: Fetch


@dataclass
class LookupPrefetch:
    source: Providers
    delay: float = DELAY
    targets: dict[WorkspaceKey, Target] = field(default_factory=dict)
    queued: dict[ProviderKey, set[str]] = field(default_factory=dict)
    prefetched: int = 0  # lookups asked ahead of a sync (the propagation benchmark reads it)
    _task: asyncio.Task[None] | None = None

    def register(self, workspace: WorkspaceKey, providers: frozenset[ProviderKey], fetch: Fetch | None) -> None:
        if not providers or fetch is None:
            self.targets.pop(workspace, None)
        else:
            self.targets[workspace] = Target(providers, fetch)

    def forget(self, workspace: WorkspaceKey) -> None:
        self.targets.pop(workspace, None)

    def changed(self, provider: ProviderKey, kind: Kind | None, resource_id: str, groups: set[str]) -> None:
        if kind is not Kind.USER or not any(provider in t.providers for t in self.targets.values()):
            return
        self.queued.setdefault(provider, set()).add(resource_id)
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._later())

    async def _later(self) -> None:
        await asyncio.sleep(self.delay)
        while self.queued:
            queued, self.queued = self.queued, {}
            for provider, ids in queued.items():
                await self.prefetch(provider, ids)

    async def prefetch(self, provider: ProviderKey, ids: set[str]) -> None:
        try:
            view = await self.source.provider(*provider)
        except ReasonedError:
            return  # not served (yet): the sync says why
        users = []
        for user_id in sorted(ids):
            record = await view.store.get(Kind.USER, user_id)
            if record is not None:
                users.append(identity(record.id, record.attributes))
        for target in list(self.targets.values()):
            if provider not in target.providers:
                continue
            found: dict[Lookup, tuple[Account, ...]] = {}
            for _ in range(ROUNDS):
                todo = {look for u in users if (look := pending(u, view.rules, found)) is not None}
                if not todo:
                    break
                try:
                    found.update(await target.fetch(todo))
                except Exception as exc:  # never fatal: the sync makes the lookups itself
                    log.debug("scim: prefetching lookups of %d pushed users: %s", len(users), exc)
                    break
                self.prefetched += len(todo)

    def close(self) -> None:
        if self._task is not None:
            self._task.cancel()

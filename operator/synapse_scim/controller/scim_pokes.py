"""Pushed changes poke the workspaces they concern (docs/scim.md, "Propagation").

A change the SCIM store takes in (a request this replica served, or another replica's write seen
through the watch) pokes only the workspaces whose bindings use the pushed group, or a group of the
pushed user, or whose bindings name a group of that provider that did not resolve yet (a new group may
be it). Pokes are coalesced per workspace: a workspace is poked once the changes paused for ``quiet``
seconds, and at the latest ``most`` seconds after the first change of a burst, so an identity provider's
initial push of thousands of requests makes a sync every ``most`` seconds at most, not one per request,
while a single change waits only ``quiet``.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from synapse_scim import metrics
from synapse_scim.controller.registry import WorkspaceKey
from synapse_scim.core.scim.resources import Kind
from synapse_scim.reads.scim_reads import ProviderKey, ScimResolution

QUIET = 0.15  # seconds without a further change before the poke
MOST = 1.0  # seconds after a burst's first change, at the latest

log = logging.getLogger("synapse_scim.scim")


@dataclass
class Interest:
    """What one workspace's bindings use of the pushed objects, as its last sync saw them."""

    groups: frozenset[tuple[str, str, str]] = frozenset()  # (namespace, provider, group id)
    providers: frozenset[ProviderKey] = frozenset()  # every provider a ScimGroup subject names
    waiting: frozenset[ProviderKey] = frozenset()  # providers with a subject that did not resolve


@dataclass
class Pending:
    first: float
    last: float
    handle: asyncio.TimerHandle | None = None


@dataclass
class ScimPokes:
    poke: Callable[[WorkspaceKey], None]
    quiet: float = QUIET
    most: float = MOST
    clock: Callable[[], float] = time.monotonic
    interests: dict[WorkspaceKey, Interest] = field(default_factory=dict)
    pending: dict[WorkspaceKey, Pending] = field(default_factory=dict)
    pokes: int = 0  # pokes sent (the propagation benchmark reads it)

    def subscribe(self, workspace: WorkspaceKey, scim: ScimResolution | None) -> None:
        """Record what the workspace's last sync used (None or empty: nothing, it is not poked)."""
        if scim is None or scim.empty:
            self.interests.pop(workspace, None)
            return
        self.interests[workspace] = Interest(scim.group_ids(), scim.providers(), scim.unresolved_providers())

    def unsubscribe(self, workspace: WorkspaceKey) -> None:
        self.interests.pop(workspace, None)
        pending = self.pending.pop(workspace, None)
        if pending is not None and pending.handle is not None:
            pending.handle.cancel()

    def changed(self, provider: ProviderKey, kind: Kind | None, resource_id: str, groups: set[str]) -> None:
        """A pushed object changed: ``kind`` None for the ScimProvider itself (its rules, its deletion);
        ``groups`` are the groups a changed user is in."""
        namespace, name = provider
        hit: list[WorkspaceKey] = []
        for workspace, interest in self.interests.items():
            if provider not in interest.providers:
                continue
            if kind is None:
                hit.append(workspace)
            elif kind is Kind.GROUP:
                # A group the bindings use, or any group while a subject is unresolved (it may be it).
                if provider in interest.waiting or (namespace, name, resource_id) in interest.groups:
                    hit.append(workspace)
            elif any((namespace, name, g) in interest.groups for g in groups):
                hit.append(workspace)
        for workspace in hit:
            self.soon(workspace)

    def soon(self, workspace: WorkspaceKey) -> None:
        now = self.clock()
        pending = self.pending.get(workspace)
        if pending is None:
            pending = self.pending[workspace] = Pending(first=now, last=now)
        pending.last = now
        if pending.handle is not None:
            pending.handle.cancel()
        delay = max(0.0, min(pending.last + self.quiet, pending.first + self.most) - now)
        pending.handle = asyncio.get_running_loop().call_later(delay, self.fire, workspace)

    def fire(self, workspace: WorkspaceKey) -> None:
        self.pending.pop(workspace, None)
        if workspace in self.interests:
            self.pokes += 1
            metrics.SCIM_POKES.labels(*workspace).inc()
            log.debug("scim: pushed changes poke workspace %s/%s", *workspace)
            self.poke(workspace)

    def close(self) -> None:
        for pending in self.pending.values():
            if pending.handle is not None:
                pending.handle.cancel()
        self.pending.clear()

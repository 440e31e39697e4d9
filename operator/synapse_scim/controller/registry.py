"""In-process coordination between kopf handlers and the per-workspace sync loops."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from synapse_scim.core.model import BindingKey

WorkspaceKey = tuple[str, str]  # (namespace, name)


@dataclass
class Registry:
    triggers: dict[WorkspaceKey, asyncio.Event] = field(default_factory=dict)
    running: set[WorkspaceKey] = field(default_factory=set)
    releases: dict[BindingKey, asyncio.Future[None]] = field(default_factory=dict)

    def trigger(self, key: WorkspaceKey) -> asyncio.Event:
        return self.triggers.setdefault(key, asyncio.Event())

    def poke(self, key: WorkspaceKey) -> None:
        """Ask the workspace's loop for a sync now (several pokes before it runs make one sync)."""
        self.trigger(key).set()

    def waiting_release(self, key: BindingKey) -> asyncio.Future[None]:
        fut = self.releases.get(key)
        if fut is None or fut.done():
            fut = asyncio.get_running_loop().create_future()
            self.releases[key] = fut
        return fut

    def release(self, key: BindingKey) -> None:
        fut = self.releases.pop(key, None)
        if fut is not None and not fut.done():
            fut.set_result(None)

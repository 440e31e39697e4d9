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
    ended: dict[WorkspaceKey, asyncio.Event] = field(default_factory=dict)  # set while no loop runs

    def loop_started(self, key: WorkspaceKey) -> None:
        self.running.add(key)
        self.ended.setdefault(key, asyncio.Event()).clear()

    def loop_ended(self, key: WorkspaceKey) -> None:
        self.running.discard(key)
        self.ended.setdefault(key, asyncio.Event()).set()

    async def wait_loop_ended(self, key: WorkspaceKey, seconds: float) -> None:
        """Until the workspace's loop has returned (at most ``seconds``): a deleted
        workspace's stopped loop may still be finishing a sync."""
        if key not in self.running:
            return
        ended = self.ended.setdefault(key, asyncio.Event())
        try:
            await asyncio.wait_for(ended.wait(), timeout=seconds)
        except TimeoutError:
            pass

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

    async def released(self, binding: BindingKey, workspace: WorkspaceKey, wait: float) -> bool:
        """Poke the binding's workspace and wait until its loop lets the binding go (its grants revoked
        or orphaned); False when that took longer than ``wait`` seconds (kopf retries the deletion)."""
        done = self.waiting_release(binding)
        self.poke(workspace)
        try:
            await asyncio.wait_for(asyncio.shield(done), timeout=wait)
        except TimeoutError:
            return False
        return True

"""In-process coordination between kopf handlers and the per-workspace sync loops."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field

from synapse_scim.core.model import BindingKey

WorkspaceKey = tuple[str, str]  # (namespace, name)

# Seconds after a sync first let a deleted binding go before a sync takes kopf's finalizer off it
# itself (reconcile.py: finish_released): kopf takes it off within a moment of its deletion handler
# returning, unless the API server refused that patch, which kopf does not retry until the object's
# next event, and a binding being deleted may have none.
LET_GO_AFTER = 10.0


@dataclass
class Registry:
    triggers: dict[WorkspaceKey, asyncio.Event] = field(default_factory=dict)
    running: set[WorkspaceKey] = field(default_factory=set)
    releases: dict[BindingKey, asyncio.Future[None]] = field(default_factory=dict)
    ended: dict[WorkspaceKey, asyncio.Event] = field(default_factory=dict)  # set while no loop runs
    # When a sync first let each deleted binding go, and the workspace that did: until it is gone.
    let_go: dict[BindingKey, tuple[WorkspaceKey, float]] = field(default_factory=dict)

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

    def release(self, key: BindingKey, workspace: WorkspaceKey) -> float:
        """A sync of `workspace` let the deleted binding go (its grants revoked or orphaned): its
        deletion handler may return. Returns the seconds since a sync first let it go. The workspace is
        poked LET_GO_AFTER seconds later, so that a sync looks whether it went (and, if kopf could not
        take its finalizer off, does) even when nothing else would sync it for a syncInterval."""
        fut = self.releases.pop(key, None)
        if fut is not None and not fut.done():
            fut.set_result(None)
        now = time.monotonic()
        _, first = self.let_go.setdefault(key, (workspace, now))
        asyncio.get_running_loop().call_later(LET_GO_AFTER, self.poke, workspace)
        return now - first

    def gone(self, workspace: WorkspaceKey, listed: set[BindingKey]) -> None:
        """Forget the released bindings of `workspace` that are no longer listed."""
        for key, (ws, _) in list(self.let_go.items()):
            if ws == workspace and key not in listed:
                del self.let_go[key]

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

"""Adaptive write concurrency for one workspace: slow down when Synapse says so, speed up when it lets us.

Additive increase, multiplicative decrease (as TCP does): each 429 halves the number of writes in
flight (down to one) and holds new writes until its Retry-After has passed; each success lets the
limit grow back by one write per full window. A storm of 429s therefore slows the sync down instead
of failing it, and the limit never exceeds the configured write concurrency.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from types import TracebackType
from typing import Any

from azure.core.pipeline import PipelineRequest, PipelineResponse
from azure.core.pipeline.policies import AsyncHTTPPolicy

DEFAULT_RETRY_AFTER = 1.0


def retry_after_seconds(headers: Any) -> float:
    """Retry-After in seconds (the delta-seconds form; Synapse does not send HTTP dates)."""
    value = (headers or {}).get("Retry-After") or (headers or {}).get("retry-after")
    if value is None:
        return DEFAULT_RETRY_AFTER
    try:
        return max(0.0, float(value))
    except (TypeError, ValueError):
        return DEFAULT_RETRY_AFTER


class AdaptiveLimit:
    """An async context manager: at most `int(limit)` holders at once, the rest wait in FIFO order.

    A released slot wakes exactly one waiter (not all of them, as a Condition would): a sync with tens
    of thousands of queued writes stays linear."""

    def __init__(self, maximum: int) -> None:
        self.maximum = max(1, maximum)
        self.limit = float(self.maximum)
        self.active = 0
        self.resume_at = 0.0
        self.throttles = 0
        self._waiters: deque[asyncio.Future[None]] = deque()

    async def __aenter__(self) -> AdaptiveLimit:
        if self.active < int(self.limit) and not self._waiters:
            self.active += 1
        else:
            slot = asyncio.get_running_loop().create_future()
            self._waiters.append(slot)
            try:
                await slot
            except asyncio.CancelledError:
                if slot.done() and not slot.cancelled():
                    self._release()  # handed a slot just as we were cancelled: pass it on
                else:
                    self._waiters.remove(slot)
                raise
        # A pause, not an event: a later 429 may push resume_at further while we sleep.
        while (wait := self.resume_at - time.monotonic()) > 0:  # noqa: ASYNC110
            await asyncio.sleep(wait)
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._release()

    def _release(self) -> None:
        self.active -= 1
        while self._waiters and self.active < int(self.limit):
            slot = self._waiters.popleft()
            if not slot.done():
                self.active += 1  # the slot passes straight to the waiter
                slot.set_result(None)

    def throttled(self, retry_after: float) -> None:
        self.throttles += 1
        self.limit = max(1.0, self.limit / 2)
        self.resume_at = max(self.resume_at, time.monotonic() + retry_after)

    def succeeded(self) -> None:
        # A grown limit admits more waiters at the next release (__aexit__, right after this).
        self.limit = min(float(self.maximum), self.limit + 1.0 / self.limit)


class ThrottlePolicy(AsyncHTTPPolicy):  # type: ignore[type-arg]
    """Tells the workspace's AdaptiveLimit about every 429 the SDK sees, retries included (the SDK's
    own retry policy still honours Retry-After before it tries again).

    One coroutine around the next policy rather than a SansIOHTTPPolicy, whose runner awaits-or-not
    each hook: this policy sees every write."""

    def __init__(self, limit: AdaptiveLimit) -> None:
        super().__init__()
        self.limit = limit

    async def send(self, request: PipelineRequest[Any]) -> PipelineResponse[Any, Any]:
        response = await self.next.send(request)
        if response.http_response.status_code == 429:
            self.limit.throttled(retry_after_seconds(response.http_response.headers))
        return response

"""The write fence: no request reaches Synapse from a replica whose leadership may have run out.

Synapse's access-control API has no fencing token (no conditional write a Lease generation could
guard), so the fence is a local deadline. Leader election (controller/election.py) moves it to
`renew_deadline` after it *sent* the Lease write that last succeeded; a standby can only take the
Lease `leaseDurationSeconds` after it saw that write, which is later. Every request of the Synapse
pipeline checks the deadline just before the transport sends it (`FencePolicy`, the last policy):
a process that was paused (SIGSTOP, a frozen VM, a long GC) and wakes up after its Lease expired
finds the deadline passed before anything of its queued work goes out, whichever of its coroutines
the event loop resumes first. What the fence cannot close: a pause that falls between the check and
the bytes leaving the socket and lasts longer than the margin (lease duration minus renew deadline,
5 s by default).

Without leader election the fence is open (`until` is None): a single replica has nobody to race.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from azure.core.pipeline import PipelineRequest, PipelineResponse
from azure.core.pipeline.policies import AsyncHTTPPolicy


class FenceExpired(Exception):
    """A write was about to leave after this replica's leadership deadline: it was not sent."""


class WriteFence:
    """The process's leadership deadline (a time.monotonic() value), and what to do when it passes."""

    def __init__(self) -> None:
        self.until: float | None = None  # None: not fenced (no leader election)
        self.on_expired: Callable[[str], None] | None = None
        self.refused = 0

    def extend(self, until: float) -> None:
        self.until = until if self.until is None else max(self.until, until)

    def close(self) -> None:
        """Leadership is over: every later request is refused."""
        self.until = float("-inf")

    def open(self) -> None:
        self.until = None

    def check(self) -> None:
        if self.until is None or time.monotonic() < self.until:
            return
        self.refused += 1
        why = "the leadership deadline has passed (the Lease could not be renewed in time): request not sent"
        if self.on_expired is not None:
            self.on_expired(why)  # the elected process exits here
        raise FenceExpired(why)


FENCE = WriteFence()


class FencePolicy(AsyncHTTPPolicy):  # type: ignore[type-arg]
    """The last policy before the transport: nothing is sent past the fence's deadline (retries and
    requests that waited for a token or a throttle slot included: the check is per attempt)."""

    def __init__(self, fence: WriteFence = FENCE) -> None:
        super().__init__()
        self.fence = fence

    async def send(self, request: PipelineRequest[Any]) -> PipelineResponse[Any, Any]:
        self.fence.check()
        return await self.next.send(request)

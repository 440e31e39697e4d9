"""Adaptive write concurrency: 429s halve the writes in flight and pause for Retry-After; successes
grow the limit back, never beyond the configured maximum."""

from __future__ import annotations

import asyncio
import time

import pytest

from synapse_scim.adapters.throttle import AdaptiveLimit, retry_after_seconds


async def test_never_more_writes_in_flight_than_the_limit():
    limit = AdaptiveLimit(3)
    peak = 0
    gate = asyncio.Event()

    async def write() -> None:
        nonlocal peak
        async with limit:
            peak = max(peak, limit.active)
            await gate.wait()

    tasks = [asyncio.create_task(write()) for _ in range(10)]
    for _ in range(50):  # let every task run as far as it can
        await asyncio.sleep(0)
    assert limit.active == 3
    gate.set()
    await asyncio.gather(*tasks)
    assert peak == 3 and limit.active == 0


def test_each_throttle_halves_the_limit_down_to_one():
    limit = AdaptiveLimit(8)
    for expected in (4, 2, 1, 1):
        limit.throttled(0)
        assert int(limit.limit) == expected
    assert limit.throttles == 4


def test_successes_grow_the_limit_back_additively_up_to_the_maximum():
    limit = AdaptiveLimit(4)
    limit.throttled(0)
    limit.throttled(0)
    assert int(limit.limit) == 1
    limit.succeeded()
    assert int(limit.limit) == 2  # one write per window of `limit` successes
    for _ in range(100):
        limit.succeeded()
    assert limit.limit == 4.0


async def test_a_throttle_holds_new_writes_until_retry_after_has_passed():
    limit = AdaptiveLimit(2)
    limit.throttled(0.2)
    started = time.monotonic()
    async with limit:
        waited = time.monotonic() - started
    assert waited >= 0.19


@pytest.mark.parametrize(
    ("headers", "seconds"),
    [
        ({"Retry-After": "3"}, 3.0),
        ({"retry-after": "0.5"}, 0.5),
        ({}, 1.0),
        ({"Retry-After": "soon"}, 1.0),
        ({"Retry-After": "-4"}, 0.0),
        (None, 1.0),
    ],
)
def test_retry_after_seconds(headers, seconds):
    assert retry_after_seconds(headers) == seconds


async def test_waiters_are_admitted_in_order_one_per_release():
    limit = AdaptiveLimit(1)
    order: list[int] = []
    first = asyncio.Event()

    async def write(i: int) -> None:
        async with limit:
            order.append(i)
            if i == 0:
                await first.wait()

    tasks = [asyncio.create_task(write(i)) for i in range(5)]
    for _ in range(20):
        await asyncio.sleep(0)
    assert order == [0] and limit.active == 1
    first.set()
    await asyncio.gather(*tasks)
    assert order == [0, 1, 2, 3, 4] and limit.active == 0


async def test_a_cancelled_waiter_gives_its_place_back():
    limit = AdaptiveLimit(1)
    hold = asyncio.Event()

    async def holder() -> None:
        async with limit:
            await hold.wait()

    async def waiter() -> None:
        async with limit:
            pass

    h = asyncio.create_task(holder())
    w1, w2 = asyncio.create_task(waiter()), asyncio.create_task(waiter())
    for _ in range(10):
        await asyncio.sleep(0)
    w1.cancel()
    hold.set()
    await h
    await w2
    with pytest.raises(asyncio.CancelledError):
        await w1
    assert limit.active == 0
    async with limit:  # the slot is free again
        assert limit.active == 1

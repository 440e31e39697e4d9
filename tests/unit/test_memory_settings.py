"""Memory settings of the operator: controller/heap.py's periodic malloc_trim (a no-op where glibc's is missing, off at
0) and the bound on kopf's workers (runtime.configure)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from synapse_scim.controller import heap


def test_trim_releases_or_reports_nothing() -> None:
    blocks = [bytearray(64 * 1024) for _ in range(200)]  # freed below: something for a trim to release
    del blocks
    assert heap.trim() in (True, False)
    if not heap.available():
        assert heap.trim() is False


def test_interval_zero_turns_it_off() -> None:
    asyncio.run(asyncio.wait_for(heap.trim_every(0), timeout=5))


def test_trims_until_cancelled(monkeypatch: pytest.MonkeyPatch) -> None:
    loop: Any = None
    calls: list[int] = []
    third = asyncio.Event()

    def fake(pad: int) -> int:  # runs in the trimmer's worker thread
        calls.append(pad)
        if len(calls) == 3:
            loop.call_soon_threadsafe(third.set)
        return 1

    monkeypatch.setattr(heap, "_TRIM", fake)

    async def main() -> None:
        nonlocal loop
        loop = asyncio.get_running_loop()
        task = asyncio.ensure_future(heap.trim_every(0.001))
        await third.wait()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(asyncio.wait_for(main(), timeout=30))
    assert calls[:3] == [0, 0, 0]


def test_a_failing_trim_stops_the_trimmer_not_the_operator(monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(pad: int) -> Any:
        raise OSError("no")

    monkeypatch.setattr(heap, "_TRIM", broken)
    asyncio.run(asyncio.wait_for(heap.trim_every(0.001), timeout=30))


def test_kopf_workers_are_unbounded_unless_configured(monkeypatch: pytest.MonkeyPatch) -> None:
    """runtime.configure leaves kopf's per-object workers unbounded (finalizer handlers wait: a bound lets
    deleting objects hold new ones back), unless SYNAPSE_SCIM_KOPF_WORKER_LIMIT sets one (0: no limit)."""
    from asyncio import sslproto

    import kopf

    from synapse_scim.controller import runtime

    monkeypatch.setattr(sslproto.SSLProtocol, "max_size", sslproto.SSLProtocol.max_size)  # configure changes it

    for env, want in ((None, None), ("8", 8), ("0", None)):
        if env is None:
            monkeypatch.delenv("SYNAPSE_SCIM_KOPF_WORKER_LIMIT", raising=False)
        else:
            monkeypatch.setenv("SYNAPSE_SCIM_KOPF_WORKER_LIMIT", env)
        settings = kopf.OperatorSettings()
        runtime.configure(settings)
        assert settings.queueing.worker_limit == want


def test_tls_read_buffers_are_made_smaller_never_larger(monkeypatch: pytest.MonkeyPatch) -> None:
    from asyncio import sslproto

    monkeypatch.setattr(sslproto.SSLProtocol, "max_size", 256 * 1024)
    heap.small_tls_buffers()
    assert sslproto.SSLProtocol.max_size == heap.TLS_READ_BUFFER
    heap.small_tls_buffers(1024 * 1024)
    assert sslproto.SSLProtocol.max_size == heap.TLS_READ_BUFFER

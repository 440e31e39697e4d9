"""The operator's memory knobs: the C heap's free pages handed back to the kernel every few seconds
(glibc's malloc_trim), and asyncio's TLS read buffers made smaller.

Why: a sync at scale churns through hundreds of thousands of short-lived objects (JSON pages, SDK
request objects, plans). CPython frees them, but glibc keeps the freed pages of its heap resident
when live chunks sit around them, so the process's RSS climbs towards the sum of every sync's
garbage rather than what is live. At scenario L, 116 MB of a 337 MB RSS was such free memory: one
malloc_trim(0) on the running operator (through gdb) brought it to 221 MB
(bench/results/memory-L-2026-12-01.md). malloc_trim releases free pages anywhere in the heap
(MADV_DONTNEED), not only at its top as glibc does by itself.

Where malloc_trim does not exist (musl, macOS) this does nothing. SYNAPSE_SCIM_HEAP_TRIM_INTERVAL
sets the period (default 5s; 0 turns it off).
"""

from __future__ import annotations

import asyncio
import ctypes
import ctypes.util
import logging
from collections.abc import Callable

log = logging.getLogger("synapse_scim.heap")


def _malloc_trim() -> Callable[[int], int] | None:
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        trim = libc.malloc_trim
    except (OSError, AttributeError):
        return None
    trim.argtypes = [ctypes.c_size_t]
    trim.restype = ctypes.c_int
    return trim


_TRIM = _malloc_trim()

# asyncio (Python 3.11's sslproto) gives every TLS connection a zero-filled 256 KiB read buffer at
# once. The operator holds a hundred or more at scale L (kopf's API connections, each workspace's
# Synapse reads and writes, Graph): ~30 MB of RSS in buffers. A TLS record is at most 16 KiB, so 64 KiB
# per read call costs nothing but a few more calls on a large response.
TLS_READ_BUFFER = 64 * 1024


def small_tls_buffers(size: int = TLS_READ_BUFFER) -> None:
    """Connections made from now on read TLS with buffers of `size` (never larger than asyncio's)."""
    from asyncio import sslproto

    if getattr(sslproto.SSLProtocol, "max_size", 0) > size:
        sslproto.SSLProtocol.max_size = size


def available() -> bool:
    return _TRIM is not None


def trim() -> bool:
    """Release the heap's free pages now; True when anything was released."""
    return bool(_TRIM(0)) if _TRIM is not None else False


async def trim_every(interval: float) -> None:
    """Trim every `interval` seconds until cancelled. In a thread: a trim walks the whole heap (a few
    ms at L) and ctypes lets go of the GIL meanwhile, so the event loop is not held up."""
    if _TRIM is None or interval <= 0:
        return
    while True:
        await asyncio.sleep(interval)
        try:
            await asyncio.to_thread(trim)
        except Exception:  # never worth stopping the operator for
            log.exception("malloc_trim failed")
            return

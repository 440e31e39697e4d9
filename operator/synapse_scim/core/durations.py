"""Go-style durations (``10m``, ``1h30m``), as Kubernetes users write them. Pure, no I/O."""

from __future__ import annotations

import re

__all__ = ["parse_duration"]

_DURATION_UNITS = {
    "ns": 1e-9,
    "us": 1e-6,
    "µs": 1e-6,  # U+00B5 MICRO SIGN, as Go accepts
    "μs": 1e-6,  # U+03BC GREEK SMALL LETTER MU, as Go accepts
    "ms": 1e-3,
    "s": 1.0,
    "m": 60.0,
    "h": 3600.0,
}
# Longest units first so "ms" is not read as "m" followed by garbage.
_DURATION_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|μs|ms|h|m|s)")


def parse_duration(value: str) -> float:
    """Go ``time.ParseDuration`` syntax (``10m``, ``1h30m``, ``1.5h``, ``300ms``, ``0``) -> seconds.

    Go syntax because Kubernetes users write durations that way everywhere else (Flux, Argo,
    cert-manager). Negative durations are rejected: every use here is an interval or timeout.
    """
    if not isinstance(value, str):
        raise ValueError(f"duration: expected a string such as '10m', got {value!r}")
    text = value.strip()
    if text.startswith("+"):
        text = text[1:]
    if text == "0":
        return 0.0
    if not text or text.startswith("-"):
        raise ValueError(f"duration: invalid or negative duration {value!r} (expected e.g. '10m', '1h30m')")
    total = 0.0
    pos = 0
    while pos < len(text):
        match = _DURATION_PART.match(text, pos)
        if not match:
            raise ValueError(f"duration: invalid duration {value!r} (expected e.g. '10m', '1h30m', '300ms')")
        total += float(match.group(1)) * _DURATION_UNITS[match.group(2)]
        pos = match.end()
    return total

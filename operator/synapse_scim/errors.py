"""The one shape of a failure that reaches status: a CamelCase reason and a message that says the fix."""

from __future__ import annotations


class ReasonedError(Exception):
    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message


def first_line(text: str, limit: int = 300) -> str:
    """The first line of an SDK error, bounded: their texts carry whole response bodies."""
    stripped = text.strip()
    return stripped.splitlines()[0][:limit] if stripped else ""

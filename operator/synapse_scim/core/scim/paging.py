"""Index paging (RFC 7644 §3.4.2.4): 1-based `startIndex`, `count`, a bounded page size, integers in the
ListResponse. The order is the resources' ids, so pages are stable whatever their size (O1)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from scim2_models import InvalidValueException

from synapse_scim.core.scim.resources import LIST_SCHEMA

MAX_PAGE_SIZE = 200  # ServiceProviderConfig filter.maxResults; Okta pages by 100


@dataclass(frozen=True)
class Page:
    start_index: int  # 1-based
    count: int  # at most MAX_PAGE_SIZE

    def window(self, total: int) -> tuple[int, int]:
        """The slice [start, stop) of an ordered list of `total` resources."""
        start = min(self.start_index - 1, total)
        return start, min(start + self.count, total)


def _integer(name: str, raw: str | None) -> int | None:
    if raw is None or raw == "":
        return None
    try:
        return int(raw.strip())
    except ValueError:
        raise InvalidValueException(detail=f"{name} must be an integer, got {raw[:40]!r}") from None


def page(start_index: str | None, count: str | None, max_page_size: int = MAX_PAGE_SIZE) -> Page:
    """The page a request asks for: startIndex below 1 counts as 1 (RFC 7644 §3.4.2.4), a negative count
    as 0, a count over the maximum (or none) as the maximum."""
    start = _integer("startIndex", start_index)
    size = _integer("count", count)
    return Page(
        start_index=max(1, start if start is not None else 1),
        count=max_page_size if size is None else max(0, min(size, max_page_size)),
    )


def list_response(total: int, start_index: int, resources: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "schemas": [LIST_SCHEMA],
        "totalResults": total,
        "startIndex": start_index,
        "itemsPerPage": len(resources),
        "Resources": resources,
    }

"""core/scim/paging.py: 1-based startIndex, bounded count, integers."""

from __future__ import annotations

import pytest
from scim2_models import InvalidValueException

from synapse_scim.core.scim.paging import MAX_PAGE_SIZE, Page, list_response, page


@pytest.mark.parametrize(
    ("start", "count", "expected"),
    [
        (None, None, Page(1, MAX_PAGE_SIZE)),
        ("1", "100", Page(1, 100)),
        ("0", "10", Page(1, 10)),
        ("-5", "10", Page(1, 10)),
        ("101", "100", Page(101, 100)),
        ("1", "0", Page(1, 0)),
        ("1", "-3", Page(1, 0)),
        ("1", "1000000", Page(1, MAX_PAGE_SIZE)),
        ("", "", Page(1, MAX_PAGE_SIZE)),
        (" 3 ", "5", Page(3, 5)),
    ],
)
def test_page(start: str | None, count: str | None, expected: Page) -> None:
    assert page(start, count) == expected


@pytest.mark.parametrize(("start", "count"), [("one", None), (None, "1.5"), ("1e3", None), (None, "ten")])
def test_non_integers_are_invalid_value(start: str | None, count: str | None) -> None:
    with pytest.raises(InvalidValueException):
        page(start, count)


@pytest.mark.parametrize(
    ("p", "total", "window"),
    [
        (Page(1, 100), 250, (0, 100)),
        (Page(201, 100), 250, (200, 250)),
        (Page(300, 100), 250, (250, 250)),
        (Page(1, 0), 5, (0, 0)),
    ],
)
def test_window(p: Page, total: int, window: tuple[int, int]) -> None:
    assert p.window(total) == window


def test_list_response_carries_integers() -> None:
    body = list_response(3, 2, [{"id": "b"}])
    assert body == {
        "schemas": ["urn:ietf:params:scim:api:messages:2.0:ListResponse"],
        "totalResults": 3,
        "startIndex": 2,
        "itemsPerPage": 1,
        "Resources": [{"id": "b"}],
    }

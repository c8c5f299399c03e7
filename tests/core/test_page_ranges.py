"""Page ranges as callers write them."""

from __future__ import annotations

import pytest

from docvl.errors import InvalidInput
from docvl.page_ranges import PageRanges, PagesOutOfRange


@pytest.mark.parametrize(
    ("text", "count", "indices", "canonical"),
    [
        ("1-3,7,12-", 14, [0, 1, 2, 6, 11, 12, 13], "1-3,7,12-"),
        (" 2 , 2-3 ", 5, [1, 2], "2,2-3"),
        ("5", 5, [4], "5"),
        ("1-", 3, [0, 1, 2], "1-"),
        ("3-3", 3, [2], "3"),
        ("4-6,1", 6, [0, 3, 4, 5], "4-6,1"),
    ],
)
def test_ranges_give_the_documents_own_indices(
    text: str, count: int, indices: list[int], canonical: str
) -> None:
    ranges = PageRanges.parse(text)
    assert ranges.indices(count) == indices
    assert str(ranges) == canonical
    assert PageRanges.parse(str(ranges)) == ranges


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "pages is empty"),
        (",", "pages is empty"),
        ("a-b", "is not a page or range"),
        ("1--3", "is not a page or range"),
        ("-3", "is not a page or range"),
        ("0", "numbered from 1"),
        ("5-2", "from a lower to a higher page"),
        ("1;2", "is not a page or range"),
        ("1" * 1001, "over the limit"),
    ],
)
def test_malformed_ranges_say_how_to_write_them(text: str, message: str) -> None:
    with pytest.raises(InvalidInput, match=message):
        PageRanges.parse(text)


@pytest.mark.parametrize("text", ["6", "2-6", "6-"])
def test_a_range_past_the_end_names_the_page_count(text: str) -> None:
    with pytest.raises(PagesOutOfRange, match="outside the document, which has 5 pages") as caught:
        PageRanges.parse(text).indices(5)
    assert caught.value.code == "pages_out_of_range"
    with pytest.raises(PagesOutOfRange, match=r"which has 1 page$"):
        PageRanges.parse("2").indices(1)

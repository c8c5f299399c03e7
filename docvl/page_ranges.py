"""Page ranges a caller picks from a document, written as people write them: `1-3,7,12-` (1-based,
inclusive; `12-` runs to the last page). Page indices stay the document's own."""

from __future__ import annotations

import re
from dataclasses import dataclass

from docvl.errors import InvalidInput

MAX_CHARS = 1000
_PART = re.compile(r"(\d+)(?:(-)(\d*))?")
_EXAMPLE = "write it like 1-3,7,12- (page numbers from 1; 12- runs to the last page)"


class PagesOutOfRange(InvalidInput):
    code = "pages_out_of_range"


@dataclass(frozen=True)
class PageRanges:
    """Inclusive 1-based spans; an end of None runs to the last page."""

    spans: tuple[tuple[int, int | None], ...]

    @classmethod
    def parse(cls, text: str) -> PageRanges:
        """The ranges in `text`; InvalidInput saying how to write them when they are malformed."""
        if len(text) > MAX_CHARS:
            raise InvalidInput(f"pages is {len(text)} characters, over the limit of {MAX_CHARS}")
        parts = [part.strip() for part in text.replace(" ", "").split(",")]
        if not any(parts):
            raise InvalidInput(f"pages is empty: {_EXAMPLE}, or leave it out for every page")
        spans: list[tuple[int, int | None]] = []
        for part in parts:
            match = _PART.fullmatch(part)
            if match is None:
                raise InvalidInput(f"pages {text[:100]!r}: {part[:40]!r} is not a page or range; {_EXAMPLE}")
            start, dash, end = match.groups()
            first = int(start)
            last: int | None = first if dash is None else int(end) if end else None
            if first < 1 or (last is not None and last < first):
                raise InvalidInput(
                    f"pages {text[:100]!r}: {part!r} is not a range of pages (they are numbered from 1, "
                    "and a range runs from a lower to a higher page)"
                )
            spans.append((first, last))
        return cls(tuple(spans))

    def indices(self, page_count: int) -> list[int]:
        """The 0-based indices of the chosen pages of a document of `page_count` pages, in order, each
        once; PagesOutOfRange when a page named is past the end."""
        chosen: set[int] = set()
        for first, last in self.spans:
            end = page_count if last is None else last
            if first > page_count or end > page_count:
                shown = f"{first}-" if last is None else f"{first}" if first == last else f"{first}-{last}"
                raise PagesOutOfRange(
                    f"pages {self}: {shown} is outside the document, which has {page_count} "
                    f"page{'s' if page_count != 1 else ''}"
                )
            chosen.update(range(first - 1, end))
        return sorted(chosen)

    def __str__(self) -> str:
        return ",".join(
            f"{first}-" if last is None else f"{first}" if first == last else f"{first}-{last}"
            for first, last in self.spans
        )

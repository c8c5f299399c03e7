"""The document's Markdown, assembled from its blocks in reading order.

Each block is written by its label:

- `title` → `# text`, `section_header` → `## text` (heading marks the model wrote are replaced, a heading
  over several lines joined into one);
- `table` as the model gave it (Markdown or HTML, both render in Markdown);
- `figure` → `![Figure](object key)` once the pipeline has stored its crop (`figure_link` may turn the
  key into a URL), else the placeholder `<!-- figure p1-b3 -->`; any text the model read inside the
  figure follows it;
- `formula` → `$$` … `$$` on lines of their own (the model's `\\[ \\]` or `$$` delimiters replaced);
- everything else (text, lists, captions, footnotes, other) as given.

Page furniture (`header`, `footer`, `page_number`) repeats on every page and breaks the body's flow, so
it is left out unless `include_furniture` is set. Pages are separated as the OCR task's document.md
(docvl/jobs/finish.py): `<!-- page N -->`, a blank line, the page, and a blank line between pages; a
failed page is `<!-- page N: failed (reason) -->`. Nothing is escaped: the console sanitises what it shows.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping

from docvl.layout.document import Block, Document, Page
from docvl.layout.labels import FURNITURE, HEADINGS, Label

FigureLink = Callable[[str], str]
"""An object key → the link written in the Markdown (e.g. a presigned URL); the key itself by default."""

_HEADING_MARKS = re.compile(r"^\s{0,3}#{1,6}\s*")
_NEEDS_BRACKETS = re.compile(r"[\s()<>]")  # a link with these is written <link>, as CommonMark allows
_MATH_DELIMITERS = (("$$", "$$"), ("\\[", "\\]"), ("$", "$"))


def block_markdown(block: Block, *, figure_link: FigureLink | None = None) -> str:
    """One block's Markdown ("" when it has nothing to show), whatever its label."""
    if block.label in HEADINGS:
        text = " ".join(_HEADING_MARKS.sub("", line).strip() for line in block.text.splitlines())
        text = " ".join(text.split())
        return f"{'#' * HEADINGS[block.label]} {text}" if text else ""
    if block.label is Label.FORMULA:
        body = _formula_body(block.text)
        return f"$$\n{body}\n$$" if body else ""
    if block.label is Label.FIGURE:
        if block.figure_key:
            link = figure_link(block.figure_key) if figure_link else block.figure_key
            image = f"![Figure]({f'<{link}>' if _NEEDS_BRACKETS.search(link) else link})"
        else:
            image = f"<!-- figure {block.id} -->"
        return f"{image}\n\n{block.text}" if block.text else image
    return block.text


def page_markdown(
    page: Page, *, include_furniture: bool = False, figure_link: FigureLink | None = None
) -> str:
    """The page's blocks in reading order, a blank line between them (no page marker)."""
    parts = [
        block_markdown(b, figure_link=figure_link)
        for b in page.blocks
        if include_furniture or b.label not in FURNITURE
    ]
    return "\n\n".join(p for p in parts if p)


def document_markdown(
    document: Document,
    *,
    include_furniture: bool = False,
    figure_link: FigureLink | None = None,
    failed: Mapping[int, str] | None = None,
) -> str:
    """The whole document, page by page as document.md separates them; `failed` (page number → reason)
    adds the pages that have no result, in their place."""
    pages: dict[int, str | None] = {p.number: None for p in document.pages}
    pages |= dict(failed or {})
    by_number = {p.number: p for p in document.pages}
    parts = []
    for number in sorted(pages):
        page = by_number.get(number)
        if page is None:
            parts.append(f"<!-- page {number}: failed ({pages[number]}) -->")
            continue
        body = page_markdown(page, include_furniture=include_furniture, figure_link=figure_link)
        parts.append(f"<!-- page {number} -->\n\n{body}" if body else f"<!-- page {number} -->")
    return "\n\n".join(parts) + "\n"


def _formula_body(text: str) -> str:
    """The formula without the pair of math delimiters around it (`$$`, `\\[ \\]` or `$`), if any."""
    body = text.strip()
    for opening, closing in _MATH_DELIMITERS:
        if len(body) >= len(opening) + len(closing) and body.startswith(opening) and body.endswith(closing):
            inner = body[len(opening) : len(body) - len(closing)]
            if opening not in inner and closing not in inner:  # one formula, not `$a$ and $b$`
                return inner.strip()
    return body

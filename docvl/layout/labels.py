"""DeepSeek's block labels onto docvl's fixed vocabulary.

DeepSeek-OCR and DeepSeek-OCR-2 write whatever label their training data used (`title`, `sub_title`,
`text`, `table`, `table_caption`, `image`, `image_caption`, `equation`, ...), and other grounded models
use their own (`paragraph_title`, `page_header`, `figure`, ...). Callers want one small vocabulary to
draw, style and chunk by, so every block gets one of `Label`, and keeps the label the model wrote as its
`source_label`. A label not recognised becomes `other` (never an error).
"""

from __future__ import annotations

import re
from enum import StrEnum


class Label(StrEnum):
    """The fixed vocabulary of block labels (the JSON Schema lists the same values)."""

    TITLE = "title"
    SECTION_HEADER = "section_header"
    TEXT = "text"
    LIST = "list"
    TABLE = "table"
    FIGURE = "figure"
    FORMULA = "formula"
    CAPTION = "caption"
    FOOTNOTE = "footnote"
    HEADER = "header"
    FOOTER = "footer"
    PAGE_NUMBER = "page_number"
    OTHER = "other"


HEADINGS = {Label.TITLE: 1, Label.SECTION_HEADER: 2}
"""Heading labels and their level (1 is the highest): Markdown's `#` / `##`, and where chunks break."""

FURNITURE = frozenset({Label.HEADER, Label.FOOTER, Label.PAGE_NUMBER})
"""Page furniture: repeated on every page, left out of the document's body (Markdown, chunks) by default."""

_SOURCE = {
    Label.TITLE: ("title", "doc_title", "document_title"),
    Label.SECTION_HEADER: (
        "sub_title",
        "subtitle",
        "section_title",
        "section_header",
        "section_heading",
        "heading",
        "paragraph_title",
        "subheading",
    ),
    Label.TEXT: ("text", "plain_text", "paragraph", "abstract", "reference", "ref_text", "code", "content"),
    Label.LIST: ("list", "list_item", "ordered_list", "unordered_list"),
    Label.TABLE: ("table",),
    Label.FIGURE: ("image", "figure", "picture", "chart", "diagram", "photo", "seal", "logo"),
    Label.FORMULA: (
        "formula",
        "equation",
        "interline_equation",
        "isolate_formula",
        "display_formula",
        "math",
    ),
    Label.CAPTION: (
        "caption",
        "table_caption",
        "image_caption",
        "figure_caption",
        "chart_caption",
        "figure_title",
        "table_title",
        "chart_title",
        "formula_caption",
    ),
    Label.FOOTNOTE: ("footnote", "table_footnote", "image_footnote", "figure_footnote", "page_footnote"),
    Label.HEADER: ("header", "page_header"),
    Label.FOOTER: ("footer", "page_footer"),
    Label.PAGE_NUMBER: ("page_number", "page_num", "page_no", "number"),
}
LABEL_MAP: dict[str, Label] = {source: label for label, sources in _SOURCE.items() for source in sources}
"""Every recognised source label (normalised: lower case, words joined by `_`) and its label."""

_SEPARATORS = re.compile(r"[\s\-]+")


def normalise_label(source: str) -> str:
    """`Sub-Title ` → `sub_title`: lower case, spaces and hyphens as underscores."""
    return _SEPARATORS.sub("_", source.strip().lower()).strip("_")


def map_label(source: str | None) -> Label:
    """The vocabulary label for a label the model wrote; `text` for none (text outside any block),
    `other` for one not recognised."""
    if source is None:
        return Label.TEXT
    return LABEL_MAP.get(normalise_label(source), Label.OTHER)

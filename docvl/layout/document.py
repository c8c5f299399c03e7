"""The document model of a layout job: pages of blocks, each with a label, boxes and Markdown text.

Coordinates. Every box is `[x0, y0, x1, y1]` with x0 <= x1 and y0 <= y1, its origin at the TOP-LEFT of
the page as displayed (the page's /Rotate applied, as pypdfium2 renders it), y growing downwards, in two
units:

- `box_px`: pixels of the page image the model saw (`width_px` × `height_px`): x / 999 × width_px.
- `box_pt`: PDF points (1/72 inch) of the page (`width_pt` × `height_pt`, the page's size as pypdfium2's
  `get_size()` gives it, rotation applied), the same top-left origin: box_px × width_pt / width_px. PDF's
  own user space has its origin at the bottom left; `checks.text_layer_words` converts the text layer into
  this system. For a page that is an image (no PDF), `width_pt`, `height_pt` and every `box_pt` are null.

A block with several boxes (the model may give more than one, e.g. a paragraph across two columns) keeps
them all in `boxes_px` / `boxes_pt`, and their union as `box_px` / `box_pt`. A block the model gave no
usable box (text outside any block, a box dropped as malformed) has `box_px` null and empty lists.

Reading order is the order of the blocks in the model's output (`order`, 1-based within the page):
DeepSeek-OCR-2 is trained to write a page in reading order, and any geometric rule (columns, then top to
bottom) is wrong for some layout the model got right.

The JSON form (`Document.to_json()`) is described by the versioned JSON Schema `schema/document-v1.json`
(`SCHEMA_ID`); `validate()` checks a dict against it. An added or changed field is a new schema version.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field, replace
from functools import cache
from importlib import resources
from typing import Any

from jsonschema import Draft202012Validator

from docvl.layout.grounding import NORMALISED_MAX, Box, parse_grounded
from docvl.layout.labels import Label, map_label

SCHEMA_VERSION = 1
SCHEMA_ID = "https://docvl.dev/schema/document/v1.json"
SCHEMA_FILE = "document-v1.json"

Rect = tuple[float, float, float, float]
"""(x0, y0, x1, y1), top-left origin, x0 <= x1 and y0 <= y1; pixels or points (see the module)."""


@dataclass(frozen=True)
class Block:
    """One block of a page: where it is, what it is and what it says (Markdown)."""

    id: str  # "p<page>-b<order>": unique in the document, stable for a given output
    page: int  # 1-based
    order: int  # reading order within the page, 1-based
    label: Label
    source_label: str | None  # the label the model wrote; None for text outside any block
    box_px: Rect | None  # the union of boxes_px; None when the block has no box
    box_pt: Rect | None  # the same in PDF points; None without a box or for an image page
    boxes_px: tuple[Rect, ...]
    boxes_pt: tuple[Rect, ...]
    text: str
    figure_key: str | None = None  # the object key of the figure's crop, set by the pipeline

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "page": self.page,
            "order": self.order,
            "label": self.label.value,
            "source_label": self.source_label,
            "box_px": _rect_json(self.box_px),
            "box_pt": _rect_json(self.box_pt),
            "boxes_px": [_rect_json(r) for r in self.boxes_px],
            "boxes_pt": [_rect_json(r) for r in self.boxes_pt],
            "text": self.text,
            "figure_key": self.figure_key,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Block:
        return cls(
            id=data["id"],
            page=data["page"],
            order=data["order"],
            label=Label(data["label"]),
            source_label=data.get("source_label"),
            box_px=_rect(data.get("box_px")),
            box_pt=_rect(data.get("box_pt")),
            boxes_px=tuple(_rect_strict(r) for r in data.get("boxes_px", ())),
            boxes_pt=tuple(_rect_strict(r) for r in data.get("boxes_pt", ())),
            text=data.get("text", ""),
            figure_key=data.get("figure_key"),
        )


@dataclass(frozen=True)
class Page:
    """One page: the image the model saw, the PDF page's size (when it is one), its blocks and notes."""

    number: int  # 1-based, the document's own page number (a page range may skip some)
    width_px: int
    height_px: int
    width_pt: float | None
    height_pt: float | None
    blocks: tuple[Block, ...] = ()
    notes: tuple[str, ...] = ()  # what the parser dropped or changed, for people

    def to_json(self) -> dict[str, Any]:
        return {
            "number": self.number,
            "width_px": self.width_px,
            "height_px": self.height_px,
            "width_pt": self.width_pt,
            "height_pt": self.height_pt,
            "blocks": [b.to_json() for b in self.blocks],
            "notes": list(self.notes),
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Page:
        return cls(
            number=data["number"],
            width_px=data["width_px"],
            height_px=data["height_px"],
            width_pt=data.get("width_pt"),
            height_pt=data.get("height_pt"),
            blocks=tuple(Block.from_json(b) for b in data.get("blocks", ())),
            notes=tuple(data.get("notes", ())),
        )

    def figure_crops(self) -> list[tuple[str, tuple[int, int, int, int]]]:
        """(block id, pixel box to crop) for each figure block with a box of at least a pixel each way:
        the box widened to whole pixels and kept inside the image (PIL's `Image.crop` takes it as is)."""
        crops = []
        for block in self.blocks:
            if block.label is Label.FIGURE and block.box_px is not None:
                x0, y0, x1, y1 = block.box_px
                box = (
                    max(0, math.floor(x0)),
                    max(0, math.floor(y0)),
                    min(self.width_px, math.ceil(x1)),
                    min(self.height_px, math.ceil(y1)),
                )
                if box[2] > box[0] and box[3] > box[1]:
                    crops.append((block.id, box))
        return crops


@dataclass(frozen=True)
class Document:
    """A layout job's result: its pages in order."""

    job_id: str | None
    pages: tuple[Page, ...] = ()
    schema_version: int = field(default=SCHEMA_VERSION)

    def blocks(self) -> Iterator[Block]:
        """Every block, page by page, in reading order."""
        for page in self.pages:
            yield from page.blocks

    def with_figure_keys(self, keys: Mapping[str, str]) -> Document:
        """The same document with `figure_key` set on the blocks named in `keys` (block id → object key)."""
        pages = tuple(
            replace(
                page,
                blocks=tuple(replace(b, figure_key=keys[b.id]) if b.id in keys else b for b in page.blocks),
            )
            for page in self.pages
        )
        return replace(self, pages=pages)

    def to_json(self) -> dict[str, Any]:
        """Plain dicts and lists (json.dumps takes them as they are), valid against the schema."""
        return {
            "schema_version": self.schema_version,
            "job_id": self.job_id,
            "pages": [p.to_json() for p in self.pages],
        }

    def dumps(self) -> str:
        """The document as JSON text (UTF-8 when encoded; non-ASCII kept as is)."""
        return json.dumps(self.to_json(), ensure_ascii=False)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Document:
        """The document from its JSON form; validated first (DocumentInvalid when it is not)."""
        validate(data)
        return cls(
            job_id=data.get("job_id"),
            pages=tuple(Page.from_json(p) for p in data["pages"]),
            schema_version=data["schema_version"],
        )


def page_from_grounded(
    output: str,
    number: int,
    width_px: int,
    height_px: int,
    width_pt: float | None = None,
    height_pt: float | None = None,
) -> Page:
    """A page from the model's grounded output for it, the size of the image it saw and, for a PDF page,
    its size in points (None for an image). Never raises on the output (see grounding.py)."""
    parsed = parse_grounded(output)
    blocks = []
    for order, raw in enumerate(parsed.blocks, start=1):
        boxes_px = tuple(_scale(box, width_px, height_px) for box in raw.boxes)
        boxes_pt: tuple[Rect, ...] = ()
        if width_pt is not None and height_pt is not None:
            boxes_pt = tuple(_scale(box, width_pt, height_pt) for box in raw.boxes)
        blocks.append(
            Block(
                id=f"p{number}-b{order}",
                page=number,
                order=order,
                label=map_label(raw.source_label),
                source_label=raw.source_label,
                box_px=_union(boxes_px),
                box_pt=_union(boxes_pt),
                boxes_px=boxes_px,
                boxes_pt=boxes_pt,
                text=raw.text,
            )
        )
    return Page(number, width_px, height_px, width_pt, height_pt, tuple(blocks), parsed.notes)


def _scale(box: Box, width: float, height: float) -> Rect:
    """A normalised box in the units of a page `width` × `height` (0 is the left/top edge, 999 the
    right/bottom one), to 0.01."""
    x1, y1, x2, y2 = box
    return (
        round(x1 / NORMALISED_MAX * width, 2),
        round(y1 / NORMALISED_MAX * height, 2),
        round(x2 / NORMALISED_MAX * width, 2),
        round(y2 / NORMALISED_MAX * height, 2),
    )


def _union(rects: tuple[Rect, ...]) -> Rect | None:
    if not rects:
        return None
    return (
        min(r[0] for r in rects),
        min(r[1] for r in rects),
        max(r[2] for r in rects),
        max(r[3] for r in rects),
    )


def _rect_json(rect: Rect | None) -> list[float] | None:
    return None if rect is None else list(rect)


def _rect(value: Any) -> Rect | None:
    return None if value is None else _rect_strict(value)


def _rect_strict(value: Any) -> Rect:
    x0, y0, x1, y1 = (float(v) for v in value)
    return x0, y0, x1, y1


class DocumentInvalid(ValueError):
    """A document dict that does not match the schema; `errors` says where and why."""

    def __init__(self, errors: list[str]) -> None:
        super().__init__("the document does not match its schema: " + "; ".join(errors[:10]))
        self.errors = errors


@cache
def schema() -> dict[str, Any]:
    """The document's JSON Schema (draft 2020-12), as the API serves it."""
    text = resources.files("docvl.layout").joinpath("schema", SCHEMA_FILE).read_text(encoding="utf-8")
    loaded: dict[str, Any] = json.loads(text)
    return loaded


@cache
def _validator() -> Draft202012Validator:
    return Draft202012Validator(schema())


def validation_errors(document: Mapping[str, Any]) -> list[str]:
    """Each way `document` breaks the schema, as `at /pages/0/blocks/2/box_px: ...`; empty when valid."""
    errors = sorted(_validator().iter_errors(document), key=lambda e: list(map(str, e.absolute_path)))
    return [f"at /{'/'.join(map(str, e.absolute_path))}: {e.message[:300]}" for e in errors]


def validate(document: Mapping[str, Any]) -> None:
    """Raise DocumentInvalid, listing every error, when `document` (a `to_json()` dict, or one read back
    from document.json) does not match the schema."""
    errors = validation_errors(document)
    if errors:
        raise DocumentInvalid(errors)

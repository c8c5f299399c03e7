"""Checks of a page's blocks: are the boxes where a page can have them, and does each block say what the
PDF's own text layer says inside its box?

Geometry (every page): each box inside the page (with a tolerance of 1% of its width and height), none
degenerate (zero or negative width or height, or less than `min_side_px` pixels), no two blocks duplicates
(IoU ≥ 0.9 and the same text) and overlaps (IoU ≥ 0.5) listed. Blocks without a box are listed as
`unlocated`.

Text layer (a PDF page with one): each text-like block (`TEXT_LIKE`) is compared with the text-layer words
whose centre lies inside one of its boxes, in the text layer's order: the CER (docvl.verify.ocr's `cer`
of the block's `plain_text` against those words) checks both what the model read and where it says it
read it: right text in the wrong place scores as badly as wrong text. The page's CER is the blocks'
edits over their reference characters (a block with no word in its box counts its every character as
an edit), and its word F1 the blocks' F1 weighted by their words: both block by block, never the page's
text as a whole, which would forgive text put in the box of the next line. `text_layer_words` reads the
words and their boxes from a pypdfium2 page, in the blocks' coordinate system (PDF points, origin at the
top left of the page as displayed).

The verdict is a plain dict in the spirit of the other checks (docvl/verify), JSON as it is: `passed`,
the scores under the names the OCR check uses (`text_layer_cer`, `text_layer_f1`, `repetition`) and what
was found (see `check_page`). A page passes when no box is outside the page or degenerate, no block is
duplicated, its repetition and text-layer CER are within `Thresholds`, and at most a tenth of its blocks
have no box; overlaps are reported but do not fail a page (a caption inside a figure's box, a table and
its cells).
"""

from __future__ import annotations

import ctypes
import re
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import pypdfium2 as pdfium
import pypdfium2.raw as pdfium_c

from docvl.layout.document import Block, Page, Rect
from docvl.layout.labels import Label
from docvl.layout.markdown import page_markdown
from docvl.verify import ocr

TEXT_LIKE = frozenset(
    {
        Label.TITLE,
        Label.SECTION_HEADER,
        Label.TEXT,
        Label.LIST,
        Label.TABLE,
        Label.CAPTION,
        Label.FOOTNOTE,
        Label.HEADER,
        Label.FOOTER,
        Label.PAGE_NUMBER,
    }
)
"""Labels whose text is the page's own text (not figures, whose text may be a description, nor formulas,
whose LaTeX is not what the text layer holds)."""

MAX_BLOCK_CHARS = 20_000  # of a block's text compared (a real block is far shorter; longer is a loop)
MAX_PAGE_CHARS = 60_000  # of a page's text compared, all blocks together
MAX_PAIRS = 200_000  # box pairs looked at for duplicates and overlaps
_LONG_SPACE = re.compile(r"\s{2,}")
_UNCLOSED = re.compile(r"\[(?=[^\]]{500})|\]\((?=[^)]{500})|<(?=[^>]{500})")
_DEVICE_UNITS_PER_POINT = 64  # FPDF_PageToDevice answers whole device units: 1/64 pt is precise enough


@dataclass(frozen=True)
class Thresholds:
    """What a page must meet to pass."""

    edge_tolerance: float = 0.01  # a box may reach this share of the page's size past its edges
    min_side_px: float = 3.0  # a box narrower or lower than this is degenerate
    duplicate_iou: float = 0.9  # two blocks this much overlapping with the same text are one block twice
    overlap_iou: float = 0.5  # two blocks this much overlapping are reported
    max_text_layer_cer: float = 0.35  # the page's text-like blocks against the text layer in their boxes
    max_repetition: float = 0.3  # as the OCR check (DOCVL_VERIFY_REPETITION_THRESHOLD's default)
    max_unlocated_share: float = 0.1  # of the page's blocks that may have no box


@dataclass(frozen=True)
class Word:
    """A word of a PDF page's text layer and its box: PDF points, origin at the top left of the page as
    displayed (rotation applied), y downwards, as the blocks' `box_pt`."""

    text: str
    box: Rect

    @property
    def centre(self) -> tuple[float, float]:
        return (self.box[0] + self.box[2]) / 2, (self.box[1] + self.box[3]) / 2

    def to_json(self) -> dict[str, Any]:
        return {"text": self.text, "box": list(self.box)}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Word:
        x0, y0, x1, y1 = (float(v) for v in data["box"])
        return cls(str(data["text"]), (x0, y0, x1, y1))


def text_layer_words(page: pdfium.PdfPage) -> list[Word]:
    """The words of the page's text layer, in its order (PDFium's, usually reading order), each with the
    union of its characters' tight boxes. Words end at whitespace, at the spaces and line breaks PDFium
    inserts, and where the next character starts a new line. An image-only page gives [].

    PDFium gives character boxes in PDF user space (points, origin bottom left, unrotated);
    FPDF_PageToDevice maps them onto the page as displayed, as rendering does, crop box and /Rotate
    included."""
    width, height = page.get_size()
    textpage = page.get_textpage()
    try:
        words: list[Word] = []
        chars: list[str] = []
        box: list[float] | None = None  # left, bottom, right, top in user space
        last: tuple[float, float, float, float] | None = None

        def flush() -> None:
            nonlocal box
            if chars and box is not None:
                text = "".join(chars).encode("utf-16", "surrogatepass").decode("utf-16", "replace")
                words.append(Word(text, _to_display(page, box, width, height)))
            chars.clear()
            box = None

        for index in range(textpage.count_chars()):
            code = pdfium_c.FPDFText_GetUnicode(textpage, index)
            char = chr(code) if 0 < code <= 0x10FFFF else ""
            if not char or char.isspace() or not char.isprintable():
                flush()
                last = None
                continue
            try:
                left, bottom, right, top = textpage.get_charbox(index)
            except pdfium.PdfiumError:
                chars.append(char)
                continue
            if right <= left and top <= bottom:  # no box (some fonts): the text counts, not the place
                chars.append(char)
                continue
            if last is not None and _new_line(last, (left, bottom, right, top)):
                flush()
            chars.append(char)
            last = (left, bottom, right, top)
            box = (
                [left, bottom, right, top]
                if box is None
                else [min(box[0], left), min(box[1], bottom), max(box[2], right), max(box[3], top)]
            )
        flush()
        return words
    finally:
        textpage.close()


def pdf_words(pdf: str | Path | bytes, page_index: int, password: str | None = None) -> list[Word]:
    """`text_layer_words` of one page (0-based index) of a PDF given by path or content."""
    document = pdfium.PdfDocument(str(pdf) if isinstance(pdf, Path) else pdf, password=password)
    try:
        page = document[page_index]
        try:
            return text_layer_words(page)
        finally:
            page.close()
    finally:
        document.close()


def _new_line(previous: tuple[float, float, float, float], char: tuple[float, float, float, float]) -> bool:
    """The character starts a new line: it is left of the previous one and its middle outside that one's
    height (a line break PDFium did not mark)."""
    middle = (char[1] + char[3]) / 2
    return char[0] < previous[0] and not previous[1] <= middle <= previous[3]


def _to_display(page: pdfium.PdfPage, box: list[float], width: float, height: float) -> Rect:
    """A user-space box (left, bottom, right, top) on the page as displayed, in points, top-left origin."""
    scale = _DEVICE_UNITS_PER_POINT
    size_x, size_y = round(width * scale), round(height * scale)
    xs, ys = [], []
    for x, y in ((box[0], box[1]), (box[2], box[3])):
        device_x, device_y = ctypes.c_int(), ctypes.c_int()
        pdfium_c.FPDF_PageToDevice(page, 0, 0, size_x, size_y, 0, x, y, device_x, device_y)
        xs.append(device_x.value / scale)
        ys.append(device_y.value / scale)
    return min(xs), min(ys), max(xs), max(ys)


def check_page(
    page: Page, words: Sequence[Word] | None = None, thresholds: Thresholds | None = None
) -> dict[str, Any]:
    """The verdict on one page's blocks. `words`: the PDF page's text layer (`text_layer_words`); None
    when the page is not a PDF page, [] when it is one without text (a scan).

    Keys: `passed`; `blocks` (how many); `unlocated`, `outside_page`, `degenerate` (block ids);
    `duplicates` ([id, id] pairs); `overlaps` ({blocks: [id, id], iou}); `repetition` (of the page's
    Markdown, as the OCR check); `text_layer_cer`, `text_layer_f1`, `text_layer_coverage` (the share of
    the text layer's words inside some text block), null without a text layer; `text_blocks` (per block
    compared: id, cer, f1, words in its box, chars of text layer in its box, extra_chars: its own when its
    box holds none); `notes` (what could not be checked, for people); `thresholds` (those applied)."""
    limits = thresholds or Thresholds()
    located = [b for b in page.blocks if b.box_px is not None]
    duplicates, overlaps, notes = _pairs(located, limits)
    text_layer, text_notes = _text_layer(page, words)
    verdict: dict[str, Any] = {
        "blocks": len(page.blocks),
        "unlocated": [b.id for b in page.blocks if b.box_px is None],
        "outside_page": [b.id for b in located if any(_outside(r, page, limits) for r in b.boxes_px)],
        "degenerate": [b.id for b in located if any(_degenerate(r, limits) for r in b.boxes_px)],
        "duplicates": duplicates,
        "overlaps": overlaps,
        "repetition": ocr.repetition(page_markdown(page, include_furniture=True)[:MAX_PAGE_CHARS]),
        **text_layer,
        "notes": notes + text_notes,
        "thresholds": asdict(limits),
    }
    return {"passed": _passed(verdict, page, limits)} | verdict


def _passed(verdict: dict[str, Any], page: Page, limits: Thresholds) -> bool:
    cer = verdict["text_layer_cer"]
    return bool(
        not verdict["outside_page"]
        and not verdict["degenerate"]
        and not verdict["duplicates"]
        and verdict["repetition"] <= limits.max_repetition
        and len(verdict["unlocated"]) <= limits.max_unlocated_share * len(page.blocks)
        and (cer is None or cer <= limits.max_text_layer_cer)
    )


def _outside(rect: Rect, page: Page, limits: Thresholds) -> bool:
    dx, dy = limits.edge_tolerance * page.width_px, limits.edge_tolerance * page.height_px
    x0, y0, x1, y1 = rect
    return x0 < -dx or y0 < -dy or x1 > page.width_px + dx or y1 > page.height_px + dy


def _degenerate(rect: Rect, limits: Thresholds) -> bool:
    x0, y0, x1, y1 = rect
    return x1 - x0 < limits.min_side_px or y1 - y0 < limits.min_side_px


def iou(a: Rect, b: Rect) -> float:
    """Intersection over union of two boxes (0 for boxes with no area)."""
    width = min(a[2], b[2]) - max(a[0], b[0])
    height = min(a[3], b[3]) - max(a[1], b[1])
    if width <= 0 or height <= 0:
        return 0.0
    inter = width * height
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def _pairs(
    blocks: list[Block], limits: Thresholds
) -> tuple[list[list[str]], list[dict[str, Any]], list[str]]:
    """(duplicate pairs, overlapping pairs with their IoU, a note when the page had too many to look at
    all): a sweep from left to right, so only boxes that share some x are compared."""
    duplicates: list[list[str]] = []
    overlaps: list[dict[str, Any]] = []
    ordered = sorted(blocks, key=lambda b: b.box_px[0] if b.box_px else 0.0)
    looked = 0
    for i, a in enumerate(ordered):
        assert a.box_px is not None
        for b in ordered[i + 1 :]:
            assert b.box_px is not None
            if b.box_px[0] >= a.box_px[2]:
                break
            looked += 1
            if looked > MAX_PAIRS:
                return duplicates, overlaps, [f"over {MAX_PAIRS} box pairs: not all compared"]
            score = iou(a.box_px, b.box_px)
            first, second = sorted((a, b), key=lambda blk: blk.order)
            if score >= limits.duplicate_iou and _same_text(a, b):
                duplicates.append([first.id, second.id])
            elif score >= limits.overlap_iou:
                overlaps.append({"blocks": [first.id, second.id], "iou": round(score, 4)})
    return duplicates, overlaps, []


def _same_text(a: Block, b: Block) -> bool:
    """The same words, whatever the markup or spacing between them."""
    return "".join(_plain(a.text).split()).casefold() == "".join(_plain(b.text).split()).casefold()


@lru_cache(maxsize=256)
def _plain(markdown: str) -> str:
    """docvl.verify.ocr's `plain_text` of a block's text (its first `MAX_BLOCK_CHARS`), tamed first.
    plain_text's patterns rescan the rest of the text for every `[`, `](` or `<` never closed, and every
    long run of whitespace, so that a looping output's `[[[[...` would take seconds: here a bracket not
    closed within 500 characters becomes a space, and a whitespace run one space or newline (plain_text
    collapses whitespace anyway)."""
    text = _UNCLOSED.sub(lambda m: "] (" if m.group() == "](" else " ", markdown[:MAX_BLOCK_CHARS])
    text = _LONG_SPACE.sub(lambda m: "\n" if "\n" in m.group() else " ", text)
    return ocr.plain_text(text)


def _text_layer(page: Page, words: Sequence[Word] | None) -> tuple[dict[str, Any], list[str]]:
    """The text-layer part of the verdict (page scores; per block its CER and the words in its box), and
    notes on what was not compared."""
    empty: dict[str, Any] = {
        "text_layer_cer": None,
        "text_layer_f1": None,
        "text_layer_coverage": None,
        "text_blocks": [],
    }
    if words is None or page.width_pt is None:
        return empty, ["not a PDF page: no text layer to compare with"]
    if not any(w.text.strip() for w in words):
        return empty, ["the PDF page has no text layer (a scan?)"]
    checked: list[dict[str, Any]] = []
    notes: list[str] = []
    covered: set[int] = set()
    budget = MAX_PAGE_CHARS
    for block in page.blocks:
        if block.label not in TEXT_LIKE or not block.boxes_pt:
            continue
        cost = min(len(block.text), MAX_BLOCK_CHARS)
        if cost > budget:
            notes.append(f"over {MAX_PAGE_CHARS} characters of text: blocks from {block.id} on not compared")
            break
        if len(block.text) > MAX_BLOCK_CHARS:
            notes.append(f"{block.id}: only its first {MAX_BLOCK_CHARS} characters compared")
        inside = [i for i, w in enumerate(words) if any(_contains(r, w.centre) for r in block.boxes_pt)]
        covered.update(inside)
        hypothesis = _plain(block.text)
        reference = ocr.normalise(" ".join(words[i].text for i in inside))
        budget -= cost
        checked.append(
            {
                "id": block.id,
                "cer": ocr.cer(hypothesis, reference),
                "f1": ocr.word_f1(hypothesis, reference),
                "words": len(inside),
                "chars": len(reference),
                "extra_chars": 0 if reference else len(hypothesis),
            }
        )
    if not checked:
        return empty, [*notes, "no text block with a box to compare"]
    weights = [max(b["words"], 1) for b in checked]
    return {
        "text_layer_cer": _page_cer(checked),
        # per block, weighted by its words: a bag of words over the whole page would forgive misplaced text
        "text_layer_f1": round(
            sum(b["f1"] * w for b, w in zip(checked, weights, strict=True)) / sum(weights), 4
        ),
        "text_layer_coverage": round(len(covered) / len(words), 4),
        "text_blocks": checked,
    }, notes


def _page_cer(checked: list[dict[str, Any]]) -> float:
    """The blocks' edits over the blocks' reference characters: block by block, never the page's text
    as one string (whose alignment would forgive text read from the box next to where the model says)."""
    edits = sum(float(b["cer"]) * int(b["chars"]) + int(b["extra_chars"]) for b in checked)
    chars = sum(int(b["chars"]) for b in checked)
    if chars == 0:
        return 1.0 if edits else 0.0
    return round(edits / chars, 4)


def _contains(rect: Rect, point: tuple[float, float]) -> bool:
    return rect[0] <= point[0] <= rect[2] and rect[1] <= point[1] <= rect[3]

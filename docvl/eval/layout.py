"""Layout against a reference: where each block is, what it is and what it says.

A layout reference (a JSON file in the set, named by a layout item's `reference`) is one page's blocks as
whoever made the page drew them:

    {"page": 1, "width_pt": 595.92, "height_pt": 842.88,
     "blocks": [{"label": "title", "box_pt": [56.7, 71.4, 278.4, 97.7], "text": "# Sample forecast 2"}]}

Boxes are `[x0, y0, x1, y1]`, origin at the top left, in PDF points (`width_pt` × `height_pt`) or, for an
image page, in pixels (`width_px` × `height_px`, `box_px`); labels are the document schema's
(docvl.layout.Label); `text` is the block's Markdown ("" for a figure).

Scoring (`score_page`): predicted and reference boxes are compared as shares of their page (so points
and pixels, or pages rendered at another resolution, compare alike; IoU does not change under scaling).
Pairs are matched greedily by IoU, highest first, each block used once, a pair only with IoU ≥ 0.5:
label-agnostic (any labels), and separately label-aware (only pairs whose labels agree). From the
matches: mean IoU, block precision (matches / predicted blocks, a block without a box never matching),
recall (matches / reference blocks) and F1; and text-in-box, the CER of each matched block's text against
the reference text of its box (both normalised as OCR pages are), over the reference's characters.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from docvl.eval.distance import levenshtein
from docvl.eval.text import normalize_page
from docvl.layout.checks import iou
from docvl.layout.document import Page, Rect
from docvl.layout.labels import Label

MATCH_IOU = 0.5


@dataclass(frozen=True)
class RefBlock:
    label: Label
    box: Rect  # in the reference's unit (points or pixels)
    text: str


@dataclass(frozen=True)
class LayoutReference:
    width: float
    height: float
    blocks: tuple[RefBlock, ...]
    page: int = 1


def _rect(value: Any) -> Rect | None:
    if not isinstance(value, list) or len(value) != 4:
        return None
    if not all(isinstance(v, int | float) and not isinstance(v, bool) for v in value):
        return None
    x0, y0, x1, y1 = (float(v) for v in value)
    return (x0, y0, x1, y1) if x0 <= x1 and y0 <= y1 else None


def parse_reference(data: Any) -> tuple[LayoutReference | None, list[str]]:
    """The reference from its JSON, or None and every problem found ("blocks[2].box_pt: ...")."""
    if not isinstance(data, Mapping):
        return None, ["must be a JSON object"]
    problems: list[str] = []
    unit = "pt" if "width_pt" in data else "px"
    size = []
    for name in (f"width_{unit}", f"height_{unit}"):
        value = data.get(name)
        if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
            problems.append(
                f"{name}: must be a positive number (the page's size: width_pt and height_pt for a PDF "
                "page, width_px and height_px for an image)"
            )
        else:
            size.append(float(value))
    page = data.get("page", 1)
    if isinstance(page, bool) or not isinstance(page, int) or page < 1:
        problems.append("page: must be a whole number from 1")
    raw = data.get("blocks")
    if not isinstance(raw, list):
        return None, [*problems, "blocks: must be a list"]
    blocks = []
    labels = ", ".join(label.value for label in Label)
    for index, entry in enumerate(raw):
        where = f"blocks[{index}]"
        if not isinstance(entry, Mapping):
            problems.append(f"{where}: must be an object")
            continue
        try:
            label = Label(str(entry.get("label")))
        except ValueError:
            problems.append(f"{where}.label: must be one of {labels}")
            continue
        box = _rect(entry.get(f"box_{unit}"))
        if box is None:
            problems.append(f"{where}.box_{unit}: must be [x0, y0, x1, y1] with x0 <= x1 and y0 <= y1")
            continue
        text = entry.get("text", "")
        if not isinstance(text, str):
            problems.append(f"{where}.text: must be a string")
            continue
        blocks.append(RefBlock(label, box, text))
    if problems:
        return None, problems
    return LayoutReference(size[0], size[1], tuple(blocks), page), []


def read_reference(path: Path) -> tuple[LayoutReference | None, list[str]]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        return None, [f"cannot read it as JSON: {exc}"]
    return parse_reference(data)


def _share(box: Rect, width: float, height: float) -> Rect:
    return box[0] / width, box[1] / height, box[2] / width, box[3] / height


@dataclass(frozen=True)
class Predicted:
    label: Label
    box: Rect | None  # a share of the page, None when the block has no box
    text: str


def predicted_blocks(page: Page) -> list[Predicted]:
    """The page's blocks with their boxes as shares of the page: from the points where the page is a PDF
    page, else from the pixels."""
    blocks = []
    for block in page.blocks:
        box: Rect | None = None
        if block.box_pt is not None and page.width_pt and page.height_pt:
            box = _share(block.box_pt, page.width_pt, page.height_pt)
        elif block.box_px is not None and page.width_px and page.height_px:
            box = _share(block.box_px, page.width_px, page.height_px)
        blocks.append(Predicted(block.label, box, block.text))
    return blocks


def match(
    predicted: list[Predicted], reference: list[RefBlock], ref_boxes: list[Rect], *, same_label: bool
) -> list[tuple[int, int, float]]:
    """(predicted index, reference index, IoU) of the greedy matching: pairs with IoU ≥ MATCH_IOU, the
    highest first, each block in one pair at most; with `same_label`, only pairs whose labels agree."""
    pairs = []
    for i, block in enumerate(predicted):
        if block.box is None:
            continue
        for j, ref_box in enumerate(ref_boxes):
            if same_label and block.label is not reference[j].label:
                continue
            score = iou(block.box, ref_box)
            if score >= MATCH_IOU:
                pairs.append((score, i, j))
    pairs.sort(key=lambda pair: (-pair[0], pair[1], pair[2]))
    used_p: set[int] = set()
    used_r: set[int] = set()
    matched = []
    for score, i, j in pairs:
        if i in used_p or j in used_r:
            continue
        used_p.add(i)
        used_r.add(j)
        matched.append((i, j, score))
    return matched


def _prf(matches: int, predicted: int, reference: int) -> tuple[float, float, float]:
    precision = matches / predicted if predicted else (1.0 if not reference else 0.0)
    recall = matches / reference if reference else 1.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return precision, recall, f1


def score_page(page: Page | None, reference: LayoutReference) -> dict[str, float | None]:
    """The page's layout scores (see the module); a missing page (the item failed) predicts nothing."""
    predicted = predicted_blocks(page) if page is not None else []
    refs = list(reference.blocks)
    ref_boxes = [_share(b.box, reference.width, reference.height) for b in refs]
    scores: dict[str, float | None] = {}
    agnostic = match(predicted, refs, ref_boxes, same_label=False)
    aware = match(predicted, refs, ref_boxes, same_label=True)
    scores["mean_iou"] = sum(s for _, _, s in agnostic) / len(agnostic) if agnostic else None
    for prefix, matched in (("", agnostic), ("label_", aware)):
        precision, recall, f1 = _prf(len(matched), len(predicted), len(refs))
        scores[f"{prefix}precision"], scores[f"{prefix}recall"], scores[f"{prefix}f1"] = precision, recall, f1
    edits = chars = 0
    for i, j, _ in agnostic:
        wanted = normalize_page(refs[j].text)
        if not wanted:
            continue
        edits += levenshtein(normalize_page(predicted[i].text), wanted)
        chars += len(wanted)
    scores["text_in_box_cer"] = edits / chars if chars else None
    return scores

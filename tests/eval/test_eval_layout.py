"""The layout scorer on predictions made by hand: a perfect one scores 1, a box moved off its block fails
IoU, a wrong label counts only label-agnostic, missing and extra blocks lower recall and precision,
text-in-box is the CER of each matched block's text; and a layout item's reference file is checked."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from docvl.eval.layout import LayoutReference, RefBlock, parse_reference, score_page
from docvl.eval.manifest import Item, ManifestError, load_set
from docvl.eval.runner import Outcome
from docvl.eval.scoring import score
from docvl.jobs.views import PageResult
from docvl.layout import Block, Label, Page
from docvl.layout.checks import iou
from docvl.layout.document import Rect
from docvl.tasks import TaskKind

WIDTH, HEIGHT = 600.0, 800.0
REFERENCE = LayoutReference(
    WIDTH,
    HEIGHT,
    (
        RefBlock(Label.TITLE, (50, 50, 350, 90), "# Annual report"),
        RefBlock(Label.TEXT, (50, 100, 550, 200), "Revenue grew in every region."),
        RefBlock(Label.TABLE, (50, 220, 400, 320), "| Region | Total |\n|---|---|\n| North | 12 |"),
        RefBlock(Label.FIGURE, (50, 340, 300, 500), ""),
    ),
)


def _page(blocks: Sequence[tuple[Label, Rect | None, str]], *, pixels: bool = False) -> Page:
    """A predicted page; with `pixels`, an image page (no points) rendered at twice the size."""
    made = []
    for order, (label, box, text) in enumerate(blocks, 1):
        px = None if box is None else (box[0] * 2, box[1] * 2, box[2] * 2, box[3] * 2)
        pt = None if pixels else box
        made.append(
            Block(
                f"p1-b{order}",
                1,
                order,
                label,
                label.value,
                px,
                pt,
                () if px is None else (px,),
                () if pt is None else (pt,),
                text,
            )
        )
    width_pt, height_pt = (None, None) if pixels else (WIDTH, HEIGHT)
    return Page(1, int(WIDTH * 2), int(HEIGHT * 2), width_pt, height_pt, tuple(made))


PERFECT = [(b.label, b.box, b.text) for b in REFERENCE.blocks]


@pytest.mark.parametrize("pixels", [False, True])
def test_a_perfect_prediction_scores_one(pixels: bool) -> None:
    assert score_page(_page(PERFECT, pixels=pixels), REFERENCE) == {
        "mean_iou": pytest.approx(1.0),
        "precision": 1.0,
        "recall": 1.0,
        "f1": 1.0,
        "label_precision": 1.0,
        "label_recall": 1.0,
        "label_f1": 1.0,
        "text_in_box_cer": 0.0,
    }


def test_a_shifted_box_fails_iou() -> None:
    shifted = list(PERFECT)
    shifted[1] = (Label.TEXT, (50, 160, 550, 260), shifted[1][2])  # down by 60 of its 100: IoU 0.25
    assert iou((50, 100, 550, 200), (50, 160, 550, 260)) == pytest.approx(0.25)
    scores = score_page(_page(shifted), REFERENCE)
    assert (scores["precision"], scores["recall"]) == (0.75, 0.75)
    assert scores["f1"] == pytest.approx(0.75)
    slightly = list(PERFECT)
    slightly[1] = (Label.TEXT, (50, 110, 550, 210), slightly[1][2])  # IoU 90/110: still a match
    scores = score_page(_page(slightly), REFERENCE)
    assert scores["f1"] == 1.0
    assert scores["mean_iou"] == pytest.approx((3 + 90 / 110) / 4)


def test_a_wrong_label_counts_only_label_agnostic() -> None:
    relabelled = list(PERFECT)
    relabelled[0] = (Label.TEXT, relabelled[0][1], relabelled[0][2])  # the title called text
    scores = score_page(_page(relabelled), REFERENCE)
    assert (scores["precision"], scores["recall"], scores["f1"]) == (1.0, 1.0, 1.0)
    assert (scores["label_precision"], scores["label_recall"]) == (0.75, 0.75)
    assert scores["label_f1"] == pytest.approx(0.75)


def test_missing_extra_and_unlocated_blocks() -> None:
    missing = score_page(_page(PERFECT[:2]), REFERENCE)
    assert (missing["precision"], missing["recall"]) == (1.0, 0.5)
    extra = [*PERFECT, (Label.FOOTER, (50, 760, 550, 780), "Page 1"), (Label.TEXT, None, "floating")]
    scored = score_page(_page(extra), REFERENCE)
    assert (scored["precision"], scored["recall"]) == (4 / 6, 1.0)
    nothing = score_page(None, REFERENCE)  # the item failed: no document
    assert (nothing["precision"], nothing["recall"], nothing["f1"]) == (0.0, 0.0, 0.0)
    assert (nothing["mean_iou"], nothing["text_in_box_cer"]) == (None, None)


def test_text_in_box_is_the_cer_of_matched_blocks_against_their_reference_text() -> None:
    misread = list(PERFECT)
    misread[1] = (Label.TEXT, misread[1][1], "Revenue grew in evry regoin.")  # 3 edits of 29 characters
    scores = score_page(_page(misread), REFERENCE)
    title, text, table = (
        len(b) for b in ("Annual report", "Revenue grew in every region.", "Region Total North 12")
    )
    assert scores["text_in_box_cer"] == pytest.approx(3 / (title + text + table))
    # Markdown is compared as text: a table written as HTML reads the same
    html = list(PERFECT)
    html[2] = (
        Label.TABLE,
        html[2][1],
        "<table><tr><th>Region</th><th>Total</th></tr><tr><td>North</td><td>12</td></tr></table>",
    )
    assert score_page(_page(html), REFERENCE)["text_in_box_cer"] == 0.0


def test_the_item_scores_through_score_with_its_reference() -> None:
    item = Item("l1", "doc.pdf", TaskKind.LAYOUT, reference="layout/doc.json", layout=REFERENCE)
    result = PageResult(page=1, task=TaskKind.LAYOUT, text="<|ref|>title<|/ref|>...", valid=True)
    assert score(Outcome(item, job_id="j", page=result, layout=_page(PERFECT)))["f1"] == 1.0
    assert score(Outcome(item, job_id="j"))["recall"] == 0.0


def _write(directory: Path, reference: Any) -> Path:
    (directory / "layout").mkdir(parents=True)
    (directory / "doc.pdf").write_bytes(b"%PDF-1.7\n")
    (directory / "layout" / "doc.json").write_text(json.dumps(reference))
    line = {"id": "l1", "file": "doc.pdf", "task": "layout", "reference": "layout/doc.json"}
    (directory / "manifest.jsonl").write_text(json.dumps(line) + "\n")
    return directory


def test_a_layout_items_reference_file_is_read_and_checked(tmp_path: Path) -> None:
    good = {
        "width_pt": 600,
        "height_pt": 800,
        "blocks": [{"label": "title", "box_pt": [1, 2, 3, 4], "text": "T"}],
    }
    (item,) = load_set(_write(tmp_path / "good", good)).items
    assert item.layout == LayoutReference(600.0, 800.0, (RefBlock(Label.TITLE, (1.0, 2.0, 3.0, 4.0), "T"),))
    bad = {
        "width_pt": 0,
        "height_pt": 800,
        "blocks": [{"label": "headline", "box_pt": [1, 2, 3, 4]}, {"label": "text", "box_pt": [5, 2, 3, 4]}],
    }
    with pytest.raises(ManifestError) as raised:
        load_set(_write(tmp_path / "bad", bad))
    assert raised.value.problems == [
        "line 1: reference: layout/doc.json: width_pt: must be a positive number (the page's size: width_pt "
        "and height_pt for a PDF page, width_px and height_px for an image)",
        "line 1: reference: layout/doc.json: blocks[0].label: must be one of "
        + ", ".join(label.value for label in Label),
        "line 1: reference: layout/doc.json: blocks[1].box_pt: must be [x0, y0, x1, y1] with x0 <= x1 "
        "and y0 <= y1",
    ]
    assert parse_reference([]) == (None, ["must be a JSON object"])

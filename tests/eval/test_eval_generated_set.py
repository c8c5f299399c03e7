"""The generated set shipped in sets/generated: it loads, its PDFs carry their reference text, its layout
references are where the PDF holds that text, the harness scores its references perfectly and perturbed
answers strictly lower, and the script makes it."""

from __future__ import annotations

import random
import re
from pathlib import Path

import pypdfium2 as pdfium
import pytest
from PIL import Image

from docvl.eval.layout import LayoutReference
from docvl.eval.manifest import Item, load_set
from docvl.eval.metrics import page_cer
from docvl.eval.runner import Outcome
from docvl.eval.scoring import score
from docvl.jobs.views import PageResult
from docvl.layout import Block, Label, Page, pdf_words
from docvl.tasks import TaskKind
from tests.support.helpers import ROOT

SET = ROOT / "sets" / "generated"
LOWER_IS_BETTER = {"cer", "edit_distance"}


def _outcome(item: Item, text: str, layout: Page | None = None) -> Outcome:
    page = PageResult(page=item.page, task=item.task, text=text, valid=True)
    return Outcome(item, job_id="-", page=page, layout=layout)


def _as_page(reference: LayoutReference, shift: float = 0.0, label: Label | None = None) -> Page:
    """The reference as a predicted page (PDF points), its boxes moved down by `shift` of their height
    and, given `label`, every block labelled so."""
    blocks = []
    for order, ref in enumerate(reference.blocks, 1):
        x0, y0, x1, y1 = ref.box
        dy = shift * (y1 - y0)
        box = (x0, y0 + dy, x1, y1 + dy)
        scale = 2.0  # the page image at 144 dpi
        px = (x0 * scale, (y0 + dy) * scale, x1 * scale, (y1 + dy) * scale)
        blocks.append(
            Block(f"p1-b{order}", 1, order, label or ref.label, None, px, box, (px,), (box,), ref.text)
        )
    width_px, height_px = round(reference.width * 2), round(reference.height * 2)
    return Page(1, width_px, height_px, reference.width, reference.height, tuple(blocks))


def _reference(item: Item) -> str:
    return item.answers[0] if item.task is TaskKind.QA else item.reference or ""


def _shuffled(text: str, seed: int) -> str:
    words = text.split()
    random.Random(seed).shuffle(words)
    return " ".join(words) if words != text.split() else " ".join(reversed(words))


def _wrong_numbers(text: str) -> str:
    return re.sub(r"\d+", lambda m: str(int(m.group()) * 3 + 7), text)


def perturbed(item: Item, seed: int) -> list[str]:
    reference = _reference(item)
    if item.task is TaskKind.OCR:
        return [_shuffled(reference, seed), reference[: len(reference) // 2]]
    if item.task is TaskKind.CHART2CODE:
        return [_wrong_numbers(reference), reference[: len(reference) // 3]]  # wrong values, broken code
    if item.task is TaskKind.WEB2HTML:
        return [reference[: len(reference) // 2]]  # truncated
    if any(c.isdigit() for c in reference):
        return [_wrong_numbers(reference)]
    return [reference[::-1] + "x"]


def test_the_set_loads_with_every_task() -> None:
    labelled = load_set(SET)
    tasks = [item.task for item in labelled.items]
    assert len(tasks) >= 40
    assert {task: tasks.count(task) for task in TaskKind} == {
        TaskKind.OCR: 9,
        TaskKind.CHART2CODE: 12,
        TaskKind.WEB2HTML: 6,
        TaskKind.QA: 21,
        TaskKind.LAYOUT: 9,
    }
    total = sum(path.stat().st_size for path in SET.rglob("*") if path.is_file())
    assert total < 5 * 1024 * 1024
    for item in labelled.items:
        if item.task is TaskKind.CHART2CODE:
            assert (SET / item.file).with_suffix(".py").read_text() == item.reference
            with Image.open(SET / item.file) as image:
                assert image.size == (640, 480)


def test_each_pdf_page_carries_its_reference_text() -> None:
    for item in load_set(SET).items:
        if item.task is TaskKind.OCR:
            document = pdfium.PdfDocument(SET / item.file)
            try:
                assert len(document) == 1
                text_layer = document[item.page - 1].get_textpage().get_text_range()
            finally:
                document.close()
            assert page_cer(text_layer, item.reference or "") < 0.01, item.id


def test_each_layout_reference_matches_its_pdf() -> None:
    """Every reference box is on the page, and each text block's own text is what the PDF's text layer
    holds inside its box (the words whose centre is there): the boxes are where Chromium drew it."""
    labels: set[Label] = set()
    for item in load_set(SET).items:
        if item.task is not TaskKind.LAYOUT:
            continue
        reference = item.layout
        assert reference is not None, item.id
        words = pdf_words(SET / item.file, item.page - 1)
        with pdfium.PdfDocument(SET / item.file) as document:
            assert document[item.page - 1].get_size() == pytest.approx(
                (reference.width, reference.height), abs=0.01
            )
        assert reference.blocks, item.id
        for block in reference.blocks:
            labels.add(block.label)
            x0, y0, x1, y1 = block.box
            assert 0 <= x0 < x1 <= reference.width, (item.id, block)
            assert 0 <= y0 < y1 <= reference.height, (item.id, block)
            inside = [w.text for w in words if x0 <= w.centre[0] <= x1 and y0 <= w.centre[1] <= y1]
            if block.text:
                assert page_cer(" ".join(inside), block.text) < 0.02, (item.id, block.label, inside)
            else:  # a figure: drawn, no text
                assert block.label is Label.FIGURE, item.id
                assert not inside, (item.id, inside)
    expected = {Label.TITLE, Label.SECTION_HEADER, Label.TEXT, Label.TABLE, Label.FIGURE, Label.CAPTION}
    assert labels == expected


def test_layout_references_score_perfectly_and_moved_or_mislabelled_blocks_lower() -> None:
    for item in load_set(SET).items:
        if item.task is not TaskKind.LAYOUT:
            continue
        assert item.layout is not None
        perfect = score(_outcome(item, "-", _as_page(item.layout)))
        assert perfect == {
            "mean_iou": pytest.approx(1.0),
            "precision": 1.0,
            "recall": 1.0,
            "f1": 1.0,
            "label_precision": 1.0,
            "label_recall": 1.0,
            "label_f1": 1.0,
            "text_in_box_cer": 0.0,
        }, item.id
        moved = score(_outcome(item, "-", _as_page(item.layout, shift=0.6)))  # IoU 0.25 each
        assert (moved["f1"], moved["label_f1"], moved["mean_iou"], moved["text_in_box_cer"]) == (
            0,
            0,
            None,
            None,
        )
        relabelled = score(_outcome(item, "-", _as_page(item.layout, label=Label.OTHER)))
        assert (relabelled["f1"], relabelled["label_f1"]) == (1.0, 0.0)
        assert score(_outcome(item, "-", None))["recall"] == 0.0  # no document: nothing predicted


def test_references_score_perfectly_and_perturbed_answers_strictly_lower() -> None:
    for index, item in enumerate(load_set(SET).items):
        if item.task is TaskKind.LAYOUT:
            continue
        perfect = score(_outcome(item, _reference(item)))
        measured = {name: value for name, value in perfect.items() if name != "valid" and value is not None}
        assert measured, item.id
        for name, value in measured.items():
            assert value == (0.0 if name in LOWER_IS_BETTER else 1.0), (item.id, name, value)
        for text in perturbed(item, index):
            worse = score(_outcome(item, text))
            for name, value in measured.items():
                lower = worse[name]
                assert lower is not None, (item.id, name)
                if name in LOWER_IS_BETTER:
                    assert lower > value, (item.id, name, text[:80])
                else:
                    assert lower < value, (item.id, name, text[:80])


@pytest.mark.slow
def test_the_script_makes_the_committed_set(tmp_path: Path) -> None:
    from scripts.make_eval_set import make

    made = make(tmp_path / "set")
    assert tuple(made) == load_set(SET).items
    assert (tmp_path / "set" / "manifest.jsonl").read_text() == (SET / "manifest.jsonl").read_text()
    for path in SET.rglob("*"):
        if path.suffix in (".py", ".html", ".md", ".json"):
            assert (tmp_path / "set" / path.relative_to(SET)).read_text() == path.read_text(), path
        elif path.suffix == ".png":
            with Image.open(path) as ours, Image.open(tmp_path / "set" / path.relative_to(SET)) as again:
                assert ours.size == again.size, path

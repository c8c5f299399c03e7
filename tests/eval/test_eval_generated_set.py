"""The generated set shipped in sets/generated: it loads, its PDFs carry their reference text, the
harness scores its references perfectly and perturbed answers strictly lower, and the script makes it."""

from __future__ import annotations

import random
import re
from pathlib import Path

import pypdfium2 as pdfium
import pytest
from PIL import Image

from docvl.eval.manifest import Item, load_set
from docvl.eval.metrics import page_cer
from docvl.eval.runner import Outcome
from docvl.eval.scoring import score
from docvl.jobs.views import PageResult
from docvl.tasks import TaskKind
from tests.support.helpers import ROOT

SET = ROOT / "sets" / "generated"
LOWER_IS_BETTER = {"cer", "edit_distance"}


def _outcome(item: Item, text: str) -> Outcome:
    return Outcome(item, job_id="-", page=PageResult(page=item.page, task=item.task, text=text, valid=True))


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
        TaskKind.LAYOUT: 0,
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


def test_references_score_perfectly_and_perturbed_answers_strictly_lower() -> None:
    for index, item in enumerate(load_set(SET).items):
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
        if path.suffix in (".py", ".html", ".md"):
            assert (tmp_path / "set" / path.relative_to(SET)).read_text() == path.read_text(), path
        elif path.suffix == ".png":
            with Image.open(path) as ours, Image.open(tmp_path / "set" / path.relative_to(SET)) as again:
                assert ours.size == again.size, path

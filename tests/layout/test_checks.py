"""The checks of a page's blocks: geometry, and each text block against the PDF text layer inside its box,
on real PDFs of the shared corpus (tests/corpus/pdf-samples, a copy of ../shared/corpus, CC-BY-SA-4.0)."""

from __future__ import annotations

import math
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pypdfium2 as pdfium
import pytest

from docvl.layout.checks import Thresholds, Word, check_page, iou, pdf_words, text_layer_words
from docvl.layout.document import Page, page_from_grounded
from docvl.verify.report import Verdict
from tests.layout.samples import PAPER, SLOPPY, sample_page
from tests.support.helpers import ROOT

CORPUS = ROOT / "tests" / "corpus" / "pdf-samples"
TRIVIAL = CORPUS / "001-trivial" / "minimal-document.pdf"  # one page of Lorem ipsum, pdfTeX
COLUMNS = CORPUS / "026-latex-multicolumn" / "multicolumn.pdf"  # two columns, pdfTeX
ROTATED = CORPUS / "015-arabic" / "habibi-rotated.pdf"  # four pages: /Rotate 90, 180, 270 and 0
SCANNED = CORPUS / "019-grayscale-image" / "grayscale-image.pdf"  # an image, no text layer


def lines(words: list[Word]) -> list[list[Word]]:
    """The words in lines: a new line where a word's middle is outside the line's first word's height."""
    grouped: list[list[Word]] = []
    for word in words:
        first = grouped[-1][0] if grouped else None
        if first is not None and first.box[1] <= word.centre[1] <= first.box[3]:
            grouped[-1].append(word)
        else:
            grouped.append([word])
    return grouped


def grounded_from_lines(grouped: list[list[Word]], width: float, height: float, shift_lines: int = 0) -> str:
    """The grounded output a perfect model would give, a text block per line (boxes rounded outwards to
    the 0-999 grid); `shift_lines` moves every box that many lines down, keeping the text."""
    blocks = []
    for index, line in enumerate(grouped):
        target = grouped[min(index + shift_lines, len(grouped) - 1)]
        x0, y0 = min(w.box[0] for w in target), min(w.box[1] for w in target)
        x1, y1 = max(w.box[2] for w in target), max(w.box[3] for w in target)
        box = [
            math.floor(x0 / width * 999),
            math.floor(y0 / height * 999),
            math.ceil(x1 / width * 999),
            math.ceil(y1 / height * 999),
        ]
        blocks.append(f"<|ref|>text<|/ref|><|det|>[{box}]<|/det|>\n{' '.join(w.text for w in line)}\n\n")
    return "".join(blocks)


def pdf_page(path: Path, index: int, grounded: str) -> tuple[Page, list[Word]]:
    with pdfium.PdfDocument(str(path)) as pdf:
        width, height = pdf[index].get_size()
    words = pdf_words(path, index)
    width_px, height_px = round(width * 110 / 72), round(height * 110 / 72)
    return page_from_grounded(grounded, index + 1, width_px, height_px, width, height), words


@pytest.mark.parametrize(("path", "index"), [(TRIVIAL, 0), (COLUMNS, 0)])
def test_blocks_made_from_the_text_layer_match_it_and_shifted_boxes_do_not(path: Path, index: int) -> None:
    words = pdf_words(path, index)
    assert len(words) > 50
    with pdfium.PdfDocument(str(path)) as pdf:
        width, height = pdf[index].get_size()
    grouped = lines(words)
    page, words = pdf_page(path, index, grounded_from_lines(grouped, width, height))
    verdict = check_page(page, words)
    assert verdict["text_layer_cer"] < 0.01, verdict["text_blocks"]
    assert verdict["text_layer_f1"] > 0.99
    assert verdict["text_layer_coverage"] > 0.99
    assert all(b["cer"] < 0.05 for b in verdict["text_blocks"])
    assert verdict["passed"], verdict

    shifted, _ = pdf_page(path, index, grounded_from_lines(grouped, width, height, shift_lines=1))
    moved = check_page(shifted, words)
    assert moved["text_layer_cer"] > 0.5  # the right text in the wrong place
    assert not moved["passed"]


def test_the_right_boxes_with_the_wrong_text_fail_too() -> None:
    words = pdf_words(TRIVIAL, 0)
    with pdfium.PdfDocument(str(TRIVIAL)) as pdf:
        width, height = pdf[0].get_size()
    grouped = [[Word("Completely different words here", line[0].box), *line[1:2]] for line in lines(words)]
    page, words = pdf_page(TRIVIAL, 0, grounded_from_lines(grouped, width, height))
    assert check_page(page, words)["text_layer_cer"] > 0.5


def test_words_sit_on_the_rendered_ink_whatever_the_page_rotation() -> None:
    with pdfium.PdfDocument(str(ROTATED)) as pdf:
        rotations = []
        for index in range(len(pdf)):
            page = pdf[index]
            rotations.append(page.get_rotation())
            pixels = page.render(scale=2, grayscale=True).to_numpy()
            ink = (pixels if pixels.ndim == 2 else pixels[..., 0]) < 128
            inside = np.zeros_like(ink)
            for word in text_layer_words(page):
                x0, y0, x1, y1 = (int(v * 2) for v in word.box)
                inside[max(0, y0 - 2) : y1 + 3, max(0, x0 - 2) : x1 + 3] = True
            assert ink.sum() > 100
            assert (ink & inside).sum() / ink.sum() > 0.95, f"page {index + 1}, /Rotate {rotations[-1]}"
    assert sorted(rotations) == [0, 90, 180, 270]


def test_words_of_a_page_without_text_and_their_json() -> None:
    assert pdf_words(SCANNED, 0) == []
    words = pdf_words(TRIVIAL.read_bytes(), 0)
    assert words[:2] == [Word.from_json(w.to_json()) for w in words[:2]]
    assert words[0].text == "Lorem"
    x0, y0, x1, y1 = words[0].box
    assert 0 < x0 < x1 < 200
    assert 0 < y0 < y1 < 120


def test_a_page_without_a_text_layer_is_checked_for_geometry_only() -> None:
    page = sample_page(PAPER, 1)
    for words, said in (([], "no text layer"), (None, "not a PDF page")):
        verdict = check_page(page, words)
        assert verdict["text_layer_cer"] is None
        assert verdict["text_layer_f1"] is None
        assert any(said in note for note in verdict["notes"])
        assert verdict["passed"]


def test_a_clean_page_passes_and_its_verdict_reads_as_the_other_checks() -> None:
    page = sample_page(PAPER, 1)
    verdict = check_page(page)
    assert verdict["passed"] is True
    for found in ("unlocated", "outside_page", "degenerate", "duplicates", "overlaps"):
        assert verdict[found] == []
    assert verdict["blocks"] == 12
    assert verdict["thresholds"] == {**Thresholds().__dict__}
    stored = Verdict.model_validate(verdict)  # the shape docvl/verify reports
    assert (stored.passed, stored.repetition, stored.text_layer_cer) == (True, 0.0, None)


def test_degenerate_and_outside_boxes_fail() -> None:
    output = (
        "<|ref|>text<|/ref|><|det|>[[100, 100, 100, 300]]<|/det|>\nzero width\n"
        "<|ref|>text<|/ref|><|det|>[[100, 400, 900, 401]]<|/det|>\none pixel high\n"
        "<|ref|>text<|/ref|><|det|>[[100, 500, 900, 600]]<|/det|>\nfine\n"
    )
    page = page_from_grounded(output, 1, 1000, 1000)
    verdict = check_page(page)
    assert verdict["degenerate"] == ["p1-b1", "p1-b2"]
    assert not verdict["passed"]
    fine = page.blocks[2]
    near = replace(fine, box_px=(-5.0, 0.0, 1005.0, 600.0), boxes_px=((-5.0, 0.0, 1005.0, 600.0),))
    far = replace(fine, id="p1-b4", box_px=(0.0, 0.0, 1020.0, 600.0), boxes_px=((0.0, 0.0, 1020.0, 600.0),))
    verdict = check_page(replace(page, blocks=(near, far)))
    assert verdict["outside_page"] == ["p1-b4"]  # 0.5% past the edge is within the tolerance, 2% is not


def test_duplicates_fail_and_overlaps_are_reported() -> None:
    output = (
        "<|ref|>text<|/ref|><|det|>[[100, 100, 900, 200]]<|/det|>\nThe same **words**.\n"
        "<|ref|>text<|/ref|><|det|>[[102, 101, 900, 200]]<|/det|>\nThe same words.\n"
        "<|ref|>image<|/ref|><|det|>[[100, 300, 900, 600]]<|/det|>\n"
        "<|ref|>image_caption<|/ref|><|det|>[[100, 380, 900, 600]]<|/det|>\nFigure 2\n"
    )
    verdict = check_page(page_from_grounded(output, 1, 1000, 1000))
    assert verdict["duplicates"] == [["p1-b1", "p1-b2"]]
    assert verdict["overlaps"] == [{"blocks": ["p1-b3", "p1-b4"], "iou": pytest.approx(0.7333, abs=1e-3)}]
    assert not verdict["passed"]
    without_duplicate = page_from_grounded(output.split("\n", 2)[2], 1, 1000, 1000)
    assert check_page(without_duplicate)["passed"]  # an overlap alone does not fail a page


def test_too_many_blocks_without_a_box_or_a_loop_fail() -> None:
    sloppy = check_page(sample_page(SLOPPY, 1))
    assert sloppy["unlocated"] == ["p1-b1", "p1-b5"]
    assert not sloppy["passed"]
    loop = "<|ref|>text<|/ref|><|det|>[[1, 1, 900, 900]]<|/det|>\n" + "the same again " * 200
    verdict = check_page(page_from_grounded(loop, 1, 1000, 1000))
    assert verdict["repetition"] > 0.9
    assert not verdict["passed"]


def test_iou() -> None:
    assert iou((0, 0, 10, 10), (0, 0, 10, 10)) == 1.0
    assert iou((0, 0, 10, 10), (10, 0, 20, 10)) == 0.0
    assert iou((0, 0, 10, 10), (5, 0, 15, 10)) == pytest.approx(1 / 3)
    assert iou((0, 0, 0, 10), (0, 0, 0, 10)) == 0.0


def test_looping_block_text_is_checked_in_bounded_time() -> None:
    # docvl.verify.ocr.plain_text rescans the rest of the text for every "[" or "<" never closed, and
    # every long run of whitespace: the checks tame such runs first
    words = pdf_words(TRIVIAL, 0)
    loops = [
        "[" * 200_000,
        "<" * 50_000,
        "](" * 50_000,
        " " * 50_000 + "x",
        "\n" * 50_000 + "x",
        "[a" * 50_000,
    ]
    hostile = "".join(f"<|ref|>text<|/ref|><|det|>[[0, 0, 999, 999]]<|/det|>\n{loop}\n" for loop in loops)
    page = page_from_grounded(hostile, 1, 100, 100, 612.0, 792.0)
    started = time.perf_counter()
    verdict = check_page(page, words)
    assert time.perf_counter() - started < 3
    assert verdict["text_layer_cer"] is not None
    assert not verdict["passed"]
    assert "p1-b1: only its first 20000 characters compared" in verdict["notes"]
    assert any("blocks from p1-b4 on not compared" in note for note in verdict["notes"])

"""The grounded-output parser on realistic pages and on each slip it must survive; and the label map."""

from __future__ import annotations

import time

import pytest

from docvl.layout.grounding import MAX_BOXES, MAX_INPUT_CHARS, MAX_NOTES, RawBlock, parse_grounded
from docvl.layout.labels import Label, map_label, normalise_label
from tests.layout.samples import PAPER, REPORT, SLOPPY, TRUNCATED


def test_a_paper_page_is_read_block_by_block_in_output_order() -> None:
    parsed = parse_grounded(PAPER)
    assert parsed.notes == ()
    labels = [b.source_label for b in parsed.blocks]
    assert labels == [
        "title",
        "text",
        "sub_title",
        "text",
        "sub_title",
        "text",
        "equation",
        "text",
        "image",
        "image_caption",
        "footnote",
        "page_number",
    ]
    assert parsed.blocks[0] == RawBlock(
        "title", ((118, 62, 881, 98),), "# Sparse Mixtures of Experts for Document Parsing"
    )
    assert parsed.blocks[1].text == "Ada Lovelace, Alan Turing\nAnalytical Engines Ltd."
    assert parsed.blocks[6].text.startswith("\\[\n\\mathcal{L}")
    assert parsed.blocks[8] == RawBlock("image", ((515, 410, 939, 640),), "")  # a figure has no text
    assert parsed.blocks[-1].text == "1"  # the end-of-sentence token is gone


def test_html_tables_and_lists_are_kept_as_written() -> None:
    blocks = parse_grounded(REPORT).blocks
    table = next(b for b in blocks if b.source_label == "table")
    assert table.text.startswith("<table><tr><td>Region</td>")
    assert table.text.endswith("</table>")
    assert next(b for b in blocks if b.source_label == "list").text.count("\n- ") == 2


def test_output_cut_off_inside_a_box_keeps_every_complete_block() -> None:
    parsed = parse_grounded(TRUNCATED)
    assert [b.text for b in parsed.blocks] == ["# Minutes of the Board", "The board met on 3 March."]
    assert any("ends inside <|det|>" in n for n in parsed.notes)
    assert any("dropped" in n for n in parsed.notes)


def test_sloppy_output_is_repaired_where_it_can_be_and_every_change_noted() -> None:
    parsed = parse_grounded(SLOPPY)
    blocks = parsed.blocks
    assert blocks[0] == RawBlock(None, (), "Scanned by OfficeScan")  # text before the first block
    assert blocks[1] == RawBlock("title", ((100, 40, 900, 80),), "# Notice")  # <|/ref|> forgotten
    assert blocks[2].boxes == ((100, 100, 999, 180),)  # 1012 clamped
    assert blocks[3] == RawBlock("text", ((100, 200, 900, 300),), "Corners swapped.")  # swapped, stray tag
    assert blocks[4] == RawBlock("text", (), "No box here.")
    assert blocks[5].text == '<img src=x onerror="alert(1)"><script>x()</script>'  # kept as text
    notes = "\n".join(parsed.notes)
    for said in ("before the first block", "not closed by <|/ref|>", "clamped", "swapped", "3 values"):
        assert said in notes
    assert "stray grounding tags" in notes
    assert "no <|det|> box" in notes


@pytest.mark.parametrize(
    ("det", "boxes", "said"),
    [
        ("[[1, 2, 3, 4]]", ((1, 2, 3, 4),), None),
        ("[[[1, 2, 3, 4]]]", ((1, 2, 3, 4),), None),  # one more level of brackets
        ("[[1, 2, 3, 4], [5, 6, 7, 8]]", ((1, 2, 3, 4), (5, 6, 7, 8)), None),
        ("1, 2, 3, 4", ((1, 2, 3, 4),), None),  # no brackets at all
        ("[[1.4, 2.6, 3, 4]]", ((1, 3, 3, 4),), None),  # decimals rounded
        ("[[-20, 5, 40, 50]]", ((0, 5, 40, 50),), "clamped"),
        ("[[1100, 5, 1200, 50]]", (), "lies outside"),
        ("[[40, 50, 10, 20]]", ((10, 20, 40, 50),), "swapped"),
        ("[[1, 2, 3]]", (), "3 values"),
        ("[[1, 2, 3, 4, 5]]", (), "5 values"),
        ("[[a, 2, 3, 4]]", (), "not a number"),
        ("[[1e3, 2, 3, 4]]", (), "not a number"),
        ("[[" + "9" * 40 + ", 2, 3, 4]]", (), "not a number"),
        ("[[]]", (), "no usable box"),
        ("[[5, 5, 5, 5]]", ((5, 5, 5, 5),), None),  # degenerate, but where the model said: checks flag it
    ],
)
def test_boxes(det: str, boxes: tuple[tuple[int, int, int, int], ...], said: str | None) -> None:
    parsed = parse_grounded(f"<|ref|>text<|/ref|><|det|>{det}<|/det|>\nHello")
    assert parsed.blocks == (RawBlock("text", boxes, "Hello"),)
    if said is None:
        assert parsed.notes == ()
    else:
        assert any(said in note for note in parsed.notes), parsed.notes


def test_unclosed_det_ends_at_its_brackets_and_the_text_after_is_kept() -> None:
    parsed = parse_grounded("<|ref|>text<|/ref|><|det|>[[1, 2, 30, 40]]\nHello")
    assert parsed.blocks == (RawBlock("text", ((1, 2, 30, 40),), "Hello"),)
    assert "not closed by <|/det|>" in parsed.notes[0]


def test_output_cut_inside_a_label_drops_that_block_only() -> None:
    parsed = parse_grounded("<|ref|>text<|/ref|><|det|>[[1, 2, 3, 4]]<|/det|>\nHi\n<|ref|>tab")
    assert parsed.blocks == (RawBlock("text", ((1, 2, 3, 4),), "Hi"),)
    assert "ends inside its label ('tab')" in parsed.notes[0]


def test_nested_refs_keep_the_innermost_complete_block() -> None:
    parsed = parse_grounded("<|ref|>text<|ref|>title<|/ref|><|det|>[[1, 2, 3, 4]]<|/det|>\n# T")
    assert parsed.blocks == (RawBlock("title", ((1, 2, 3, 4),), "# T"),)
    assert len(parsed.notes) == 1


def test_output_without_grounding_is_one_text_block_without_a_box() -> None:
    parsed = parse_grounded("# Title\n\nJust Markdown, no boxes.")
    assert parsed.blocks == (RawBlock(None, (), "# Title\n\nJust Markdown, no boxes."),)
    assert "no grounded block" in parsed.notes[0]


@pytest.mark.parametrize(
    "output", ["", "   \n", "<|ref|>", "<|/ref|><|det|><|/det|>", "<｜end▁of▁sentence｜>"]
)
def test_empty_or_tag_only_outputs_give_no_block(output: str) -> None:
    assert parse_grounded(output).blocks == ()


def test_not_text_is_noted_not_raised() -> None:
    parsed = parse_grounded(None)  # type: ignore[arg-type]
    assert parsed.blocks == ()
    assert "not text" in parsed.notes[0]


def test_nul_and_lone_surrogates_are_removed() -> None:
    parsed = parse_grounded("<|ref|>text<|/ref|><|det|>[[1, 2, 3, 4]]<|/det|>\nA\x00B\ud800C")
    assert parsed.blocks[0].text == "ABC"
    assert len(parsed.notes) == 2


def test_a_long_label_is_cut() -> None:
    parsed = parse_grounded(f"<|ref|>{'x' * 500}<|/ref|><|det|>[[1, 2, 3, 4]]<|/det|>\nHi")
    assert parsed.blocks[0].source_label == "x" * 64


def test_too_many_boxes_and_notes_are_capped() -> None:
    det = ", ".join(f"[{i % 900}, 1, {i % 900 + 5}, 9]" for i in range(200))
    parsed = parse_grounded(f"<|ref|>text<|/ref|><|det|>[{det}]<|/det|>\nHi")
    assert len(parsed.blocks[0].boxes) == MAX_BOXES
    looping = "<|ref|>text<|/ref|><|det|>[[1, 2]]<|/det|>\n" * 500
    notes = parse_grounded(looping).notes
    assert len(notes) == MAX_NOTES + 1
    assert notes[-1].startswith("and ")
    assert notes[-1].endswith(" more notes")


def test_huge_and_hostile_outputs_are_read_in_linear_time() -> None:
    started = time.perf_counter()
    for hostile in (
        "<|ref|>" * 300_000,
        "<|det|>" * 300_000,
        "[" * 1_000_000,
        "<|ref|>text<|/ref|><|det|>" + "[" * 500_000,
        "<|ref|>text<|/ref|><|det|>[[1,2,3,4]]<|/det|>" + "<|det|>" * 200_000,
        "<|ref|>text<|/ref|><|det|>[[1,2,3,4]]<|/det|>x" * 40_000,
    ):
        parse_grounded(hostile)
    parsed = parse_grounded("x" * (MAX_INPUT_CHARS + 10))
    assert len(parsed.blocks[0].text) == MAX_INPUT_CHARS
    assert "only the first" in parsed.notes[0]
    assert time.perf_counter() - started < 5


@pytest.mark.parametrize(
    ("source", "label"),
    [
        ("title", Label.TITLE),
        ("sub_title", Label.SECTION_HEADER),
        ("Sub-Title", Label.SECTION_HEADER),
        ("paragraph_title", Label.SECTION_HEADER),
        ("text", Label.TEXT),
        (None, Label.TEXT),
        ("list", Label.LIST),
        ("table", Label.TABLE),
        ("image", Label.FIGURE),
        ("figure", Label.FIGURE),
        ("equation", Label.FORMULA),
        ("formula", Label.FORMULA),
        ("table_caption", Label.CAPTION),
        ("image_caption", Label.CAPTION),
        ("figure_caption", Label.CAPTION),
        ("table_footnote", Label.FOOTNOTE),
        ("footnote", Label.FOOTNOTE),
        ("header", Label.HEADER),
        ("page_header", Label.HEADER),
        ("footer", Label.FOOTER),
        ("page_number", Label.PAGE_NUMBER),
        ("something new", Label.OTHER),
        ("", Label.OTHER),
    ],
)
def test_labels_map_onto_the_vocabulary(source: str | None, label: Label) -> None:
    assert map_label(source) is label


def test_label_normalisation() -> None:
    assert normalise_label("  Page - Header ") == "page_header"

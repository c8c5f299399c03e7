"""RAG chunks: block boundaries, heading paths, the size limit, tables split by rows, page anchors."""

from __future__ import annotations

import json

import pytest

from docvl.layout.chunks import chunk_document, split_block, to_jsonl
from docvl.layout.document import Document, page_from_grounded
from tests.layout.samples import PAPER, REPORT, sample_page

TITLE = "Sparse Mixtures of Experts for Document Parsing"


def document() -> Document:
    return Document("job-7", (sample_page(PAPER, 1), sample_page(REPORT, 2)))


def grounded(*blocks: tuple[str, str]) -> Document:
    output = "".join(
        f"<|ref|>{label}<|/ref|><|det|>[[10, {10 + 20 * i}, 900, {25 + 20 * i}]]<|/det|>\n{text}\n\n"
        for i, (label, text) in enumerate(blocks)
    )
    return Document("j", (page_from_grounded(output, 1, 1000, 1000, 500, 500),))


def test_every_heading_starts_a_chunk_and_chunks_carry_their_heading_path() -> None:
    chunks = chunk_document(document())
    assert [c.heading_path for c in chunks] == [
        (TITLE,),
        (TITLE, "Abstract"),
        (TITLE, "1 Introduction"),
        (TITLE, "3. Results by region"),
    ]
    assert chunks[0].text == f"# {TITLE}\n\nAda Lovelace, Alan Turing\nAnalytical Engines Ltd."
    assert chunks[1].text.startswith("## Abstract\n\nWe study")
    assert [c.pages for c in chunks] == [(1,), (1,), (1,), (2,)]
    assert [c.id for c in chunks] == ["c1", "c2", "c3", "c4"]
    assert all(c.job_id == "job-7" for c in chunks)


def test_furniture_and_figures_without_a_crop_stay_out_of_the_text() -> None:
    chunks = chunk_document(document())
    text = "\n".join(c.text for c in chunks)
    assert "Confidential" not in text
    assert "ACME Corp." not in text
    assert "<!-- figure" not in text
    assert "p1-b9" not in {i for c in chunks for i in c.block_ids}  # the figure has no text
    assert "p1-b12" not in {i for c in chunks for i in c.block_ids}  # the page number
    stored = document().with_figure_keys({"p1-b9": "jobs/job-7/figures/p1-b9.png"})
    assert "![Figure](jobs/job-7/figures/p1-b9.png)" in "\n".join(c.text for c in chunk_document(stored))


def test_boxes_anchor_each_block_of_a_chunk() -> None:
    intro = chunk_document(document())[2]
    assert intro.block_ids == ("p1-b5", "p1-b6", "p1-b7", "p1-b8", "p1-b10", "p1-b11")
    assert [b.block_id for b in intro.boxes] == list(intro.block_ids)
    blocks = {b.id: b for b in document().blocks()}
    for box in intro.boxes:
        assert box.page == 1
        assert (box.box_px, box.box_pt) == (blocks[box.block_id].box_px, blocks[box.block_id].box_pt)


def test_a_title_right_above_a_section_stays_with_it() -> None:
    chunks = chunk_document(grounded(("title", "Handbook"), ("sub_title", "Safety"), ("text", "Wear boots.")))
    assert len(chunks) == 1
    assert chunks[0].heading_path == ("Handbook", "Safety")
    assert chunks[0].text == "# Handbook\n\n## Safety\n\nWear boots."


def test_a_section_ends_the_previous_one_but_a_heading_right_below_another_nests() -> None:
    doc = grounded(
        ("title", "T"),
        ("sub_title", "A"),
        ("text", "a"),
        ("sub_title", "B"),
        ("sub_title", "B.1"),  # nothing between: a sub-section, though labelled alike
        ("text", "b"),
        ("sub_title", "C"),
        ("text", "c"),
        ("title", "U"),
        ("text", "u"),
    )
    chunks = chunk_document(doc)
    assert [(c.heading_path, c.text) for c in chunks] == [
        (("T", "A"), "# T\n\n## A\n\na"),
        (("T", "B", "B.1"), "## B\n\n## B.1\n\nb"),
        (("T", "C"), "## C\n\nc"),
        (("U",), "# U\n\nu"),
    ]


def test_blocks_are_packed_up_to_the_limit_and_never_split_when_they_fit() -> None:
    sentences = [f"Sentence number {i} is here." for i in range(12)]
    doc = grounded(*[("text", s) for s in sentences])
    chunks = chunk_document(doc, max_chars=100)
    assert all(len(c.text) <= 100 for c in chunks)
    assert [s for c in chunks for s in c.text.split("\n\n")] == sentences
    assert all(len(c.block_ids) == len(c.text.split("\n\n")) for c in chunks)


def test_a_block_over_the_limit_is_split_at_paragraphs_then_sentences() -> None:
    long = "First paragraph. It has two sentences.\n\n" + " ".join(f"Word{i}." for i in range(60))
    doc = grounded(("sub_title", "Long"), ("text", long))
    chunks = chunk_document(doc, max_chars=80)
    assert chunks[0].text == "## Long"
    pieces = chunks[1:]
    assert pieces[0].text == "First paragraph. It has two sentences."
    assert all(len(c.text) <= 80 and c.block_ids == ("p1-b2",) for c in pieces)
    assert all(c.heading_path == ("Long",) for c in pieces)
    assert "".join(c.text for c in pieces).replace(" ", "") == long.replace(" ", "").replace("\n", "")


def test_a_run_without_spaces_is_cut_anywhere() -> None:
    assert split_block("x" * 120, 50) == ["x" * 50, "x" * 50, "x" * 20]


def test_a_markdown_table_is_split_between_rows_repeating_its_header() -> None:
    header = "| Region | 2023 | 2024 |\n|---|---:|---:|"
    rows = [f"| Region {i} | {i}.0 | {i}.5 |" for i in range(30)]
    pieces = split_block(header + "\n" + "\n".join(rows), 200, table=True)
    assert len(pieces) > 1
    assert all(p.startswith(header + "\n") and len(p) <= 200 for p in pieces)
    assert [r for p in pieces for r in p.splitlines()[2:]] == rows


def test_an_html_table_is_split_between_rows_repeating_its_first_row() -> None:
    first = "<tr><td>Region</td><td>2024</td></tr>"
    rows = [f"<tr><td>R{i}</td><td>{i}</td></tr>" for i in range(30)]
    table = "<table>" + first + "".join(rows) + "</table>"
    pieces = split_block(table, 200, table=True)
    assert len(pieces) > 1
    assert all(p.startswith("<table>" + first) and p.endswith("</table>") and len(p) <= 200 for p in pieces)
    assert "".join(p.removeprefix("<table>" + first).removesuffix("</table>") for p in pieces) == "".join(
        rows
    )


def test_a_table_with_text_outside_its_rows_is_split_as_text() -> None:
    table = "<table><caption>Revenue</caption>" + "<tr><td>a</td></tr>" * 40 + "</table>"
    pieces = split_block(table, 100, table=True)
    assert all(len(p) <= 100 for p in pieces)
    assert "".join(pieces) == table


def test_chunks_jsonl_is_one_chunk_per_line() -> None:
    chunks = chunk_document(document())
    lines = to_jsonl(chunks).splitlines()
    assert len(lines) == len(chunks)
    first = json.loads(lines[0])
    assert set(first) == {"id", "job_id", "text", "heading_path", "pages", "boxes", "block_ids"}
    assert first["boxes"][0] == {
        "page": 1,
        "block_id": "p1-b1",
        "box_px": list(chunks[0].boxes[0].box_px),
        "box_pt": list(chunks[0].boxes[0].box_pt or ()),
    }
    assert to_jsonl([]) == ""


def test_a_limit_too_small_is_refused() -> None:
    with pytest.raises(ValueError, match="at least 50"):
        chunk_document(document(), max_chars=10)

"""Properties over generated outputs (hypothesis): the parser never raises and its boxes are normalised
and ordered, well-formed output reads back exactly, every document validates against the schema, chunks
keep to their limit and hold every block's text once, and the checks take whatever the parser gives."""

from __future__ import annotations

import json
from itertools import groupby

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from docvl.layout.checks import Word, check_page
from docvl.layout.chunks import chunk_document, chunk_text, split_block
from docvl.layout.document import Document, page_from_grounded, validate
from docvl.layout.grounding import DET, DET_END, MAX_BOXES, MAX_NOTES, REF, REF_END, parse_grounded
from docvl.layout.labels import FURNITURE, LABEL_MAP, Label
from tests.layout.samples import EOS

SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# Pieces of grounded output in any order and number: tags, brackets, numbers in and out of range, labels,
# markup and junk, so that truncated, unbalanced and nested forms all come up.
FRAGMENTS = st.one_of(
    st.sampled_from(
        [
            REF,
            REF_END,
            DET,
            DET_END,
            "[[",
            "]]",
            "[",
            "]",
            ", ",
            ",",
            "\n",
            "\n\n",
            " ",
            "title",
            "text",
            "sub_title",
            "table",
            "image",
            "equation",
            "page_number",
            "<table><tr><td>",
            "</td></tr></table>",
            "# ",
            "| a | b |\n|---|---|\n",
            "$$",
            "\\[",
            "<|grounding|>",
            EOS,
            "<script>alert(1)</script>",
            "\x00",
            "1.5",
            "-",
            "e9",
        ]
    ),
    st.integers(-5000, 5000).map(str),
    st.text(max_size=12),
)
GROUNDED_LIKE = st.lists(FRAGMENTS, max_size=60).map("".join)
ANY_OUTPUT = st.one_of(st.text(max_size=300), GROUNDED_LIKE)

PLAIN = st.text(
    alphabet=st.characters(
        exclude_categories=("Cs", "Cc"), exclude_characters="<|>[]", include_characters="\n"
    ),
    max_size=120,
)
BOX = st.tuples(*[st.integers(0, 999)] * 4).map(
    lambda b: (min(b[0], b[2]), min(b[1], b[3]), max(b[0], b[2]), max(b[1], b[3]))
)
LABELS = st.sampled_from(sorted(LABEL_MAP))
WELL_FORMED = st.lists(st.tuples(LABELS, st.lists(BOX, min_size=1, max_size=3), PLAIN), max_size=15)


def render(blocks: list[tuple[str, list[tuple[int, int, int, int]], str]]) -> str:
    """Grounded output as DeepSeek-OCR-2 writes it."""
    return "".join(
        f"{REF}{label}{REF_END}{DET}[{', '.join(str(list(box)) for box in boxes)}]{DET_END}\n{text}\n\n"
        for label, boxes, text in blocks
    )


@SETTINGS
@given(ANY_OUTPUT)
def test_the_parser_never_raises_and_keeps_boxes_normalised_and_ordered(output: str) -> None:
    parsed = parse_grounded(output)
    assert len(parsed.blocks) <= output.count(REF) + 1
    assert len(parsed.notes) <= MAX_NOTES + 1
    for block in parsed.blocks:
        assert block.boxes or block.text
        assert len(block.boxes) <= MAX_BOXES
        for box in block.boxes:
            assert all(isinstance(v, int) for v in box)
            x1, y1, x2, y2 = box
            assert 0 <= x1 <= x2 <= 999
            assert 0 <= y1 <= y2 <= 999
        assert REF not in block.text
        assert "\x00" not in block.text
        assert block.text == block.text.strip()
        assert block.source_label is None or len(block.source_label) <= 64


@SETTINGS
@given(WELL_FORMED)
def test_well_formed_output_reads_back_exactly_without_notes(
    blocks: list[tuple[str, list[tuple[int, int, int, int]], str]],
) -> None:
    parsed = parse_grounded(render(blocks))
    assert parsed.notes == ()
    assert [(b.source_label, list(b.boxes), b.text) for b in parsed.blocks] == [
        (label, boxes, text.strip()) for label, boxes, text in blocks
    ]


@SETTINGS
@given(
    st.one_of(ANY_OUTPUT, WELL_FORMED.map(render)),
    st.integers(1, 5000),
    st.integers(1, 20_000),
    st.integers(1, 20_000),
    st.one_of(st.none(), st.tuples(st.floats(1, 14_400), st.floats(1, 14_400))),
)
def test_every_page_makes_a_document_valid_against_the_schema(
    output: str, number: int, width: int, height: int, points: tuple[float, float] | None
) -> None:
    width_pt, height_pt = points if points else (None, None)
    page = page_from_grounded(output, number, width, height, width_pt, height_pt)
    data = Document("job", (page,)).to_json()
    validate(data)
    json.dumps(data, ensure_ascii=False).encode("utf-8")  # strict UTF-8: no lone surrogate got through
    for block in page.blocks:
        for x0, y0, x1, y1 in block.boxes_px:
            assert 0 <= x0 <= x1 <= width
            assert 0 <= y0 <= y1 <= height
        for x0, y0, x1, y1 in block.boxes_pt:
            assert width_pt is not None
            assert height_pt is not None
            assert 0 <= x0 <= x1 <= width_pt + 0.01
            assert 0 <= y0 <= y1 <= height_pt + 0.01


CHUNK_TEXT = st.lists(
    st.one_of(
        st.sampled_from([" ", "\n", "\n\n", ". ", "! ", "# ", "| a |", "\t"]),
        st.text(alphabet="abcdefghij", min_size=1, max_size=30),
        st.text(alphabet="x", min_size=40, max_size=200),  # words longer than some limits
    ),
    max_size=40,
).map("".join)
NOT_TABLES = sorted(source for source, label in LABEL_MAP.items() if label is not Label.TABLE)
DOCUMENT_BLOCKS = st.lists(
    st.tuples(st.sampled_from(NOT_TABLES), st.just([(10, 10, 900, 40)]), CHUNK_TEXT), max_size=25
)


@SETTINGS
@given(st.lists(DOCUMENT_BLOCKS, min_size=1, max_size=3), st.integers(50, 600))
def test_chunks_keep_to_the_limit_and_hold_every_block_once_in_order(
    pages: list[list[tuple[str, list[tuple[int, int, int, int]], str]]], max_chars: int
) -> None:
    document = Document(
        "job",
        tuple(
            page_from_grounded(render(blocks), n, 800, 1000, 600.0, 750.0)
            for n, blocks in enumerate(pages, 1)
        ),
    )
    chunks = chunk_document(document, max_chars=max_chars)
    assert all(0 < len(c.text) <= max_chars for c in chunks)
    body = [b for b in document.blocks() if b.label not in FURNITURE and chunk_text(b)]

    def squeeze(text: str) -> str:
        return "".join(text.split())

    assert squeeze("".join(c.text for c in chunks)) == squeeze("".join(chunk_text(b) for b in body))
    # each block in one chunk, or in consecutive chunks when it alone is over the limit
    assert [key for key, _ in groupby(i for c in chunks for i in c.block_ids)] == [b.id for b in body]
    for chunk in chunks:
        assert chunk.pages == tuple(sorted({int(i[1 : i.index("-")]) for i in chunk.block_ids}))
        assert [b.block_id for b in chunk.boxes] == list(chunk.block_ids)


@SETTINGS
@given(
    st.lists(st.text(alphabet="abc xyz", min_size=1, max_size=80), min_size=1, max_size=60),
    st.integers(120, 400),
)
def test_split_markdown_tables_repeat_their_header_and_keep_every_row_once(
    cells: list[str], max_chars: int
) -> None:
    header = "| name | value |\n|---|---|"
    rows = [f"| {c.strip() or '-'} | {i} |" for i, c in enumerate(cells)]
    pieces = split_block("\n".join([header, *rows]), max_chars, table=True)
    assert all(len(p) <= max_chars for p in pieces)
    if len(pieces) > 1:
        assert all(p.startswith(header + "\n") for p in pieces)
        assert [r for p in pieces for r in p.splitlines()[2:]] == rows


WORDS = [Word("Lorem", (10, 10, 60, 20)), Word("ipsum", (70, 10, 120, 20)), Word("dolor", (10, 30, 60, 40))]


@SETTINGS
@given(ANY_OUTPUT, st.booleans())
def test_the_checks_take_any_parsed_page(output: str, pdf: bool) -> None:
    page = page_from_grounded(output, 1, 300, 400, 150.0 if pdf else None, 200.0 if pdf else None)
    verdict = check_page(page, WORDS if pdf else None)
    assert isinstance(verdict["passed"], bool)
    json.dumps(verdict)

"""The document model: normalised boxes into pixels and points, the JSON and its schema, figure crops."""

from __future__ import annotations

import json
from dataclasses import replace
from typing import Any

import pytest
from jsonschema import Draft202012Validator

from docvl.layout.document import (
    SCHEMA_ID,
    Document,
    DocumentInvalid,
    Page,
    page_from_grounded,
    schema,
    validate,
    validation_errors,
)
from docvl.layout.labels import Label
from tests.layout.samples import PAPER, REPORT, SLOPPY, sample_page


def paper() -> Page:
    return sample_page(PAPER, 1)


def test_blocks_get_ids_order_labels_and_both_units() -> None:
    page = paper()
    title = page.blocks[0]
    assert (title.id, title.page, title.order) == ("p1-b1", 1, 1)
    assert (title.label, title.source_label) == (Label.TITLE, "title")
    # [[118, 62, 881, 98]] on a 791 x 1024 px image of a 612 x 792 pt page
    assert title.box_px == (round(118 / 999 * 791, 2), round(62 / 999 * 1024, 2), 697.57, 100.45)
    assert title.box_pt == (72.29, 49.15, 539.71, 77.69)
    assert title.boxes_px == (title.box_px,)
    assert [b.order for b in page.blocks] == list(range(1, len(page.blocks) + 1))
    assert page.blocks[6].label is Label.FORMULA
    assert page.blocks[8].label is Label.FIGURE


def test_999_is_the_far_edge() -> None:
    page = page_from_grounded(
        "<|ref|>text<|/ref|><|det|>[[0, 0, 999, 999]]<|/det|>\nAll", 3, 800, 600, 400, 300
    )
    assert page.blocks[0].box_px == (0, 0, 800, 600)
    assert page.blocks[0].box_pt == (0, 0, 400, 300)
    assert page.blocks[0].id == "p3-b1"


def test_several_boxes_keep_each_and_their_union() -> None:
    output = "<|ref|>text<|/ref|><|det|>[[0, 100, 499, 200], [500, 50, 999, 150]]<|/det|>\nTwo columns"
    block = page_from_grounded(output, 1, 999, 999).blocks[0]
    assert block.boxes_px == ((0, 100, 499, 200), (500, 50, 999, 150))
    assert block.box_px == (0, 50, 999, 200)


def test_an_image_page_has_no_points() -> None:
    page = page_from_grounded(PAPER, 2, 1000, 1400)
    assert page.width_pt is None
    assert all(b.box_pt is None and b.boxes_pt == () for b in page.blocks)
    validate(Document("j", (page,)).to_json())


def test_blocks_without_a_box_have_null_boxes_and_the_notes_are_kept() -> None:
    page = sample_page(SLOPPY, 1)
    first = page.blocks[0]
    assert (first.label, first.source_label, first.box_px, first.box_pt) == (Label.TEXT, None, None, None)
    assert page.notes
    data = Document("job", (page,)).to_json()
    validate(data)
    assert data["pages"][0]["notes"] == list(page.notes)


def test_the_json_is_plain_validates_and_reads_back() -> None:
    document = Document("0b7c", (paper(), sample_page(REPORT, 2)))
    data = document.to_json()
    assert json.loads(json.dumps(data)) == data  # only dicts, lists, str, numbers, None
    validate(data)
    assert Document.from_json(data) == document
    assert json.loads(document.dumps()) == data
    assert data["schema_version"] == 1
    assert set(data["pages"][0]) == {
        "number",
        "width_px",
        "height_px",
        "width_pt",
        "height_pt",
        "blocks",
        "notes",
    }


def test_the_schema_is_a_draft_2020_12_schema_with_its_id() -> None:
    published = schema()
    Draft202012Validator.check_schema(published)
    assert published["$id"] == SCHEMA_ID == "https://docvl.dev/schema/document/v1.json"
    assert published["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    labels = published["$defs"]["block"]["properties"]["label"]["enum"]
    assert labels == [label.value for label in Label]


def _broken(data: dict[str, Any]) -> list[dict[str, Any]]:
    block = data["pages"][0]["blocks"][0]
    return [
        {**data, "schema_version": 2},
        {**data, "extra": 1},
        {**data, "pages": [{**data["pages"][0], "number": 0}]},
        {**data, "pages": [{**data["pages"][0], "blocks": [{**block, "label": "banner"}]}]},
        {**data, "pages": [{**data["pages"][0], "blocks": [{**block, "box_px": [1, 2, 3]}]}]},
        {**data, "pages": [{**data["pages"][0], "blocks": [{**block, "box_px": [-1, 2, 3, 4]}]}]},
        {**data, "pages": [{**data["pages"][0], "blocks": [{**block, "id": "block 1"}]}]},
        {
            **data,
            "pages": [{**data["pages"][0], "blocks": [{k: v for k, v in block.items() if k != "text"}]}],
        },
    ]


def test_documents_that_break_the_schema_are_refused_saying_where() -> None:
    data = Document("j", (paper(),)).to_json()
    for broken in _broken(data):
        with pytest.raises(DocumentInvalid) as refused:
            validate(broken)
        assert refused.value.errors == validation_errors(broken)
        assert refused.value.errors[0].startswith("at /")
    with pytest.raises(DocumentInvalid):
        Document.from_json(_broken(data)[0])


def test_figure_keys_and_crops() -> None:
    page = paper()
    crops = page.figure_crops()
    assert [block_id for block_id, _ in crops] == ["p1-b9"]
    x0, y0, x1, y1 = crops[0][1]
    assert all(isinstance(v, int) for v in crops[0][1])
    figure = page.blocks[8].box_px
    assert figure is not None
    assert x0 <= figure[0] < x0 + 1
    assert x1 - 1 < figure[2] <= x1
    assert y0 <= figure[1]
    assert figure[3] <= y1
    document = Document("j", (page,)).with_figure_keys({"p1-b9": "jobs/j/figures/p1-b9.png"})
    assert next(document.blocks()).figure_key is None
    assert [b.figure_key for b in document.blocks() if b.label is Label.FIGURE] == [
        "jobs/j/figures/p1-b9.png"
    ]
    validate(document.to_json())


def test_a_figure_too_thin_to_crop_gives_no_crop() -> None:
    page = page_from_grounded("<|ref|>image<|/ref|><|det|>[[10, 10, 10, 500]]<|/det|>", 1, 100, 100)
    assert page.figure_crops() == []
    assert replace(page, blocks=()).figure_crops() == []

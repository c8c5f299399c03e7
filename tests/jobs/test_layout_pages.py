"""The layout task's page and document steps on a real PDF of the corpus (tests/corpus/pdf-samples, a copy of
../shared/corpus, CC-BY-SA-4.0), with a real object store: what render keeps of a page, the blocks, the
figure crops, the checks against the text layer, and document.json / layout.md / chunks.jsonl."""

from __future__ import annotations

import io
import json
import uuid
from pathlib import Path

from PIL import Image

from docvl.db.database import Database
from docvl.db.models import TaskResult
from docvl.documents import open_document
from docvl.jobs.context import Context
from docvl.jobs.layout_pages import assemble_document, lay_out_page, layer_key, page_layer
from docvl.layout.document import validate
from docvl.storage.base import output_key, page_key
from docvl.storage.local import LocalObjectStore
from tests.layout.test_checks import TRIVIAL, grounded_from_lines, lines

FIGURE = "<|ref|>image<|/ref|><|det|>[[100, 600, 500, 800]]<|/det|>\n\n"


def rendered_context(tmp_path: Path, db: Database) -> tuple[Context, uuid.UUID, bytes, str]:
    """A job whose one PDF page was rendered as render does for layout, and the grounded answer a model
    that read the page perfectly would give (a text block per line of the text layer, and a figure)."""
    store = LocalObjectStore(tmp_path / "objects")
    store.ensure_ready()
    ctx = Context(db, store)
    job_id = uuid.uuid4()
    with open_document(TRIVIAL, max_pages=5, words=True) as opened:
        page = next(iter(opened.pages()))
    assert page.words
    assert page.width_pt
    assert page.height_pt
    ctx.store.put(page_key(job_id, 0), page.png, content_type="image/png")
    ctx.store.put(layer_key(page_key(job_id, 0)), page_layer(page), content_type="application/json")
    output = grounded_from_lines(lines(page.words), page.width_pt, page.height_pt) + FIGURE
    return ctx, job_id, page.png, output


def test_a_page_is_laid_out_its_figure_cropped_and_checked_against_its_text_layer(
    tmp_path: Path, migrated_database: Database
) -> None:
    ctx, job_id, png, output = rendered_context(tmp_path, migrated_database)

    laid = lay_out_page(ctx, job_id, 0, page_key(job_id, 0), png, output)

    assert laid.problem is None
    assert laid.key == output_key(job_id, "layout-page-0001.json")
    page = json.loads(ctx.store.get(laid.key))
    width, height = Image.open(io.BytesIO(png)).size
    assert (page["width_px"], page["height_px"]) == (width, height)
    assert page["width_pt"] > 0
    assert page["height_pt"] > 0
    figure = [b for b in page["blocks"] if b["label"] == "figure"]
    assert len(figure) == 1
    assert figure[0]["figure_key"] == output_key(job_id, f"figure-{figure[0]['id']}.png")
    crop = Image.open(io.BytesIO(ctx.store.get(figure[0]["figure_key"])))
    x0, y0, x1, y1 = figure[0]["box_px"]
    assert abs(crop.width - (x1 - x0)) <= 2
    assert abs(crop.height - (y1 - y0)) <= 2
    for block in page["blocks"]:
        bx0, by0, bx1, by1 = block["box_px"]
        assert 0 <= bx0 <= bx1 <= width
        assert 0 <= by0 <= by1 <= height
    verdict = laid.verification
    assert verdict["task"] == "layout"
    assert verdict["passed"], verdict
    assert verdict["text_layer_cer"] < 0.01

    # a retried page task writes the same objects
    again = lay_out_page(ctx, job_id, 0, page_key(job_id, 0), png, output)
    assert again.key == laid.key
    assert json.loads(ctx.store.get(again.key)) == page


def test_junk_output_is_kept_and_marked_unusable(tmp_path: Path, migrated_database: Database) -> None:
    ctx, job_id, png, _ = rendered_context(tmp_path, migrated_database)
    empty = lay_out_page(ctx, job_id, 0, page_key(job_id, 0), png, "")
    assert empty.problem is not None
    assert "no grounded block" in empty.problem
    unplaced = lay_out_page(ctx, job_id, 0, page_key(job_id, 0), png, "plain words <|det|>[[1, 2")
    page = json.loads(ctx.store.get(unplaced.key))
    assert [b["box_px"] for b in page["blocks"]] == [None]  # kept, with nowhere on the page
    assert page["notes"]
    assert not unplaced.verification["passed"]


def test_the_document_its_markdown_and_chunks_are_assembled_from_the_pages(
    tmp_path: Path, migrated_database: Database
) -> None:
    ctx, job_id, png, output = rendered_context(tmp_path, migrated_database)
    laid = lay_out_page(ctx, job_id, 0, page_key(job_id, 0), png, output)
    results = {
        0: TaskResult(job_id=job_id, page_index=0, task="layout", output_key=laid.key, output_text=output),
        1: TaskResult(job_id=job_id, page_index=1, task="layout", error_message="the model failed"),
    }

    keys = assemble_document(ctx, job_id, results, [0, 1])

    assert keys == [output_key(job_id, n) for n in ("document.json", "layout.md", "chunks.jsonl")]
    document = json.loads(ctx.store.get(keys[0]))
    validate(document)
    assert document["job_id"] == str(job_id)
    assert [p["number"] for p in document["pages"]] == [1]
    markdown = ctx.store.get(keys[1]).decode()
    assert "<!-- page 1 -->" in markdown
    assert "<!-- page 2: failed (the model failed) -->" in markdown
    chunks = [json.loads(line) for line in ctx.store.get(keys[2]).decode().splitlines()]
    assert chunks
    assert all(c["pages"] == [1] for c in chunks)
    assert all(c["boxes"] for c in chunks)
    block_ids = {b["id"] for b in document["pages"][0]["blocks"]}
    assert {i for c in chunks for i in c["block_ids"]} <= block_ids

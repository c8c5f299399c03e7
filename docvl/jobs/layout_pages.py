"""The layout task's steps beside the common ones: at render, each page's size in points and its text-layer
words; per page, the model's grounded output made into blocks (boxes in pixels and points), its figures
cropped and stored, its boxes checked; at the end, the document: document.json (schema v1), layout.md and
chunks.jsonl. Every object is written under a key named for its job and page, so running a step again
writes the same objects again and nothing twice.
"""

from __future__ import annotations

import io
import json
import uuid
from dataclasses import dataclass
from typing import Any

from PIL import Image

from docvl.db.models import TaskResult
from docvl.documents import RenderedPage
from docvl.jobs.context import Context
from docvl.layout.checks import Word, check_page
from docvl.layout.chunks import chunk_document, to_jsonl
from docvl.layout.document import Document, Page, page_from_grounded, validate
from docvl.layout.markdown import document_markdown
from docvl.storage.base import output_key

JSON = "application/json"
DOCUMENT, MARKDOWN, CHUNKS = "document.json", "layout.md", "chunks.jsonl"


def layer_key(image_key: str) -> str:
    """Where the page layer of the page image stored under `image_key` is kept: beside it."""
    return image_key.rsplit(".", 1)[0] + ".layer.json"


def page_layer(page: RenderedPage) -> bytes:
    """What render keeps of a page for the layout task: its size in points and its words (PDF pages)."""
    words = None if page.words is None else [w.to_json() for w in page.words]
    return json.dumps({"width_pt": page.width_pt, "height_pt": page.height_pt, "words": words}).encode()


@dataclass(frozen=True)
class LaidOut:
    key: str  # the page's blocks, Page.to_json()
    verification: dict[str, Any]
    problem: str | None  # why the output is not a usable layout (no block parsed); None when it is


def lay_out_page(
    ctx: Context, job_id: uuid.UUID, index: int, image_key: str, image: bytes, output: str
) -> LaidOut:
    """The page's blocks from the model's output for `image` (the page image it saw, stored under
    `image_key`), its figures stored, its checks run; the page stored as an object."""
    layer = _layer(ctx, image_key)
    words = None if layer.get("words") is None else [Word.from_json(w) for w in layer["words"]]
    number = index + 1
    with Image.open(io.BytesIO(image)) as whole:
        whole.load()
        page = page_from_grounded(output, number, *whole.size, layer.get("width_pt"), layer.get("height_pt"))
        page = _with_figures(ctx, job_id, page, whole)
    key = output_key(job_id, f"layout-page-{number:04d}.json")
    ctx.store.put(key, json.dumps(page.to_json(), ensure_ascii=False).encode(), content_type=JSON)
    verification = {"task": "layout"} | check_page(page, words)
    problem = (
        None
        if page.blocks
        else "no grounded block could be read from the output: "
        + ("; ".join(page.notes[:3]) or "it has no <|ref|>…<|det|> block")
    )
    return LaidOut(key, verification, problem)


def _layer(ctx: Context, image_key: str) -> dict[str, Any]:
    key = layer_key(image_key)
    if not ctx.store.exists(key):  # an image page, or a page rendered before the job had layout
        return {}
    data: dict[str, Any] = json.loads(ctx.store.get(key))
    return data


def _with_figures(ctx: Context, job_id: uuid.UUID, page: Page, image: Image.Image) -> Page:
    """The page with each figure block's crop stored and named by its `figure_key`."""
    keys = {}
    for block_id, box in page.figure_crops():
        out = io.BytesIO()
        image.crop(box).convert("RGB").save(out, format="PNG")
        key = output_key(job_id, f"figure-{block_id}.png")
        ctx.store.put(key, out.getvalue(), content_type="image/png")
        keys[block_id] = key
    return Document(None, (page,)).with_figure_keys(keys).pages[0] if keys else page


def assemble_document(
    ctx: Context, job_id: uuid.UUID, results: dict[int, TaskResult], indices: list[int]
) -> list[str]:
    """document.json, layout.md and chunks.jsonl from the pages' layouts; a page without one (failed) is
    left out of the document and marked in the Markdown. Returns their keys in that order."""
    pages, failed = [], {}
    for index in indices:
        result = results.get(index)
        if result is None or result.output_key is None:
            failed[index + 1] = (result.error_message if result is not None else None) or "no result"
            continue
        pages.append(Page.from_json(json.loads(ctx.store.get(result.output_key))))
    document = Document(str(job_id), tuple(pages))
    body = document.to_json()
    validate(body)  # what the schema promises is checked before anyone reads it
    keys = [output_key(job_id, name) for name in (DOCUMENT, MARKDOWN, CHUNKS)]
    ctx.store.put(keys[0], json.dumps(body, ensure_ascii=False).encode(), content_type=JSON)
    markdown = document_markdown(document, failed=failed)
    ctx.store.put(keys[1], markdown.encode(), content_type="text/markdown; charset=utf-8")
    chunks = to_jsonl(chunk_document(document))
    ctx.store.put(keys[2], chunks.encode(), content_type="application/x-ndjson")
    return keys

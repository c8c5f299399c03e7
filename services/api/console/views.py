"""What the console reads: each page of a job with its results, rendered safe for display."""

from __future__ import annotations

from pydantic import BaseModel, Field

from docvl.jobs.views import JobView, OutputFile, PageResult
from docvl.layout import Label


class LayoutBlock(BaseModel):
    """One block of a page's layout, for drawing its boxes over the page image."""

    id: str = Field(description="p<page>-b<order>, as in document.json.")
    order: int = Field(description="Reading order within the page, from 1.")
    label: Label = Field(description="The block's kind (title, text, table, figure, ...).")
    boxes_px: list[tuple[float, float, float, float]] = Field(
        description="[x0, y0, x1, y1] in pixels of the page image (top-left origin); empty: no box."
    )
    text: str = Field(description="The block's Markdown as the model wrote it: show it as text, not HTML.")


class RenderedLayout(BaseModel):
    width_px: int = Field(description="Width of the page image the boxes are measured on.")
    height_px: int = Field(description="Its height.")
    blocks: list[LayoutBlock] = Field(description="In reading order.")
    notes: list[str] = Field(description="What the parser dropped or changed in the model's output.")


class RenderedResult(PageResult):
    html: str | None = Field(
        description="Safe to display: ocr, the Markdown rendered and sanitised; qa, the answer likewise; "
        "chart2code, the code highlighted (escaped, for a `<pre>`); web2html, an inert document (no "
        "scripts, no styles, nothing that loads) for a sandboxed iframe's `srcdoc`. Null when the task "
        "failed, and for layout (see `layout`)."
    )
    layout: RenderedLayout | None = Field(
        None,
        description="layout only: the page's blocks with their boxes, once its page task has stored them.",
    )
    preview: str | None = Field(
        None,
        description="web2html only: the path of the page with its own CSS (still no scripts, nothing "
        "loads), for an iframe; it needs no API key and expires in 10 minutes.",
    )


class RenderedPage(BaseModel):
    page: int = Field(description="Page number, from 1.")
    width: int = Field(description="The page image's width in pixels.")
    height: int = Field(description="The page image's height in pixels.")
    image: str = Field(
        description="Path of the page image (GET it with the API key).", examples=["/v1/jobs/…/pages/1/image"]
    )
    results: list[RenderedResult] = Field(description="The page's results so far, by task.")


class RenderedJob(BaseModel):
    job: JobView
    outputs: dict[str, list[OutputFile]] = Field(description="As in GET /v1/jobs/{id}/result.")
    pages: list[RenderedPage] = Field(description="Every rendered page, in order.")

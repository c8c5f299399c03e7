"""What the console reads: each page of a job with its results, rendered safe for display."""

from __future__ import annotations

from pydantic import BaseModel, Field

from docvl.jobs.views import JobView, OutputFile, PageResult


class RenderedResult(PageResult):
    html: str | None = Field(
        description="Safe to display: ocr, the Markdown rendered and sanitised; qa, the answer likewise; "
        "chart2code, the code highlighted (escaped, for a `<pre>`); web2html, an inert document (no "
        "scripts, no styles, nothing that loads) for a sandboxed iframe's `srcdoc`. Null when the task "
        "failed."
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

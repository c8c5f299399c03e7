"""The console's reads beyond the job routes: the job's pages with their results rendered (a layout
result with its blocks and boxes), a page's image and a web2html page's preview. Every read goes through
the job service, with its owner checks (another owner's job is NotFound)."""

from __future__ import annotations

import uuid

from docvl.db.api_keys import Caller
from docvl.errors import NotFound
from docvl.jobs import layout_results
from docvl.jobs.service import JobService
from docvl.jobs.views import PageResult
from docvl.layout import Page
from docvl.tasks import TaskKind
from services.api.console import previews, render
from services.api.console.views import LayoutBlock, RenderedJob, RenderedLayout, RenderedPage, RenderedResult


def rendered(svc: JobService, caller: Caller, job_id: uuid.UUID) -> RenderedJob:
    result = svc.result(caller, job_id)  # the outputs with their links
    pages = svc.pages(caller, job_id)  # after the results: every page with a result is among them
    shown = [_rendered(page_result) for page_result in result.pages]
    framed = [r for r in shown if r.task is TaskKind.WEB2HTML and r.html is not None]
    if framed:
        key = previews.signing_key(svc, caller)
        for web_page in framed:
            web_page.preview = previews.link(key, caller, job_id, web_page.page)
    _add_layouts(svc, caller, job_id, [r for r in shown if r.task is TaskKind.LAYOUT and r.text is not None])
    by_page: dict[int, list[RenderedResult]] = {}
    for r in shown:
        by_page.setdefault(r.page, []).append(r)
    return RenderedJob(
        job=result.job,
        outputs=result.outputs,
        pages=[
            RenderedPage(
                page=p.page,
                width=p.width,
                height=p.height,
                image=f"/v1/jobs/{job_id}/pages/{p.page}/image",
                results=by_page.get(p.page, []),
            )
            for p in pages
        ],
    )


def _add_layouts(svc: JobService, caller: Caller, job_id: uuid.UUID, results: list[RenderedResult]) -> None:
    """Each layout result's blocks, from what its page task stored."""
    if not results:
        return
    stored = layout_results.stored_pages(svc, caller, job_id, [r.page for r in results])
    for result in results:
        if result.page in stored:
            result.layout = _layout(stored[result.page])


def _layout(page: Page) -> RenderedLayout:
    blocks = [
        LayoutBlock(
            id=block.id,
            order=block.order,
            label=block.label,
            boxes_px=list(block.boxes_px or ([block.box_px] if block.box_px else [])),
            text=block.text,
        )
        for block in page.blocks
    ]
    return RenderedLayout(
        width_px=page.width_px, height_px=page.height_px, blocks=blocks, notes=list(page.notes)
    )


def _rendered(result: PageResult) -> RenderedResult:
    text = result.text
    html: str | None = None
    if text is not None:
        match result.task:
            case TaskKind.OCR | TaskKind.QA:
                html = render.markdown_html(text)
            case TaskKind.CHART2CODE:
                html = render.code_html(text)
            case TaskKind.WEB2HTML:
                html = render.page_document(text)
    return RenderedResult(**result.model_dump(), html=html)


def preview(svc: JobService, job_id: uuid.UUID, page: int, token: str) -> str:
    """The styled preview of the page's web2html result, for a live link (previews.py)."""
    caller = previews.check(svc, job_id, page, token)
    result = svc.page_result(caller, job_id, page, TaskKind.WEB2HTML)
    if result is None or result.text is None:
        raise NotFound(f"job {job_id} has no webpage-to-HTML result for page {page}")
    return render.styled_page_document(result.text)

"""The console's reads beyond the job service's: the job's pages with their results rendered, and a page's
image. Ownership is checked exactly as the job service does (another owner's job is NotFound)."""

from __future__ import annotations

import uuid
from contextlib import AbstractContextManager
from typing import BinaryIO

from docvl.db import jobs
from docvl.db.api_keys import Caller
from docvl.errors import NotFound
from docvl.jobs.service import JobService
from docvl.jobs.views import PageResult
from docvl.tasks import TaskKind
from services.api.console import previews, render
from services.api.console.views import RenderedJob, RenderedPage, RenderedResult


def rendered(svc: JobService, caller: Caller, job_id: uuid.UUID) -> RenderedJob:
    result = svc.result(caller, job_id)  # checks the owner; the outputs with their links
    by_page: dict[int, list[RenderedResult]] = {}
    with svc.db.transaction() as s:
        pages = jobs.pages(s, job_id)
        for page_result in result.pages:
            shown = _rendered(page_result)
            if shown.task is TaskKind.WEB2HTML and shown.html is not None:
                shown.preview = previews.link(s, caller, job_id, shown.page)
            by_page.setdefault(page_result.page, []).append(shown)
    return RenderedJob(
        job=result.job,
        outputs=result.outputs,
        pages=[
            RenderedPage(
                page=p.index + 1,
                width=p.width,
                height=p.height,
                image=f"/v1/jobs/{job_id}/pages/{p.index + 1}/image",
                results=by_page.get(p.index + 1, []),
            )
            for p in pages
        ],
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


def open_image(
    svc: JobService, caller: Caller, job_id: uuid.UUID, page: int
) -> tuple[str, AbstractContextManager[BinaryIO]]:
    """(media type, stream) of the page's rendered image."""
    with svc.db.transaction() as s:
        jobs.get_job(s, job_id, owner=caller.owner)
        try:
            key = jobs.page(s, job_id, page - 1).image_key
        except NotFound:
            raise NotFound(f"job {job_id} has no page {page} (yet)") from None
    extension = key.rsplit(".", 1)[-1].lower()
    media = {"png": "image/png", "jpg": "image/jpeg", "jpeg": "image/jpeg", "webp": "image/webp"}
    return media.get(extension, "application/octet-stream"), svc.store.open(key)


def preview(svc: JobService, job_id: uuid.UUID, page: int, token: str) -> str:
    """The styled preview of the page's web2html result, for a live link (previews.py)."""
    with svc.db.transaction() as s:
        previews.check(s, job_id, page, token)
        for result in jobs.results(s, job_id):
            if result.page_index == page - 1 and result.task == TaskKind.WEB2HTML.value:
                if result.output_text is None:
                    break
                return render.styled_page_document(result.output_text)
    raise NotFound(f"job {job_id} has no webpage-to-HTML result for page {page}")

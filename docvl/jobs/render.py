"""Render: start the job, store its pages as images, and dispatch their page work a few pages at a time
while the rest still renders; or take an earlier job's render of the same document (render_reuse.py) and
send one reuse task. Re-running it resumes where an earlier run stopped."""

from __future__ import annotations

import logging
import tempfile
import uuid
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy.orm import Session

from docvl.db import jobs, lifecycle, page_results
from docvl.db.models import Job
from docvl.documents import PDF, DocumentTooLarge, open_document
from docvl.job_status import JobStatus
from docvl.jobs.context import Context, JobEnded, PageWork
from docvl.jobs.dispatch import Dispatch
from docvl.jobs.layout_pages import JSON, layer_key, page_layer
from docvl.jobs.pages import unfinished_in
from docvl.jobs.render_reuse import RenderInputs, take_earlier_render
from docvl.jobs.reuse import allowed, image_sha256, whose
from docvl.office import EXTENSIONS as OFFICE_EXTENSIONS
from docvl.office import ConversionFailed
from docvl.page_ranges import PageRanges
from docvl.settings import ReuseScope
from docvl.storage.base import page_key
from docvl.tasks import TaskKind

log = logging.getLogger(__name__)
PAGES_PER_WRITE = 4  # pages registered and dispatched together while rendering


@dataclass(frozen=True)
class RenderLimits:
    max_pages: int
    dpi: int
    max_pixels: int = 40_000_000
    max_side: int | None = None
    max_bytes: int | None = None
    reuse: ReuseScope = ReuseScope.OWNER  # whose earlier render of the same document a job may take


def _start(s: Session, job_id: uuid.UUID) -> Job | None:
    """The job, now running; None when it has already finished (cancelled meanwhile)."""
    job = jobs.get_job(s, job_id, lock=True)
    if JobStatus(job.status).finished:
        return None
    return jobs.transition(s, job_id, JobStatus.RUNNING, locked=job)


@dataclass(frozen=True)
class _Plan:
    """What a render needs to know of its job, read once."""

    object_key: str
    size_bytes: int
    document_id: uuid.UUID
    document_sha256: str
    media_type: str
    converted_key: str | None
    pages: PageRanges | None
    tasks: list[TaskKind]
    priority: int
    owner: str
    reuse: bool  # the job's own `reuse` option

    def render_inputs(self, limits: RenderLimits) -> RenderInputs:
        return RenderInputs(
            self.document_sha256,
            str(self.pages) if self.pages is not None else None,
            limits.dpi,
            limits.max_pixels,
            limits.max_side,
            limits.max_pages,
            words=TaskKind.LAYOUT in self.tasks,
        )


def drive(ctx: Context, job_id: uuid.UUID, limits: RenderLimits, dispatch: Dispatch) -> bool:
    """Start the job, render its pages and dispatch their tasks, resuming where an earlier run stopped: the
    pages already registered are kept and only their unfinished tasks sent again. Returns True when the
    caller must finalise the job (its pages all finished before the render did). Raises DocumentError."""
    with ctx.db.transaction() as s:
        job = _start(s, job_id)
        if job is None:
            return False
        registered = frozenset(p.index for p in page_results.pages(s, job_id))
        pending = unfinished_in(s, job_id) if registered else []
        plan = _plan(s, job)
        render = plan.render_inputs(limits)
        job.render_key = render.key()
    if registered:  # resumed (a new job's start is logged with its render: "job rendered")
        log.info(
            "job resumed: %d pages rendered before, %d page tasks sent again", len(registered), len(pending)
        )
    if pending:
        dispatch.send_pages(pending)
    try:
        if not registered and _took_earlier_render(ctx, job_id, plan, limits.reuse, render):
            _send_reusing(ctx, job_id, plan, dispatch)
            return False  # the reuse task, or the last page task, finalises the job
        count, marked = _render(ctx, job_id, plan, limits, dispatch, registered)
    except JobEnded:
        log.info("job ended while it rendered")
        return False
    log.info("job rendered: %d pages, their tasks dispatched", count)
    if marked:  # with its last pages, before their tasks were sent: the page task that ends it finalises it
        return False
    with ctx.db.transaction() as s:
        jobs.set_page_count(s, plan.document_id, count)
        lifecycle.mark_rendered(s, job_id)
        return lifecycle.claim_finalization(s, job_id)


def _took_earlier_render(
    ctx: Context, job_id: uuid.UUID, plan: _Plan, scope: ReuseScope, render: RenderInputs
) -> bool:
    if not allowed(scope, plan.reuse):
        return False
    return take_earlier_render(ctx, job_id, render, whose(scope, plan.owner), plan.document_id) is not None


def _send_reusing(ctx: Context, job_id: uuid.UUID, plan: _Plan, dispatch: Dispatch) -> None:
    """The work of a job whose pages were rendered before: one reuse task on the queue of one of its text
    tasks (docvl/jobs/reused_pages.py); a layout-only job's page tasks (layout pages are laid out one by
    one, each looking up its result itself)."""
    queue = next((task for task in plan.tasks if task is not TaskKind.LAYOUT), None)
    if queue is None:
        with ctx.db.transaction() as s:
            work = unfinished_in(s, job_id)
        dispatch.send_pages(work)
    else:
        dispatch.reuse_pages(job_id, queue, plan.priority)


def _plan(s: Session, job: Job) -> _Plan:
    document = jobs.document_of(s, job)
    return _Plan(
        object_key=document.object_key,
        size_bytes=document.size_bytes,
        document_id=document.id,
        document_sha256=document.sha256,
        media_type=document.media_type,
        converted_key=document.converted_key,
        pages=PageRanges.parse(job.options["pages"]) if job.options.get("pages") else None,
        tasks=[TaskKind(t) for t in job.tasks],
        priority=job.priority,
        owner=job.owner,
        reuse=jobs.reuse_allowed(job),
    )


def _render(
    ctx: Context,
    job_id: uuid.UUID,
    plan: _Plan,
    limits: RenderLimits,
    dispatch: Dispatch | None,
    skip: frozenset[int],
) -> tuple[int, bool]:
    """Render the job's document into stored page images; returns the page count, and whether the job was
    marked rendered with its last pages (not when they were all registered by an earlier run). Every few
    pages, once they are registered, their work is dispatched, so inference starts while the rest still
    renders. Pages in `skip` (registered by an earlier run) are not rendered again; re-running it stores
    the same pages again and registers nothing twice. Raises DocumentError for bad documents, and JobEnded
    when the job was cancelled meanwhile."""
    if limits.max_bytes is not None and plan.size_bytes > limits.max_bytes:
        raise DocumentTooLarge(
            f"the document is {plan.size_bytes} bytes, over the limit of {limits.max_bytes}: split it"
        )
    tasks, priority = plan.tasks, plan.priority
    layout = TaskKind.LAYOUT in tasks

    def register(batch: list[page_results.NewPage], page_count: int | None = None) -> None:
        """Register the pages, then dispatch their work. The last batch (`page_count` given) also marks
        the job rendered in the same transaction: the page task that ends the job can then finalise it
        (a single-page job's page is often done before the render's last step would have marked it,
        which left the finalisation to this runner, a Prefect task run more). Should this runner die
        before dispatching, the reconciler sends the rendered job's unfinished pages again."""
        if batch:
            with ctx.db.transaction() as s:
                if page_results.add_pages(s, job_id, batch).finished:
                    raise JobEnded(f"job {job_id} ended while it rendered")
                if page_count is not None:
                    jobs.set_page_count(s, plan.document_id, page_count)
                    lifecycle.mark_rendered(s, job_id)
            if dispatch is not None:
                dispatch.send_pages(
                    [PageWork(job_id, p.index, task, priority) for p in batch for task in tasks]
                )

    with tempfile.TemporaryDirectory(prefix="docvl-render-") as tmp:
        path = Path(tmp) / "document"
        _download(ctx, plan.object_key, path)
        if plan.media_type in OFFICE_EXTENSIONS:
            path = _as_pdf(ctx, job_id, plan, path)
        with open_document(
            path,
            max_pages=limits.max_pages,
            dpi=limits.dpi,
            max_pixels=limits.max_pixels,
            max_side=limits.max_side,
            pages=plan.pages,
            words=layout,
            checked=True,  # intake decoded it whole
        ) as opened:
            batch: list[page_results.NewPage] = []
            for page in opened.pages(skip):
                key = page_key(job_id, page.index)
                ctx.store.put(key, page.png, content_type=page.media_type)
                if layout:  # what the layout task's checks compare with: the page in points, its words
                    ctx.store.put(layer_key(key), page_layer(page), content_type=JSON)
                batch.append(
                    page_results.NewPage(
                        page.index,
                        key,
                        page.width,
                        page.height,
                        len(page.png),
                        page.text,
                        image_sha256(page.png),
                    )
                )
                if len(batch) == PAGES_PER_WRITE:
                    register(batch)
                    batch = []
            register(batch, opened.page_count)
            return opened.page_count, bool(batch)


def _download(ctx: Context, key: str, path: Path) -> None:
    with ctx.store.open(key) as source, path.open("wb") as out:
        while chunk := source.read(1024 * 1024):
            out.write(chunk)


def _as_pdf(ctx: Context, job_id: uuid.UUID, plan: _Plan, path: Path) -> Path:
    """An Office document's PDF: the one stored beside it by an earlier render, or converted now (and then
    stored, and recorded on the document and as a job event). ConversionFailed says why it cannot be."""
    pdf = path.with_name(path.name + ".pdf")
    if plan.converted_key is not None:
        _download(ctx, plan.converted_key, pdf)
        return pdf
    if ctx.converter is None:
        raise ConversionFailed(
            "Office documents cannot be converted here: this job runner has no LibreOffice"
        )
    conversion = ctx.converter.convert(path, plan.media_type)
    key = plan.object_key + ".pdf"
    ctx.store.put(key, conversion.pdf.read_bytes(), content_type=PDF)
    with ctx.db.transaction() as s:
        jobs.set_converted(s, plan.document_id, key)
        jobs.add_event(
            s,
            job_id,
            "converted",
            {"from": plan.media_type, "pdf_key": key, "seconds": round(conversion.seconds, 3)},
        )
    log.info("converted job %s's %s to PDF in %.2f s", job_id, plan.media_type, conversion.seconds)
    return conversion.pdf

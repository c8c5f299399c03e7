"""The work of one job, as service functions: the Prefect flows and the Celery task bodies call these.

drive: start -> render (pages to images, stored) -> dispatch (one page task per page and task, a few pages at
a time while the rest renders). The page tasks (model worker, post-processing, one result each): the write
that completes the job claims its finalisation -> finalize: assemble (document outputs) -> finish -> notify.
Every step can be re-run from what Postgres holds; docvl.reconciler re-drives the overdue ones.
"""

from __future__ import annotations

import hashlib
import json
import logging
import tempfile
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy.orm import Session

from docvl.db import jobs, lifecycle
from docvl.db.database import Database
from docvl.db.models import Job, TaskResult
from docvl.documents import PDF, DocumentError, DocumentTooLarge, open_document, sniff_media_type
from docvl.errors import DocvlError
from docvl.job_status import JobStatus
from docvl.observability import tracing
from docvl.observability.metrics import jobs as job_metrics
from docvl.observability.metrics import worker as worker_metrics
from docvl.office import EXTENSIONS as OFFICE_EXTENSIONS
from docvl.office import ConversionFailed, OfficeConverter
from docvl.page_ranges import PageRanges
from docvl.storage import ObjectStore
from docvl.storage.base import output_key, page_key
from docvl.tasks import TaskKind
from docvl.verify.attempts import PageInput, generate_checked
from docvl.verify.verifier import Verifier
from model_worker.types import GenerationParams, InferenceRequest, InferenceResult

log = logging.getLogger(__name__)
PAGES_PER_WRITE = 4  # pages registered and dispatched together while rendering


@dataclass(frozen=True)
class RenderLimits:
    max_pages: int
    dpi: int
    max_pixels: int = 40_000_000
    max_side: int | None = None
    max_bytes: int | None = None


@dataclass(frozen=True)
class Context:
    db: Database
    store: ObjectStore
    converter: OfficeConverter | None = None  # None: Office documents fail with conversion_failed


# -- the flow's steps -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PageWork:
    job_id: uuid.UUID
    page_index: int
    task: TaskKind
    priority: int

    @property
    def id(self) -> str:
        """Stable: a re-dispatch after a crash sends the same ids, and cancelling revokes them."""
        return f"{self.job_id}:{self.page_index}:{self.task.value}"


Send = Callable[[list[PageWork]], None]  # dispatches page tasks
Notify = Callable[[uuid.UUID], None]  # queues a job's end webhook


class JobEnded(Exception):
    """The job finished (was cancelled) while a step worked on it: the step stops."""


def _start(s: Session, job_id: uuid.UUID) -> Job | None:
    """The job, now running; None when it has already finished (cancelled meanwhile)."""
    job = jobs.get_job(s, job_id, lock=True)
    if JobStatus(job.status).finished:
        return None
    return jobs.transition(s, job_id, JobStatus.RUNNING)


@dataclass(frozen=True)
class _Plan:
    """What a render needs to know of its job, read once."""

    object_key: str
    size_bytes: int
    document_id: uuid.UUID
    media_type: str
    converted_key: str | None
    pages: PageRanges | None
    tasks: list[TaskKind]
    priority: int


def drive(ctx: Context, job_id: uuid.UUID, limits: RenderLimits, send: Send) -> bool:
    """Start the job, render its pages and dispatch their tasks, resuming where an earlier run stopped: the
    pages already registered are kept and only their unfinished tasks sent again. Returns True when the
    caller must finalise the job (its pages all finished before the render did). Raises DocumentError."""
    with ctx.db.transaction() as s:
        job = _start(s, job_id)
        if job is None:
            return False
        registered = frozenset(p.index for p in jobs.pages(s, job_id))
        pending = unfinished_in(s, job_id) if registered else []
        plan = _plan(s, job)
    log.info("job started: %d pages rendered before, %d page tasks sent again", len(registered), len(pending))
    if pending:
        send(pending)
    try:
        count = _render(ctx, job_id, plan, limits, send, registered)
    except JobEnded:
        log.info("job ended while it rendered")
        return False
    log.info("job rendered: %d pages, their tasks dispatched", count)
    with ctx.db.transaction() as s:
        jobs.set_page_count(s, plan.document_id, count)
        lifecycle.mark_rendered(s, job_id)
        return lifecycle.claim_finalization(s, job_id)


def _plan(s: Session, job: Job) -> _Plan:
    document = jobs.document_of(s, job)
    return _Plan(
        object_key=document.object_key,
        size_bytes=document.size_bytes,
        document_id=document.id,
        media_type=document.media_type,
        converted_key=document.converted_key,
        pages=PageRanges.parse(job.options["pages"]) if job.options.get("pages") else None,
        tasks=[TaskKind(t) for t in job.tasks],
        priority=job.priority,
    )


def _render(
    ctx: Context,
    job_id: uuid.UUID,
    plan: _Plan,
    limits: RenderLimits,
    on_pages: Send | None,
    skip: frozenset[int],
) -> int:
    """Render the job's document into stored page images; returns the page count. Every few pages, once
    they are registered, `on_pages` gets their work, so inference starts while the rest still renders.
    Pages in `skip` (registered by an earlier run) are not rendered again; re-running it stores the same
    pages again and registers nothing twice. Raises DocumentError for bad documents, and JobEnded when the
    job was cancelled meanwhile."""
    if limits.max_bytes is not None and plan.size_bytes > limits.max_bytes:
        raise DocumentTooLarge(
            f"the document is {plan.size_bytes} bytes, over the limit of {limits.max_bytes}: split it"
        )
    tasks, priority = plan.tasks, plan.priority

    def register(batch: list[jobs.NewPage]) -> None:
        if batch:
            with ctx.db.transaction() as s:
                if jobs.add_pages(s, job_id, batch).finished:
                    raise JobEnded(f"job {job_id} ended while it rendered")
            if on_pages is not None:
                on_pages([PageWork(job_id, p.index, task, priority) for p in batch for task in tasks])

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
        ) as opened:
            batch: list[jobs.NewPage] = []
            for page in opened.pages(skip):
                key = page_key(job_id, page.index)
                ctx.store.put(key, page.png, content_type=page.media_type)
                batch.append(jobs.NewPage(page.index, key, page.width, page.height, len(page.png), page.text))
                if len(batch) == PAGES_PER_WRITE:
                    register(batch)
                    batch = []
            register(batch)
            return opened.page_count


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


def unfinished_work(ctx: Context, job_id: uuid.UUID) -> list[PageWork]:
    """The (page, task) pairs of the job's registered pages that have no result yet."""
    with ctx.db.transaction() as s:
        return unfinished_in(s, job_id)


def unfinished_in(s: Session, job_id: uuid.UUID) -> list[PageWork]:
    job = jobs.get_job(s, job_id)
    done = {(r.page_index, r.task) for r in jobs.results(s, job_id)}
    return [
        PageWork(job_id, page.index, TaskKind(task), job.priority)
        for page in jobs.pages(s, job_id)
        for task in job.tasks
        if (page.index, task) not in done
    ]


def finalize(ctx: Context, job_id: uuid.UUID, notify: Notify) -> Job:
    """Assemble the document outputs, set the final status and queue the end webhook. Only the holder of
    the job's finalisation calls it (see lifecycle.claim_finalization); re-running it is safe."""
    assemble(ctx, job_id)
    job = finish(ctx, job_id)
    if job.status != JobStatus.CANCELLED:  # a cancel that came first has queued its own webhook
        notify_end(ctx, job_id, notify)
    return job


def notify_end(ctx: Context, job_id: uuid.UUID, notify: Notify) -> None:
    """Queue the job's end webhook when it has one, and record that it was queued."""
    with ctx.db.transaction() as s:
        wanted = bool(jobs.get_job(s, job_id).options.get("webhook_url"))
    if wanted:
        notify(job_id)
    with ctx.db.transaction() as s:
        lifecycle.mark_notified(s, job_id)


def assemble(ctx: Context, job_id: uuid.UUID) -> dict[str, Any]:
    """Build and store the document-level outputs from the page results; returns task -> object keys."""
    with ctx.db.transaction() as s:
        job = jobs.get_job(s, job_id)
        by_task: dict[str, list[TaskResult]] = {task: [] for task in job.tasks}
        for result in jobs.results(s, job_id):
            by_task[result.task].append(result)
        indices = [p.index for p in jobs.pages(s, job_id)]  # the document's own (a page range skips some)
    outputs: dict[str, Any] = {}
    for task, results in by_task.items():
        outputs[task] = _assemble_task(ctx, job_id, TaskKind(task), results, indices)
    with ctx.db.transaction() as s:
        jobs.set_outputs(s, job_id, outputs)
    return outputs


def _assemble_task(
    ctx: Context, job_id: uuid.UUID, task: TaskKind, results: list[TaskResult], indices: list[int]
) -> str | list[str]:
    page = {r.page_index: r for r in results}
    if task is TaskKind.OCR:
        parts = []
        for index in indices:
            r = page.get(index)
            if r is not None and r.output_text is not None:
                parts.append(f"<!-- page {index + 1} -->\n\n{r.output_text}")
            else:
                reason = r.error_message if r is not None else "no result"
                parts.append(f"<!-- page {index + 1}: failed ({reason}) -->")
        key = output_key(job_id, "document.md")
        ctx.store.put(key, "\n\n".join(parts).encode() + b"\n", content_type="text/markdown; charset=utf-8")
        return key
    if task is TaskKind.QA:
        answers = [
            {
                "page": i + 1,
                "answer": page[i].output_text if i in page else None,
                "error": _error(page.get(i)),
            }
            for i in indices
        ]
        given = [a for a in answers if a["answer"]]
        combined = (
            given[0]["answer"]
            if len(given) == 1
            else "\n".join(f"Page {a['page']}: {a['answer']}" for a in given)
        )
        key = output_key(job_id, "answers.json")
        body = json.dumps({"answer": combined, "pages": answers}, ensure_ascii=False, indent=2).encode()
        ctx.store.put(key, body, content_type="application/json")
        return key
    extension, content_type = (
        ("py", "text/x-python") if task is TaskKind.CHART2CODE else ("html", "text/html")
    )
    keys = []
    for index in indices:
        r = page.get(index)
        if r is not None and r.output_text is not None:
            key = output_key(job_id, f"page-{index + 1:04d}.{extension}")
            ctx.store.put(key, r.output_text.encode(), content_type=f"{content_type}; charset=utf-8")
            keys.append(key)
    return keys


def _error(result: TaskResult | None) -> str | None:
    if result is None:
        return "no result"
    return result.error_message


def finish(ctx: Context, job_id: uuid.UUID) -> Job:
    """The final status from the page counters; a cancelled job stays cancelled."""
    with ctx.db.transaction() as s:
        job = jobs.get_job(s, job_id, lock=True)
        if JobStatus(job.status).finished:
            return job
        job = _conclude(s, job)
    job_metrics.finished.labels(job.status).inc()
    return job


def _conclude(s: Session, job: Job) -> Job:
    if job.pages_failed == 0:
        return jobs.transition(s, job.id, JobStatus.SUCCEEDED)
    if job.pages_done == 0:
        return jobs.transition(
            s, job.id, JobStatus.FAILED, error_code="all_pages_failed", error_message="every page failed"
        )
    return jobs.transition(
        s,
        job.id,
        JobStatus.PARTIALLY_SUCCEEDED,
        error_code="some_pages_failed",
        error_message=f"{job.pages_failed} of {job.pages_total} pages failed; the others are kept",
    )


def fail(ctx: Context, job_id: uuid.UUID, code: str, message: str, notify: Notify | None = None) -> Job:
    """Fail the job with an error code and message, unless it has already finished; with `notify`, queue
    its end webhook when this call ended it."""
    with ctx.db.transaction() as s:
        job = jobs.get_job(s, job_id, lock=True)
        if JobStatus(job.status).finished:
            return job
        job = jobs.transition(s, job_id, JobStatus.FAILED, error_code=code, error_message=message)
    job_metrics.finished.labels(JobStatus.FAILED.value).inc()
    if notify is not None:
        notify_end(ctx, job_id, notify)
    return job


def cancel(
    ctx: Context, job_id: uuid.UUID, revoke: Callable[[list[str]], None], *, owner: str | None = None
) -> jobs.CancelOutcome:
    """Cancel the job and revoke its queued page tasks. Tasks already running finish, but their results
    do not change the job's status; its flow sees the status and stops."""
    with ctx.db.transaction() as s:
        outcome = jobs.cancel(s, job_id, owner=owner)
        if not outcome.changed:
            return outcome
        ids = [
            PageWork(job_id, page.index, TaskKind(task), 0).id
            for page in jobs.pages(s, job_id)
            for task in outcome.job.tasks
        ]
    job_metrics.finished.labels(JobStatus.CANCELLED.value).inc()
    if ids:
        revoke(ids)
    return outcome


@dataclass(frozen=True)
class SweepRequest:
    owner: str
    tasks: list[TaskKind]
    priority: int
    model_revision: str
    prompt_version: str

    def key(self, sha256: str) -> str:
        """Same content, tasks, model and prompt: same key, so a document is taken in once."""
        what = f"{sorted(t.value for t in self.tasks)}|{self.model_revision}|{self.prompt_version}"
        return f"sweep:{sha256}:{hashlib.sha256(what.encode()).hexdigest()[:32]}"


def take_in(ctx: Context, source: ObjectStore, key: str, request: SweepRequest) -> uuid.UUID | None:
    """Store the object as an input and make its job, unless the same request was made before."""
    with source.open(key) as stream:
        stored = ctx.store.put_input(stream)
    with ctx.store.open(stored.key) as stream:
        try:
            media_type = sniff_media_type(stream.read(1024))
        except DocumentError:  # still a job: it fails with the reason, where its owner sees it
            media_type = "application/octet-stream"
    with ctx.db.transaction() as s:
        document = jobs.get_or_create_document(
            s, sha256=stored.sha256, size_bytes=stored.size, media_type=media_type, object_key=stored.key
        )
        idempotency = request.key(stored.sha256)
        job, created = jobs.create_job(
            s,
            jobs.NewJob(
                owner=request.owner,
                document_id=document.id,
                tasks=request.tasks,
                options={"source": key},
                priority=request.priority,
                idempotency_key=idempotency,
                request_fingerprint=hashlib.sha256(idempotency.encode()).hexdigest(),
                trace=tracing.current_ids(),
            ),
        )
    return job.id if created else None


# -- one page task (the Celery task body) -----------------------------------------------------------------


def process_page(
    ctx: Context,
    generate: Callable[[InferenceRequest], InferenceResult],
    work: PageWork,
    *,
    max_new_tokens: int,
    attempt: int,
    verifier: Verifier | None = None,
) -> bool:
    """Run one page through the model, check its output with `verifier` (generating it again when the
    check fails, see docvl.verify.attempts), and record its result. Returns True when this write completed
    the job: the caller then finalises it. Nothing is done when the job has finished or was cancelled, or
    the result exists. Model worker and storage errors propagate: the caller retries them or, when final,
    records them with `record_failure`."""
    with ctx.db.transaction() as s:
        page = jobs.page_to_run(s, work.job_id, work.page_index, work.task)
    if page is None:
        worker_metrics.page_tasks.labels(work.task.value, "skipped").inc()
        return False
    image = ctx.store.get(page.image_key)
    request = InferenceRequest(
        task=work.task,
        images=[image],
        question=page.question,
        params=GenerationParams(max_new_tokens=max_new_tokens),
        request_id=work.id,
    )
    checked = generate_checked(generate, request, PageInput(image, page.text_layer), verifier)
    result, made = checked.result, checked.made
    log.info(
        "page %d %s: %d tokens generated (%.0f ms queued, %.0f ms inference)",
        work.page_index,
        work.task.value,
        result.generated_tokens,
        result.timings.queued_ms,
        result.timings.inference_ms,
    )
    completed = _record(
        ctx,
        work,
        attempt,
        output_text=made.text,
        output_valid=made.valid,
        output_problem=made.problem,
        prompt_tokens=result.prompt_tokens,
        image_tokens=result.image_tokens,
        generated_tokens=result.generated_tokens,
        queued_ms=result.timings.queued_ms,
        preprocessing_ms=result.timings.preprocessing_ms,
        inference_ms=result.timings.inference_ms,
        model_id=result.model_id,
        model_revision=result.model_revision,
        prompt_template_version=result.prompt_template_version,
        verification=checked.verification,
    )
    worker_metrics.page_tasks.labels(work.task.value, "succeeded").inc()
    return completed


def record_failure(ctx: Context, work: PageWork, error: DocvlError, attempt: int) -> bool:
    completed = _record(ctx, work, attempt, error_code=error.code, error_message=error.message)
    worker_metrics.page_tasks.labels(work.task.value, "failed").inc()
    return completed


def _record(ctx: Context, work: PageWork, attempt: int, **outcome: Any) -> bool:
    """Write the page's result for its task once (see jobs.record_result); True when that write completed
    the job and took its finalisation, in the same transaction (so exactly one writer does)."""
    result = jobs.NewResult(work.job_id, work.page_index, work.task, attempts=attempt, **outcome)
    with tracing.span("docvl.page.write"), ctx.db.transaction() as s:
        return jobs.record_result(s, result) and lifecycle.claim_finalization(s, work.job_id)


@contextmanager
def in_job_trace(ctx: Context, job_id: uuid.UUID, name: str) -> Iterator[None]:
    """A span `name` in the job's own trace (under its submission, kept on its row), whatever trace is
    current: a job runner's flow run takes several jobs, the reconciler re-drives many. Nothing is read or
    recorded when tracing is off."""
    if not tracing.enabled():
        yield
        return
    with ctx.db.transaction() as s:
        traceparent = jobs.get_job(s, job_id).traceparent
    with tracing.job_span(name, traceparent, job_id=job_id):
        yield

"""Finish: assemble the document-level outputs from the page results, set the final status, queue the end
webhook. Also failing and cancelling a job. Every step is safe to re-run."""

from __future__ import annotations

import json
import logging
import uuid
from typing import Any

from sqlalchemy.orm import Session

from docvl.db import jobs, lifecycle, page_results
from docvl.db.models import Job, TaskResult
from docvl.job_status import JobStatus
from docvl.jobs.context import Context, PageWork
from docvl.jobs.dispatch import Dispatch
from docvl.jobs.layout_pages import assemble_document
from docvl.observability.metrics import jobs as job_metrics
from docvl.storage.base import output_key
from docvl.tasks import TaskKind

log = logging.getLogger(__name__)


def finalize(ctx: Context, job_id: uuid.UUID, dispatch: Dispatch) -> Job:
    """Assemble the document outputs, set the final status and queue the end webhook. Only the holder of
    the job's finalisation calls it (see lifecycle.claim_finalization); re-running it is safe. The outputs,
    the final status and, for a job without a webhook, the notification mark are written in one
    transaction."""
    outputs = assemble(ctx, job_id)
    with ctx.db.transaction() as s:
        job = jobs.get_job(s, job_id, lock=True)
        jobs.set_outputs(job, outputs)
        job, concluded = _finished(s, job)
        wanted = job.status != JobStatus.CANCELLED  # a cancel that came first has queued its own webhook
        webhook = wanted and bool(job.options.get("webhook_url"))
        if wanted and not webhook:
            lifecycle.mark_notified(s, job_id)
    if concluded:
        job_metrics.finished.labels(job.status).inc()
    if webhook:
        dispatch.queue_webhook(job_id)
        with ctx.db.transaction() as s:
            lifecycle.mark_notified(s, job_id)
    return job


def notify_end(ctx: Context, job_id: uuid.UUID, dispatch: Dispatch) -> None:
    """Queue the job's end webhook when it has one, and record that it was queued."""
    with ctx.db.transaction() as s:
        wanted = bool(jobs.get_job(s, job_id).options.get("webhook_url"))
    if wanted:
        dispatch.queue_webhook(job_id)
    with ctx.db.transaction() as s:
        lifecycle.mark_notified(s, job_id)


def assemble(ctx: Context, job_id: uuid.UUID) -> dict[str, Any]:
    """Build and store the document-level outputs from the page results; returns task -> object keys."""
    with ctx.db.transaction() as s:
        job = jobs.get_job(s, job_id)
        by_task: dict[str, list[TaskResult]] = {task: [] for task in job.tasks}
        for result in page_results.results(s, job_id):
            by_task[result.task].append(result)
        # the document's own page indices (a page range skips some)
        indices = [p.index for p in page_results.pages(s, job_id)]
    return {task: _assemble_task(ctx, job_id, TaskKind(task), got, indices) for task, got in by_task.items()}


def _assemble_task(
    ctx: Context, job_id: uuid.UUID, task: TaskKind, results: list[TaskResult], indices: list[int]
) -> str | list[str]:
    page = {r.page_index: r for r in results}
    if task is TaskKind.LAYOUT:
        return assemble_document(ctx, job_id, page, indices)
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


def _finished(s: Session, job: Job) -> tuple[Job, bool]:
    """The job (read with lock=True) with its final status from the page counters (a cancelled job stays
    cancelled), and whether this call gave it."""
    if JobStatus(job.status).finished:
        return job, False
    return _conclude(s, job), True


def _conclude(s: Session, job: Job) -> Job:
    if job.pages_failed == 0:
        return jobs.transition(s, job.id, JobStatus.SUCCEEDED, locked=job)
    if job.pages_done == 0:
        return jobs.transition(
            s,
            job.id,
            JobStatus.FAILED,
            error_code="all_pages_failed",
            error_message="every page failed",
            locked=job,
        )
    return jobs.transition(
        s,
        job.id,
        JobStatus.PARTIALLY_SUCCEEDED,
        error_code="some_pages_failed",
        error_message=f"{job.pages_failed} of {job.pages_total} pages failed; the others are kept",
        locked=job,
    )


def fail(ctx: Context, job_id: uuid.UUID, code: str, message: str, dispatch: Dispatch | None = None) -> Job:
    """Fail the job with an error code and message, unless it has already finished; with `dispatch`, queue
    its end webhook when this call ended it."""
    with ctx.db.transaction() as s:
        job = jobs.get_job(s, job_id, lock=True)
        if JobStatus(job.status).finished:
            return job
        job = jobs.transition(s, job_id, JobStatus.FAILED, error_code=code, error_message=message, locked=job)
    job_metrics.finished.labels(JobStatus.FAILED.value).inc()
    if dispatch is not None:
        notify_end(ctx, job_id, dispatch)
    return job


def cancel(
    ctx: Context, job_id: uuid.UUID, dispatch: Dispatch, *, owner: str | None = None
) -> jobs.CancelOutcome:
    """Cancel the job, revoke its queued page tasks and queue its end webhook. Tasks already running
    finish, but their results do not change the job's status; its flow sees the status and stops."""
    with ctx.db.transaction() as s:
        outcome = jobs.cancel(s, job_id, owner=owner)
        if not outcome.changed:
            return outcome
        ids = [
            PageWork(job_id, page.index, TaskKind(task), 0).id
            for page in page_results.pages(s, job_id)
            for task in outcome.job.tasks
        ]
    job_metrics.finished.labels(JobStatus.CANCELLED.value).inc()
    if ids:
        revoke_quietly(dispatch, ids)
    try:
        notify_end(ctx, job_id, dispatch)
    except Exception:  # the job is cancelled either way (committed); the reconciler notifies later
        log.exception("could not queue the webhook of cancelled job %s", job_id)
    return outcome


def revoke_quietly(dispatch: Dispatch, ids: list[str]) -> None:
    """Revoke queued page tasks. If the broker is down they stay queued, and each finds its job ended when
    it runs and does nothing."""
    try:
        dispatch.revoke(ids)
    except Exception:
        log.exception("could not revoke %d page tasks; they will find their job ended", len(ids))

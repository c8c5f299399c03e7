"""The page worker's Celery task bodies: take ids, call the job's stage function, retry what is retryable.

Run a worker with:  celery -A services.worker.tasks worker -Q ocr,chart2code,web2html,qa,layout,webhooks
(`docvl worker` does). Start requests (the `jobs` queue) are the job runner's: workflows/runner.py.
"""

from __future__ import annotations

import logging
import uuid
from functools import cache
from typing import Any

from celery import Task
from celery.signals import worker_init, worker_process_init, worker_process_shutdown

from docvl.broker import signals, stack
from docvl.broker.celery_app import PAGE_TASK, REUSE_TASK, WEBHOOK_TASK, make_celery
from docvl.broker.dispatch import CeleryDispatch
from docvl.db.database import Database
from docvl.errors import DocvlError, InvalidInput, Unavailable, UnknownJob
from docvl.inference.routing import ModelFleet
from docvl.jobs import webhooks
from docvl.jobs.context import Context, PageWork
from docvl.jobs.finish import finalize
from docvl.jobs.pages import process_page, record_failure, unfinished_work
from docvl.jobs.reuse import ReusePolicy
from docvl.jobs.reused_pages import reuse_pages
from docvl.observability import logs, tracing
from docvl.observability.metrics import worker as worker_metrics
from docvl.storage import open_store
from docvl.tasks import TaskKind
from docvl.verify.verifier import Verifier
from services.worker.settings import WorkerSettings

log = logging.getLogger(__name__)
settings = WorkerSettings()
app = make_celery(
    settings.redis_url,
    settings.namespace,
    visibility_timeout_s=settings.visibility_timeout_s,
    time_limit_s=settings.task_time_limit_s,
)
dispatch = CeleryDispatch(app)
signals.observe("docvl-worker", settings)
stack.guard(app, settings)


@cache
def _dependencies() -> tuple[Context, ModelFleet]:
    """Made once per worker process (after the fork: connections are not shared between processes)."""
    store = open_store(settings)
    fleet = ModelFleet(settings.model_worker_targets, timeout_s=settings.inference_timeout_s)
    return Context(Database(settings.database_url), store), fleet


@cache
def _verifier() -> Verifier:
    """Per worker process: its sandbox is probed, and its browser started, on first use."""
    return Verifier()


@worker_init.connect
def _probe_sandbox(**_: Any) -> None:
    """At start, say whether chart code can be contained here (logged; each pool process checks again)."""
    verifier = Verifier()
    if verifier.enabled:
        verifier.sandbox  # noqa: B018 (probing is the point)


@worker_process_shutdown.connect
def _close_verifier(**_: Any) -> None:
    if _verifier.cache_info().currsize:
        _verifier().close()


@worker_process_init.connect
def _reset_after_fork(**_: Any) -> None:
    _dependencies.cache_clear()
    _verifier.cache_clear()


@app.task(bind=True, name=PAGE_TASK, max_retries=None)
def run_page(
    self: Task, job_id: str, page_index: int, task: str, priority: int = 0, namespace: str | None = None
) -> bool:
    """One page through one task. Retryable errors retry with backoff; the last failure is recorded. The
    task whose result completes the job finalises it; returns whether this one did. `namespace`: the
    stack that sent it (None from a docvl that did not say)."""
    ctx, workers = _dependencies()
    work = PageWork(uuid.UUID(job_id), page_index, TaskKind(task), priority)
    tracing.annotate(job_id=job_id, page=page_index, task=task)
    with logs.job_context(job_id, page_index, task):
        if _run_page(self, ctx, workers, work, namespace):
            with tracing.span("docvl.finalize", job_id=job_id):
                job = finalize(ctx, work.job_id, dispatch)
            log.info("job finished: %s", job.status)
            return True
    return False


def _run_page(self: Task, ctx: Context, workers: ModelFleet, work: PageWork, namespace: str | None) -> bool:
    attempt = self.request.retries + 1
    try:
        with worker_metrics.timed(work.task.value):
            return process_page(
                ctx,
                workers.generate,
                work,
                max_new_tokens=settings.max_new_tokens_for(work.task),
                attempt=attempt,
                verifier=_verifier(),
                reuse=ReusePolicy(settings.reuse_scope, workers.identities),
            )
    except UnknownJob:
        _drop_foreign(work, namespace)
        return False
    except InvalidInput as exc:
        return record_failure(ctx, work, exc, attempt)
    except DocvlError as exc:
        if self.request.retries < settings.task_retries:
            delay = min(settings.retry_backoff_s * 2**self.request.retries, 60.0)
            log.warning(
                "page %s attempt %d failed (%s): retrying in %.0f s", work.id, attempt, exc.code, delay
            )
            worker_metrics.page_tasks.labels(work.task.value, "retried").inc()
            raise self.retry(exc=exc, countdown=delay) from exc
        return record_failure(ctx, work, exc, attempt)


@app.task(bind=True, name=REUSE_TASK, max_retries=None)
def reuse_job_pages(self: Task, job_id: str, namespace: str | None = None) -> bool:
    """A job's earlier results taken together (its render was reused); page tasks sent for the rest. An
    outage retries it with backoff; when its retries run out, the job's pages go on as page tasks."""
    ctx, workers = _dependencies()
    tracing.annotate(job_id=job_id)
    with logs.job_context(job_id):
        try:
            reused = reuse_pages(
                ctx,
                uuid.UUID(job_id),
                ReusePolicy(settings.reuse_scope, workers.identities),
                settings.max_new_tokens_for,
            )
        except UnknownJob:
            _drop_foreign(PageWork(uuid.UUID(job_id), 0, TaskKind.OCR, 0), namespace)
            return False
        except DocvlError as exc:
            if self.request.retries < settings.task_retries:
                raise self.retry(
                    exc=exc, countdown=min(settings.retry_backoff_s * 2**self.request.retries, 60.0)
                ) from exc
            dispatch.send_pages(unfinished_work(ctx, uuid.UUID(job_id)))
            return False
        if reused.rest:
            dispatch.send_pages(reused.rest)
        if reused.completed:
            with tracing.span("docvl.finalize", job_id=job_id):
                job = finalize(ctx, uuid.UUID(job_id), dispatch)
            log.info("job finished: %s", job.status)
        return reused.completed


def _drop_foreign(work: PageWork, namespace: str | None) -> None:
    """A page task whose job this stack's database does not have can never succeed here: it is said once
    and dropped, never retried (see docvl/broker/stack.py for how stacks keep apart)."""
    origin = namespace or "unknown"
    log.error(
        "page task %s dropped: its job is not in this stack's database (namespace %r); it was sent from "
        "namespace %r. Two stacks share a namespace on this Redis, or the job is gone",
        work.id,
        settings.namespace,
        origin,
    )
    worker_metrics.foreign_tasks.labels(work.task.value, origin).inc()


@app.task(bind=True, name=WEBHOOK_TASK, max_retries=None)
def deliver_webhook(self: Task, job_id: str) -> bool:
    """POST the job's end to its webhook URL; retried with backoff while the receiver (or the database)
    is unavailable. Every attempt is recorded in the job's events."""
    tracing.annotate(job_id=job_id)
    with logs.job_context(job_id):
        return _deliver_webhook(self, job_id)


def _deliver_webhook(self: Task, job_id: str) -> bool:
    ctx, _ = _dependencies()
    attempt = self.request.retries + 1
    try:
        delivery = webhooks.prepare(ctx.db, uuid.UUID(job_id))
        if delivery is None:
            return False
        try:
            code = webhooks.deliver(
                delivery, settings.webhook_timeout_s, allow_private=settings.webhook_allow_private
            )
        except DocvlError as exc:
            webhooks.record(ctx.db, uuid.UUID(job_id), attempt, status_code=None, error=exc.message)
            if isinstance(exc, InvalidInput):
                worker_metrics.webhooks.labels("failed").inc()
                return False
            raise
        webhooks.record(ctx.db, uuid.UUID(job_id), attempt, status_code=code, error=None)
        worker_metrics.webhooks.labels("delivered").inc()
        return True
    except Unavailable as exc:
        if self.request.retries >= settings.webhook_retries:
            log.error("webhook of job %s given up after %d attempts: %s", job_id, attempt, exc.message)
            worker_metrics.webhooks.labels("failed").inc()
            return False
        worker_metrics.webhooks.labels("retried").inc()
        raise self.retry(countdown=min(settings.retry_backoff_s * 2**self.request.retries, 300.0)) from exc

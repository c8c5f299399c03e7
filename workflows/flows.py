"""Prefect flows: they only orchestrate; the work is in docvl.pipeline and the Celery page tasks."""

from __future__ import annotations

import logging
import time
import uuid
from functools import cache
from typing import Any

from celery import Celery
from prefect import flow, task

from docvl import pipeline
from docvl.db.database import Database
from docvl.documents import DocumentError
from docvl.errors import DocvlError, Unavailable
from docvl.job_status import JobStatus
from docvl.storage import ObjectStore, open_store
from docvl.storage.factory import open_bucket
from docvl.tasks import TaskKind
from model_worker.transport.client import InferenceClient
from services.worker.celery_app import PAGE_TASK, celery_priority, make_celery, queue_webhook
from workflows.settings import FlowSettings

RETRY_DELAYS = [1, 5, 15, 30]
log = logging.getLogger(__name__)


@cache
def settings() -> FlowSettings:
    return FlowSettings()


@cache
def context() -> pipeline.Context:
    s = settings()
    store = open_store(s)
    store.ensure_ready()
    return pipeline.Context(Database(s.database_url), store)


@cache
def celery() -> Celery:
    return make_celery(settings().redis_url)


def _retryable(task: Any, task_run: Any, state: Any) -> bool:
    """Retry outages (database, storage), nothing else."""
    return isinstance(state.result(raise_on_failure=False), Unavailable)


retried = task(retries=len(RETRY_DELAYS), retry_delay_seconds=RETRY_DELAYS, retry_condition_fn=_retryable)


@retried
def start_job(job_id: uuid.UUID) -> None:
    pipeline.start(context(), job_id)


def send(work: list[pipeline.PageWork], app: Celery | None = None) -> None:
    """One Celery task per (page, task), on the queue of its task kind, with the job's priority."""
    for item in work:
        (app or celery()).send_task(
            PAGE_TASK,
            args=[str(item.job_id), item.page_index, item.task.value, item.priority],
            queue=item.task.value,
            priority=celery_priority(item.priority),
            task_id=item.id,
        )


@retried
def render_and_dispatch(job_id: uuid.UUID) -> int:
    """Render the pages, sending each few pages' tasks as soon as they are stored."""
    s = settings()
    limits = pipeline.RenderLimits(
        max_pages=s.max_pages, dpi=s.render_dpi, max_pixels=s.max_page_pixels, max_bytes=s.max_document_bytes
    )
    return pipeline.render(context(), job_id, limits, on_pages=send)


@retried
def wait_for_pages(job_id: uuid.UUID) -> JobStatus:
    """Follow the page counters until every page has its results, or the job is cancelled."""
    s = settings()
    deadline = time.monotonic() + s.job_timeout_s
    seen, since = (-1, -1), time.monotonic()
    while True:
        job = pipeline.progress(context(), job_id)
        status = JobStatus(job.status)
        if status.finished or job.pages_done + job.pages_failed >= job.pages_total:
            return status
        now = time.monotonic()
        if now > deadline:
            raise DocvlError(f"the job's pages were not all done after {s.job_timeout_s:.0f} s")
        if (job.pages_done, job.pages_failed) != seen:
            seen, since = (job.pages_done, job.pages_failed), now
        elif now - since > s.redispatch_after_s:  # no page finished for that long: tasks were lost
            missing = pipeline.unfinished_work(context(), job_id)
            log.warning(
                "job %s: no progress for %.0f s; sending %d page tasks again",
                job_id,
                now - since,
                len(missing),
            )
            send(missing)  # same task ids; a page written twice stays one result
            since = now
        time.sleep(s.poll_interval_s)


@retried
def assemble_outputs(job_id: uuid.UUID) -> dict[str, Any]:
    return pipeline.assemble(context(), job_id)


@retried
def finish_job(job_id: uuid.UUID) -> JobStatus:
    return JobStatus(pipeline.finish(context(), job_id).status)


@retried
def fail_job(job_id: uuid.UUID, code: str, message: str) -> JobStatus:
    return JobStatus(pipeline.fail(context(), job_id, code, message).status)


@task(retries=3, retry_delay_seconds=[1, 5, 15])
def notify_end(job_id: uuid.UUID) -> None:
    """Queue the job's webhook (delivered, retried and recorded by the Celery worker)."""
    queue_webhook(celery(), job_id)


def revoke_page_tasks(ids: list[str]) -> None:
    celery().control.revoke(ids)


@flow(name="process_document", persist_result=False, log_prints=False)
def process_document(job_id: uuid.UUID) -> JobStatus:
    """Render the document, fan its pages out to the Celery queues, collect, assemble, set the status."""
    try:
        start_job(job_id)
        render_and_dispatch(job_id)
        if wait_for_pages(job_id).finished:  # cancelled meanwhile: whoever cancelled notifies
            return JobStatus(pipeline.progress(context(), job_id).status)
        assemble_outputs(job_id)
        status = JobStatus(finish_job(job_id))
    except DocumentError as exc:
        status = JobStatus(fail_job(job_id, exc.code, exc.message))
    except Exception as exc:  # never leave a job running behind a crashed flow
        fail_job(job_id, getattr(exc, "code", "internal"), f"the pipeline failed: {exc}")
        notify_end(job_id)
        raise
    notify_end(job_id)
    return status


# -- the scheduled sweep ----------------------------------------------------------------------------------


@retried
def model_identity() -> tuple[str, str]:
    """(model revision, prompt-template version) of the model workers now serving."""
    with InferenceClient(settings().model_worker_targets[0]) as client:
        info = client.model_info()
    return str(info["model_revision"]), str(info["prompt_template_version"])


@retried
def take_in(bucket: str, key: str, tasks: list[str], identity: tuple[str, str]) -> uuid.UUID | None:
    """A job for the object unless one exists for the same content, tasks, model and prompt; None if so."""
    return pipeline.take_in(context(), sweep_source(bucket), key, sweep_request(tasks, identity))


def sweep_source(bucket: str) -> ObjectStore:
    return open_bucket(settings(), bucket, context().store)


def sweep_request(tasks: list[str], identity: tuple[str, str]) -> pipeline.SweepRequest:
    s = settings()
    return pipeline.SweepRequest(
        owner=s.sweep_owner,
        tasks=[TaskKind.parse(t) for t in tasks],
        priority=s.sweep_priority,
        model_revision=identity[0],
        prompt_version=identity[1],
    )


@flow(name="sweep_bucket", persist_result=False, log_prints=False)
def sweep_bucket(bucket: str | None = None, prefix: str | None = None, tasks: list[str] | None = None) -> int:
    """Make a job for every document under the prefix not yet processed with the same tasks, model and
    prompt version (by content hash, not name), and start processing each; returns how many it started."""
    s = settings()
    bucket = bucket or s.sweep_bucket or s.s3_bucket
    prefix = s.sweep_prefix if prefix is None else prefix
    tasks = tasks or s.sweep_tasks
    identity = model_identity()
    started = 0
    for item in list(sweep_source(bucket).list(prefix)):
        job_id = take_in(bucket, item.key, tasks, identity)
        if job_id is None:
            continue
        started += 1
        if s.sweep_start == "inline":
            process_document(job_id)
        else:
            start_processing(job_id)
    return started


PROCESS_DEPLOYMENT = "process_document/process-document"


def start_processing(job_id: uuid.UUID) -> None:
    """Start process_document for the job as a run of the served deployment (what front doors call)."""
    from prefect.deployments import run_deployment

    run_deployment(PROCESS_DEPLOYMENT, parameters={"job_id": str(job_id)}, timeout=0, as_subflow=False)


def serve() -> None:
    """Serve both deployments until interrupted: process_document on demand, sweep_bucket on its cron."""
    from prefect import serve as prefect_serve

    s = settings()
    prefect_serve(
        process_document.to_deployment(name="process-document"),
        sweep_bucket.to_deployment(name="nightly-sweep", cron=s.sweep_cron),
        limit=None,
    )

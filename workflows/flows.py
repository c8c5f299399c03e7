"""Prefect flows: they only orchestrate; the work is in docvl.jobs and the Celery page tasks.

start_jobs runs in the job runners (workflows/runner.py: Celery workers on the `jobs` queue, see
run_claimed), a flow run per batch of claimed jobs, in the long-lived worker process: no job costs a
process. reconcile and sweep_bucket are deployments served on schedules by `docvl flows serve`."""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from functools import cache, partial
from typing import Any, TypeVar

from prefect import flow, get_run_logger, tags, task
from prefect.runtime import flow_run
from prefect.settings import temporary_settings

from docvl import office
from docvl.broker import stack
from docvl.broker.celery_app import ALL_QUEUES
from docvl.broker.dispatch import CeleryDispatch
from docvl.db import lifecycle
from docvl.db.database import Database
from docvl.documents import DocumentError
from docvl.errors import DocvlError, Unavailable
from docvl.inference.client import InferenceClient
from docvl.jobs import reconciler, sweep
from docvl.jobs.context import Context, in_job_trace
from docvl.jobs.finish import fail, finalize
from docvl.jobs.intake import Limits, parse_request
from docvl.jobs.options import SubmitOptions
from docvl.jobs.render import RenderLimits, drive
from docvl.namespace import redis_prefix
from docvl.observability import logs, metrics, tracing
from docvl.observability.metrics import jobs as job_metrics
from docvl.observability.metrics import platform as platform_metrics
from docvl.storage import ObjectStore, StoredObject, open_store
from docvl.storage.factory import open_bucket
from workflows.settings import FlowSettings

RETRY_DELAYS = [1, 5, 15, 30]
LINGER_S = 0.3  # how long a flow run whose batch is started looks for more jobs before it ends
LOOKING_MARGIN_S = 1.0  # how long "a runner is looking" outlives a runner that died while it looked
T = TypeVar("T")
log = logging.getLogger(__name__)
logs.reclaim()  # importing Prefect configured logging its own way: docvl's handler takes the root back


@cache
def settings() -> FlowSettings:
    return FlowSettings()


@cache
def context() -> Context:
    s = settings()
    store = open_store(s)
    store.ensure_ready()
    converter = office.converter_for(s) if office.office_off(s) is None else None
    return Context(Database(s.database_url), store, converter)


@cache
def dispatch() -> CeleryDispatch:
    return CeleryDispatch.connect(settings().redis_url, settings().namespace)


def namespace_tags() -> AbstractContextManager[Any]:
    """Flow runs started inside carry the stack's namespace as a tag (one Prefect server may serve several
    stacks; the UI filters by tag)."""
    context: AbstractContextManager[Any] = tags(f"namespace:{settings().namespace}")
    return context


def _retryable(task: Any, task_run: Any, state: Any) -> bool:
    """Retry outages (database, storage), nothing else."""
    return isinstance(state.result(raise_on_failure=False), Unavailable)


retried = task(retries=len(RETRY_DELAYS), retry_delay_seconds=RETRY_DELAYS, retry_condition_fn=_retryable)


def render_limits() -> RenderLimits:
    s = settings()
    return RenderLimits(
        max_pages=s.max_pages,
        dpi=s.render_dpi,
        max_pixels=s.max_page_pixels,
        max_side=s.render_max_side or None,
        max_bytes=s.max_document_bytes,
        reuse=s.reuse_scope,
    )


def drive_job(job_id: uuid.UUID) -> bool:
    """Start the job, render its pages and dispatch their tasks; True when it is ready to finalise."""
    with in_job_trace(context(), job_id, "docvl.job.start"):
        return drive(context(), job_id, render_limits(), dispatch())


def finalize_job(job_id: uuid.UUID) -> None:
    with in_job_trace(context(), job_id, "docvl.finalize"):
        job = finalize(context(), job_id, dispatch())
    log.info("job finished: %s", job.status)


def outages_retried(step: Callable[[], T], delays: Sequence[float] = RETRY_DELAYS) -> T:
    """`step()`, again after each of `delays` seconds while it fails with an outage (database, storage);
    any other error, or an outage that outlasts them, is raised. Every step is safe to re-run."""
    for delay in delays:
        try:
            return step()
        except Unavailable as exc:
            log.warning("%s; trying again in %.0f s", exc.message, delay)
            time.sleep(delay)
    return step()


@flow(name="start_jobs", persist_result=False, log_prints=False)
def start_jobs(job_ids: list[uuid.UUID]) -> int:
    """Start the claimed jobs: each is rendered and split into Celery page tasks; the page task that writes
    a job's last result finishes it. Then, while more jobs are waiting, claim and start them in the same
    flow run, up to BATCHES_PER_FLOW_RUN batches: under load one flow run (its creation and its states cost
    ~130 ms of CPU, bench/orchestration.py) serves many jobs instead of one or two. Every job records the
    flow run that started it (jobs.flow_run_id), and the flow run's log has a line for each job it
    started, with the outcome (a task run per job cost ~35 ms of CPU, a log line well under 1). Returns how
    many were started."""
    run = flow_run.get_id()
    started = 0
    for batch in range(BATCHES_PER_FLOW_RUN):
        if batch > 0 and not (job_ids := claim_soon()):
            break
        try:
            if run:
                with context().db.transaction() as s:
                    lifecycle.set_flow_run(s, job_ids, run)
            started += sum(start_one(job_id) for job_id in job_ids)
        except Exception:  # Prefect away: give these claims back at once (no-op for the jobs rendered)
            release(job_ids)
            raise
    return started


def claim() -> list[uuid.UUID]:
    """Claim a batch of the jobs waiting to start (none: nothing waits, or other runners have them)."""
    with context().db.transaction() as tx:
        return lifecycle.claim_starts(tx, limit=settings().start_batch, stale_s=settings().claim_stale_s)


def claim_soon(within_s: float = LINGER_S) -> list[uuid.UUID]:
    """A batch of the jobs waiting to start, or of those that arrive within `within_s`: a flow run lingers
    a moment for the next jobs rather than end and leave them a flow run of their own (~130 ms of CPU).
    None when none came. While it looks, new jobs wake it rather than send start requests
    (CeleryDispatch.looking); once it has stopped saying so, it claims once more for those that came
    meanwhile."""
    deadline = time.monotonic() + within_s
    dispatch().looking(within_s + LOOKING_MARGIN_S)
    try:
        while not (job_ids := claim()) and (left := deadline - time.monotonic()) > 0:
            dispatch().wait_for_new_job(left)
        if job_ids:
            return job_ids  # the flow run goes on looking after it has started them, or run_claimed does
    finally:
        dispatch().stopped_looking()
    return claim()


def release(job_ids: list[uuid.UUID]) -> None:
    with context().db.transaction() as tx:
        lifecycle.release_claims(tx, job_ids)


def start_one(job_id: uuid.UUID) -> bool:
    """Drive one job inside the current flow run (and finalise it when its pages were faster than its
    render). A bad document fails the job; an outage leaves it to the reconciler. True when started."""
    with logs.job_context(job_id):
        return _start_one(job_id)


def _start_one(job_id: uuid.UUID) -> bool:
    record = run_log()
    try:
        if outages_retried(partial(drive_job, job_id)):
            outages_retried(partial(finalize_job, job_id))
        job_metrics.starts.labels("started").inc()
        record.info("job %s: started", job_id)
        return True
    except DocumentError as exc:
        fail(context(), job_id, exc.code, exc.message, dispatch())
        record.info("job %s: failed (%s)", job_id, exc.code)
    except Unavailable as exc:  # an outage outlasted the retries: the reconciler resumes the job
        job_metrics.starts.labels("deferred").inc()
        record.warning("job %s: left for the reconciler (%s)", job_id, exc.message)
        return False
    except DocvlError as exc:
        log.exception("job %s failed", job_id)
        fail(context(), job_id, exc.code, f"the pipeline failed: {exc.message}", dispatch())
        record.error("job %s: failed (%s)", job_id, exc.code)
    except Exception as exc:  # a bug: fail this job once, rather than start it again and again
        log.exception("job %s failed", job_id)
        fail(context(), job_id, "internal", f"the pipeline failed: {type(exc).__name__}", dispatch())
        record.error("job %s: failed (internal)", job_id)
    job_metrics.starts.labels("failed").inc()
    return False


def run_log() -> Any:
    """The current flow run's log in Prefect, which records each job the run started (Prefect's loggers
    are at PREFECT_LOGGING_LEVEL, WARNING in docvl's processes, but for this one: INFO). Its lines also
    reach this process's own log."""
    logging.getLogger("prefect.flow_runs").setLevel(logging.INFO)
    return get_run_logger()


MAX_BATCHES_PER_REQUEST = 20  # flow runs a start request makes before it asks another to go on
BATCHES_PER_FLOW_RUN = 20  # batches a flow run claims and starts while jobs keep waiting


@cache
def heartbeat_off() -> AbstractContextManager[Any]:
    """Switch Prefect's flow heartbeat off in this process for good (it costs ~1 s per flow run, and no
    environment value means "off"); done once, as making the settings costs ~30 ms. The context is kept
    (cached): once collected, it would put the heartbeat back."""
    context: AbstractContextManager[Any] = temporary_settings(updates={"flows.heartbeat_frequency": None})
    context.__enter__()
    return context


@cache
def prefect_client() -> AbstractContextManager[Any]:
    """One Prefect API client for this long-lived process, entered once and kept (cached) like
    heartbeat_off: each flow run would otherwise make its own, an HTTP client with a new TLS context
    (~6 % of a runner's CPU under load). Not cached when Prefect is away: the next request tries again."""
    from prefect.context import SyncClientContext

    context: AbstractContextManager[Any] = SyncClientContext()
    context.__enter__()
    return context


def run_claimed() -> int:
    """What a job runner does on a start request: claim unstarted jobs a batch at a time and start each
    batch in one flow run, in this process, until none is left. Returns how many it started."""
    total = 0
    for _ in range(MAX_BATCHES_PER_REQUEST):
        job_ids = claim()
        if not job_ids:
            return total
        try:
            heartbeat_off()
            prefect_client()
            with tracing.detached(), namespace_tags():  # the batch's flow run: a trace of its own
                total += start_jobs(job_ids)
        except Exception:  # the flow run itself failed (Prefect away): the jobs wait, none is lost
            log.exception("could not start %d jobs; they wait for the next request", len(job_ids))
            release(job_ids)
            return total
    dispatch().start_jobs()  # more are waiting: let another request (maybe another runner) go on
    return total


# -- the reconciler ---------------------------------------------------------------------------------------


def lifecycle_limits() -> lifecycle.Limits:
    s = settings()
    return lifecycle.Limits(
        start_grace_s=s.start_grace_s,
        claim_stale_s=s.claim_stale_s,
        redispatch_after_s=s.redispatch_after_s,
        finalize_stale_s=s.finalize_stale_s,
        job_timeout_s=s.job_timeout_s,
    )


@flow(name="reconcile", persist_result=False, log_prints=False)
def reconcile() -> dict[str, int]:
    """Re-drive every job whose next step is overdue (see docvl.jobs.reconciler); returns the counts."""
    counts = reconciler.reconcile(
        context(), lifecycle_limits(), dispatch(), start_batch=settings().start_batch
    )
    get_run_logger().info("reconciled: %s", ", ".join(f"{k} {v}" for k, v in counts.items()))
    return counts


# -- the scheduled sweep ----------------------------------------------------------------------------------


@retried
def model_identity() -> tuple[str, str]:
    """(model revision, prompt-template version) of the model workers now serving."""
    with InferenceClient(settings().model_worker_targets[0]) as client:
        info = client.model_info()
    return str(info["model_revision"]), str(info["prompt_template_version"])


@retried
def take_in(bucket: str, item: StoredObject, tasks: list[str], identity: tuple[str, str]) -> sweep.Intake:
    """A job for the listed object unless one exists for the same content, tasks, model and prompt, made
    failed when intake refuses its document; none for an object over the size limit (logged)."""
    return sweep.take_in(
        context(), sweep_source(bucket), bucket, item, sweep_request(tasks, identity), dispatch()
    )


def sweep_source(bucket: str) -> ObjectStore:
    return open_bucket(settings(), bucket, context().store)


def sweep_request(tasks: list[str], identity: tuple[str, str]) -> sweep.SweepRequest:
    """The sweep's tasks and priority checked by intake as a submission's are, with the limits the job
    runners render within (InvalidInput when the settings name a task that cannot be swept)."""
    s = settings()
    limits = Limits(
        max_upload_bytes=s.max_document_bytes,
        max_pages=s.max_pages,
        office_off=office.office_off(s),
        max_unpacked_bytes=s.office_max_unpacked_bytes,
    )
    options = SubmitOptions.of({"tasks": tasks, "priority": s.sweep_priority})
    return sweep.SweepRequest(
        owner=s.sweep_owner,
        request=parse_request(limits, options),
        limits=limits,
        model_revision=identity[0],
        prompt_version=identity[1],
    )


@flow(name="sweep_bucket", persist_result=False, log_prints=False)
def sweep_bucket(
    bucket: str | None = None,
    prefix: str | None = None,
    tasks: list[str] | None = None,
    read_all: bool = False,
) -> int:
    """Make a job for every document under the prefix not yet processed with the same tasks, model and
    prompt version (by content hash, not name), and start them; returns how many jobs it made (those whose
    document intake refused among them, failed at once). Objects unchanged since a sweep read them (same
    ETag and size) whose job exists are not read again (docvl.jobs.sweep); `read_all` reads every one."""
    s = settings()
    bucket = bucket or s.sweep_bucket or s.s3_bucket
    prefix = s.sweep_prefix if prefix is None else prefix
    tasks = tasks or s.sweep_tasks
    identity = model_identity()
    request = sweep_request(tasks, identity)  # settings that cannot be swept fail the flow run here, once

    def take(item: StoredObject) -> sweep.Intake:
        intake: sweep.Intake = take_in(bucket, item, tasks, identity)
        if intake.taken is not None and not intake.taken.failed and s.sweep_start == "inline":
            start_one(intake.taken.job_id)
        return intake

    swept = sweep.sweep(context(), sweep_source(bucket), bucket, prefix, request, take, read_all=read_all)
    if s.sweep_start == "runner" and any(not taken.failed for taken in swept.taken):
        dispatch().start_jobs()
    return swept.made


def serve() -> None:
    """Until interrupted: run the reconciler every DOCVL_RECONCILE_INTERVAL_S in this process (each pass a
    flow run of its own), and serve the deployments: the bucket sweep on DOCVL_SWEEP_CRON, and the
    reconciler on demand (a run from the Prefect UI). Scheduled passes do not go through the reconciler's
    deployment because Prefect runs each deployment run in a new Python process: seconds of CPU every
    interval, on the same cores as the jobs (docs/lifecycle.md)."""
    from prefect import serve as prefect_serve

    s = settings()
    marker = stack.stake(s)  # another stack with this namespace on this Redis: refused here
    if metrics.serve(s.flows_metrics_port, s.metrics_host) is not None:
        platform_metrics.register(
            s.database_url,
            s.redis_url,
            ALL_QUEUES,
            s.platform_metrics_timeout_s,
            key_prefix=redis_prefix(s.namespace),
        )
    stop = threading.Event()
    passes = threading.Thread(
        target=reconcile_every, args=(s.reconcile_interval_s, stop, marker.refresh), daemon=True
    )
    passes.start()
    tagged = [f"namespace:{s.namespace}"]
    try:
        prefect_serve(
            reconcile.to_deployment(name=deployment_name("reconciler"), tags=tagged),
            sweep_bucket.to_deployment(name=deployment_name("nightly-sweep"), cron=s.sweep_cron, tags=tagged),
            limit=None,
        )
    finally:
        stop.set()


def deployment_name(name: str) -> str:
    """A deployment's name in this stack: Prefect keeps one deployment per flow and name, so stacks that
    share a Prefect server keep theirs apart by namespace."""
    return f"{name}-{settings().namespace}"


def reconcile_every(
    interval_s: float, stop: threading.Event, refresh: Callable[[], None] = lambda: None
) -> None:
    """A reconciler pass at once (after a restart, overdue jobs need not wait; and Prefect's first flow run
    in a process costs seconds of CPU, better spent at start-up), then every `interval_s` until `stop`. A
    pass that fails (the database or Prefect away) is logged, and the next one tries again. `refresh` runs
    before each pass (the stack's namespace marker)."""
    heartbeat_off()
    while True:
        refresh()
        try:
            with namespace_tags():
                reconcile()
        except Exception:  # whatever the outage, the next pass comes
            log.exception("reconciler pass failed; the next one is in %.0f s", interval_s)
        if stop.wait(interval_s):
            return

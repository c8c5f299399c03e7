"""The reconciler: one pass over the jobs whose next step is overdue, re-driving each from what Postgres
holds. It runs on a short schedule (the flow runner's reconcile flow); several at once double
nothing, since each takes its rows with FOR UPDATE SKIP LOCKED and stamps them before it acts.

- not started, or its render interrupted -> ask a job runner to (re)start it (pages already stored kept);
- pages dispatched but none finished for a while -> send the unfinished page tasks again (same ids);
- every page done but the job not finished -> assemble and finish it here;
- finished but its webhook never queued -> queue it;
- unfinished long past the job timeout -> fail it.
Every re-drive is a `recovered` job event saying what was done.
"""

from __future__ import annotations

import logging
import math
import uuid

from sqlalchemy.orm import Session

from docvl.db import jobs, lifecycle
from docvl.job_status import JobStatus
from docvl.jobs.context import Context, in_job_trace
from docvl.jobs.dispatch import Dispatch
from docvl.jobs.finish import fail, finalize, notify_end, revoke_quietly
from docvl.jobs.pages import unfinished_in, unfinished_work
from docvl.observability import logs
from docvl.observability.metrics import jobs as job_metrics

log = logging.getLogger(__name__)


def reconcile(
    ctx: Context, limits: lifecycle.Limits, dispatch: Dispatch, *, start_batch: int
) -> dict[str, int]:
    """One pass; returns how many jobs each kind of re-drive took."""
    counts = {
        "started": _starts(ctx, limits, dispatch, start_batch),
        "redispatched": _redispatch(ctx, limits, dispatch),
        "finalized": _finalize(ctx, limits, dispatch),
        "notified": _notify(ctx, limits, dispatch),
        "timed_out": _time_out(ctx, limits, dispatch),
    }
    if any(counts.values()):
        log.warning("reconciler re-drove jobs: %s", counts)
    return counts


def _recovered(s: Session, job_id: uuid.UUID, action: str, **data: object) -> None:
    jobs.add_event(s, job_id, "recovered", {"action": action, **data})
    job_metrics.recovered.labels(action).inc()


def _starts(ctx: Context, limits: lifecycle.Limits, dispatch: Dispatch, batch: int) -> int:
    with ctx.db.transaction() as s:
        overdue = lifecycle.overdue_starts(s, limits)
        for job in overdue:
            _recovered(s, job.job_id, "start" if job.status == JobStatus.QUEUED else "resume_render")
    if overdue:  # each request claims up to a batch of the claimable jobs, these among them
        dispatch.start_jobs(math.ceil(len(overdue) / batch))
    return len(overdue)


def _redispatch(ctx: Context, limits: lifecycle.Limits, dispatch: Dispatch) -> int:
    with ctx.db.transaction() as s:
        stalled = lifecycle.stalled_pages(s, limits)
        work = {job.job_id: unfinished_in(s, job.job_id) for job in stalled}
        for job_id, items in work.items():
            _recovered(s, job_id, "redispatch", page_tasks=len(items))
    for job_id, items in work.items():
        with in_job_trace(ctx, job_id, "docvl.reconcile.redispatch"), logs.job_context(job_id):
            log.info("re-dispatching %d page tasks", len(items))
            dispatch.send_pages(items)  # same task ids: a page written twice stays one result
    return len(stalled)


def _finalize(ctx: Context, limits: lifecycle.Limits, dispatch: Dispatch) -> int:
    taken = []
    with ctx.db.transaction() as s:
        for job in lifecycle.unfinalized(s, limits):
            if lifecycle.claim_finalization(s, job.job_id, stale_s=limits.finalize_stale_s):
                _recovered(s, job.job_id, "finalize")
                taken.append(job.job_id)
    for job_id in taken:
        with in_job_trace(ctx, job_id, "docvl.finalize"), logs.job_context(job_id):
            finished = finalize(ctx, job_id, dispatch)
            log.info("job finished by the reconciler: %s", finished.status)
    return len(taken)


def _notify(ctx: Context, limits: lifecycle.Limits, dispatch: Dispatch) -> int:
    with ctx.db.transaction() as s:
        ended = lifecycle.unnotified(s, limits)
        for job in ended:
            _recovered(s, job.job_id, "notify")
    for job in ended:
        notify_end(ctx, job.job_id, dispatch)
    return len(ended)


def _time_out(ctx: Context, limits: lifecycle.Limits, dispatch: Dispatch) -> int:
    with ctx.db.transaction() as s:
        late = lifecycle.timed_out(s, limits)
        for job in late:
            _recovered(s, job.job_id, "time_out")
    for job in late:
        message = f"the job did not finish within {limits.job_timeout_s:.0f} s of its submission"
        fail(ctx, job.job_id, "job_timeout", message, dispatch)
        revoke_quietly(dispatch, [w.id for w in unfinished_work(ctx, job.job_id)])
    return len(late)

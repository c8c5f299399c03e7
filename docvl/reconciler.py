"""The reconciler: one pass over the jobs whose next step is overdue, re-driving each from what Postgres
holds. It runs on a short schedule (a Prefect deployment, see workflows/flows.py); several at once double
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
from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy.orm import Session

from docvl import pipeline
from docvl.db import jobs, lifecycle
from docvl.job_status import JobStatus
from docvl.observability import logs
from docvl.observability.metrics import jobs as job_metrics

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Drivers:
    """How the reconciler acts: ask job runners to claim jobs, send page tasks, queue a webhook."""

    request_starts: Callable[[int], None]
    send: pipeline.Send
    notify: pipeline.Notify
    revoke: Callable[[list[str]], None]


def reconcile(
    ctx: pipeline.Context, limits: lifecycle.Limits, drivers: Drivers, *, start_batch: int
) -> dict[str, int]:
    """One pass; returns how many jobs each kind of re-drive took."""
    counts = {
        "started": _starts(ctx, limits, drivers, start_batch),
        "redispatched": _redispatch(ctx, limits, drivers),
        "finalized": _finalize(ctx, limits, drivers),
        "notified": _notify(ctx, limits, drivers),
        "timed_out": _time_out(ctx, limits, drivers),
    }
    if any(counts.values()):
        log.warning("reconciler re-drove jobs: %s", counts)
    return counts


def _recovered(s: Session, job_id: uuid.UUID, action: str, **data: object) -> None:
    jobs.add_event(s, job_id, "recovered", {"action": action, **data})
    job_metrics.recovered.labels(action).inc()


def _starts(ctx: pipeline.Context, limits: lifecycle.Limits, drivers: Drivers, batch: int) -> int:
    with ctx.db.transaction() as s:
        overdue = lifecycle.overdue_starts(s, limits)
        for job in overdue:
            _recovered(s, job.job_id, "start" if job.status == JobStatus.QUEUED else "resume_render")
    if overdue:  # each request claims up to a batch of the claimable jobs, these among them
        drivers.request_starts(math.ceil(len(overdue) / batch))
    return len(overdue)


def _redispatch(ctx: pipeline.Context, limits: lifecycle.Limits, drivers: Drivers) -> int:
    with ctx.db.transaction() as s:
        stalled = lifecycle.stalled_pages(s, limits)
        work = {job.job_id: pipeline.unfinished_in(s, job.job_id) for job in stalled}
        for job_id, items in work.items():
            _recovered(s, job_id, "redispatch", page_tasks=len(items))
    for job_id, items in work.items():
        with pipeline.in_job_trace(ctx, job_id, "docvl.reconcile.redispatch"), logs.job_context(job_id):
            log.info("re-dispatching %d page tasks", len(items))
            drivers.send(items)  # same task ids: a page written twice stays one result
    return len(stalled)


def _finalize(ctx: pipeline.Context, limits: lifecycle.Limits, drivers: Drivers) -> int:
    taken = []
    with ctx.db.transaction() as s:
        for job in lifecycle.unfinalized(s, limits):
            if lifecycle.claim_finalization(s, job.job_id, stale_s=limits.finalize_stale_s):
                _recovered(s, job.job_id, "finalize")
                taken.append(job.job_id)
    for job_id in taken:
        with pipeline.in_job_trace(ctx, job_id, "docvl.finalize"), logs.job_context(job_id):
            finished = pipeline.finalize(ctx, job_id, drivers.notify)
            log.info("job finished by the reconciler: %s", finished.status)
    return len(taken)


def _notify(ctx: pipeline.Context, limits: lifecycle.Limits, drivers: Drivers) -> int:
    with ctx.db.transaction() as s:
        ended = lifecycle.unnotified(s, limits)
        for job in ended:
            _recovered(s, job.job_id, "notify")
    for job in ended:
        pipeline.notify_end(ctx, job.job_id, drivers.notify)
    return len(ended)


def _time_out(ctx: pipeline.Context, limits: lifecycle.Limits, drivers: Drivers) -> int:
    with ctx.db.transaction() as s:
        late = lifecycle.timed_out(s, limits)
        for job in late:
            _recovered(s, job.job_id, "time_out")
    for job in late:
        message = f"the job did not finish within {limits.job_timeout_s:.0f} s of its submission"
        pipeline.fail(ctx, job.job_id, "job_timeout", message, drivers.notify)
        drivers.revoke([w.id for w in pipeline.unfinished_work(ctx, job.job_id)])
    return len(late)

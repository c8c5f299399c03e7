"""The lifecycle's claims and the reconciler's questions, as SQL on the jobs table. Every function runs in
the caller's transaction.

A job is driven by whoever holds its step, and a step's holder is written in the row:
- start and render: `claimed_at`, taken by a job runner and kept fresh while it renders (each page batch);
  a claim older than the stale limit is free again (its holder died);
- finalisation: `finalizing_at`, taken exactly once by whichever write completes the job (the last page
  result, or the end of the render when the pages were faster);
- the end webhook: `notified_at`, once it is queued.
Several reconcilers and runners at once take rows with FOR UPDATE SKIP LOCKED, so none doubles a step.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from sqlalchemy import text
from sqlalchemy.orm import Session

from docvl import job_status
from docvl.db import jobs
from docvl.db.models import status_is
from docvl.job_status import JobStatus

UNFINISHED = status_is(*job_status.UNFINISHED)  # status IN ('queued', 'running')
RUNNING = status_is(JobStatus.RUNNING)


def claim_starts(session: Session, *, limit: int, stale_s: float) -> list[uuid.UUID]:
    """Take up to `limit` jobs whose start or render nobody holds (never started, or their runner died),
    highest priority and oldest first. Taking over a dead runner's render is a `recovered` job event."""
    rows = session.execute(
        text(
            f"""
            WITH picked AS (
                SELECT id, claimed_at AS held_since FROM jobs
                WHERE {UNFINISHED} AND rendered_at IS NULL
                  AND (claimed_at IS NULL OR claimed_at < now() - make_interval(secs => :stale))
                ORDER BY priority DESC, created_at
                LIMIT :limit
                FOR UPDATE SKIP LOCKED)
            UPDATE jobs SET claimed_at = now() FROM picked WHERE jobs.id = picked.id
            RETURNING jobs.id, jobs.priority, jobs.created_at, picked.held_since
            """
        ),
        {"limit": limit, "stale": stale_s},
    ).all()
    for row in rows:
        if row.held_since is not None:
            jobs.add_event(session, row.id, "recovered", {"action": "resume_render", "by": "job runner"})
    return [row.id for row in sorted(rows, key=lambda r: (-r.priority, r.created_at))]


def release_claims(session: Session, job_ids: list[uuid.UUID]) -> None:
    """Give back claims on jobs not yet rendered, so that the next runner takes them at once."""
    session.execute(
        text("UPDATE jobs SET claimed_at = NULL WHERE id = ANY(:ids) AND rendered_at IS NULL"),
        {"ids": job_ids},
    )


def set_flow_run(session: Session, job_ids: list[uuid.UUID], flow_run_id: str) -> None:
    session.execute(
        text("UPDATE jobs SET flow_run_id = :run WHERE id = ANY(:ids)"), {"run": flow_run_id, "ids": job_ids}
    )


def mark_rendered(session: Session, job_id: uuid.UUID) -> None:
    session.execute(
        text(
            "UPDATE jobs SET rendered_at = now(), updated_at = now() WHERE id = :id AND rendered_at IS NULL"
        ),
        {"id": job_id},
    )


def claim_finalization(session: Session, job_id: uuid.UUID, *, stale_s: float | None = None) -> bool:
    """Whether this caller is the one to assemble and finish the job: it is running, rendered, every page
    has its results, and nobody holds its finalisation (or, with `stale_s`, its holder died). True once."""
    held = "finalizing_at IS NULL" + (
        " OR finalizing_at < now() - make_interval(secs => :stale)" if stale_s is not None else ""
    )
    row = session.execute(
        text(
            f"""
            UPDATE jobs SET finalizing_at = now()
            WHERE id = :id AND {RUNNING} AND rendered_at IS NOT NULL
              AND pages_done + pages_failed >= pages_total AND ({held})
            RETURNING id
            """
        ),
        {"id": job_id, "stale": stale_s},
    ).first()
    return row is not None


def mark_notified(session: Session, job_id: uuid.UUID) -> None:
    session.execute(
        text("UPDATE jobs SET notified_at = now() WHERE id = :id AND notified_at IS NULL"), {"id": job_id}
    )


# -- the reconciler's questions: each takes the overdue rows it answers with, locked, and stamps them --------


@dataclass(frozen=True)
class Overdue:
    job_id: uuid.UUID
    status: str


@dataclass(frozen=True)
class Limits:
    """How long each step may go without progress before the reconciler re-drives it."""

    start_grace_s: float
    claim_stale_s: float
    redispatch_after_s: float
    finalize_stale_s: float
    job_timeout_s: float
    batch: int = 500


def _take(session: Session, where: str, params: dict[str, object], limit: int) -> list[Overdue]:
    rows = session.execute(
        text(
            f"SELECT id, status FROM jobs WHERE {where} "
            "ORDER BY updated_at LIMIT :limit FOR UPDATE SKIP LOCKED"
        ),
        {**params, "limit": limit},
    ).all()
    found = [Overdue(row.id, row.status) for row in rows]
    if found:
        session.execute(
            text("UPDATE jobs SET recovered_at = now() WHERE id = ANY(:ids)"),
            {"ids": [o.job_id for o in found]},
        )
    return found


def overdue_starts(session: Session, limits: Limits) -> list[Overdue]:
    """Not rendered, and nobody has held the start or render for too long (or ever, past the grace)."""
    return _take(
        session,
        f"""{UNFINISHED} AND rendered_at IS NULL
            AND ((claimed_at IS NULL AND created_at < now() - make_interval(secs => :grace))
                 OR claimed_at < now() - make_interval(secs => :stale))
            AND (recovered_at IS NULL OR recovered_at < now() - make_interval(secs => :stale))""",
        {"grace": limits.start_grace_s, "stale": limits.claim_stale_s},
        limits.batch,
    )


def stalled_pages(session: Session, limits: Limits) -> list[Overdue]:
    """Rendered and dispatched, pages unfinished, and no page has finished for too long."""
    return _take(
        session,
        f"""{RUNNING} AND rendered_at IS NOT NULL AND pages_done + pages_failed < pages_total
           AND greatest(updated_at, rendered_at, coalesce(recovered_at, rendered_at))
               < now() - make_interval(secs => :after)""",
        {"after": limits.redispatch_after_s},
        limits.batch,
    )


def unfinalized(session: Session, limits: Limits) -> list[Overdue]:
    """Every page done but the job not finished: nobody took the finalisation, or its holder died."""
    return _take(
        session,
        f"""{RUNNING} AND rendered_at IS NOT NULL AND pages_done + pages_failed >= pages_total
           AND ((finalizing_at IS NULL AND updated_at < now() - make_interval(secs => :grace))
                OR finalizing_at < now() - make_interval(secs => :stale))""",
        {"grace": limits.start_grace_s, "stale": limits.finalize_stale_s},
        limits.batch,
    )


def unnotified(session: Session, limits: Limits) -> list[Overdue]:
    """Ended, but the end webhook was never queued (the process died between the two)."""
    return _take(
        session,
        """finished_at IS NOT NULL AND notified_at IS NULL
           AND finished_at < now() - make_interval(secs => :grace)""",
        {"grace": limits.start_grace_s},
        limits.batch,
    )


def timed_out(session: Session, limits: Limits) -> list[Overdue]:
    """Unfinished long after it was submitted."""
    return _take(
        session,
        f"{UNFINISHED} AND created_at < now() - make_interval(secs => :timeout)",
        {"timeout": limits.job_timeout_s},
        limits.batch,
    )

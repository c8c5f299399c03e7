"""What this deployment's own history says a job will cost: per task, the medians of its recent computed
results (generated tokens, image tokens, the model worker's inference time), the rate at which page tasks
are finishing now, and the page tasks queued ahead of a priority."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import text
from sqlalchemy.orm import Session

from docvl.job_status import UNFINISHED
from docvl.tasks import TaskKind

RECENT_RESULTS = 200  # per task: the medians follow what the deployment does now
THROUGHPUT_WINDOW_S = 300  # the page tasks finished in the last five minutes give the current rate


@dataclass(frozen=True)
class TaskHistory:
    results: int  # how many the medians are over (0: no history)
    generated_tokens: float
    image_tokens: float
    inference_s: float


_HISTORY = text(
    """
    SELECT count(*),
           coalesce(percentile_cont(0.5) WITHIN GROUP (ORDER BY generated_tokens), 0),
           coalesce(percentile_cont(0.5) WITHIN GROUP (ORDER BY image_tokens), 0),
           coalesce(percentile_cont(0.5) WITHIN GROUP (ORDER BY inference_ms), 0) / 1000.0
    FROM (
        SELECT generated_tokens, image_tokens, inference_ms FROM task_results
        WHERE task = :task AND error_code IS NULL AND reused_from_job IS NULL
        ORDER BY id DESC LIMIT :recent
    ) recent
    """
)


def task_history(session: Session, task: TaskKind) -> TaskHistory:
    """The medians of the task's last RECENT_RESULTS computed results (reused ones cost nothing)."""
    row = session.execute(_HISTORY, {"task": task.value, "recent": RECENT_RESULTS}).one()
    return TaskHistory(int(row[0]), float(row[1]), float(row[2]), float(row[3]))


def page_tasks_per_second(session: Session) -> float | None:
    """Page tasks computed per second over the last THROUGHPUT_WINDOW_S; None when none finished."""
    finished = session.execute(
        text(
            "SELECT count(*) FROM task_results WHERE reused_from_job IS NULL "
            "AND created_at > now() - make_interval(secs => :window)"
        ),
        {"window": THROUGHPUT_WINDOW_S},
    ).scalar_one()
    return finished / THROUGHPUT_WINDOW_S if finished else None


def page_tasks_ahead(session: Session, priority: int) -> int:
    """Page tasks of unfinished jobs at `priority` or above that have no result yet; a job not rendered yet
    counts one page per task (its page count is not known)."""
    unfinished = tuple(status.value for status in UNFINISHED)
    ahead = session.execute(
        text(
            """
            SELECT coalesce(sum(greatest(
                greatest(j.pages_total, 1) * cardinality(j.tasks)
                - (SELECT count(*) FROM task_results r WHERE r.job_id = j.id), 0)), 0)
            FROM jobs j WHERE j.status = ANY(:unfinished) AND j.priority >= :priority
            """
        ),
        {"unfinished": list(unfinished), "priority": priority},
    ).scalar_one()
    return int(ahead)

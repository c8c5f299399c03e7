"""The one JobStatus and the one place that decides which status changes are allowed."""

from __future__ import annotations

from enum import StrEnum

from docvl.errors import IllegalTransition


class JobStatus(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    PARTIALLY_SUCCEEDED = "partially_succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def finished(self) -> bool:
        return self in FINISHED


FINISHED = frozenset(
    {JobStatus.SUCCEEDED, JobStatus.PARTIALLY_SUCCEEDED, JobStatus.FAILED, JobStatus.CANCELLED}
)
UNFINISHED = frozenset(JobStatus) - FINISHED

ALLOWED: dict[JobStatus, frozenset[JobStatus]] = {
    JobStatus.QUEUED: frozenset({JobStatus.RUNNING, JobStatus.FAILED, JobStatus.CANCELLED}),
    JobStatus.RUNNING: frozenset(
        {JobStatus.SUCCEEDED, JobStatus.PARTIALLY_SUCCEEDED, JobStatus.FAILED, JobStatus.CANCELLED}
    ),
    **{status: frozenset() for status in FINISHED},
}


def check_transition(current: JobStatus, target: JobStatus) -> None:
    """Raise IllegalTransition unless a job in `current` may move to `target`."""
    if target not in ALLOWED[current]:
        allowed = ", ".join(sorted(ALLOWED[current])) or "nothing (it has finished)"
        raise IllegalTransition(f"a {current} job cannot become {target}; it can become {allowed}")

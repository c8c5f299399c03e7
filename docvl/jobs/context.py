"""What every stage of a job works with: the database, the object store, the unit of page work, and the
job's own trace."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from docvl.db import jobs
from docvl.db.database import Database
from docvl.observability import tracing
from docvl.office import OfficeConverter
from docvl.storage import ObjectStore
from docvl.tasks import TaskKind


@dataclass(frozen=True)
class Context:
    db: Database
    store: ObjectStore
    converter: OfficeConverter | None = None  # None: Office documents fail with conversion_failed


@dataclass(frozen=True)
class PageWork:
    """One page through one task: what a page task is sent to do."""

    job_id: uuid.UUID
    page_index: int
    task: TaskKind
    priority: int

    @property
    def id(self) -> str:
        """Stable: a re-dispatch after a crash sends the same ids, and cancelling revokes them."""
        return f"{self.job_id}:{self.page_index}:{self.task.value}"


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


class JobEnded(Exception):
    """The job finished (was cancelled) while a step worked on it: the step stops."""

"""Repository of jobs, documents, pages, results and events. Every function runs in the caller's transaction.

Writes are idempotent where a retry can repeat them: a document per sha256, a page per (job, index), a
result per (job, page, task), a job per (owner, idempotency key). Counters change only with the write that
created the row, under a lock on the page, so they stay exact with any number of concurrent writers.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import func, literal, select, text, tuple_
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.orm import Session

from docvl.db import notifications
from docvl.db.models import Document, Job, JobEvent, Page, TaskResult
from docvl.errors import Conflict, InvalidInput, NotFound
from docvl.job_status import JobStatus, check_transition
from docvl.tasks import TaskKind


@dataclass(frozen=True)
class NewJob:
    owner: str
    document_id: uuid.UUID
    tasks: list[TaskKind]
    options: dict[str, Any] = field(default_factory=dict)
    priority: int = 0
    idempotency_key: str | None = None
    request_fingerprint: str | None = None
    api_key_id: uuid.UUID | None = None
    trace: tuple[str, str] | None = None  # (trace id, traceparent) of the submission, when traced


@dataclass(frozen=True)
class NewPage:
    index: int
    image_key: str
    width: int
    height: int
    size_bytes: int
    text_layer: str | None = None  # a PDF page's own text


@dataclass(frozen=True)
class NewResult:
    job_id: uuid.UUID
    page_index: int
    task: TaskKind
    output_text: str | None = None
    output_key: str | None = None
    output_valid: bool | None = None
    output_problem: str | None = None
    prompt_tokens: int = 0
    image_tokens: int = 0
    generated_tokens: int = 0
    queued_ms: float = 0.0
    preprocessing_ms: float = 0.0
    inference_ms: float = 0.0
    model_id: str | None = None
    model_revision: str | None = None
    prompt_template_version: str | None = None
    attempts: int = 1
    verification: dict[str, Any] | None = None
    error_code: str | None = None
    error_message: str | None = None

    def __post_init__(self) -> None:
        if (self.error_code is None) == (self.output_text is None and self.output_key is None):
            raise InvalidInput("a result has either an output (text or object key) or an error, not both")


@dataclass(frozen=True)
class CancelOutcome:
    job: Job
    changed: bool
    message: str


# -- documents ------------------------------------------------------------------------------------------


def get_or_create_document(
    session: Session, *, sha256: str, size_bytes: int, media_type: str, object_key: str
) -> Document:
    """The document with this content hash; the same content uploaded twice is one row."""
    session.execute(
        insert(Document)
        .values(
            id=uuid.uuid4(),
            sha256=sha256,
            size_bytes=size_bytes,
            media_type=media_type,
            object_key=object_key,
        )
        .on_conflict_do_nothing(index_elements=[Document.sha256])
    )
    return session.execute(select(Document).where(Document.sha256 == sha256)).scalar_one()


# -- jobs -----------------------------------------------------------------------------------------------


def create_job(session: Session, new: NewJob) -> tuple[Job, bool]:
    """(job, created). With an idempotency key, the same key and request return the first job; the same
    key with a different request (fingerprint) is a Conflict."""
    if not new.tasks:
        raise InvalidInput("a job needs at least one task")
    job_id = uuid.uuid4()
    inserted = session.execute(
        insert(Job)
        .values(
            id=job_id,
            owner=new.owner,
            document_id=new.document_id,
            tasks=[t.value for t in dict.fromkeys(new.tasks)],
            options=new.options,
            priority=new.priority,
            status=JobStatus.QUEUED.value,
            idempotency_key=new.idempotency_key,
            request_fingerprint=new.request_fingerprint,
            api_key_id=new.api_key_id,
            trace_id=new.trace[0] if new.trace else None,
            traceparent=new.trace[1] if new.trace else None,
        )
        .on_conflict_do_nothing(index_elements=[Job.owner, Job.idempotency_key])
        .returning(Job.id)
    ).scalar_one_or_none()
    if inserted is None:
        existing = session.execute(
            select(Job).where(Job.owner == new.owner, Job.idempotency_key == new.idempotency_key)
        ).scalar_one()
        if existing.request_fingerprint != new.request_fingerprint:
            raise Conflict(
                f"idempotency key {new.idempotency_key!r} was used for another request (job {existing.id}): "
                "use a new key for a new request"
            )
        return existing, False
    _event(session, job_id, "status", JobStatus.QUEUED)
    return get_job(session, job_id), True


def find_by_idempotency_key(session: Session, owner: str, key: str) -> Job | None:
    return session.execute(
        select(Job).where(Job.owner == owner, Job.idempotency_key == key)
    ).scalar_one_or_none()


def get_job(session: Session, job_id: uuid.UUID, *, owner: str | None = None, lock: bool = False) -> Job:
    """The job; NotFound when it does not exist or belongs to another owner."""
    query = select(Job).where(Job.id == job_id)
    if lock:
        query = query.with_for_update()
    job = session.execute(query.execution_options(populate_existing=True)).scalar_one_or_none()
    if job is None or (owner is not None and job.owner != owner):
        raise NotFound(f"no job {job_id}")
    return job


def list_jobs(
    session: Session,
    *,
    owner: str,
    status: JobStatus | None = None,
    limit: int = 1000,
    before: tuple[datetime, uuid.UUID] | None = None,
) -> list[Job]:
    """The owner's jobs, newest first; `before` (created_at, id) continues after the last one seen."""
    query = select(Job).where(Job.owner == owner).order_by(Job.created_at.desc(), Job.id.desc()).limit(limit)
    if status is not None:
        query = query.where(Job.status == status.value)
    if before is not None:
        query = query.where(tuple_(Job.created_at, Job.id) < tuple_(literal(before[0]), literal(before[1])))
    return list(session.execute(query).scalars())


def lock_key_submissions(session: Session, api_key_id: uuid.UUID) -> int:
    """Serialise the key's submissions until the transaction ends; returns its jobs now in flight."""
    session.execute(text("SELECT pg_advisory_xact_lock(hashtext(:key))"), {"key": f"submit:{api_key_id}"})
    unfinished = [s.value for s in JobStatus if not s.finished]
    return session.execute(
        select(func.count()).where(Job.api_key_id == api_key_id, Job.status.in_(unfinished))
    ).scalar_one()


def transition(
    session: Session,
    job_id: uuid.UUID,
    target: JobStatus,
    *,
    error_code: str | None = None,
    error_message: str | None = None,
) -> Job:
    """Move the job to `target` and record the event. Raises IllegalTransition (writing nothing) when the
    status machine forbids it; moving to the status it already has changes nothing."""
    job = get_job(session, job_id, lock=True)
    current = JobStatus(job.status)
    if current is target:
        return job
    check_transition(current, target)
    job.status = target.value
    job.updated_at = func.now()
    if target is JobStatus.RUNNING:
        job.started_at = func.now()
    if target.finished:
        job.finished_at = func.now()
    if error_code is not None:
        job.error_code, job.error_message = error_code, error_message
    data = {"error": {"code": error_code, "message": error_message}} if error_code else {}
    _event(session, job_id, "status", target, data)
    session.flush()
    session.refresh(job)
    return job


def cancel(session: Session, job_id: uuid.UUID, *, owner: str | None = None) -> CancelOutcome:
    """Cancel a job that has not finished; for a finished one, change nothing and say so."""
    job = get_job(session, job_id, owner=owner, lock=True)
    status = JobStatus(job.status)
    if status.finished:
        return CancelOutcome(job, False, f"job {job_id} has already finished ({status}): nothing to cancel")
    job = transition(session, job_id, JobStatus.CANCELLED)
    return CancelOutcome(job, True, f"job {job_id} cancelled")


# -- pages and results ----------------------------------------------------------------------------------


def add_pages(session: Session, job_id: uuid.UUID, pages: list[NewPage]) -> JobStatus:
    """Register the rendered pages (again, after a retry: nothing changes) and set the page total. Returns
    the job's status, read under the lock on its row that this takes."""
    status = session.execute(
        select(Job.status).where(Job.id == job_id).with_for_update()
    ).scalar_one_or_none()
    if status is None:
        raise NotFound(f"no job {job_id}")
    if pages:
        session.execute(
            insert(Page.__table__).on_conflict_do_nothing(index_elements=["job_id", "index"]),  # type: ignore[arg-type]
            [{"job_id": job_id, **p.__dict__} for p in pages],
        )
    session.execute(
        # claimed_at: the render's heartbeat, so that its claim on the job stays fresh (see db/lifecycle.py)
        text(
            "UPDATE jobs SET pages_total = (SELECT count(*) FROM pages WHERE job_id = :id), "
            "updated_at = now(), claimed_at = now() WHERE id = :id"
        ),
        {"id": job_id},
    )
    return JobStatus(status)


_LOCK_PAGE = text(
    """
    SELECT cardinality(j.tasks) FROM pages p JOIN jobs j ON j.id = p.job_id
    WHERE p.job_id = :job_id AND p.index = :page_index
    FOR UPDATE OF p
    """
)  # serialises the writers of one page, so the page is counted exactly once
_RESULTS = TaskResult.__table__
_INSERT_RESULT = (  # Core, not the ORM: this runs once per page and task
    insert(_RESULTS)  # type: ignore[arg-type]
    .on_conflict_do_nothing(index_elements=["job_id", "page_index", "task"])
    .returning(_RESULTS.c.id)
)


def record_result(session: Session, result: NewResult) -> bool:
    """Write a page's result for a task once. Returns False when it was already written (a retry or a
    second worker): the first result stays and the counters do not move."""
    tasks = session.execute(
        _LOCK_PAGE, {"job_id": result.job_id, "page_index": result.page_index}
    ).scalar_one_or_none()
    if tasks is None:
        raise NotFound(f"job {result.job_id} has no page {result.page_index}")
    values = {key: _storable(value) for key, value in result.__dict__.items()} | {"task": result.task.value}
    if session.execute(_INSERT_RESULT, values).scalar_one_or_none() is None:
        return False
    if tasks == 1:  # the unique key leaves this result the page's only one
        written, failed = 1, int(result.error_code is not None)
    else:  # counted after the lock was taken, so every result committed before it is seen
        written, failed = session.execute(
            select(func.count(), func.count(TaskResult.error_code)).where(
                TaskResult.job_id == result.job_id, TaskResult.page_index == result.page_index
            )
        ).one()
    if written == tasks:  # the page's last task: count the page
        column = "pages_failed" if failed else "pages_done"
        counts = session.execute(
            text(
                f"UPDATE jobs SET {column} = {column} + 1, updated_at = now() WHERE id = :id "
                "RETURNING status, pages_total, pages_done, pages_failed"
            ),
            {"id": result.job_id},
        ).one()
        _event(
            session,
            result.job_id,
            "progress",
            JobStatus(counts.status),
            {
                "page_index": result.page_index,
                "pages_total": counts.pages_total,
                "pages_done": counts.pages_done,
                "pages_failed": counts.pages_failed,
            },
        )
    return True


@dataclass(frozen=True)
class PageToRun:
    """What a page task reads before it calls the model."""

    image_key: str
    text_layer: str | None
    question: str | None


def page_to_run(session: Session, job_id: uuid.UUID, page_index: int, task: TaskKind) -> PageToRun | None:
    """The page's input for `task`, in one query; None when the job has finished or the result exists.
    NotFound when the job has no such page."""
    done = (
        select(TaskResult.id)
        .where(
            TaskResult.job_id == job_id, TaskResult.page_index == page_index, TaskResult.task == task.value
        )
        .exists()
    )
    row = session.execute(
        select(Job.status, Job.options["question"].astext, Page.image_key, Page.text_layer, done)
        .join_from(Page, Job, Page.job_id == Job.id)
        .where(Page.job_id == job_id, Page.index == page_index)
    ).one_or_none()
    if row is None:
        raise NotFound(f"job {job_id} has no page {page_index}")
    status, question, image_key, text_layer, finished_before = row
    if JobStatus(status).finished or finished_before:
        return None
    return PageToRun(image_key, text_layer, question)


def page(session: Session, job_id: uuid.UUID, index: int) -> Page:
    found = session.execute(
        select(Page).where(Page.job_id == job_id, Page.index == index)
    ).scalar_one_or_none()
    if found is None:
        raise NotFound(f"job {job_id} has no page {index}")
    return found


def document_of(session: Session, job: Job) -> Document:
    return session.execute(select(Document).where(Document.id == job.document_id)).scalar_one()


def set_page_count(session: Session, document_id: uuid.UUID, count: int) -> None:
    session.execute(
        text("UPDATE documents SET page_count = :n WHERE id = :id"), {"n": count, "id": document_id}
    )


def set_converted(session: Session, document_id: uuid.UUID, key: str) -> None:
    """Record where an Office document's PDF is stored."""
    session.execute(
        text("UPDATE documents SET converted_key = :key WHERE id = :id"), {"key": key, "id": document_id}
    )


def set_outputs(session: Session, job_id: uuid.UUID, outputs: dict[str, Any]) -> None:
    job = get_job(session, job_id, lock=True)
    job.outputs = outputs
    job.updated_at = func.now()


def _storable(value: object) -> object:
    """Postgres text cannot hold NUL characters, which a model can emit: they become U+FFFD (in JSON too)."""
    if isinstance(value, dict):
        return {key: _storable(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_storable(item) for item in value]
    return value.replace("\x00", "\ufffd") if isinstance(value, str) else value


def results(session: Session, job_id: uuid.UUID) -> list[TaskResult]:
    query = (
        select(TaskResult).where(TaskResult.job_id == job_id).order_by(TaskResult.page_index, TaskResult.task)
    )
    return list(session.execute(query).scalars())


def pages(session: Session, job_id: uuid.UUID) -> list[Page]:
    return list(session.execute(select(Page).where(Page.job_id == job_id).order_by(Page.index)).scalars())


# -- events ---------------------------------------------------------------------------------------------


def events(session: Session, job_id: uuid.UUID, *, after_id: int = 0) -> list[JobEvent]:
    """The job's events in order, those after `after_id` (for resuming a stream)."""
    query = select(JobEvent).where(JobEvent.job_id == job_id, JobEvent.id > after_id).order_by(JobEvent.id)
    return list(session.execute(query).scalars())


def add_event(session: Session, job_id: uuid.UUID, kind: str, data: dict[str, Any]) -> None:
    """An event that is not a status change (e.g. a webhook attempt), stamped with the current status."""
    job = get_job(session, job_id)
    _event(session, job_id, kind, JobStatus(job.status), data)


def _event(
    session: Session, job_id: uuid.UUID, kind: str, status: JobStatus, data: dict[str, Any] | None = None
) -> None:
    session.execute(
        insert(JobEvent.__table__),  # type: ignore[arg-type]
        {"job_id": job_id, "kind": kind, "status": status.value, "data": data or {}},
    )
    notifications.notify(session, job_id)

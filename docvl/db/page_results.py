"""Repository of a job's pages and their results. Every function runs in the caller's transaction.

Writes are idempotent where a retry can repeat them: a page per (job, index), a result per (job, page,
task). The job's page counters change only with the write that created the result, under a lock on the
page, so they stay exact with any number of concurrent writers.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass, fields
from typing import Any

from sqlalchemy import bindparam, func, select, text
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.orm import Session

from docvl.db import jobs
from docvl.db.models import Job, Page, TaskResult
from docvl.errors import InvalidInput, NotFound, UnknownJob
from docvl.job_status import JobStatus
from docvl.tasks import TaskKind


@dataclass(frozen=True)
class NewPage:
    index: int
    image_key: str
    width: int
    height: int
    size_bytes: int
    text_layer: str | None = None  # a PDF page's own text
    image_sha256: str | None = None

    @classmethod
    def copy_of(cls, page: Page) -> NewPage:
        """Another job's page as this job's: the same image (its object is shared, not copied)."""
        return cls(
            page.index,
            page.image_key,
            page.width,
            page.height,
            page.size_bytes,
            page.text_layer,
            page.image_sha256,
        )


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
    reuse_key: str | None = None
    reused_from_job: uuid.UUID | None = None
    reused_from_page: int | None = None

    def __post_init__(self) -> None:
        if (self.error_code is None) == (self.output_text is None and self.output_key is None):
            raise InvalidInput("a result has either an output (text or object key) or an error, not both")


_PAGE_COLUMNS = ["job_id", *(f.name for f in fields(NewPage))]
_INSERT_PAGE = text(  # SQL text: its compiled form is cached (see _INSERT_RESULT)
    f"INSERT INTO pages ({', '.join(_PAGE_COLUMNS)}) VALUES ({', '.join(':' + c for c in _PAGE_COLUMNS)}) "
    "ON CONFLICT (job_id, index) DO NOTHING"
)


def add_pages(session: Session, job_id: uuid.UUID, pages: list[NewPage]) -> JobStatus:
    """Register the rendered pages (again, after a retry: nothing changes) and set the page total. Returns
    the job's status, read under the lock on its row that this takes."""
    status = session.execute(
        select(Job.status).where(Job.id == job_id).with_for_update()
    ).scalar_one_or_none()
    if status is None:
        raise NotFound(f"no job {job_id}")
    if pages:
        session.execute(_INSERT_PAGE, [{"job_id": job_id, **p.__dict__} for p in pages])
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
_COLUMNS = [f.name for f in fields(NewResult)]
# Once per page and task: SQL text, whose compiled form SQLAlchemy caches (never that of PostgreSQL's
# INSERT ... ON CONFLICT construct, made again each time)
_INSERT_RESULT = text(
    f"INSERT INTO task_results ({', '.join(_COLUMNS)}) VALUES ({', '.join(':' + c for c in _COLUMNS)}) "
    "ON CONFLICT (job_id, page_index, task) DO NOTHING RETURNING id"
).bindparams(bindparam("verification", type_=_RESULTS.c.verification.type))


def record_result(session: Session, result: NewResult) -> bool:
    """Write a page's result for a task once. Returns False when it was already written (a retry or a
    second worker): the first result stays and the counters do not move. A reused result gets its
    `reused` event with it."""
    tasks = session.execute(
        _LOCK_PAGE, {"job_id": result.job_id, "page_index": result.page_index}
    ).scalar_one_or_none()
    if tasks is None:
        raise NotFound(f"job {result.job_id} has no page {result.page_index}")
    if session.execute(_INSERT_RESULT, _row(result)).scalar_one_or_none() is None:
        return False
    events = _reused_events([result])
    if tasks == 1:  # the unique key leaves this result the page's only one
        written, failed = 1, int(result.error_code is not None)
    else:  # counted after the lock was taken, so every result committed before it is seen
        written, failed = session.execute(
            select(func.count(), func.count(TaskResult.error_code)).where(
                TaskResult.job_id == result.job_id, TaskResult.page_index == result.page_index
            )
        ).one()
    if written == tasks:  # the page's last task: count the page
        events += _count_pages(session, result.job_id, [(result.page_index, failed > 0)])
    jobs.write_events(session, result.job_id, events)
    return True


def record_results(session: Session, job_id: uuid.UUID, results: Sequence[NewResult]) -> list[NewResult]:
    """Write several results of one job at once, each once, as record_result does one by one, in a few
    statements; returns those written (not those written before). The caller holds their pages' locks
    (lock_pages), so no other writer completes one of these pages meanwhile."""
    if not results:
        return []
    rows = [_row(result) for result in results]
    inserted = set(
        session.execute(
            insert(_RESULTS)  # type: ignore[arg-type]
            .on_conflict_do_nothing(index_elements=["job_id", "page_index", "task"])
            .returning(_RESULTS.c.page_index, _RESULTS.c.task),
            rows,
        ).tuples()
    )
    written = [r for r in results if (r.page_index, r.task.value) in inserted]
    touched = sorted({r.page_index for r in written})
    if not touched:
        return []
    tasks = session.execute(select(func.cardinality(Job.tasks)).where(Job.id == job_id)).scalar_one()
    per_page = session.execute(
        select(TaskResult.page_index, func.count(), func.count(TaskResult.error_code))
        .where(TaskResult.job_id == job_id, TaskResult.page_index.in_(touched))
        .group_by(TaskResult.page_index)
        .order_by(TaskResult.page_index)
    ).all()
    finished = [(index, failed > 0) for index, count, failed in per_page if count == tasks]
    jobs.write_events(session, job_id, _reused_events(written) + _count_pages(session, job_id, finished))
    return written


def _row(result: NewResult) -> dict[str, Any]:
    return {key: _storable(value) for key, value in result.__dict__.items()} | {"task": result.task.value}


def _reused_events(results: Sequence[NewResult]) -> list[tuple[str, JobStatus, dict[str, Any]]]:
    return [
        (
            "reused",
            JobStatus.RUNNING,
            {
                "page_index": r.page_index,
                "task": r.task.value,
                "from_job": str(r.reused_from_job),
                "from_page_index": r.reused_from_page,
            },
        )
        for r in results
        if r.reused_from_job is not None
    ]


def _count_pages(
    session: Session, job_id: uuid.UUID, finished: Sequence[tuple[int, bool]]
) -> list[tuple[str, JobStatus, dict[str, Any]]]:
    """Count the pages whose every task now has a result (index, whether one failed) on the job, in one
    update; their `progress` events, one a page, each with the counts as they stood after it."""
    if not finished:
        return []
    failed = sum(1 for _, f in finished if f)
    counts = session.execute(
        text(
            "UPDATE jobs SET pages_done = pages_done + :done, pages_failed = pages_failed + :failed, "
            "updated_at = now() WHERE id = :id RETURNING status, pages_total, pages_done, pages_failed"
        ),
        {"id": job_id, "done": len(finished) - failed, "failed": failed},
    ).one()
    done, failing = counts.pages_done - (len(finished) - failed), counts.pages_failed - failed
    events = []
    for index, page_failed in finished:
        failing, done = failing + page_failed, done + (not page_failed)
        events.append(
            (
                "progress",
                JobStatus(counts.status),
                {
                    "page_index": index,
                    "pages_total": counts.pages_total,
                    "pages_done": done,
                    "pages_failed": failing,
                },
            )
        )
    return events


@dataclass(frozen=True)
class PageToRun:
    """What a page task reads before it calls the model."""

    image_key: str
    text_layer: str | None
    question: str | None
    owner: str = ""
    reuse: bool = True  # the job's `reuse` option: False forces every page through the model
    image_sha256: str | None = None  # None: rendered before pages kept it (the image is hashed)


_PAGE_TO_RUN = (  # made once: every page task asks
    select(
        Job.status,
        Job.options["question"].astext,
        Page.image_key,
        Page.text_layer,
        select(TaskResult.id)
        .where(
            TaskResult.job_id == bindparam("job_id"),
            TaskResult.page_index == bindparam("page_index"),
            TaskResult.task == bindparam("task"),
        )
        .exists(),
        Job.owner,
        Job.options["reuse"].astext,
        Page.image_sha256,
    )
    .join_from(Page, Job, Page.job_id == Job.id)
    .where(Page.job_id == bindparam("job_id"), Page.index == bindparam("page_index"))
)


def page_to_run(session: Session, job_id: uuid.UUID, page_index: int, task: TaskKind) -> PageToRun | None:
    """The page's input for `task`, in one query; None when the job has finished or the result exists.
    NotFound when the job has no such page, UnknownJob when this database has no such job."""
    row = session.execute(
        _PAGE_TO_RUN, {"job_id": job_id, "page_index": page_index, "task": task.value}
    ).one_or_none()
    if row is None:
        if session.execute(select(Job.id).where(Job.id == job_id)).first() is None:
            raise UnknownJob(f"no job {job_id} in this database")
        raise NotFound(f"job {job_id} has no page {page_index}")
    status, question, image_key, text_layer, finished_before, owner, reuse, image_sha256 = row
    if JobStatus(status).finished or finished_before:
        return None
    return PageToRun(image_key, text_layer, question, owner, reuse != "false", image_sha256)


@dataclass(frozen=True)
class Reusable:
    """An earlier result that a page may take instead of calling the model."""

    job_id: uuid.UUID  # where it was first computed
    page_index: int
    result: TaskResult


def reusable(session: Session, keys: Sequence[str], job_id: uuid.UUID, owner: str | None) -> Reusable | None:
    """The oldest successful result under one of `keys` of another job (of `owner`; any owner's with
    None), or None."""
    found = reusable_by_key(session, keys, job_id, owner)
    return min(found.values(), key=lambda r: r.result.id) if found else None


def reusable_by_key(
    session: Session, keys: Sequence[str], job_id: uuid.UUID, owner: str | None
) -> dict[str, Reusable]:
    """For each of `keys` that has one, the oldest successful result under it of another job (of `owner`;
    any owner's with None), in one query."""
    if not keys:
        return {}
    query = (
        select(TaskResult)
        .distinct(TaskResult.reuse_key)
        .join(Job, Job.id == TaskResult.job_id)
        .where(
            TaskResult.reuse_key.in_(set(keys)),
            TaskResult.job_id != job_id,
            TaskResult.error_code.is_(None),
            TaskResult.output_text.is_not(None),
        )
        .order_by(TaskResult.reuse_key, TaskResult.id)
    )
    if owner is not None:
        query = query.where(Job.owner == owner)
    return {str(found.reuse_key): _origin(found) for found in session.execute(query).scalars()}


def _origin(found: TaskResult) -> Reusable:
    """A result as reusable, naming the job and page that first computed it (not a reuse of a reuse)."""
    if found.reused_from_job is not None and found.reused_from_page is not None:
        return Reusable(found.reused_from_job, found.reused_from_page, found)
    return Reusable(found.job_id, found.page_index, found)


def earlier_render(
    session: Session, render_key: str, job_id: uuid.UUID, owner: str | None
) -> tuple[uuid.UUID, list[Page]] | None:
    """Another job (of `owner`; any owner's with None) that rendered the same document with the same render
    key, and its pages: every one registered with its image's hash. The oldest such job; None if none."""
    query = (
        select(Job.id, Job.pages_total)
        .where(Job.render_key == render_key, Job.rendered_at.is_not(None), Job.id != job_id)
        .order_by(Job.rendered_at)
        .limit(8)
    )
    if owner is not None:
        query = query.where(Job.owner == owner)
    for earlier, total in session.execute(query).all():
        rendered = pages(session, earlier)
        if rendered and len(rendered) == total and all(p.image_sha256 for p in rendered):
            return earlier, rendered
    return None


def page(session: Session, job_id: uuid.UUID, index: int) -> Page:
    found = session.execute(
        select(Page).where(Page.job_id == job_id, Page.index == index)
    ).scalar_one_or_none()
    if found is None:
        raise NotFound(f"job {job_id} has no page {index}")
    return found


def _storable(value: object) -> object:
    """Postgres text cannot hold NUL characters, which a model can emit: they become U+FFFD (in JSON too)."""
    if isinstance(value, dict):
        return {key: _storable(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_storable(item) for item in value]
    return value.replace("\x00", "\ufffd") if isinstance(value, str) else value


def results(
    session: Session, job_id: uuid.UUID, *, page_index: int | None = None, task: TaskKind | None = None
) -> list[TaskResult]:
    """The job's results by page then task; only one page's, or one task's, when given."""
    if page_index is None and task is None:
        return list(session.execute(_RESULTS_OF_JOB, {"job_id": job_id}).scalars())
    query = (
        select(TaskResult).where(TaskResult.job_id == job_id).order_by(TaskResult.page_index, TaskResult.task)
    )
    if page_index is not None:
        query = query.where(TaskResult.page_index == page_index)
    if task is not None:
        query = query.where(TaskResult.task == task.value)
    return list(session.execute(query).scalars())


_RESULTS_OF_JOB = (  # made once: finalising each job reads them
    select(TaskResult)
    .where(TaskResult.job_id == bindparam("job_id"))
    .order_by(TaskResult.page_index, TaskResult.task)
)


def pages(session: Session, job_id: uuid.UUID) -> list[Page]:
    return list(session.execute(_PAGES, {"job_id": job_id}).scalars())


_PAGES = select(Page).where(Page.job_id == bindparam("job_id")).order_by(Page.index)  # made once


def lock_pages(session: Session, job_id: uuid.UUID, indices: Sequence[int]) -> None:
    """Lock the job's pages, in index order, before writing several of their results in one transaction:
    a page task that holds one of them (and then the job's row) finishes first, so neither waits on the
    other."""
    session.execute(
        select(Page.id)
        .where(Page.job_id == job_id, Page.index.in_(sorted(set(indices))))
        .order_by(Page.index)
        .with_for_update()
    ).all()

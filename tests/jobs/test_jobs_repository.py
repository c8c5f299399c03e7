"""The job record on a real Postgres: the status machine, idempotent writes, exact counters."""

from __future__ import annotations

import random
import threading
import uuid
from collections.abc import Callable
from typing import TypeVar

import pytest
from sqlalchemy import func, select

from docvl.db import api_keys, jobs, page_results
from docvl.db.database import Database
from docvl.db.models import Document, Job, JobEvent, TaskResult
from docvl.errors import Conflict, IllegalTransition, InvalidInput, NotFound, Unauthenticated
from docvl.job_status import ALLOWED, JobStatus
from docvl.tasks import TaskKind

T = TypeVar("T")
PATH_TO: dict[JobStatus, list[JobStatus]] = {
    JobStatus.QUEUED: [],
    JobStatus.RUNNING: [JobStatus.RUNNING],
    JobStatus.SUCCEEDED: [JobStatus.RUNNING, JobStatus.SUCCEEDED],
    JobStatus.PARTIALLY_SUCCEEDED: [JobStatus.RUNNING, JobStatus.PARTIALLY_SUCCEEDED],
    JobStatus.FAILED: [JobStatus.FAILED],
    JobStatus.CANCELLED: [JobStatus.CANCELLED],
}


def document(db: Database, content: str = "a") -> uuid.UUID:
    with db.transaction() as s:
        sha = content.encode().hex().ljust(64, "0")[:64]
        return jobs.get_or_create_document(
            s, sha256=sha, size_bytes=10, media_type="application/pdf", object_key=f"inputs/{sha}"
        ).id


def new_job(
    db: Database, tasks: list[TaskKind] | None = None, owner: str = "alice", **kw: object
) -> uuid.UUID:
    with db.transaction() as s:
        job, created = jobs.create_job(
            s,
            jobs.NewJob(owner=owner, document_id=document(db), tasks=tasks or [TaskKind.OCR], **kw),  # type: ignore[arg-type]
        )
        assert created
        return job.id


def in_tx(db: Database, action: Callable[..., T], *args: object, **kw: object) -> T:
    with db.transaction() as s:
        return action(s, *args, **kw)


def snapshot(db: Database, job_id: uuid.UUID) -> tuple[str, object, int]:
    with db.transaction() as s:
        job = jobs.get_job(s, job_id)
        count = s.execute(select(func.count()).where(JobEvent.job_id == job_id)).scalar_one()
        return job.status, job.updated_at, count


@pytest.mark.parametrize("current", list(JobStatus))
@pytest.mark.parametrize("target", list(JobStatus))
def test_status_machine(db: Database, current: JobStatus, target: JobStatus) -> None:
    job_id = new_job(db)
    for step in PATH_TO[current]:
        in_tx(db, jobs.transition, job_id, step)
    before = snapshot(db, job_id)
    assert before[0] == current
    if target is current:
        in_tx(db, jobs.transition, job_id, target)
        assert snapshot(db, job_id) == before, "the same status again changes nothing"
    elif target in ALLOWED[current]:
        job = in_tx(db, jobs.transition, job_id, target)
        assert job.status == target
        assert snapshot(db, job_id)[2] == before[2] + 1
        assert (job.finished_at is not None) == target.finished
    else:
        with pytest.raises(IllegalTransition, match=f"a {current} job cannot become {target}"):
            in_tx(db, jobs.transition, job_id, target)
        assert snapshot(db, job_id) == before, "an illegal transition writes nothing"


def test_events_record_every_status_change_in_order(db: Database) -> None:
    job_id = new_job(db)
    in_tx(db, jobs.transition, job_id, JobStatus.RUNNING)
    in_tx(db, jobs.transition, job_id, JobStatus.FAILED, error_code="corrupt_pdf", error_message="truncated")
    events = in_tx(db, jobs.events, job_id)
    assert [(e.kind, e.status) for e in events] == [
        ("status", "queued"),
        ("status", "running"),
        ("status", "failed"),
    ]
    assert events[-1].data == {"error": {"code": "corrupt_pdf", "message": "truncated"}}
    assert [e.id for e in in_tx(db, jobs.events, job_id, after_id=events[0].id)] == [e.id for e in events[1:]]
    job = in_tx(db, jobs.get_job, job_id)
    assert (job.error_code, job.error_message) == ("corrupt_pdf", "truncated")


def test_cancel(db: Database) -> None:
    queued = new_job(db)
    outcome = in_tx(db, jobs.cancel, queued)
    assert outcome.changed
    assert outcome.job.status == JobStatus.CANCELLED
    again = in_tx(db, jobs.cancel, queued)
    assert not again.changed
    assert "already finished (cancelled)" in again.message
    done = new_job(db)
    in_tx(db, jobs.transition, done, JobStatus.RUNNING)
    in_tx(db, jobs.transition, done, JobStatus.SUCCEEDED)
    before = snapshot(db, done)
    finished = in_tx(db, jobs.cancel, done)
    assert not finished.changed
    assert "nothing to cancel" in finished.message
    assert snapshot(db, done) == before
    with pytest.raises(NotFound):
        in_tx(db, jobs.cancel, queued, owner="mallory")


def test_another_owner_sees_no_job(db: Database) -> None:
    job_id = new_job(db, owner="alice")
    assert in_tx(db, jobs.get_job, job_id, owner="alice").id == job_id
    with pytest.raises(NotFound):
        in_tx(db, jobs.get_job, job_id, owner="bob")
    with pytest.raises(NotFound):
        in_tx(db, jobs.get_job, uuid.uuid4())


def test_idempotency_key(db: Database) -> None:
    doc = document(db)
    first, created = in_tx(
        db,
        jobs.create_job,
        jobs.NewJob("alice", doc, [TaskKind.OCR], idempotency_key="k1", request_fingerprint="f1"),
    )
    assert created
    again, created_again = in_tx(
        db,
        jobs.create_job,
        jobs.NewJob("alice", doc, [TaskKind.OCR], idempotency_key="k1", request_fingerprint="f1"),
    )
    assert (again.id, created_again) == (first.id, False)
    with pytest.raises(Conflict, match="another request"):
        in_tx(
            db,
            jobs.create_job,
            jobs.NewJob("alice", doc, [TaskKind.QA], idempotency_key="k1", request_fingerprint="f2"),
        )
    other_owner, created_other = in_tx(
        db,
        jobs.create_job,
        jobs.NewJob("bob", doc, [TaskKind.OCR], idempotency_key="k1", request_fingerprint="f1"),
    )
    assert created_other
    assert other_owner.id != first.id


def test_idempotency_key_under_concurrent_submissions(db: Database) -> None:
    doc = document(db)
    barrier = threading.Barrier(4)
    ids: list[uuid.UUID] = []

    def submit() -> None:
        barrier.wait()
        job, _ = in_tx(
            db,
            jobs.create_job,
            jobs.NewJob("alice", doc, [TaskKind.OCR], idempotency_key="same", request_fingerprint="f"),
        )
        ids.append(job.id)

    run_threads(submit, 4)
    assert len(ids) == 4
    assert len(set(ids)) == 1
    with db.transaction() as s:
        assert s.execute(select(func.count()).select_from(Job)).scalar_one() == 1


def test_same_content_is_one_document(db: Database) -> None:
    assert document(db, "x") == document(db, "x")
    assert document(db, "y") != document(db, "x")
    with db.transaction() as s:
        assert s.execute(select(func.count()).select_from(Document)).scalar_one() == 2


def pages(count: int) -> list[page_results.NewPage]:
    return [page_results.NewPage(i, f"jobs/x/pages/{i}.png", 10, 10, 100) for i in range(count)]


def result(job_id: uuid.UUID, page: int, task: TaskKind, failed: bool = False) -> page_results.NewResult:
    if failed:
        return page_results.NewResult(
            job_id, page, task, error_code="invalid_input", error_message="bad page"
        )
    return page_results.NewResult(
        job_id, page, task, output_text=f"page {page} {task}", generated_tokens=3, model_id="m"
    )


def run_threads(target: Callable[[], None], count: int) -> None:
    errors: list[BaseException] = []

    def guarded() -> None:
        try:
            target()
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=guarded) for _ in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert errors == []


def test_a_retried_result_leaves_one_row_and_counts_once(db: Database) -> None:
    job_id = new_job(db, tasks=[TaskKind.OCR])
    in_tx(db, page_results.add_pages, job_id, pages(2))
    in_tx(db, page_results.add_pages, job_id, pages(2))  # a retried render registers nothing new
    assert in_tx(db, page_results.record_result, result(job_id, 0, TaskKind.OCR)) is True
    assert in_tx(db, page_results.record_result, result(job_id, 0, TaskKind.OCR)) is False
    job = in_tx(db, jobs.get_job, job_id)
    assert (job.pages_total, job.pages_done, job.pages_failed) == (2, 1, 0)
    assert len(in_tx(db, page_results.results, job_id)) == 1


def test_concurrent_writers_keep_one_row_each_and_exact_counters(db: Database) -> None:
    tasks = [TaskKind.OCR, TaskKind.QA]
    page_count = 30
    failing = {3, 7, 19}  # pages whose qa fails
    job_id = new_job(db, tasks=tasks)
    in_tx(db, page_results.add_pages, job_id, pages(page_count))
    work = [
        result(job_id, p, t, failed=(p in failing and t is TaskKind.QA))
        for p in range(page_count)
        for t in tasks
    ]
    barrier = threading.Barrier(4)
    inserted: list[bool] = []

    def writer() -> None:
        mine = work[:]
        random.shuffle(mine)
        barrier.wait()
        for item in mine:
            inserted.append(in_tx(db, page_results.record_result, item))

    run_threads(writer, 4)
    assert inserted.count(True) == len(work)
    job = in_tx(db, jobs.get_job, job_id)
    assert (job.pages_done, job.pages_failed) == (page_count - len(failing), len(failing))
    with db.transaction() as s:
        rows = s.execute(select(func.count()).where(TaskResult.job_id == job_id)).scalar_one()
        progress = s.execute(
            select(func.count()).where(JobEvent.job_id == job_id, JobEvent.kind == "progress")
        ).scalar_one()
    assert rows == len(work)
    assert progress == page_count


def test_results_need_a_registered_page_and_one_outcome(db: Database) -> None:
    job_id = new_job(db)
    with pytest.raises(NotFound, match="no page 0"):
        in_tx(db, page_results.record_result, result(job_id, 0, TaskKind.OCR))
    with pytest.raises(InvalidInput):
        page_results.NewResult(job_id, 0, TaskKind.OCR)
    with pytest.raises(InvalidInput):
        page_results.NewResult(job_id, 0, TaskKind.OCR, output_text="x", error_code="e")


def test_api_keys_are_stored_hashed_and_revocable(db: Database) -> None:
    created = in_tx(db, api_keys.create_key, "alice", "laptop")
    assert created.secret.startswith("dvl_")
    assert in_tx(db, api_keys.authenticate, created.secret) == api_keys.Caller("alice", created.key.id)
    keys = in_tx(db, api_keys.list_keys, "alice")
    assert [k.id for k in keys] == [created.key.id]
    assert created.secret not in (keys[0].key_hash, keys[0].prefix)
    assert keys[0].last_used_at is not None
    in_tx(db, api_keys.revoke, created.key.id)
    with pytest.raises(Unauthenticated):
        in_tx(db, api_keys.authenticate, created.secret)
    with pytest.raises(Unauthenticated):
        in_tx(db, api_keys.authenticate, "dvl_forged")
    secret = in_tx(db, api_keys.webhook_secret, "alice")
    assert secret.startswith("whsec_")
    assert in_tx(db, api_keys.webhook_secret, "alice") == secret  # made once, then kept
    with pytest.raises(InvalidInput):
        in_tx(db, api_keys.create_key, "  ")

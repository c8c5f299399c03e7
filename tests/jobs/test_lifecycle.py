"""The durable lifecycle on a real Postgres and a real S3 server (moto): claims are taken once, the write
that completes a job finalises it exactly once, and concurrent reconcilers double nothing. The reconciler's
dispatch (start requests, page tasks, webhooks) is recorded here instead of sent to a broker: what they
are asked to do is the decision under test; tests/jobs/test_pipeline.py runs them for real."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable
from typing import TypeVar

import pytest
from sqlalchemy import text

from docvl.db import jobs, lifecycle, page_results
from docvl.db.database import Database
from docvl.job_status import JobStatus
from docvl.jobs import reconciler
from docvl.jobs.context import Context
from docvl.storage.s3 import S3ObjectStore
from docvl.tasks import TaskKind
from tests.jobs.test_jobs_repository import new_job
from tests.support.dispatch import RecordingDispatch

T = TypeVar("T")
PAGES = 12
LIMITS = lifecycle.Limits(
    start_grace_s=5, claim_stale_s=30, redispatch_after_s=60, finalize_stale_s=60, job_timeout_s=3600
)


def together(count: int, action: Callable[[int], T]) -> list[T]:
    """`action(i)` in `count` threads released at once; their results."""
    barrier = threading.Barrier(count)
    results: dict[int, T] = {}
    errors: list[BaseException] = []

    def run(i: int) -> None:
        barrier.wait()
        try:
            results[i] = action(i)
        except BaseException as exc:  # surfaced below
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert not errors, errors
    return [results[i] for i in range(count)]


def rendered_job(db: Database, pages: int = PAGES, tasks: list[TaskKind] | None = None) -> uuid.UUID:
    job_id = new_job(db, tasks or [TaskKind.OCR])
    with db.transaction() as s:
        jobs.transition(s, job_id, JobStatus.RUNNING)
        page_results.add_pages(
            s, job_id, [page_results.NewPage(i, f"jobs/{job_id}/{i}.png", 10, 10, 1) for i in range(pages)]
        )
        lifecycle.mark_rendered(s, job_id)
    return job_id


def age(db: Database, job_id: uuid.UUID, seconds: float, *columns: str) -> None:
    """Move the job's stamps into the past, as if that much time had gone by."""
    sets = ", ".join(f"{c} = {c} - make_interval(secs => :s)" for c in columns)
    with db.transaction() as s:
        s.execute(text(f"UPDATE jobs SET {sets} WHERE id = :id"), {"s": seconds, "id": job_id})


class BrokerGone(RecordingDispatch):
    def start_jobs(self, count: int = 1) -> None:
        raise ConnectionError("broker gone")


def recovered(db: Database, job_id: uuid.UUID) -> list[dict[str, object]]:
    with db.transaction() as s:
        return [e.data for e in jobs.events(s, job_id) if e.kind == "recovered"]


def test_the_last_of_many_concurrent_page_writes_finalises_exactly_once(db: Database) -> None:
    job_id = rendered_job(db, tasks=[TaskKind.OCR, TaskKind.QA])
    writes = [(i, task) for i in range(PAGES) for task in (TaskKind.OCR, TaskKind.QA)]

    def write(n: int) -> bool:
        index, task = writes[n]
        result = page_results.NewResult(job_id, index, task, output_text="x")
        with db.transaction() as s:
            return page_results.record_result(s, result) and lifecycle.claim_finalization(s, job_id)

    claims = together(len(writes), write)
    assert claims.count(True) == 1
    with db.transaction() as s:
        assert not lifecycle.claim_finalization(s, job_id), "taken once, never again"
        assert jobs.get_job(s, job_id).pages_done == PAGES


def test_a_render_that_ends_after_its_pages_takes_the_finalisation(db: Database) -> None:
    job_id = new_job(db)
    with db.transaction() as s:
        jobs.transition(s, job_id, JobStatus.RUNNING)
        page_results.add_pages(s, job_id, [page_results.NewPage(0, "p", 1, 1, 1)])
        page_results.record_result(s, page_results.NewResult(job_id, 0, TaskKind.OCR, output_text="x"))
        assert not lifecycle.claim_finalization(s, job_id), "not rendered yet: more pages may come"
        lifecycle.mark_rendered(s, job_id)
        assert lifecycle.claim_finalization(s, job_id)


def test_concurrent_job_runners_claim_each_job_once(db: Database) -> None:
    created = {new_job(db) for _ in range(30)}

    def claim(_: int) -> list[uuid.UUID]:
        taken: list[uuid.UUID] = []
        while True:
            with db.transaction() as s:
                batch = lifecycle.claim_starts(s, limit=4, stale_s=30)
            if not batch:
                return taken
            taken += batch

    claimed = [job for batch in together(4, claim) for job in batch]
    assert sorted(claimed) == sorted(created)
    with db.transaction() as s:
        assert lifecycle.claim_starts(s, limit=100, stale_s=30) == [], "fresh claims are held"
    first = next(iter(created))
    age(db, first, 60, "claimed_at")
    with db.transaction() as s:
        assert lifecycle.claim_starts(s, limit=100, stale_s=30) == [first], "a stale claim is free again"


def test_higher_priority_jobs_are_claimed_first(db: Database) -> None:
    low, high = new_job(db, priority=0), new_job(db, priority=9)
    with db.transaction() as s:
        assert lifecycle.claim_starts(s, limit=1, stale_s=30) == [high]
        assert lifecycle.claim_starts(s, limit=1, stale_s=30) == [low]


def test_concurrent_reconcilers_redrive_each_overdue_job_once(db: Database, s3_store: S3ObjectStore) -> None:
    ctx = Context(db, s3_store)
    unstarted = [new_job(db) for _ in range(5)]
    stalled = [rendered_job(db, pages=3) for _ in range(5)]
    for job_id in unstarted:
        age(db, job_id, 60, "created_at")
    for job_id in stalled:
        age(db, job_id, 120, "updated_at", "rendered_at")
    record = RecordingDispatch()
    counts = together(4, lambda _: reconciler.reconcile(ctx, LIMITS, record, start_batch=2))
    assert sum(c["started"] for c in counts) == 5
    assert sum(c["redispatched"] for c in counts) == 5
    for job_id in unstarted:
        assert recovered(db, job_id) == [{"action": "start"}]
    for job_id in stalled:
        assert recovered(db, job_id) == [{"action": "redispatch", "page_tasks": 3}]
    assert sorted(w.id for w in record.sent) == sorted(
        f"{job_id}:{i}:ocr" for job_id in stalled for i in range(3)
    )
    assert sum(record.starts) >= 3  # ceil(n / batch) requests per pass, whatever the split
    again = reconciler.reconcile(ctx, LIMITS, record, start_batch=2)
    assert again == {"started": 0, "redispatched": 0, "finalized": 0, "notified": 0, "timed_out": 0}


def test_a_finalisation_whose_holder_died_is_taken_over(db: Database, s3_store: S3ObjectStore) -> None:
    ctx = Context(db, s3_store)
    job_id = rendered_job(db, pages=2)
    for i in range(2):
        with db.transaction() as s:
            page_results.record_result(
                s, page_results.NewResult(job_id, i, TaskKind.OCR, output_text=f"page {i}")
            )
            held = lifecycle.claim_finalization(s, job_id)
    assert held  # ... and then its holder died before finishing: the job is left running
    record = RecordingDispatch()
    assert reconciler.reconcile(ctx, LIMITS, record, start_batch=8)["finalized"] == 0, "still held"
    age(db, job_id, 120, "finalizing_at", "updated_at")
    assert reconciler.reconcile(ctx, LIMITS, record, start_batch=8)["finalized"] == 1
    with db.transaction() as s:
        job = jobs.get_job(s, job_id)
    assert job.status == JobStatus.SUCCEEDED
    assert job.notified_at is not None
    assert s3_store.get(job.outputs["ocr"]).decode().count("page ") == 4  # two markers, two texts
    assert recovered(db, job_id) == [{"action": "finalize"}]
    assert record.notified == [], "no webhook asked for"


def test_an_ended_job_whose_webhook_was_never_queued_gets_it(db: Database, s3_store: S3ObjectStore) -> None:
    ctx = Context(db, s3_store)
    job_id = new_job(db, options={"webhook_url": "https://example.com/hook"})
    with db.transaction() as s:
        jobs.transition(s, job_id, JobStatus.FAILED, error_code="x", error_message="y")
    age(db, job_id, 60, "finished_at")
    record = RecordingDispatch()
    assert reconciler.reconcile(ctx, LIMITS, record, start_batch=8)["notified"] == 1
    assert record.notified == [job_id]
    assert reconciler.reconcile(ctx, LIMITS, record, start_batch=8)["notified"] == 0


def test_a_job_past_its_timeout_fails_and_its_tasks_are_revoked(
    db: Database, s3_store: S3ObjectStore
) -> None:
    ctx = Context(db, s3_store)
    job_id = rendered_job(db, pages=2)
    age(db, job_id, 7200, "created_at")
    record = RecordingDispatch()
    assert reconciler.reconcile(ctx, LIMITS, record, start_batch=8)["timed_out"] == 1
    with db.transaction() as s:
        job = jobs.get_job(s, job_id)
    assert (job.status, job.error_code) == (JobStatus.FAILED, "job_timeout")
    assert sorted(record.revoked) == [f"{job_id}:0:ocr", f"{job_id}:1:ocr"]


def test_a_reconciler_that_dies_mid_pass_leaves_the_job_to_the_next(
    db: Database, s3_store: S3ObjectStore
) -> None:
    """The pass stamps the job, then dies before it acts (its broker call raises): nothing is lost; the
    next pass, once the stamp is stale, asks again."""
    ctx = Context(db, s3_store)
    job_id = new_job(db)
    age(db, job_id, 60, "created_at")
    dying = BrokerGone()
    with pytest.raises(ConnectionError):
        reconciler.reconcile(ctx, LIMITS, dying, start_batch=8)
    record = RecordingDispatch()
    assert reconciler.reconcile(ctx, LIMITS, record, start_batch=8)["started"] == 0, "stamped"
    age(db, job_id, 60, "recovered_at")
    assert reconciler.reconcile(ctx, LIMITS, record, start_batch=8)["started"] == 1
    assert record.starts == [1]
    assert [e["action"] for e in recovered(db, job_id)] == ["start", "start"]

"""The reuse task (docvl/jobs/reused_pages.py) on a real Postgres: copies of it racing each other and page
tasks write each page's result once, count each page once, and exactly one of them finalises the job;
what it cannot reuse (a page another model answered, a layout page) is left to page tasks; a job with
reuse=false, or another owner's, reuses nothing. The page tasks' model is never called: every page here
has an earlier result, or the test says it is left."""

from __future__ import annotations

import uuid

from docvl.db import jobs, lifecycle, page_results
from docvl.db.database import Database
from docvl.inference.types import InferenceRequest, InferenceResult, ModelIdentity
from docvl.job_status import JobStatus
from docvl.jobs import reconciler
from docvl.jobs.context import Context, PageWork
from docvl.jobs.pages import process_page
from docvl.jobs.reuse import PageInputs, ReusePolicy
from docvl.jobs.reused_pages import reuse_pages
from docvl.settings import ReuseScope
from docvl.storage.s3 import S3ObjectStore
from docvl.tasks import TaskKind
from tests.jobs.test_jobs_repository import new_job
from tests.jobs.test_lifecycle import LIMITS, age, together
from tests.support.dispatch import RecordingDispatch

MODEL = ModelIdentity("deepseek-ai/deepseek-vl-1.3b-base", "rev", "v3")
OTHER_MODEL = ModelIdentity("deepseek-ai/deepseek-vl-7b-base", "rev", "v3")
TOKENS = 64
PAGES = 12


def _sha(index: int) -> str:
    return f"{index:064x}"


def pages_of(job_id: uuid.UUID, count: int) -> list[page_results.NewPage]:
    return [
        page_results.NewPage(i, f"jobs/{job_id}/pages/{i:05d}.png", 10, 10, 1, None, _sha(i))
        for i in range(count)
    ]


def computed_job(db: Database, owner: str, tasks: list[TaskKind], model: ModelIdentity = MODEL) -> uuid.UUID:
    """A finished job whose every page was answered greedily by `model` (its results carry reuse keys)."""
    job_id = new_job(db, tasks, owner=owner)
    with db.transaction() as s:
        jobs.transition(s, job_id, JobStatus.RUNNING)
        page_results.add_pages(s, job_id, pages_of(job_id, PAGES))
        for i in range(PAGES):
            for task in tasks:
                key = PageInputs(_sha(i), task, None, TOKENS).key(model)
                page_results.record_result(
                    s,
                    page_results.NewResult(
                        job_id, i, task, output_text=f"page {i}", generated_tokens=3, reuse_key=key
                    ),
                )
    return job_id


def rendered_like(
    db: Database, source: uuid.UUID, owner: str, tasks: list[TaskKind], **kw: object
) -> uuid.UUID:
    """A job that took `source`'s render (its page rows), rendered and running."""
    job_id = new_job(db, tasks, owner=owner, **kw)
    with db.transaction() as s:
        jobs.transition(s, job_id, JobStatus.RUNNING)
        page_results.add_pages(
            s, job_id, [page_results.NewPage.copy_of(p) for p in page_results.pages(s, source)]
        )
        lifecycle.mark_rendered(s, job_id)
    return job_id


def policy(scope: ReuseScope = ReuseScope.OWNER) -> ReusePolicy:
    return ReusePolicy(scope, lambda task: [MODEL])


def never(request: InferenceRequest) -> InferenceResult:
    raise AssertionError(f"the model was asked for {request.request_id}: every page here has a result")


def counts(db: Database, job_id: uuid.UUID) -> tuple[int, int, int]:
    with db.transaction() as s:
        job = jobs.get_job(s, job_id)
        return job.pages_done, job.pages_failed, len(page_results.results(s, job_id))


def test_racing_reuse_tasks_and_page_tasks_write_each_result_once(
    db: Database, s3_store: S3ObjectStore
) -> None:
    ctx = Context(db, s3_store)
    source = computed_job(db, "alice", [TaskKind.OCR])
    job_id = rendered_like(db, source, "alice", [TaskKind.OCR])

    def one(i: int) -> bool:
        if i < 3:  # three copies of the reuse task (a redelivery, a re-sent one)
            return reuse_pages(ctx, job_id, policy(), lambda task: TOKENS).completed
        work = PageWork(job_id, i % PAGES, TaskKind.OCR, 0)  # page tasks the reconciler sent meanwhile
        return process_page(ctx, never, work, max_new_tokens=TOKENS, attempt=1, reuse=policy())

    finalisers = together(8, one)

    assert sum(finalisers) == 1, "exactly one writer completed the job"
    assert counts(db, job_id) == (PAGES, 0, PAGES)
    with db.transaction() as s:
        results = page_results.results(s, job_id)
        reused = [e for e in jobs.events(s, job_id) if e.kind == "reused"]
    assert {(r.reused_from_job, r.reused_from_page) for r in results} == {(source, i) for i in range(PAGES)}
    assert len(reused) == PAGES, "one reused event per page"
    again = reuse_pages(ctx, job_id, policy(), lambda task: TOKENS)
    assert (again.completed, again.rest, again.reused) == (False, [], 0), "nothing left to do"


def test_what_cannot_be_reused_is_left_to_page_tasks(db: Database, s3_store: S3ObjectStore) -> None:
    ctx = Context(db, s3_store)
    source = computed_job(db, "alice", [TaskKind.OCR, TaskKind.LAYOUT])
    computed_job(db, "alice", [TaskKind.QA], model=OTHER_MODEL)  # its QA answers are of another model
    mixed = rendered_like(db, source, "alice", [TaskKind.OCR, TaskKind.LAYOUT, TaskKind.QA])

    done = reuse_pages(ctx, mixed, policy(), lambda task: TOKENS)

    assert done.reused == PAGES, "every OCR page"
    assert not done.completed
    left = {(w.page_index, w.task) for w in done.rest}
    assert left == {(i, t) for i in range(PAGES) for t in (TaskKind.LAYOUT, TaskKind.QA)}, (
        "layout pages are laid out one by one; QA was answered by a model that serves no more"
    )
    assert counts(db, mixed) == (0, 0, PAGES), "no page counted before its every task has a result"

    longer = rendered_like(db, source, "alice", [TaskKind.OCR])
    assert reuse_pages(ctx, longer, policy(), lambda task: TOKENS * 2).reused == 0, "another generation cap"
    forced = rendered_like(db, source, "alice", [TaskKind.OCR], options={"reuse": "false"})
    assert reuse_pages(ctx, forced, policy(), lambda task: TOKENS).reused == 0, "reuse=false"
    theirs = rendered_like(db, source, "bob", [TaskKind.OCR])
    assert reuse_pages(ctx, theirs, policy(), lambda task: TOKENS).reused == 0, "another owner's"
    assert reuse_pages(ctx, theirs, policy(ReuseScope.DEPLOYMENT), lambda task: TOKENS).reused == PAGES
    off = rendered_like(db, source, "alice", [TaskKind.OCR])
    assert reuse_pages(ctx, off, policy(ReuseScope.OFF), lambda task: TOKENS).reused == 0, "reuse off"


def test_a_reuse_task_that_never_ran_is_made_good_by_page_tasks(
    db: Database, s3_store: S3ObjectStore
) -> None:
    """The reuse task lost (its worker killed before its transaction committed: it rolls back whole): the
    reconciler sends the job's pages as page tasks, and each takes its earlier result itself."""
    ctx = Context(db, s3_store)
    source = computed_job(db, "alice", [TaskKind.OCR])
    job_id = rendered_like(db, source, "alice", [TaskKind.OCR])
    age(db, job_id, 120, "updated_at", "rendered_at")
    record = RecordingDispatch()

    assert reconciler.reconcile(ctx, LIMITS, record, start_batch=2)["redispatched"] == 1

    assert sorted(w.page_index for w in record.sent) == list(range(PAGES))
    completed = [
        process_page(ctx, never, work, max_new_tokens=TOKENS, attempt=1, reuse=policy())
        for work in record.sent
    ]
    assert completed == [False] * (PAGES - 1) + [True]
    assert counts(db, job_id) == (PAGES, 0, PAGES)

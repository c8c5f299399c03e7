"""A job whose pages were all rendered before (docvl/jobs/render_reuse.py) has its results looked up
together: one reuse task finds every page's earlier result in one query and writes all it found in one
transaction, instead of a page task each; the pages it found none for go on as page tasks.

It runs in the page worker, which knows the models serving each task now (a result of a model since
replaced is not reused), and applies the same rules as a page task's own lookup (docvl/jobs/reuse.py).
Re-running it is safe: results are written once per (job, page, task), and what it did not write is
still unfinished, for it or the reconciler to send again. Layout pages are laid out per page (their
blocks, crops and checks are the job's own), so they always go on as page tasks."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable
from dataclasses import dataclass

from docvl.db import jobs, lifecycle, page_results
from docvl.job_status import JobStatus
from docvl.jobs.context import Context, PageWork
from docvl.jobs.pages import reused_result, unfinished_in
from docvl.jobs.reuse import PageInputs, ReusePolicy, allowed
from docvl.observability.metrics import worker as worker_metrics
from docvl.tasks import TaskKind

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Reused:
    completed: bool  # this write completed the job and took its finalisation: the caller finalises it
    rest: list[PageWork]  # what was not reused: send as page tasks
    reused: int


def reuse_pages(
    ctx: Context, job_id: uuid.UUID, reuse: ReusePolicy, max_new_tokens: Callable[[TaskKind], int]
) -> Reused:
    """Take an earlier result for every unfinished (page, task) of the job that has one, in one transaction;
    return what is left. Nothing is done for a job that has finished."""
    with ctx.db.transaction() as s:
        job = jobs.get_job(s, job_id)
        if JobStatus(job.status).finished:
            return Reused(False, [], 0)
        work = unfinished_in(s, job_id)
        hashes = {p.index: p.image_sha256 for p in page_results.pages(s, job_id)}
        question = job.options.get("question")
        owner = reuse.owner_filter(job.owner)
        keys: dict[PageWork, list[str]] = {}
        if allowed(reuse.scope, jobs.reuse_allowed(job)):
            for item in work:
                sha = hashes.get(item.page_index)
                if sha and item.task is not TaskKind.LAYOUT:
                    keys[item] = reuse.keys(PageInputs(sha, item.task, question, max_new_tokens(item.task)))
        found = page_results.reusable_by_key(s, [k for ks in keys.values() for k in ks], job_id, owner)
    taken = {item: hit for item, ks in keys.items() if (hit := _first(found, ks)) is not None}
    rest = [item for item in work if item not in taken]
    if not taken:
        return Reused(False, rest, 0)
    with ctx.db.transaction() as s:
        page_results.lock_pages(s, job_id, [item.page_index for item in taken])
        written = len(
            page_results.record_results(s, job_id, [reused_result(i, 1, hit) for i, hit in taken.items()])
        )
        completed = lifecycle.claim_finalization(s, job_id)
    for item in taken:
        worker_metrics.page_tasks.labels(item.task.value, "reused").inc()
    log.info("job %s: %d page results reused together, %d left to page tasks", job_id, written, len(rest))
    return Reused(completed, rest, written)


def _first(found: dict[str, page_results.Reusable], keys: list[str]) -> page_results.Reusable | None:
    """The oldest result under any of the keys (one per model serving the task)."""
    hits = [found[k] for k in keys if k in found]
    return min(hits, key=lambda hit: hit.result.id) if hits else None

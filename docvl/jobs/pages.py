"""One page through one task (the page task's body): the model worker, post-processing and verification,
and the result written exactly once; the write that completes the job takes its finalisation."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable
from typing import Any

from sqlalchemy.orm import Session

from docvl.db import jobs, lifecycle, page_results
from docvl.errors import DocvlError
from docvl.inference.types import GenerationParams, InferenceRequest, InferenceResult, ModelIdentity
from docvl.jobs.context import Context, PageWork
from docvl.jobs.layout_pages import LaidOut, lay_out_page
from docvl.jobs.reuse import PageInputs, ReusePolicy, allowed, image_sha256, result_key
from docvl.observability import tracing
from docvl.observability.metrics import worker as worker_metrics
from docvl.tasks import TaskKind
from docvl.verify.attempts import PageInput, generate_checked
from docvl.verify.verifier import Verifier

log = logging.getLogger(__name__)


def process_page(
    ctx: Context,
    generate: Callable[[InferenceRequest], InferenceResult],
    work: PageWork,
    *,
    max_new_tokens: int,
    attempt: int,
    verifier: Verifier | None = None,
    reuse: ReusePolicy | None = None,
) -> bool:
    """Run one page through the model, check its output with `verifier` (generating it again when the
    check fails, see docvl.verify.attempts), and record its result. Returns True when this write completed
    the job: the caller then finalises it. Nothing is done when the job has finished or was cancelled, or
    the result exists. With a `reuse` policy, an earlier greedy result for the same inputs is taken instead
    of calling the model (docvl/jobs/reuse.py), unless the job says `reuse=false`. Model worker and
    storage errors propagate: the caller retries them or, when final, records them with `record_failure`."""
    with ctx.db.transaction() as s:
        page = page_results.page_to_run(s, work.job_id, work.page_index, work.task)
    if page is None:
        worker_metrics.page_tasks.labels(work.task.value, "skipped").inc()
        return False
    image = None if page.image_sha256 else ctx.store.get(page.image_key)  # read once it is needed
    inputs = PageInputs(
        page.image_sha256 or image_sha256(image or b""), work.task, page.question, max_new_tokens
    )
    if reuse is not None and allowed(reuse.scope, page.reuse):
        found = _reusable(ctx, work, inputs, reuse, page.owner)
        if found is not None:
            return _reuse(ctx, work, attempt, page.image_key, found)
    if image is None:
        image = ctx.store.get(page.image_key)
    request = InferenceRequest(
        task=work.task,
        images=[image],
        question=page.question,
        params=GenerationParams(max_new_tokens=max_new_tokens),
        request_id=work.id,
        priority=work.priority,
    )
    checked = generate_checked(generate, request, PageInput(image, page.text_layer), verifier)
    result, made = checked.result, checked.made
    log.info(
        "page %d %s: %d tokens generated (%.0f ms queued, %.0f ms inference)",
        work.page_index,
        work.task.value,
        result.generated_tokens,
        result.timings.queued_ms,
        result.timings.inference_ms,
    )
    laid_out = None
    if work.task is TaskKind.LAYOUT:
        laid_out = lay_out_page(ctx, work.job_id, work.page_index, page.image_key, image, made.text)
    completed = _record(
        ctx,
        work,
        attempt,
        output_text=made.text,
        output_key=None if laid_out is None else laid_out.key,
        output_valid=made.valid if laid_out is None else laid_out.problem is None,
        output_problem=made.problem if laid_out is None else laid_out.problem,
        prompt_tokens=result.prompt_tokens,
        image_tokens=result.image_tokens,
        generated_tokens=result.generated_tokens,
        queued_ms=result.timings.queued_ms,
        preprocessing_ms=result.timings.preprocessing_ms,
        inference_ms=result.timings.inference_ms,
        model_id=result.model_id,
        model_revision=result.model_revision,
        prompt_template_version=result.prompt_template_version,
        verification=checked.verification if laid_out is None else laid_out.verification,
        reuse_key=result_key(
            inputs,
            _identity(result),
            greedy=request.params.greedy,
            kept_attempt=(checked.verification or {}).get("kept_attempt", 1),
        ),
    )
    worker_metrics.page_tasks.labels(work.task.value, "succeeded").inc()
    return completed


def _identity(result: InferenceResult) -> ModelIdentity | None:
    if result.model_id and result.model_revision and result.prompt_template_version:
        return ModelIdentity(result.model_id, result.model_revision, result.prompt_template_version)
    return None


def _reusable(
    ctx: Context, work: PageWork, inputs: PageInputs, reuse: ReusePolicy, owner: str
) -> page_results.Reusable | None:
    with ctx.db.transaction() as s:
        return page_results.reusable(s, reuse.keys(inputs), work.job_id, reuse.owner_filter(owner))


def _reuse(ctx: Context, work: PageWork, attempt: int, image_key: str, found: page_results.Reusable) -> bool:
    """Record the earlier result as this page's, with where it came from; a layout page's blocks, figures
    and checks are made again for this job from the reused answer (nothing of the other job's is read)."""
    laid_out = None
    if work.task is TaskKind.LAYOUT:
        image = ctx.store.get(image_key)
        laid_out = lay_out_page(
            ctx, work.job_id, work.page_index, image_key, image, found.result.output_text or ""
        )
    result = reused_result(work, attempt, found, laid_out)
    log.info(
        "page %d %s: reused from job %s page %d",
        work.page_index,
        work.task.value,
        found.job_id,
        found.page_index,
    )
    with tracing.span("docvl.page.write"), ctx.db.transaction() as s:
        completed = page_results.record_result(s, result) and lifecycle.claim_finalization(s, work.job_id)
    worker_metrics.page_tasks.labels(work.task.value, "reused").inc()
    return completed


def reused_result(
    work: PageWork, attempt: int, found: page_results.Reusable, laid_out: LaidOut | None = None
) -> page_results.NewResult:
    """The earlier result as this page's, saying where it came from (`laid_out`: a layout page's own)."""
    source = found.result
    return page_results.NewResult(
        work.job_id,
        work.page_index,
        work.task,
        attempts=attempt,
        output_text=source.output_text or "",
        output_key=None if laid_out is None else laid_out.key,
        output_valid=source.output_valid if laid_out is None else laid_out.problem is None,
        output_problem=source.output_problem if laid_out is None else laid_out.problem,
        prompt_tokens=source.prompt_tokens,
        image_tokens=source.image_tokens,
        generated_tokens=source.generated_tokens,
        model_id=source.model_id,
        model_revision=source.model_revision,
        prompt_template_version=source.prompt_template_version,
        verification=source.verification if laid_out is None else laid_out.verification,
        reuse_key=source.reuse_key,
        reused_from_job=found.job_id,
        reused_from_page=found.page_index,
    )


def record_failure(ctx: Context, work: PageWork, error: DocvlError, attempt: int) -> bool:
    completed = _record(ctx, work, attempt, error_code=error.code, error_message=error.message)
    worker_metrics.page_tasks.labels(work.task.value, "failed").inc()
    return completed


def _record(ctx: Context, work: PageWork, attempt: int, **outcome: Any) -> bool:
    """Write the page's result for its task once (see page_results.record_result); True when that write
    completed the job and took its finalisation, in the same transaction (so exactly one writer does)."""
    result = page_results.NewResult(work.job_id, work.page_index, work.task, attempts=attempt, **outcome)
    with tracing.span("docvl.page.write"), ctx.db.transaction() as s:
        return page_results.record_result(s, result) and lifecycle.claim_finalization(s, work.job_id)


def unfinished_work(ctx: Context, job_id: uuid.UUID) -> list[PageWork]:
    """The (page, task) pairs of the job's registered pages that have no result yet."""
    with ctx.db.transaction() as s:
        return unfinished_in(s, job_id)


def unfinished_in(s: Session, job_id: uuid.UUID) -> list[PageWork]:
    job = jobs.get_job(s, job_id)
    done = {(r.page_index, r.task) for r in page_results.results(s, job_id)}
    return [
        PageWork(job_id, page.index, TaskKind(task), job.priority)
        for page in page_results.pages(s, job_id)
        for task in job.tasks
        if (page.index, task) not in done
    ]

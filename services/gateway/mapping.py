"""Protobuf <-> views for the job gateway: the one module that knows both shapes."""

from __future__ import annotations

import io
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, BinaryIO

from docvl.errors import InvalidInput
from docvl.job_status import JobStatus
from docvl.jobs.intake import JobRequest, Limits, parse_request
from docvl.jobs.layout_results import LayoutFile
from docvl.jobs.options import SubmitOptions
from docvl.jobs.quote import QuoteView
from docvl.jobs.views import ErrorInfo, EventView, JobPage, JobView, PageResult, ResultView
from docvl.v1 import jobs_pb2 as pb
from docvl.verify.report import Attempt, TaskSummary, Verdict, Verification

DEFAULT_PAGE_SIZE = 50
DOCUMENT_PIECE_BYTES = 1024 * 1024  # GetJobDocument's `data` per message: far below any message limit


@dataclass(frozen=True)
class Submission:
    """A checked SubmitJobRequest: its fields, and its document as bytes or as a storage URI."""

    request: JobRequest
    document: BinaryIO | None
    source: str | None


def submission_from_pb(limits: Limits, message: pb.SubmitJobRequest) -> Submission:
    which = message.WhichOneof("document")
    if which is None:
        raise InvalidInput("set the document: `content` (the file's bytes) or `source_uri` (s3://bucket/key)")
    request = parse_request(limits, options_from_pb(message))
    if which == "content":
        return Submission(request, io.BytesIO(message.content), None)
    return Submission(request, None, message.source_uri)


def options_from_pb(message: pb.SubmitJobRequest) -> SubmitOptions:
    """The SubmitOptions of a SubmitJobRequest, whose fields have the same names: an optional field
    (question, priority, password, reuse) when it is set, another (webhook_url, idempotency_key, pages)
    when it is not empty, as proto3 cannot tell empty from unset there."""
    given: dict[str, Any] = {}
    for name in SubmitOptions.model_fields:
        field = message.DESCRIPTOR.fields_by_name[name]
        value = getattr(message, name)
        if field.is_repeated:
            given[name] = list(value)
        elif message.HasField(name) if field.has_presence else value:
            given[name] = value
    return SubmitOptions.of(given)


def quote_to_pb(quote: QuoteView) -> pb.Job:
    """A dry run's answer: a Job with no id, status "quoted", and the quote."""
    return pb.Job(
        status="quoted",
        quote=pb.Quote(
            pages=quote.pages,
            page_tasks=quote.page_tasks,
            image_tokens=quote.image_tokens,
            output_tokens=quote.output_tokens,
            tasks=[
                pb.TaskQuote(
                    task=t.task.value,
                    page_tasks=t.page_tasks,
                    image_tokens=t.image_tokens,
                    output_tokens=t.output_tokens,
                    gpu_seconds=t.gpu_seconds,
                    basis=t.basis,
                    history_results=t.history_results,
                )
                for t in quote.tasks
            ],
            queue_ahead=quote.queue_ahead,
            page_tasks_per_s=quote.page_tasks_per_s,
            expected_start=quote.expected_start,
            expected_finish=quote.expected_finish,
            gpu_seconds=quote.gpu_seconds,
            price=quote.price,
            currency=quote.currency or "",
        ),
    )


def status_from_pb(value: str) -> JobStatus | None:
    """The status filter of ListJobs: empty means all."""
    if not value.strip():
        return None
    try:
        return JobStatus(value.strip().lower())
    except ValueError:
        known = ", ".join(s.value for s in JobStatus)
        raise InvalidInput(f"unknown status {value[:40]!r}: use one of {known}, or leave it empty") from None


def page_size_from_pb(limit: int) -> int:
    return limit or DEFAULT_PAGE_SIZE


def _error(error: ErrorInfo | None) -> pb.Error | None:
    return pb.Error(code=error.code, message=error.message) if error is not None else None


def job_to_pb(job: JobView) -> pb.Job:
    return pb.Job(
        id=str(job.id),
        status=job.status.value,
        tasks=[t.value for t in job.tasks],
        question=job.question or "",
        priority=job.priority,
        progress=pb.Progress(
            pages_total=job.progress.pages_total,
            pages_done=job.progress.pages_done,
            pages_failed=job.progress.pages_failed,
        ),
        error=_error(job.error),
        webhook_url=job.webhook_url or "",
        pages=job.pages or "",
        reuse=job.reuse,
        trace_id=job.trace_id or "",
        created_at=job.created_at,
        updated_at=job.updated_at,
        started_at=job.started_at,
        finished_at=job.finished_at,
    )


def update_to_pb(event: EventView, job: JobView) -> pb.JobUpdate:
    """An event of the job with the job's current state."""
    page_index = event.data.get("page_index") if event.kind == "progress" else None
    return pb.JobUpdate(
        event_id=event.id,
        kind=event.kind,
        event_status=event.status.value,
        created_at=event.created_at,
        job=job_to_pb(job),
        page_index=page_index if isinstance(page_index, int) else None,
    )


def page_result_to_pb(page: PageResult) -> pb.PageResult:
    return pb.PageResult(
        page=page.page,
        task=page.task.value,
        text=page.text,
        valid=page.valid,
        problem=page.problem or "",
        error=_error(page.error),
        model_id=page.model_id or "",
        model_revision=page.model_revision or "",
        prompt_template_version=page.prompt_template_version or "",
        generated_tokens=page.generated_tokens,
        attempts=page.attempts,
        verification=_verification(page.verification),
        reused_from=None
        if page.reused_from is None
        else pb.ReusedFrom(job_id=str(page.reused_from.job_id), page=page.reused_from.page),
    )


def _verdict(verdict: Verdict) -> pb.Verdict:
    message = pb.Verdict(
        passed=verdict.passed,
        executed=verdict.executed,
        rendered=verdict.rendered,
        similarity=verdict.similarity,
        repetition=verdict.repetition,
        text_layer_cer=verdict.text_layer_cer,
        text_layer_f1=verdict.text_layer_f1,
        text_layer_recall=verdict.text_layer_recall,
        error=verdict.error or "",
        reason=verdict.reason or "",
        seconds=verdict.seconds or 0.0,
    )
    if isinstance(verdict, Attempt):
        message.attempt, message.temperature = verdict.attempt, verdict.temperature
        message.generated_tokens = verdict.generated_tokens
    return message


def _verification(verification: Verification | None) -> pb.Verification | None:
    if verification is None:
        return None
    return pb.Verification(
        verdict=_verdict(verification),
        kept_attempt=verification.kept_attempt,
        attempts=[_verdict(a) for a in verification.attempts],
    )


def _summary(task: str, summary: TaskSummary) -> pb.TaskSummary:
    return pb.TaskSummary(
        task=task,
        pages_checked=summary.pages_checked,
        pages_passed=summary.pages_passed,
        pages_regenerated=summary.pages_regenerated,
        mean_similarity=summary.mean_similarity,
        mean_repetition=summary.mean_repetition,
    )


def result_to_pb(result: ResultView) -> pb.JobResult:
    return pb.JobResult(
        job=job_to_pb(result.job),
        outputs=[
            pb.OutputFile(task=task, name=file.name, key=file.key, url=file.url)
            for task, files in result.outputs.items()
            for file in files
        ],
        pages=[page_result_to_pb(p) for p in result.pages],
        summaries=[_summary(task, summary) for task, summary in result.summary.items()],
    )


def jobs_to_pb(page: JobPage) -> pb.ListJobsResponse:
    return pb.ListJobsResponse(jobs=[job_to_pb(j) for j in page.jobs], next_cursor=page.next_cursor or "")


def layout_file_from_pb(value: int) -> LayoutFile:
    """GetJobDocument's `format`: unset means the document JSON."""
    formats: dict[int, LayoutFile] = {
        pb.DOCUMENT_FORMAT_UNSPECIFIED: LayoutFile.DOCUMENT,
        pb.DOCUMENT_FORMAT_DOCUMENT_JSON: LayoutFile.DOCUMENT,
        pb.DOCUMENT_FORMAT_CHUNKS_JSONL: LayoutFile.CHUNKS,
    }
    if value not in formats:
        raise InvalidInput(
            f"unknown format {value}: use DOCUMENT_FORMAT_DOCUMENT_JSON or DOCUMENT_FORMAT_CHUNKS_JSONL"
        )
    return formats[value]


def document_to_pb(file: LayoutFile, stream: BinaryIO) -> Iterator[pb.JobDocumentChunk]:
    """The file in pieces; the first one also names it (an empty file is that message alone)."""
    data = stream.read(DOCUMENT_PIECE_BYTES)
    yield pb.JobDocumentChunk(name=file.value, content_type=file.media_type, data=data)
    while data := stream.read(DOCUMENT_PIECE_BYTES):
        yield pb.JobDocumentChunk(data=data)

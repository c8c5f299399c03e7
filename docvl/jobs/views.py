"""What callers see of jobs, results and events: one shape for REST (as JSON) and gRPC (mapped to proto)."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from pydantic import BaseModel, Field

from docvl.db import jobs
from docvl.db.models import Job, JobEvent, Page, TaskResult
from docvl.job_status import JobStatus
from docvl.tasks import TaskKind
from docvl.verify.report import TaskSummary, Verification, summarise


class Progress(BaseModel):
    pages_total: int = Field(
        description="Pages to process: the document's, or those of the page range (0 until rendered)."
    )
    pages_done: int = Field(description="Pages with every task's result.")
    pages_failed: int = Field(description="Pages where a task failed after its retries.")


class ErrorInfo(BaseModel):
    code: str = Field(description="Stable, machine-readable error code.", examples=["not_found"])
    message: str = Field(description="What went wrong and what to do about it.")

    @classmethod
    def of(cls, code: str | None, message: str | None) -> ErrorInfo | None:
        return cls(code=code, message=message or "") if code else None


class JobView(BaseModel):
    id: uuid.UUID
    status: JobStatus
    tasks: list[TaskKind]
    question: str | None = None
    pages: str | None = Field(
        None, description="The page range processed (e.g. 1-3,7,12-); null: every page.", examples=["1-3,7"]
    )
    reuse: bool = Field(
        True, description="Whether pages may reuse earlier results (false: submitted with reuse=false)."
    )
    priority: int
    progress: Progress
    error: ErrorInfo | None = Field(description="Why the job failed (or partly failed); null otherwise.")
    webhook_url: str | None = None
    created_at: datetime
    updated_at: datetime
    started_at: datetime | None = None
    finished_at: datetime | None = None
    trace_id: str | None = Field(
        None, description="The OpenTelemetry trace of the job's whole path (null when tracing is off)."
    )

    @classmethod
    def of(cls, job: Job) -> JobView:
        return cls(
            id=job.id,
            status=JobStatus(job.status),
            tasks=[TaskKind(t) for t in job.tasks],
            question=job.options.get("question"),
            pages=job.options.get("pages"),
            reuse=jobs.reuse_allowed(job),
            priority=job.priority,
            progress=Progress(
                pages_total=job.pages_total, pages_done=job.pages_done, pages_failed=job.pages_failed
            ),
            error=ErrorInfo.of(job.error_code, job.error_message),
            webhook_url=job.options.get("webhook_url"),
            created_at=job.created_at,
            updated_at=job.updated_at,
            started_at=job.started_at,
            finished_at=job.finished_at,
            trace_id=job.trace_id,
        )


class OutputFile(BaseModel):
    """A document-level output in object storage, with a time-limited download link."""

    name: str = Field(description="File name; GET /v1/jobs/{id}/outputs/{name} downloads it.")
    key: str = Field(description="Object key in the platform's bucket.")
    url: str = Field(description="Presigned download link (expires; fetch a new result for a new one).")


class ReusedFrom(BaseModel):
    job_id: uuid.UUID = Field(description="The job whose page result was reused.")
    page: int = Field(description="Its page number, from 1.")

    @classmethod
    def of(cls, job_id: uuid.UUID | None, page_index: int | None) -> ReusedFrom | None:
        return None if job_id is None or page_index is None else cls(job_id=job_id, page=page_index + 1)


class PageResult(BaseModel):
    page: int = Field(description="Page number, from 1.")
    task: TaskKind
    text: str | None = Field(description="The model's output after post-processing; null when it failed.")
    valid: bool | None = Field(
        None, description="Whether the output passed its check (Python parses, HTML is a document)."
    )
    problem: str | None = Field(None, description="Why the output did not pass its check.")
    error: ErrorInfo | None = None
    model_id: str | None = None
    model_revision: str | None = None
    prompt_template_version: str | None = None
    generated_tokens: int = 0
    attempts: int = 1
    verification: Verification | None = Field(
        None,
        description="The output's check after generation (chart code run, HTML rendered, OCR against the "
        "PDF's text layer and for repetition) and every generation attempt; null: not checked (qa, or "
        "verification off).",
    )
    reused_from: ReusedFrom | None = Field(
        None,
        description="Where the result was reused from instead of calling the model (an earlier job's page "
        "with the same content, task, question and model); null: computed for this job.",
    )

    @classmethod
    def of(cls, result: TaskResult) -> PageResult:
        return cls(
            page=result.page_index + 1,
            task=TaskKind(result.task),
            text=result.output_text,
            valid=result.output_valid,
            problem=result.output_problem,
            error=ErrorInfo.of(result.error_code, result.error_message),
            model_id=result.model_id,
            model_revision=result.model_revision,
            prompt_template_version=result.prompt_template_version,
            generated_tokens=result.generated_tokens,
            attempts=result.attempts,
            verification=Verification.of(result.verification),
            reused_from=ReusedFrom.of(result.reused_from_job, result.reused_from_page),
        )


class PageView(BaseModel):
    """A rendered page of the job."""

    page: int = Field(description="Page number, from 1.")
    width: int = Field(description="The page image's width in pixels.")
    height: int = Field(description="The page image's height in pixels.")

    @classmethod
    def of(cls, page: Page) -> PageView:
        return cls(page=page.index + 1, width=page.width, height=page.height)


class ResultView(BaseModel):
    job: JobView
    outputs: dict[str, list[OutputFile]] = Field(
        description="Per task, the document-level files (empty until the job has finished): OCR one "
        "Markdown document, chart2code a Python file per page, web2html an HTML file per page, qa "
        "answers.json with one answer per page and a combined answer, layout document.json (the pages' "
        "blocks with labels and boxes; schema: GET /v1/schemas/document-v1.json; also GET "
        "/v1/jobs/{id}/document), layout.md (the Markdown assembled from the blocks) and chunks.jsonl (RAG "
        "chunks with their heading paths, pages and boxes; also GET /v1/jobs/{id}/chunks)."
    )
    pages: list[PageResult] = Field(description="Every page result written so far, by page then task.")
    summary: dict[str, TaskSummary] = Field(
        default_factory=dict,
        description="Per task, the verification of its page results so far: pages checked, passed, "
        "regenerated and the mean similarity (tasks with nothing checked are left out).",
    )

    @classmethod
    def of(cls, job: JobView, outputs: dict[str, list[OutputFile]], pages: list[PageResult]) -> ResultView:
        summary = summarise([(p.task.value, p.verification) for p in pages])
        return cls(job=job, outputs=outputs, pages=pages, summary=summary)


class EventView(BaseModel):
    id: int = Field(description="Increasing; resume a stream after it (Last-Event-ID).")
    kind: str = Field(
        description="status, progress, webhook, converted (an Office document became a PDF), reused (a "
        "page took an earlier job's result: data.from_job, data.from_page_index), or recovered (the "
        "reconciler re-drove the job; data.action says how)."
    )
    status: JobStatus
    data: dict[str, Any]
    created_at: datetime

    @classmethod
    def of(cls, event: JobEvent) -> EventView:
        return cls.of_row(event.id, event.kind, event.status, event.data, event.created_at)

    @classmethod
    def of_row(cls, id: int, kind: str, status: str, data: dict[str, Any], created_at: datetime) -> EventView:
        return cls(id=id, kind=kind, status=JobStatus(status), data=data, created_at=created_at)


class JobPage(BaseModel):
    jobs: list[JobView]
    next_cursor: str | None = Field(description="Pass as `cursor` for the next page; null at the end.")


class ErrorBody(BaseModel):
    """Every error answer has this shape."""

    error: ErrorInfo

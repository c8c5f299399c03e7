"""The REST routes: thin; each calls one JobService function (shared with the gRPC gateway)."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import AbstractContextManager, ExitStack
from typing import Annotated, Any, BinaryIO

from fastapi import APIRouter, Depends, Header, Query, Request, Response
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse, StreamingResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from starlette.background import BackgroundTask

from docvl.db.api_keys import Caller
from docvl.errors import InvalidInput
from docvl.job_status import JobStatus
from docvl.jobs import watch
from docvl.jobs.admission import Ticket
from docvl.jobs.intake import JobRequest, parse_request
from docvl.jobs.quote import QuoteView
from docvl.jobs.service import JobService
from docvl.jobs.views import ErrorBody, EventView, JobPage, JobView, ResultView
from services.api import job_reads, submission
from services.api.admission import ticket_of
from services.api.settings import ApiSettings
from services.frontdoor.wiring import readiness

router = APIRouter()
MAX_JSON_BYTES = 64 * 1024
bearer = HTTPBearer(auto_error=False, description="An API key (`docvl keys create --owner NAME`).")
ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorBody, "description": text}
    for code, text in {
        401: "No API key, or an unknown or revoked one.",
        404: "No such job (or it belongs to another owner).",
        422: "The request is not valid; the message says what to fix.",
        503: "A dependency is unavailable; try again.",
    }.items()
}
SUBMIT_ERRORS: dict[int | str, dict[str, Any]] = {
    **ERRORS,
    409: {"model": ErrorBody, "description": "The Idempotency-Key was used for another request."},
    413: {"model": ErrorBody, "description": "The document is over the upload limit."},
    415: {"model": ErrorBody, "description": "Neither a PDF nor a supported image (checked by content)."},
    429: {"model": ErrorBody, "description": "Too many jobs in flight for this key; see Retry-After."},
    200: {"model": QuoteView, "description": "With dry_run=true: the quote. Nothing was stored."},
}


MAX_EVENT_ID = 2**63 - 1  # event ids are Postgres bigints


def service(request: Request) -> JobService:
    svc: JobService = request.app.state.service
    return svc


def settings(request: Request) -> ApiSettings:
    s: ApiSettings = request.app.state.settings
    return s


def caller(
    svc: Annotated[JobService, Depends(service)],
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
) -> Caller:
    return svc.authenticate(credentials.credentials if credentials else None)


Service = Annotated[JobService, Depends(service)]
CallerDep = Annotated[Caller, Depends(caller)]


@router.get("/healthz", tags=["health"])
def healthz() -> dict[str, str]:
    """The process is up."""
    return {"status": "ok"}


REQUIRED_FOR_SUBMISSIONS = ("database", "storage")


@router.get("/readyz", tags=["health"], responses={503: {"description": "A dependency is not reachable."}})
def readyz(request: Request, svc: Service) -> JSONResponse:
    """Ready when the database and object storage answer (what taking a job in needs); the broker and
    Prefect are reported too, but jobs submitted while they are away are started once they are back."""
    checks = readiness(settings(request), svc)
    ready = all(checks[name] == "ok" for name in REQUIRED_FOR_SUBMISSIONS)
    return JSONResponse({"ready": ready, "checks": checks}, status_code=200 if ready else 503)


@router.post(
    "/v1/jobs",
    status_code=202,
    response_model=JobView,
    responses=SUBMIT_ERRORS,
    openapi_extra=submission.SUBMIT_OPENAPI,
    tags=["jobs"],
)
async def submit_job(
    request: Request, response: Response, svc: Service, who: CallerDep
) -> JobView | JSONResponse:
    """Submit a document (multipart field `file`) or name one in storage (JSON `source`) with its tasks.
    A field that is not one of the documented ones is refused (422), never ignored. The key and its room
    for another job in flight are checked before the body is read (401, 429). With `dry_run=true` the
    answer is 200 with a quote, and nothing is stored: the document is checked as a submission's is, so
    a quote for a document that would be refused gets the refusal."""
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    ticket = ticket_of(request)  # SubmissionGate's: the key and its room, checked before the body
    if content_type == "multipart/form-data":
        async with request.form(max_files=1, max_fields=64) as form:
            upload, options = submission.from_form(form, request.headers)
            job_request = parse_request(svc.limits, options)
            if job_request.dry_run:
                return await _quoted(svc, who, job_request, ticket, document=upload.file)
            job, created = await run_in_threadpool(
                svc.submit, who, job_request, document=upload.file, ticket=ticket
            )
    elif content_type == "application/json":
        raw = b""
        async for chunk in request.stream():
            raw += chunk
            if len(raw) > MAX_JSON_BYTES:
                raise InvalidInput(f"a JSON submission is at most {MAX_JSON_BYTES} bytes: upload documents")
        source, options = submission.from_json(raw, request.headers)
        job_request = parse_request(svc.limits, options)
        if job_request.dry_run:
            return await _quoted(svc, who, job_request, ticket, source=source)
        job, created = await run_in_threadpool(svc.submit, who, job_request, source=source, ticket=ticket)
    else:
        raise InvalidInput(
            "send multipart/form-data (a file in `file`) or application/json (a `source` in storage)"
        )
    response.headers["Location"] = f"/v1/jobs/{job.id}"
    if not created:
        response.headers["Idempotent-Replayed"] = "true"
    return job


async def _quoted(
    svc: JobService,
    who: Caller,
    job_request: JobRequest,
    ticket: Ticket,
    *,
    document: BinaryIO | None = None,
    source: str | None = None,
) -> JSONResponse:
    try:
        quoted = await run_in_threadpool(svc.quote, who, job_request, document=document, source=source)
    finally:
        ticket.release()  # a quote holds no place among the key's jobs in flight
    return JSONResponse(quoted.model_dump(mode="json"), status_code=200)


@router.get("/v1/jobs", response_model=JobPage, responses=ERRORS, tags=["jobs"])
def list_jobs(
    svc: Service,
    who: CallerDep,
    status: Annotated[JobStatus | None, Query(description="Only jobs with this status.")] = None,
    cursor: Annotated[str | None, Query(description="`next_cursor` of the previous page.")] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
) -> JobPage:
    """The caller's jobs, newest first."""
    return svc.list(who, status=status, cursor=cursor, limit=limit)


@router.get(
    "/v1/jobs/{job_id}",
    response_model=JobView,
    responses={**ERRORS, 304: {"description": job_reads.NOT_MODIFIED_DOC}},
    tags=["jobs"],
)
def get_job(
    job_id: uuid.UUID,
    svc: Service,
    who: CallerDep,
    s: Annotated[ApiSettings, Depends(settings)],
    if_none_match: Annotated[str | None, Header(description="The `ETag` of the job last read.")] = None,
) -> Response:
    """Status, progress (pages total, done, failed), timestamps and error of a job, with its `ETag`;
    304 without a body when `If-None-Match` names it. While unfinished, `Retry-After` says how many
    seconds to wait before polling again (or follow the job's events)."""
    return job_reads.job_response(svc.get(who, job_id), if_none_match, s.poll_after_s)


@router.get("/v1/jobs/{job_id}/result", response_model=ResultView, responses=ERRORS, tags=["jobs"])
def get_result(job_id: uuid.UUID, svc: Service, who: CallerDep) -> ResultView:
    """Document-level outputs (with download links) and every page result written so far."""
    return svc.result(who, job_id)


@router.get(
    "/v1/jobs/{job_id}/outputs/{name}",
    responses={**ERRORS, 200: {"content": {"application/octet-stream": {}}, "description": "The file."}},
    response_class=StreamingResponse,
    tags=["jobs"],
)
def get_output(job_id: uuid.UUID, name: str, svc: Service, who: CallerDep) -> StreamingResponse:
    """Download one document-level output file through the API."""
    media = {
        "md": "text/markdown",
        "py": "text/x-python",
        "html": "text/html",
        "json": "application/json",
        "jsonl": "application/x-ndjson",
    }
    return streamed(
        svc.open_output(who, job_id, name),
        media.get(name.rsplit(".", 1)[-1], "application/octet-stream"),
        {"Content-Disposition": f'attachment; filename="{name}"'},
    )


def streamed(
    opened: AbstractContextManager[BinaryIO], media_type: str, headers: dict[str, str]
) -> StreamingResponse:
    """A stored object as the response body, opened here (its errors answer before the body starts) and
    closed when the response ends, also when the client leaves before the body starts."""
    stack = ExitStack()
    stream = stack.enter_context(opened)

    def chunks() -> Iterator[bytes]:
        while data := stream.read(256 * 1024):
            yield data

    return StreamingResponse(
        chunks(), background=BackgroundTask(stack.close), media_type=media_type, headers=headers
    )


@router.get(
    "/v1/jobs/{job_id}/events",
    response_class=StreamingResponse,
    responses={**ERRORS, 200: {"content": {"text/event-stream": {}}, "description": "Server-sent events."}},
    tags=["jobs"],
)
async def job_events(
    job_id: uuid.UUID,
    request: Request,
    svc: Service,
    who: CallerDep,
    after: Annotated[int, Query(ge=0, le=MAX_EVENT_ID, description="Start after this event id.")] = 0,
    last_event_id: Annotated[str | None, Header(alias="Last-Event-ID")] = None,
) -> StreamingResponse:
    """Server-sent events of the job's status and progress, until it ends (then an `end` event). Each
    event's `id` resumes the stream (Last-Event-ID)."""
    if last_event_id is not None and last_event_id.isascii() and last_event_id.isdigit():
        after = min(int(last_event_id), MAX_EVENT_ID)  # past every event: nothing is replayed
    config = settings(request)

    async def connected() -> bool:
        return not await request.is_disconnected()

    stream = watch.follow(
        svc,
        who,
        job_id,
        after_id=after,
        poll_s=config.watch_poll_s,
        keepalive_s=config.sse_keepalive_s,
        keep_going=connected,
        offload=run_in_threadpool,
    )
    await anext(stream)  # its first look: 404 here, before the response starts; then Mark.OPEN
    return StreamingResponse(
        _event_stream(stream),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )


async def _event_stream(stream: AsyncIterator[EventView | watch.Mark]) -> AsyncIterator[str]:
    """The watch loop of docvl/jobs/watch.py as server-sent events, until the job ends or the client
    leaves; its database reads run in the thread pool, its waits hold no thread."""
    async for item in stream:
        if item is watch.Mark.KEEP_ALIVE:
            yield ": keep-alive\n\n"
        elif item is watch.Mark.END:
            yield "event: end\ndata: {}\n\n"
        elif isinstance(item, EventView):
            yield f"id: {item.id}\nevent: {item.kind}\ndata: {item.model_dump_json()}\n\n"


@router.post("/v1/jobs/{job_id}/cancel", response_model=JobView, responses=ERRORS, tags=["jobs"])
def cancel_job(job_id: uuid.UUID, svc: Service, who: CallerDep) -> JobView:
    """Cancel a job; its queued pages are dropped. A finished job is returned unchanged."""
    return svc.cancel(who, job_id)

"""The REST routes: thin; each calls one JobService function (shared with the gRPC gateway)."""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import ExitStack
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Header, Query, Request, Response
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse, StreamingResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel, Field, SecretStr, ValidationError
from starlette.background import BackgroundTask
from starlette.datastructures import UploadFile

from docvl.db.api_keys import Caller
from docvl.errors import InvalidInput
from docvl.job_status import JobStatus
from docvl.jobs.intake import parse_request
from docvl.jobs.service import JobService
from docvl.jobs.views import ErrorBody, JobPage, JobView, ResultView
from docvl.tasks import TaskKind
from services.api.settings import ApiSettings
from services.frontdoor.wiring import readiness

router = APIRouter()
MAX_JSON_BYTES = 64 * 1024
bearer = HTTPBearer(auto_error=False, description="An API key (`docvl keys create --owner NAME`).")
TASKS = [t.value for t in TaskKind]
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
}


PAGES_HELP = "Only these pages, e.g. 1-3,7,12- (from 1; 12- runs to the end); default: every page."
PASSWORD_HELP = (
    "An encrypted PDF's password: used once to decrypt it at submission, never stored or returned."
)


class SubmitFromStorage(BaseModel):
    """A job on a document already in object storage."""

    source: str = Field(
        description="The document, as s3://bucket/key.", examples=["s3://docvl/incoming/a.pdf"]
    )
    tasks: list[Literal["ocr", "chart2code", "web2html", "qa"]] = Field(min_length=1)
    question: str | None = Field(None, description="Required with the qa task.")
    priority: int | None = Field(None, description="0 (lowest) to 9 (highest); default 5.")
    webhook_url: str | None = Field(None, description="POSTed to (signed) when the job ends.")
    pages: str | None = Field(None, description=PAGES_HELP, examples=["1-3,7,12-"])
    password: SecretStr | None = Field(None, description=PASSWORD_HELP, json_schema_extra={"writeOnly": True})


_FORM_SCHEMA = {
    "type": "object",
    "required": ["file", "tasks"],
    "properties": {
        "file": {"type": "string", "format": "binary", "description": "A PDF or a PNG/JPEG/TIFF/WebP image."},
        "tasks": {"type": "array", "items": {"type": "string", "enum": TASKS}, "minItems": 1},
        "question": {"type": "string", "description": "Required with the qa task."},
        "priority": {"type": "integer", "description": "0 (lowest) to 9 (highest); default 5."},
        "webhook_url": {"type": "string", "description": "POSTed to (signed) when the job ends."},
        "pages": {"type": "string", "description": PAGES_HELP},
        "password": {"type": "string", "format": "password", "writeOnly": True, "description": PASSWORD_HELP},
    },
}
SUBMIT_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {"schema": _FORM_SCHEMA},
            "application/json": {"schema": SubmitFromStorage.model_json_schema()},
        },
    }
}


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
    openapi_extra=SUBMIT_BODY,
    tags=["jobs"],
)
async def submit_job(
    request: Request,
    response: Response,
    svc: Service,
    who: CallerDep,
    idempotency_key: Annotated[
        str | None,
        Header(alias="Idempotency-Key", description="The same key and request return the first job."),
    ] = None,
) -> JobView:
    """Submit a document (multipart field `file`) or name one in storage (JSON `source`) with its tasks."""
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type == "multipart/form-data":
        async with request.form(max_files=1, max_fields=64) as form:
            upload = form.get("file")
            if not isinstance(upload, UploadFile):
                raise InvalidInput("send the document as the multipart file field `file`")
            fields = {
                name: [v for v in form.getlist(name) if isinstance(v, str)] for name in _FORM_SCHEMA_FIELDS
            }
            job_request = parse_request(
                svc.limits,
                tasks=[t for value in fields["tasks"] for t in value.split(",") if t.strip()],
                question=_one(fields, "question"),
                priority=_integer(_one(fields, "priority"), "priority"),
                webhook_url=_one(fields, "webhook_url"),
                idempotency_key=idempotency_key,
                pages=_one(fields, "pages"),
                password=_one(fields, "password"),
            )
            job, created = await run_in_threadpool(svc.submit, who, job_request, document=upload.file)
    elif content_type == "application/json":
        raw = b""
        async for chunk in request.stream():
            raw += chunk
            if len(raw) > MAX_JSON_BYTES:
                raise InvalidInput(f"a JSON submission is at most {MAX_JSON_BYTES} bytes: upload documents")
        try:
            body = SubmitFromStorage.model_validate_json(raw)
        except ValidationError as exc:
            raise InvalidInput(_validation_message(exc)) from exc
        job_request = parse_request(
            svc.limits,
            tasks=list(body.tasks),
            question=body.question,
            priority=body.priority,
            webhook_url=body.webhook_url,
            idempotency_key=idempotency_key,
            pages=body.pages,
            password=body.password.get_secret_value() if body.password is not None else None,
        )
        job, created = await run_in_threadpool(svc.submit, who, job_request, source=body.source)
    else:
        raise InvalidInput(
            "send multipart/form-data (a file in `file`) or application/json (a `source` in storage)"
        )
    response.headers["Location"] = f"/v1/jobs/{job.id}"
    if not created:
        response.headers["Idempotent-Replayed"] = "true"
    return job


_FORM_SCHEMA_FIELDS = ("tasks", "question", "priority", "webhook_url", "pages", "password")


def _one(fields: dict[str, list[str]], name: str) -> str | None:
    values = fields[name]
    if len(values) > 1:
        raise InvalidInput(f"send `{name}` once")
    return values[0] if values else None


def _integer(value: str | None, name: str) -> int | None:
    if value is None or not value.strip():
        return None
    try:
        return int(value)
    except ValueError as exc:
        raise InvalidInput(f"`{name}` must be a whole number, not {value[:40]!r}") from exc


def _validation_message(exc: ValidationError) -> str:
    return "; ".join(f"{'.'.join(str(p) for p in e['loc']) or 'body'}: {e['msg']}" for e in exc.errors())


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


@router.get("/v1/jobs/{job_id}", response_model=JobView, responses=ERRORS, tags=["jobs"])
def get_job(job_id: uuid.UUID, svc: Service, who: CallerDep) -> JobView:
    """Status, progress (pages total, done, failed), timestamps and error of a job."""
    return svc.get(who, job_id)


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
    stack = ExitStack()
    stream = stack.enter_context(svc.open_output(who, job_id, name))

    def chunks() -> Iterator[bytes]:
        while data := stream.read(256 * 1024):
            yield data

    media = {"md": "text/markdown", "py": "text/x-python", "html": "text/html", "json": "application/json"}
    return StreamingResponse(
        chunks(),
        background=BackgroundTask(stack.close),  # also when the client leaves before the body starts
        media_type=media.get(name.rsplit(".", 1)[-1], "application/octet-stream"),
        headers={"Content-Disposition": f'attachment; filename="{name}"'},
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
    after: Annotated[int, Query(ge=0, description="Start after this event id.")] = 0,
    last_event_id: Annotated[str | None, Header(alias="Last-Event-ID")] = None,
) -> StreamingResponse:
    """Server-sent events of the job's status and progress, until it ends (then an `end` event). Each
    event's `id` resumes the stream (Last-Event-ID)."""
    if last_event_id is not None and last_event_id.isascii() and last_event_id.isdigit():
        after = int(last_event_id)
    await run_in_threadpool(svc.get, who, job_id)  # 404 before the stream starts
    config = settings(request)
    return StreamingResponse(
        _event_stream(svc, who, job_id, after, request, config.watch_poll_s, config.sse_keepalive_s),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )


async def _event_stream(
    svc: JobService,
    who: Caller,
    job_id: uuid.UUID,
    after: int,
    request: Request,
    poll_s: float,
    keepalive_s: float,
) -> AsyncIterator[str]:
    last_sent = time.monotonic()
    loop, woken = asyncio.get_running_loop(), asyncio.Event()

    def wake() -> None:  # called from the notifier's thread
        loop.call_soon_threadsafe(woken.set)

    with svc.subscribed(job_id, wake):
        while not await request.is_disconnected():
            woken.clear()  # before looking: an event committed after the look ends the wait below
            events, ended = await run_in_threadpool(svc.poll_events, who, job_id, after)
            for event in events:
                after = event.id
                yield f"id: {event.id}\nevent: {event.kind}\ndata: {event.model_dump_json()}\n\n"
                last_sent = time.monotonic()
            if ended:
                yield "event: end\ndata: {}\n\n"
                return
            if time.monotonic() - last_sent > keepalive_s:
                yield ": keep-alive\n\n"
                last_sent = time.monotonic()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(woken.wait(), poll_s)


@router.post("/v1/jobs/{job_id}/cancel", response_model=JobView, responses=ERRORS, tags=["jobs"])
def cancel_job(job_id: uuid.UUID, svc: Service, who: CallerDep) -> JobView:
    """Cancel a job; its queued pages are dropped. A finished job is returned unchanged."""
    return svc.cancel(who, job_id)

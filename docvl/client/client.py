"""The Client: one docvl API, every call a method (see the package's docstring)."""

from __future__ import annotations

import json
import os
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from types import TracebackType
from typing import IO, Any, BinaryIO, TypeVar
from urllib.parse import quote

import httpx
from pydantic import ValidationError

from docvl.client.errors import ApiError, WaitTimeout, api_error, broken, unreachable
from docvl.client.events import apply, check_deadline, parse_event, read_sse, state
from docvl.errors import InvalidInput
from docvl.job_status import JobStatus
from docvl.jobs.options import SubmitOptions
from docvl.jobs.quote import QuoteView
from docvl.jobs.views import EventView, JobPage, JobView, ResultView
from docvl.tasks import TaskKind

DEFAULT_URL = "http://127.0.0.1:8000"
JobId = uuid.UUID | str
Document = str | os.PathLike[str] | bytes | BinaryIO
M = TypeVar("M", JobView, ResultView, JobPage, QuoteView)


class Client:
    """A synchronous client of one docvl API. Safe to share between threads; close it (or use `with`)."""

    def __init__(
        self,
        base_url: str | None = None,
        api_key: str | None = None,
        timeout: float = 60,
        *,
        transport: httpx.BaseTransport | None = None,
        poll_interval_s: float = 1.0,
    ) -> None:
        self.base_url = (base_url or os.environ.get("DOCVL_API_URL") or DEFAULT_URL).rstrip("/")
        key = api_key if api_key is not None else os.environ.get("DOCVL_API_KEY")
        self.timeout = timeout
        self.poll_interval_s = poll_interval_s
        headers = {"User-Agent": "docvl-client/1", "Accept": "application/json"}
        if key:
            headers["Authorization"] = f"Bearer {key}"
        self._http = httpx.Client(
            base_url=self.base_url, headers=headers, timeout=timeout, transport=transport
        )

    # -- lifecycle -----------------------------------------------------------------------------------

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    # -- submitting ----------------------------------------------------------------------------------

    def submit(
        self,
        path_or_bytes: Document,
        tasks: Sequence[str | TaskKind] | SubmitOptions,
        *,
        filename: str | None = None,
        **options: Any,
    ) -> JobView:
        """Upload a document (a path, its bytes or an open binary file) with its tasks and options: a
        SubmitOptions, or the tasks and the options as keywords (SubmitOptions' fields: `pages` picks pages,
        e.g. "1-3,7,12-", `password` opens an encrypted PDF). A file on disk is streamed, never read whole
        into memory."""
        return _parse(JobView, self._upload(path_or_bytes, tasks, filename, options))

    def submit_source(
        self, uri: str, tasks: Sequence[str | TaskKind] | SubmitOptions, **options: Any
    ) -> JobView:
        """A job on a document already in object storage, named `s3://bucket/key`; the tasks and options
        as for `submit`."""
        return _parse(JobView, self._named(uri, tasks, options))

    def quote(
        self,
        path_or_bytes: Document,
        tasks: Sequence[str | TaskKind] | SubmitOptions,
        *,
        filename: str | None = None,
        **options: Any,
    ) -> QuoteView:
        """What submitting the document would cost and when it would end (a dry run: nothing is stored).
        The document is checked as `submit` checks it: a refusal raises the same ApiError."""
        return _parse(QuoteView, self._upload(path_or_bytes, tasks, filename, {**options, "dry_run": True}))

    def quote_source(
        self, uri: str, tasks: Sequence[str | TaskKind] | SubmitOptions, **options: Any
    ) -> QuoteView:
        """`quote` for a document already in object storage, named `s3://bucket/key`."""
        return _parse(QuoteView, self._named(uri, tasks, {**options, "dry_run": True}))

    def _upload(
        self,
        path_or_bytes: Document,
        tasks: Sequence[str | TaskKind] | SubmitOptions,
        filename: str | None,
        options: dict[str, Any],
    ) -> httpx.Response:
        fields, headers = _sent(tasks, options)
        form = {name: value if isinstance(value, list) else str(value) for name, value in fields.items()}
        with _opened(path_or_bytes, filename) as (name, body):
            return self._request(
                "POST",
                "/v1/jobs",
                data=form,
                files={"file": (name, body, "application/octet-stream")},
                headers=headers,
            )

    def _named(
        self, uri: str, tasks: Sequence[str | TaskKind] | SubmitOptions, options: dict[str, Any]
    ) -> httpx.Response:
        fields, headers = _sent(tasks, options)
        return self._request("POST", "/v1/jobs", json={"source": uri, **fields}, headers=headers)

    # -- reading -------------------------------------------------------------------------------------

    def get(self, job_id: JobId) -> JobView:
        return _parse(JobView, self._request("GET", f"/v1/jobs/{_id(job_id)}"))

    def result(self, job_id: JobId) -> ResultView:
        """Document-level outputs (once the job has finished) and every page result written so far."""
        return _parse(ResultView, self._request("GET", f"/v1/jobs/{_id(job_id)}/result"))

    def document(self, job_id: JobId) -> dict[str, Any]:
        """A finished layout job's document.json: its pages, each with its blocks (label, boxes in pixels
        and PDF points, Markdown text) in reading order, valid against the schema `schema()` returns.
        ApiError 409 `layout_not_requested`, `job_not_finished` or `layout_unavailable` when it has none."""
        response = self._request("GET", f"/v1/jobs/{_id(job_id)}/document")
        document = _json(response)
        if not isinstance(document, dict):
            raise _not_a(response, "a JSON object")
        return document

    def chunks(self, job_id: JobId) -> list[dict[str, Any]]:
        """A finished layout job's RAG chunks (chunks.jsonl), in document order: each with its `id`,
        `text`, `heading_path`, `pages`, `boxes` and `block_ids`. Errors as for `document`."""
        response = self._request("GET", f"/v1/jobs/{_id(job_id)}/chunks")
        chunks = [_json(response, line) for line in response.text.splitlines() if line.strip()]
        if not all(isinstance(chunk, dict) for chunk in chunks):
            raise _not_a(response, "one JSON object a line")
        return chunks

    def schema(self) -> dict[str, Any]:
        """The JSON Schema of `document`'s answer (GET /v1/schemas/document-v1.json)."""
        response = self._request("GET", "/v1/schemas/document-v1.json")
        schema = _json(response)
        if not isinstance(schema, dict):
            raise _not_a(response, "a JSON Schema")
        return schema

    def read_output(self, job_id: JobId, name: str) -> bytes:
        """One document-level output file, whole (see `download` for large ones)."""
        return self._request("GET", self._output_path(job_id, name)).content

    def download(self, job_id: JobId, name: str, dest: Path) -> Path:
        """Stream one document-level output file to `dest` (a file path, or an existing directory to put
        `name` in); returns the path written. A partial download never replaces the destination."""
        if not name or name in (".", "..") or "/" in name or "\\" in name:
            raise ApiError(0, "invalid_input", f"{name!r} is not an output file name")
        target = dest / name if dest.is_dir() else dest
        target.parent.mkdir(parents=True, exist_ok=True)
        partial = target.with_name(f".{target.name}.{uuid.uuid4().hex[:8]}.part")
        try:
            with self._stream("GET", self._output_path(job_id, name)) as response, partial.open("wb") as out:
                for chunk in _chunks(response, self.base_url):
                    out.write(chunk)
            partial.replace(target)
        finally:
            partial.unlink(missing_ok=True)
        return target

    def cancel(self, job_id: JobId) -> JobView:
        """Cancel the job; a finished job is returned unchanged."""
        return _parse(JobView, self._request("POST", f"/v1/jobs/{_id(job_id)}/cancel"))

    def jobs(
        self, status: JobStatus | str | None = None, cursor: str | None = None, limit: int = 50
    ) -> JobPage:
        """One page of the caller's jobs, newest first; pass `next_cursor` on for the next page."""
        params: dict[str, str | int] = {"limit": limit}
        if status is not None:
            params["status"] = str(status)
        if cursor is not None:
            params["cursor"] = cursor
        return _parse(JobPage, self._request("GET", "/v1/jobs", params=params))

    def iter_jobs(self, status: JobStatus | str | None = None, *, limit: int = 50) -> Iterator[JobView]:
        """Every job of the caller, newest first, fetched `limit` a page."""
        cursor: str | None = None
        while True:
            page = self.jobs(status, cursor, limit)
            yield from page.jobs
            if page.next_cursor is None or not page.jobs:
                return
            cursor = page.next_cursor

    # -- following a job -----------------------------------------------------------------------------

    def events(self, job_id: JobId, after: int = 0) -> Iterator[EventView]:
        """The job's events (server-sent) from after event `after`, as they happen; the iterator ends when
        the job has ended. A broken stream raises ApiError `unavailable`."""
        for kind, data in self._sse(job_id, after, None):
            if kind == "end":
                return
            yield parse_event(data)

    def wait(
        self,
        job: JobId | JobView,
        on_update: Callable[[JobView], None] | None = None,
        timeout_s: float | None = None,
    ) -> JobView:
        """Block until the job has finished and return it. `job`: its id, or the JobView `submit` returned
        (which saves asking for the job first). `on_update` is called with the job first and then whenever
        its status or progress changes. Follows the event stream; if the stream breaks, polls instead.
        Raises WaitTimeout after `timeout_s` (the job goes on)."""
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        view = job if isinstance(job, JobView) else self.get(job)
        job_id = view.id
        seen = state(view)
        if on_update is not None:
            on_update(view)

        def report(new: JobView) -> None:
            nonlocal view, seen
            view = new
            if state(new) != seen:
                seen = state(new)
                if on_update is not None:
                    on_update(new)

        if not view.status.finished:
            try:
                for kind, data in self._sse(job_id, 0, deadline):
                    if kind == "end":
                        break
                    report(apply(view, parse_event(data)))
            except WaitTimeout:
                raise
            except ApiError as exc:
                if exc.status != 0 and exc.status < 500:
                    raise
                # The stream broke (or the server could not stream): poll from here on.
            while True:
                latest = self.get(job_id)
                report(latest)
                if latest.status.finished:
                    break
                check_deadline(deadline, job_id)
                pause = self.poll_interval_s
                if deadline is not None:
                    pause = max(0.0, min(pause, deadline - time.monotonic()))
                time.sleep(pause)
        return view

    # -- plumbing ------------------------------------------------------------------------------------

    def _output_path(self, job_id: JobId, name: str) -> str:
        return f"/v1/jobs/{_id(job_id)}/outputs/{quote(name, safe='')}"

    def _request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        try:
            response = self._http.request(method, path, **kwargs)
        except httpx.TransportError as exc:
            raise unreachable(self.base_url, exc) from exc
        if response.is_error:
            raise api_error(response)
        return response

    @contextmanager
    def _stream(self, method: str, path: str, **kwargs: Any) -> Iterator[httpx.Response]:
        try:
            with self._http.stream(method, path, **kwargs) as response:
                if response.is_error:
                    response.read()
                    raise api_error(response)
                yield response
        except httpx.TransportError as exc:
            raise unreachable(self.base_url, exc) from exc

    def _sse(self, job_id: JobId, after: int, deadline: float | None) -> Iterator[tuple[str, str]]:
        """(event kind, data) of the job's event stream; stops after `end`, or raises WaitTimeout at the
        deadline (checked on every line: the server sends a keep-alive comment when idle)."""
        timeout = httpx.Timeout(self.timeout)
        if deadline is not None:
            timeout = httpx.Timeout(
                self.timeout, read=max(0.1, min(self.timeout, deadline - time.monotonic()))
            )
        path = f"/v1/jobs/{_id(job_id)}/events"
        with self._stream(
            "GET", path, params={"after": after}, headers={"Accept": "text/event-stream"}, timeout=timeout
        ) as response:
            try:
                for kind, data in read_sse(response.iter_lines(), lambda: check_deadline(deadline, job_id)):
                    yield kind, data
                    if kind == "end":
                        return
            except httpx.TransportError as exc:
                if deadline is not None and time.monotonic() >= deadline:
                    check_deadline(deadline, job_id)
                raise broken("event stream", self.base_url, exc) from exc
        raise ApiError(0, "unavailable", f"the event stream from {self.base_url} ended before the job did")


# -- helpers -------------------------------------------------------------------------------------------


def _sent(
    tasks: Sequence[str | TaskKind] | SubmitOptions, options: dict[str, Any]
) -> tuple[dict[str, Any], dict[str, str]]:
    """(body fields, headers) of a submission, checked by SubmitOptions first: a field it does not know or
    refuses is an ApiError `invalid_input`, and nothing is sent."""
    given = tasks.given() if isinstance(tasks, SubmitOptions) else {"tasks": [str(t) for t in tasks]}
    try:
        fields = SubmitOptions.of(given | options).given()
    except InvalidInput as exc:
        raise ApiError(0, exc.code, exc.message) from exc
    headers = {
        header: str(fields.pop(name)) for name, header in SubmitOptions.HEADERS.items() if name in fields
    }
    return fields, headers


def _id(job_id: JobId) -> str:
    return quote(str(job_id), safe="")


@contextmanager
def _opened(document: Document, filename: str | None) -> Iterator[tuple[str, IO[bytes] | bytes]]:
    if isinstance(document, bytes):
        yield filename or "document", document
    elif isinstance(document, str | os.PathLike):
        path = Path(document)
        with path.open("rb") as fh:
            yield filename or path.name, fh
    else:
        yield filename or Path(str(getattr(document, "name", "document"))).name, document


def _parse(model: type[M], response: httpx.Response) -> M:
    try:
        return model.model_validate_json(response.content)
    except ValidationError as exc:
        raise ApiError(
            response.status_code,
            "invalid_response",
            f"{response.request.url} answered what is not a {model.__name__}: {exc.error_count()} problems, "
            f"first: {exc.errors()[0]['msg']}",
        ) from exc


def _json(response: httpx.Response, text: str | None = None) -> Any:
    """The answer's JSON (or that of `text`, a line of it); ApiError `invalid_response` when it is not."""
    try:
        return json.loads(response.content if text is None else text)
    except ValueError as exc:
        raise _not_a(response, "JSON") from exc


def _not_a(response: httpx.Response, what: str) -> ApiError:
    return ApiError(
        response.status_code, "invalid_response", f"{response.request.url} answered what is not {what}"
    )


def _chunks(response: httpx.Response, base_url: str) -> Iterator[bytes]:
    try:
        yield from response.iter_bytes(256 * 1024)
    except httpx.TransportError as exc:
        raise broken("download", base_url, exc) from exc

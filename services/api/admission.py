"""Submissions are let in, or refused, from their headers before their bodies are read: a missing or
unknown key is 401 and a key with no room for another job in flight is 429 with Retry-After, answered by
this ASGI middleware without reading a byte of the body (docvl/jobs/admission.py; a key read lately is
answered from memory, without the database). A submission let in carries its ticket to the route in the
request's state, and gives it back when its answer is sent."""

from __future__ import annotations

import asyncio

import anyio
import anyio.to_thread
from fastapi.security.utils import get_authorization_scheme_param
from starlette.datastructures import Headers
from starlette.requests import Request
from starlette.types import ASGIApp, Receive, Scope, Send

from docvl.errors import DocvlError, TooManySubmissions, Unauthenticated
from docvl.jobs.admission import Ticket
from docvl.jobs.options import SubmitOptions
from docvl.jobs.service import JobService
from services.api.errors import domain_error_response

TICKET = "admission_ticket"
READ_THREADS = 4  # threads reading keys at once, apart from the thread pool the submissions' work uses
IDEMPOTENCY_HEADER = SubmitOptions.HEADERS["idempotency_key"]


class SubmissionGate:
    def __init__(self, app: ASGIApp, *, path: str) -> None:
        self.app = app
        self.path = path
        self.reading: dict[str, asyncio.Future[bool]] = {}  # a key being read, by its secret: read or not
        self.limiter: anyio.CapacityLimiter | None = None  # made in the event loop, on first use

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "POST" or scope["path"] != self.path:
            await self.app(scope, receive, send)
            return
        service: JobService = scope["app"].state.service
        headers = Headers(scope=scope)
        scheme, secret = get_authorization_scheme_param(headers.get("authorization"))
        key = secret if scheme.lower() == "bearer" and secret else None
        idempotency_key = headers.get(IDEMPOTENCY_HEADER)
        try:
            ticket = await self.admit(service, key, idempotency_key)
        except DocvlError as exc:
            await domain_error_response(exc)(scope, receive, send)
            return
        scope.setdefault("state", {})[TICKET] = ticket
        try:
            await self.app(scope, receive, send)
        finally:
            ticket.release()  # no-op when the route recorded its job

    async def admit(self, service: JobService, key: str | None, idempotency_key: str | None) -> Ticket:
        """From memory when the key was read lately. Otherwise one request reads the key (in threads of
        its own, never queued behind the submissions' work) while the others with the same key wait for
        that read, holding no thread, and answer from it; a request with an Idempotency-Key at the limit
        looks its job up."""
        ticket = service.admit_from_memory(key, idempotency_key)  # Unauthenticated without a key
        while ticket is None and idempotency_key is None and (read := self.reading.get(key or "")):
            read_ok = await asyncio.shield(read)
            ticket = service.admit_from_memory(key, idempotency_key, stale_ok=read_ok)
        if ticket is not None:
            return ticket
        if self.limiter is None:
            self.limiter = anyio.CapacityLimiter(READ_THREADS)
        if idempotency_key is not None:
            return await anyio.to_thread.run_sync(service.admit, key, idempotency_key, limiter=self.limiter)
        mine = self.reading[key or ""] = asyncio.get_running_loop().create_future()
        read_ok = False
        try:
            ticket = await anyio.to_thread.run_sync(service.admit, key, None, limiter=self.limiter)
            read_ok = True
            return ticket
        except DocvlError as exc:
            read_ok = isinstance(exc, TooManySubmissions | Unauthenticated)  # answered from a read
            raise
        finally:
            del self.reading[key or ""]
            mine.set_result(read_ok)


def ticket_of(request: Request) -> Ticket:
    """The ticket SubmissionGate gave the request."""
    ticket: Ticket = getattr(request.state, TICKET)
    return ticket

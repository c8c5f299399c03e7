"""Submissions are let in, or refused, from their headers before their bodies are read: a missing or
unknown key is 401 and a key with no room for another job in flight is 429 with Retry-After, answered by
this ASGI middleware without reading a byte of the body (docvl/jobs/admission.py; a key read lately is
answered from memory, without the database). A submission let in carries its ticket to the route in the
request's state, and gives it back when its answer is sent."""

from __future__ import annotations

from fastapi.security.utils import get_authorization_scheme_param
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import Headers
from starlette.requests import Request
from starlette.types import ASGIApp, Receive, Scope, Send

from docvl.errors import DocvlError
from docvl.jobs.admission import Ticket
from docvl.jobs.options import SubmitOptions
from docvl.jobs.service import JobService
from services.api.errors import domain_error_response

TICKET = "admission_ticket"
IDEMPOTENCY_HEADER = SubmitOptions.HEADERS["idempotency_key"]


class SubmissionGate:
    def __init__(self, app: ASGIApp, *, path: str) -> None:
        self.app = app
        self.path = path

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
            ticket = service.admit_from_memory(key, idempotency_key)
            if ticket is None:
                ticket = await run_in_threadpool(service.admit, key, idempotency_key)
        except DocvlError as exc:
            await domain_error_response(exc)(scope, receive, send)
            return
        scope.setdefault("state", {})[TICKET] = ticket
        try:
            await self.app(scope, receive, send)
        finally:
            ticket.release()  # no-op when the route recorded its job


def ticket_of(request: Request) -> Ticket:
    """The ticket SubmissionGate gave the request."""
    ticket: Ticket = getattr(request.state, TICKET)
    return ticket

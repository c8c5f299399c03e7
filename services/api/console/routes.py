"""The console: its page at `/` and its assets, served with a strict Content-Security-Policy, and the
read-only JSON routes it reads beyond the job routes (behind the same API key)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import ExitStack
from importlib.resources import files
from typing import Annotated

from fastapi import APIRouter, Path
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import Response, StreamingResponse
from starlette.background import BackgroundTask

from docvl.errors import NotFound
from services.api.console import pages, render
from services.api.console.views import RenderedJob
from services.api.routes import ERRORS, CallerDep, Service

# The console loads only its own files and talks only to this API; nothing is inline, and nothing is
# framed but the web2html previews (from /console/previews, or srcdoc documents inheriting this policy).
CONSOLE_CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' blob: data:; "
    "connect-src 'self'; frame-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)
HEADERS = {
    "Content-Security-Policy": CONSOLE_CSP,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    "Cache-Control": "no-cache",
}
ASSETS = {"console.js": "text/javascript", "console.css": "text/css"}

api_router = APIRouter(tags=["console"])
console_router = APIRouter(include_in_schema=False)
PageNumber = Annotated[int, Path(ge=1, description="Page number, from 1.")]


def _static(name: str) -> bytes:
    return files("services.api.console").joinpath("static", name).read_bytes()


@console_router.get("/")
def console_page() -> Response:
    return Response(_static("index.html"), media_type="text/html; charset=utf-8", headers=HEADERS)


@console_router.get("/console/code.css")
def code_stylesheet() -> Response:
    return Response(render.code_css(), media_type="text/css", headers=HEADERS)


@console_router.get("/console/{name}")
def console_asset(name: str) -> Response:
    if name not in ASSETS:
        raise NotFound(f"the console has no file {name!r}")
    return Response(_static(name), media_type=ASSETS[name], headers=HEADERS)


@console_router.get("/console/previews/{job_id}/{page}/{token}")
def web_preview(job_id: uuid.UUID, page: PageNumber, token: str, svc: Service) -> Response:
    """A web2html page with its CSS for the console's frame, by a signed, expiring link (previews.py):
    sandboxed by its policy (no scripts, an opaque origin), nothing loads, only the console frames it."""
    return Response(
        pages.preview(svc, job_id, page, token),
        media_type="text/html; charset=utf-8",
        headers={
            "Content-Security-Policy": render.PREVIEW_CSP,
            "X-Content-Type-Options": "nosniff",
            "Referrer-Policy": "no-referrer",
            "Cross-Origin-Resource-Policy": "same-origin",
            "Cache-Control": "private, no-store",
        },
    )


@api_router.get("/v1/jobs/{job_id}/pages", response_model=RenderedJob, responses=ERRORS)
async def rendered_pages(job_id: uuid.UUID, svc: Service, who: CallerDep) -> RenderedJob:
    """Every page of the job with its results so far, rendered safe to display (what the web console
    shows): Markdown sanitised, code highlighted, web pages made inert."""
    return await run_in_threadpool(pages.rendered, svc, who, job_id)


@api_router.get(
    "/v1/jobs/{job_id}/pages/{page}/image",
    response_class=StreamingResponse,
    responses={**ERRORS, 200: {"content": {"image/png": {}}, "description": "The page image."}},
)
def page_image(job_id: uuid.UUID, page: PageNumber, svc: Service, who: CallerDep) -> StreamingResponse:
    """The page as the model saw it (the rendered image)."""
    media_type, opened = svc.open_page_image(who, job_id, page)
    stack = ExitStack()
    stream = stack.enter_context(opened)

    def chunks() -> Iterator[bytes]:
        while data := stream.read(256 * 1024):
            yield data

    return StreamingResponse(
        chunks(),
        media_type=media_type,
        background=BackgroundTask(stack.close),
        headers={"Cache-Control": "private, max-age=300", "X-Content-Type-Options": "nosniff"},
    )

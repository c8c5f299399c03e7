"""The REST API application: `create_app()` for uvicorn (`docvl api`) and for tests, with its lifespan."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from fastapi_offline import FastAPIOffline

from docvl.db.database import Database
from docvl.jobs.service import JobService
from docvl.observability import tracing
from docvl.observability.metrics.api import RequestMetrics
from services.api import console, errors, layout
from services.api.admission import SubmissionGate
from services.api.limits import UploadLimit
from services.api.routes import router
from services.api.settings import ApiSettings

DESCRIPTION = """Document understanding with DeepSeek-VL and DeepSeek-OCR-2: OCR (Markdown), chart-to-code
(matplotlib), webpage-to-HTML, visual question answering and grounded layout (blocks with labels and boxes,
a document JSON and RAG chunks), on PDFs and images.

Every call but `/healthz`, `/readyz` and the schemas (`/v1/schemas/...`) needs an API key:
`Authorization: Bearer <key>`. Every error is JSON: `{"error": {"code": "...", "message": "..."}}` with a
stable `code`."""


def create_app(settings: ApiSettings | None = None, service: JobService | None = None) -> FastAPI:
    """The app; without `service`, its lifespan waits for the database and wires the real one."""
    config = settings or ApiSettings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if service is not None:
            yield
            return
        from services.frontdoor.wiring import job_service

        database = Database(config.database_url)
        database.wait_until_reachable(config.database_wait_s)
        app.state.service = job_service(config, database)
        yield
        app.state.service.close()
        database.dispose()

    # /docs and /redoc (Swagger UI, ReDoc) with their JavaScript, CSS and favicon served from the installed
    # fastapi-offline package under /static-offline-docs, not from a CDN: they work air-gapped.
    app = FastAPIOffline(title="docvl", version="1", description=DESCRIPTION, lifespan=lifespan)
    app.state.settings = config
    if service is not None:
        app.state.service = service
    errors.install(app)
    app.include_router(router)
    app.include_router(layout.router)
    console.install(app)  # last: its `/` and `/console/*` shadow no other route
    app.add_middleware(SubmissionGate, path="/v1/jobs")  # 401 and 429 from the headers, before the body
    app.add_middleware(UploadLimit, path="/v1/jobs", max_bytes=config.max_upload_bytes)
    app.add_middleware(RequestMetrics)  # outside the upload limit: its 413s are counted too
    tracing.instrument_fastapi(app)  # when tracing is on: a server span per request
    return app

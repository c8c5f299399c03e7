"""The REST routes of layout results: the document JSON Schema (public), and a layout job's document.json
and chunks.jsonl (docvl/jobs/layout_results.py, shared with the gateway)."""

from __future__ import annotations

import json
import uuid
from functools import cache
from typing import Any

from fastapi import APIRouter
from fastapi.responses import Response, StreamingResponse

from docvl.db.api_keys import Caller
from docvl.jobs import layout_results
from docvl.jobs.layout_results import LayoutFile
from docvl.jobs.service import JobService
from docvl.jobs.views import ErrorBody
from docvl.layout import schema
from services.api.routes import ERRORS, CallerDep, Service, streamed

router = APIRouter()
SCHEMA_PATH = "/v1/schemas/document-v1.json"
LAYOUT_ERRORS: dict[int | str, dict[str, Any]] = {
    **ERRORS,
    409: {
        "model": ErrorBody,
        "description": "`layout_not_requested`: the job was submitted without the layout task (submit again "
        "with tasks=layout); `job_not_finished`: it has not finished yet (wait, then ask again); "
        "`layout_unavailable`: it ended (failed, cancelled) without the file.",
    },
}


@cache
def _schema_bytes() -> bytes:
    return json.dumps(schema(), indent=2, ensure_ascii=False).encode()


@router.get(
    SCHEMA_PATH,
    response_class=Response,
    responses={200: {"content": {"application/schema+json": {}}, "description": "The JSON Schema."}},
    tags=["schemas"],
)
def document_schema() -> Response:
    """The JSON Schema (draft 2020-12) of a layout job's document.json, version 1 (its `$id`:
    https://docvl.dev/schema/document/v1.json). Public: no API key needed."""
    return Response(
        _schema_bytes(),
        media_type="application/schema+json",
        headers={"Cache-Control": "public, max-age=3600"},
    )


@router.get(
    "/v1/jobs/{job_id}/document",
    response_class=StreamingResponse,
    responses={
        **LAYOUT_ERRORS,
        200: {
            "content": {"application/json": {}},
            "description": f"The document: pages, each with its blocks (label, boxes in pixels and PDF "
            f"points, Markdown text) in reading order; valid against {SCHEMA_PATH}.",
        },
    },
    tags=["jobs"],
)
def get_document(job_id: uuid.UUID, svc: Service, who: CallerDep) -> StreamingResponse:
    """A finished layout job's document.json (schema: GET /v1/schemas/document-v1.json)."""
    return _file(svc, who, job_id, LayoutFile.DOCUMENT)


@router.get(
    "/v1/jobs/{job_id}/chunks",
    response_class=StreamingResponse,
    responses={
        **LAYOUT_ERRORS,
        200: {
            "content": {"application/x-ndjson": {}},
            "description": "One JSON chunk a line: id, text, heading_path, pages, boxes ({page, block_id, "
            "box_px, box_pt}) and block_ids.",
        },
    },
    tags=["jobs"],
)
def get_chunks(job_id: uuid.UUID, svc: Service, who: CallerDep) -> StreamingResponse:
    """A finished layout job's RAG chunks (chunks.jsonl): pieces of its Markdown that never split a block
    (unless it alone is over the size limit), each anchored to its pages and boxes."""
    return _file(svc, who, job_id, LayoutFile.CHUNKS)


def _file(svc: JobService, who: Caller, job_id: uuid.UUID, file: LayoutFile) -> StreamingResponse:
    opened = layout_results.open_file(svc, who, job_id, file)
    return streamed(opened, file.media_type, {"Content-Disposition": f'inline; filename="{file}"'})

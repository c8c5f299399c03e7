"""Layout jobs written straight into the record, as the layout pipeline leaves them (its contract): each
page's result with the model's grounded text and its `Page.to_json()` stored at
`layout-page-NNNN.json`, and once the job has finished `outputs["layout"]` = document.json, layout.md and
chunks.jsonl. A job service for them on the test database and a local store, with no broker or model
behind it: the front doors only read here."""

from __future__ import annotations

import hashlib
import json
import uuid
from pathlib import Path
from typing import Any, cast

from PIL import Image

from docvl.db import jobs, page_results
from docvl.db.database import Database
from docvl.job_status import JobStatus
from docvl.jobs.intake import Limits
from docvl.jobs.service import JobService
from docvl.layout import Document, Page, chunk_document, document_markdown, page_from_grounded, to_jsonl
from docvl.storage.base import output_key, page_key
from docvl.storage.local import LocalObjectStore
from docvl.tasks import TaskKind
from tests.support.dispatch import RecordingDispatch
from tests.support.helpers import ROOT

PAGE_IMAGE = ROOT / "docvl" / "samples" / "page.png"  # 850 × 1100 px, a US Letter page (612 × 792 pt)
PAGE_PT = (612.0, 792.0)

# DeepSeek-OCR-2's grounded answer for the sample page (boxes 0-999 of each side, on the page's parts).
GROUNDED = """<|ref|>title<|/ref|><|det|>[[70, 56, 421, 98]]<|/det|>
# Quarterly Report

<|ref|>text<|/ref|><|det|>[[70, 127, 649, 552]]<|/det|>
Line 1: revenue grew in every region; costs stayed flat.
Line 2: revenue grew in every region; costs stayed flat.

<|ref|>table<|/ref|><|det|>[[70, 578, 930, 742]]<|/det|>
| Region | Revenue |
|:-------|--------:|
| North  | 1,200   |
| South  | 950     |
| West   | 700     |
"""

HOSTILE_TEXT = (
    "<script>window.__pwned = 'script'</script>"
    "<img src=\"http://evil.invalid/x.png\" onerror=\"window.__pwned = 'img'; alert('img')\">"
)
HOSTILE = f"""{GROUNDED}
<|ref|>text<|/ref|><|det|>[[70, 770, 640, 810]]<|/det|>
{HOSTILE_TEXT}
"""


def layout_service(db: Database, root: Path) -> JobService:
    """A job service for reading (the front doors' reads only): the test database, a local store."""
    store = LocalObjectStore(root)
    store.ensure_ready()
    limits = Limits(max_upload_bytes=1 << 20, max_pages=10)
    return JobService(db, store, limits, RecordingDispatch(), source_store=cast(Any, None))


def stored_layout_job(
    svc: JobService,
    owner: str,
    grounded: str = GROUNDED,
    *,
    tasks: tuple[TaskKind, ...] = (TaskKind.LAYOUT,),
    status: JobStatus = JobStatus.SUCCEEDED,
    with_outputs: bool = True,
) -> tuple[uuid.UUID, Document]:
    """A job of `owner` on the sample page with `tasks`, its layout page result from `grounded`, then in
    `status` (RUNNING: not finished), with the layout outputs when `with_outputs` and it has finished."""
    data = PAGE_IMAGE.read_bytes()
    with Image.open(PAGE_IMAGE) as image:
        width, height = image.size
    with svc.db.transaction() as s:
        document_row = jobs.get_or_create_document(
            s,
            sha256=hashlib.sha256(uuid.uuid4().bytes).hexdigest(),
            size_bytes=len(data),
            media_type="image/png",
            object_key=f"inputs/{uuid.uuid4().hex}",
        )
        job, _ = jobs.create_job(s, jobs.NewJob(owner=owner, document_id=document_row.id, tasks=list(tasks)))
        job_id = job.id
        svc.store.put(page_key(job_id, 0), data, content_type="image/png")
        jobs.transition(s, job_id, JobStatus.RUNNING)
        page_results.add_pages(
            s, job_id, [page_results.NewPage(0, page_key(job_id, 0), width, height, len(data))]
        )
    page = page_from_grounded(grounded, 1, width, height, *PAGE_PT)
    if TaskKind.LAYOUT in tasks:
        _page_result(svc, job_id, page, grounded)
    document = Document(job_id=str(job_id), pages=(page,))
    if status.finished:
        _finish(svc, job_id, document, status, with_outputs and TaskKind.LAYOUT in tasks)
    return job_id, document


def _page_result(svc: JobService, job_id: uuid.UUID, page: Page, grounded: str) -> None:
    key = output_key(job_id, "layout-page-0001.json")
    svc.store.put(key, _json(page.to_json()), content_type="application/json")
    with svc.db.transaction() as s:
        page_results.record_result(
            s,
            page_results.NewResult(
                job_id=job_id,
                page_index=0,
                task=TaskKind.LAYOUT,
                output_text=grounded,
                output_key=key,
                output_valid=True,
                generated_tokens=len(grounded.split()),
                model_id="deepseek-ai/DeepSeek-OCR-2",
                model_revision="written-by-test",
                prompt_template_version="layout-v1",
            ),
        )


def _finish(
    svc: JobService, job_id: uuid.UUID, document: Document, status: JobStatus, with_outputs: bool
) -> None:
    outputs: dict[str, Any] = {}
    if with_outputs:
        files = {
            "document.json": (document.dumps().encode(), "application/json"),
            "layout.md": (document_markdown(document).encode(), "text/markdown; charset=utf-8"),
            "chunks.jsonl": (to_jsonl(chunk_document(document)).encode(), "application/x-ndjson"),
        }
        for name, (body, content_type) in files.items():
            svc.store.put(output_key(job_id, name), body, content_type=content_type)
        outputs["layout"] = [output_key(job_id, name) for name in files]
    with svc.db.transaction() as s:
        jobs.set_outputs(jobs.get_job(s, job_id, lock=True), outputs)
        if status is JobStatus.FAILED:
            jobs.transition(
                s, job_id, status, error_code="all_pages_failed", error_message="every page failed"
            )
        else:
            jobs.transition(s, job_id, status)


def _json(data: object) -> bytes:
    return json.dumps(data, ensure_ascii=False).encode()

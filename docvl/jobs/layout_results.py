"""A layout job's results as the front doors read them, behind JobService's owner checks: the document
JSON and the RAG chunks (two of the files `finish` assembles under `outputs["layout"]`, beside layout.md),
and each page's blocks as its page task stored them (`layout-page-NNNN.json`), for the console.

Both front doors (REST and gRPC) call `open_file`, so they refuse alike: a job without the layout task,
one still running, one that ended without the file."""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Iterable
from contextlib import AbstractContextManager
from enum import StrEnum
from typing import BinaryIO

from docvl.db.api_keys import Caller
from docvl.errors import JobNotFinished, LayoutNotRequested, LayoutUnavailable, NotFound
from docvl.jobs.service import JobService
from docvl.jobs.views import JobView
from docvl.layout.document import Page
from docvl.storage.base import output_key
from docvl.tasks import TaskKind

log = logging.getLogger(__name__)


class LayoutFile(StrEnum):
    """The layout files the front doors serve by themselves, by their output file names."""

    DOCUMENT = "document.json"
    CHUNKS = "chunks.jsonl"

    @property
    def media_type(self) -> str:
        return "application/json" if self is LayoutFile.DOCUMENT else "application/x-ndjson"


def open_file(
    svc: JobService, caller: Caller, job_id: uuid.UUID, file: LayoutFile
) -> AbstractContextManager[BinaryIO]:
    """A stream of the job's `file`. NotFound: no such job (or another owner's); LayoutNotRequested: the
    job has no layout task; JobNotFinished: it has not ended yet; LayoutUnavailable: it ended without it."""
    job = svc.get(caller, job_id)
    check_ready(job, file)
    try:
        return svc.open_output(caller, job_id, file.value)
    except NotFound:
        raise _unavailable(job, file) from None


def check_ready(job: JobView, file: LayoutFile) -> None:
    """Refuse, saying what to do, when `job` cannot have `file` (yet)."""
    if TaskKind.LAYOUT not in job.tasks:
        tasks = ", ".join(job.tasks)
        raise LayoutNotRequested(
            f"job {job.id} was submitted with tasks {tasks}, without layout, so it has no {file}: "
            "submit the document again with tasks=layout"
        )
    if not job.status.finished:
        raise JobNotFinished(
            f"job {job.id} is {job.status}: its {file} is written once the job has finished; wait for it "
            "(follow its events, or poll the job) and ask again"
        )


def _unavailable(job: JobView, file: LayoutFile) -> LayoutUnavailable:
    why = f" ({job.error.code}: {job.error.message})" if job.error is not None else ""
    return LayoutUnavailable(
        f"job {job.id} ended {job.status}{why} without a {file}: submit the document again to get one"
    )


def page_key(job_id: uuid.UUID, page: int) -> str:
    """Where the layout page task stores page `page`'s blocks (page from 1): its `Page.to_json()`."""
    return output_key(job_id, f"layout-page-{page:04d}.json")


def stored_pages(svc: JobService, caller: Caller, job_id: uuid.UUID, pages: Iterable[int]) -> dict[int, Page]:
    """The stored blocks of those of `pages` (numbers from 1) that have them, by page number; a page whose
    object is missing (not done yet) or unreadable is left out (the latter logged)."""
    svc.get(caller, job_id)  # NotFound when the job is not the caller's
    found: dict[int, Page] = {}
    for number in pages:
        key = page_key(job_id, number)
        try:
            found[number] = Page.from_json(json.loads(svc.store.get(key)))
        except NotFound:
            continue
        except (ValueError, KeyError, TypeError):
            log.warning(
                "the layout page %s is not a page's JSON; its blocks are not shown", key, exc_info=True
            )
    return found

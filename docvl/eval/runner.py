"""Submit every item of a set through the Python client, as a user would, and collect its page result.

One job per item (a PDF item asks for its page only), at most `concurrency` items in flight; a
submission the API turns away for now (429, 503, no answer) is retried with the same idempotency key.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel

from docvl.client import ApiError, Client
from docvl.errors import DocvlError
from docvl.eval.manifest import Item, LabelledSet, is_pdf
from docvl.job_status import JobStatus
from docvl.jobs.views import PageResult
from docvl.layout.document import Document, Page
from docvl.tasks import TaskKind

RETRY_STATUSES = {0, 429, 502, 503, 504}


@dataclass
class Outcome:
    """What the platform made of one item. `error` is set when the item could not be submitted or its
    job not followed to its end (a submission failure); a job that ended without the page's output has
    `page` None or `page.text` None and no `error`."""

    item: Item
    job_id: str | None = None
    status: JobStatus | None = None
    page: PageResult | None = None
    job_error: str | None = None
    error: str | None = None
    seconds: float = 0.0
    layout: Page | None = None  # a layout item's page of the job's document.json

    @property
    def output(self) -> str | None:
        return None if self.page is None else self.page.text

    @property
    def succeeded(self) -> bool:
        return self.error is None and self.output is not None

    @property
    def verification(self) -> dict[str, Any] | None:
        return verification_of(self.page)


def verification_of(page: PageResult | None) -> dict[str, Any] | None:
    """The page result's `verification` object when the platform sends one (per-page verification),
    else None: results of platforms without it are scored without its metrics."""
    if page is None:
        return None
    value = getattr(page, "verification", None)
    if value is None and page.model_extra:
        value = page.model_extra.get("verification")
    if isinstance(value, BaseModel):
        value = value.model_dump(mode="json")
    return value if isinstance(value, dict) else None


@dataclass(frozen=True)
class RunOptions:
    concurrency: int = 4
    job_timeout_s: float = 600.0
    submit_retries: int = 3
    retry_pause_s: float = 1.0


def run_set(
    labelled: LabelledSet,
    client: Client,
    options: RunOptions = RunOptions(),  # frozen, so a shared default is safe
    on_done: Callable[[Outcome], None] | None = None,
) -> list[Outcome]:
    """Every item's outcome, in the set's order."""
    run = uuid.uuid4().hex[:12]

    def one(index: int, item: Item) -> Outcome:
        outcome = run_item(labelled, item, client, f"eval:{run}:{index}", options)
        if on_done is not None:
            on_done(outcome)
        return outcome

    pool = ThreadPoolExecutor(max(1, options.concurrency), thread_name_prefix="docvl-eval")
    try:
        futures = [pool.submit(one, index, item) for index, item in enumerate(labelled.items)]
        outcomes = [future.result() for future in futures]
    except BaseException:  # Ctrl-C: queued items are dropped, the caller decides about running ones
        pool.shutdown(wait=False, cancel_futures=True)
        raise
    pool.shutdown()
    return outcomes


def run_item(labelled: LabelledSet, item: Item, client: Client, key: str, options: RunOptions) -> Outcome:
    outcome = Outcome(item)
    started = time.monotonic()
    try:
        job = _submit(labelled, item, client, key, options)
        outcome.job_id = str(job.id)
        job = client.wait(job, timeout_s=options.job_timeout_s)
        outcome.status = job.status
        if job.error is not None:
            outcome.job_error = f"{job.error.code}: {job.error.message}"
        result = client.result(job.id)
        outcome.page = next((p for p in result.pages if p.page == item.page and p.task is item.task), None)
        if item.task is TaskKind.LAYOUT and outcome.output is not None:
            outcome.layout = _layout_page(client, job.id, item.page)
    except DocvlError as exc:
        outcome.error = str(exc) if isinstance(exc, ApiError) else f"{exc.code}: {exc.message}"
    except OSError as exc:
        outcome.error = f"cannot read {item.file}: {exc}"
    outcome.seconds = time.monotonic() - started
    return outcome


def _layout_page(client: Client, job_id: Any, number: int) -> Page | None:
    """The page of the job's document (None when the job has none: its layout could not be assembled)."""
    try:
        document = Document.from_json(client.document(job_id))
    except ApiError as exc:
        if exc.status == 409:
            return None
        raise
    return next((page for page in document.pages if page.number == number), None)


def _submit(labelled: LabelledSet, item: Item, client: Client, key: str, options: RunOptions) -> Any:
    attempt = 0
    while True:
        try:
            return client.submit(
                labelled.path(item),
                [item.task],
                question=item.question,
                pages=str(item.page) if is_pdf(labelled.path(item)) else None,
                idempotency_key=key,
            )
        except ApiError as exc:
            attempt += 1
            if exc.status not in RETRY_STATUSES or attempt > options.submit_retries:
                raise
            pause = exc.retry_after if exc.retry_after is not None else options.retry_pause_s * attempt
            time.sleep(min(pause, 30.0))

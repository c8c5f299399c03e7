"""A document rendered before is not rendered again: a job whose document, page ranges and render settings
match an earlier job's (its render key) takes that job's page images instead of rendering.

Rendering is a function of the document's content and the render settings, so an earlier render with the
same key holds the images this one would make. It is taken only while every image (and, for layout, its
page layer) is stored as recorded (one listing); otherwise the job renders its own. The pages are
registered as the job's own rows pointing at the earlier job's stored images (objects under a job's
prefix are never deleted by docvl; a bucket lifecycle rule that expires objects must spare pages/).
Their results are then looked up together by one reuse task (docvl/jobs/reused_pages.py) instead of a
page task each. The same scope as results applies: by default only the job's owner's renders are taken,
and `reuse=false` renders again."""

from __future__ import annotations

import hashlib
import logging
import uuid
from dataclasses import dataclass

from docvl.db import jobs, lifecycle, page_results
from docvl.db.models import Page
from docvl.jobs.context import Context, JobEnded
from docvl.jobs.layout_pages import layer_key

log = logging.getLogger(__name__)
RENDER_KEY_VERSION = "render-v1"  # changes when rendering changes what it makes of the same inputs


@dataclass(frozen=True)
class RenderInputs:
    """What decides a job's page images."""

    document_sha256: str
    pages: str | None  # the page ranges, as the job stores them
    dpi: int
    max_pixels: int
    max_side: int | None
    max_pages: int
    words: bool  # the text layer's words stored beside each page (the layout task's)

    def key(self) -> str:
        parts = (
            RENDER_KEY_VERSION,
            self.document_sha256,
            self.pages or "",
            str(self.dpi),
            str(self.max_pixels),
            str(self.max_side or 0),
            str(self.max_pages),
            "words" if self.words else "",
        )
        return hashlib.sha256("\x1f".join(parts).encode()).hexdigest()


def take_earlier_render(
    ctx: Context,
    job_id: uuid.UUID,
    render: RenderInputs,
    owner: str | None,
    document_id: uuid.UUID,
) -> uuid.UUID | None:
    """Register an earlier render's pages as the job's and mark it rendered, in one transaction; returns
    the job whose render was taken, or None when there is none (the caller renders); JobEnded when the job
    was cancelled meanwhile. Safe to repeat: pages are registered once per (job, index)."""
    with ctx.db.transaction() as s:
        found = page_results.earlier_render(s, render.key(), job_id, owner)
    if found is None:
        return None
    earlier, pages = found
    missing = _missing(ctx, pages, layers=render.words)
    if missing:
        log.warning(
            "job %s: job %s's render is not taken: %d of its page images are missing or changed (first: %s)",
            job_id,
            earlier,
            len(missing),
            missing[0],
        )
        return None
    with ctx.db.transaction() as s:
        if page_results.add_pages(s, job_id, [page_results.NewPage.copy_of(p) for p in pages]).finished:
            raise JobEnded(f"job {job_id} ended before its pages were registered")
        jobs.set_page_count(s, document_id, len(pages))
        lifecycle.mark_rendered(s, job_id)
        jobs.add_event(s, job_id, "render_reused", {"from_job": str(earlier), "pages": len(pages)})
    log.info(
        "job %s: the %d pages rendered for job %s taken, not rendered again", job_id, len(pages), earlier
    )
    return earlier


def _missing(ctx: Context, pages: list[Page], *, layers: bool) -> list[str]:
    """The page images not stored at their recorded size, and with `layers` the page layers not stored: a
    listing per folder (one request per 1,000 objects), not a request per page."""
    stored: dict[str, int] = {}
    for folder in sorted({p.image_key.rsplit("/", 1)[0] + "/" for p in pages}):
        stored |= {o.key: o.size for o in ctx.store.list(folder)}
    missing = [p.image_key for p in pages if stored.get(p.image_key) != p.size_bytes]
    if layers:
        missing += [layer_key(p.image_key) for p in pages if layer_key(p.image_key) not in stored]
    return missing

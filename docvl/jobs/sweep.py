"""The sweep's intake: an object in a watched bucket becomes a job, once per content, tasks, model and
prompt version."""

from __future__ import annotations

import hashlib
import uuid
from dataclasses import dataclass

from docvl.db import jobs
from docvl.documents import DocumentError, sniff_media_type
from docvl.jobs.context import Context
from docvl.observability import tracing
from docvl.storage import ObjectStore
from docvl.tasks import TaskKind


@dataclass(frozen=True)
class SweepRequest:
    owner: str
    tasks: list[TaskKind]
    priority: int
    model_revision: str
    prompt_version: str

    def key(self, sha256: str) -> str:
        """Same content, tasks, model and prompt: same key, so a document is taken in once."""
        what = f"{sorted(t.value for t in self.tasks)}|{self.model_revision}|{self.prompt_version}"
        return f"sweep:{sha256}:{hashlib.sha256(what.encode()).hexdigest()[:32]}"


def take_in(ctx: Context, source: ObjectStore, key: str, request: SweepRequest) -> uuid.UUID | None:
    """Store the object as an input and make its job, unless the same request was made before."""
    with source.open(key) as stream:
        stored = ctx.store.put_input(stream)
    with ctx.store.open(stored.key) as stream:
        try:
            media_type = sniff_media_type(stream.read(1024))
        except DocumentError:  # still a job: it fails with the reason, where its owner sees it
            media_type = "application/octet-stream"
    with ctx.db.transaction() as s:
        document = jobs.get_or_create_document(
            s, sha256=stored.sha256, size_bytes=stored.size, media_type=media_type, object_key=stored.key
        )
        idempotency = request.key(stored.sha256)
        job, created = jobs.create_job(
            s,
            jobs.NewJob(
                owner=request.owner,
                document_id=document.id,
                tasks=request.tasks,
                options={"source": key},
                priority=request.priority,
                idempotency_key=idempotency,
                request_fingerprint=hashlib.sha256(idempotency.encode()).hexdigest(),
                trace=tracing.current_ids(),
            ),
        )
    return job.id if created else None

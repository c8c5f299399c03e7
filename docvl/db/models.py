"""SQLAlchemy models of the job record. Alembic migrations in docvl/db/migrations must match them."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    DateTime,
    Float,
    ForeignKey,
    ForeignKeyConstraint,
    Identity,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    UniqueConstraint,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import ARRAY, JSONB, UUID
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from docvl.job_status import UNFINISHED, JobStatus
from docvl.tasks import TaskKind

NAMING = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_N_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)


def _now() -> Mapped[datetime]:
    return mapped_column(DateTime(timezone=True), server_default=func.now(), nullable=False)


def _in(values: list[str]) -> str:
    return "(" + ", ".join(f"'{v}'" for v in values) + ")"


def status_is(*statuses: JobStatus) -> str:
    """SQL text true where the row's `status` is one of `statuses`, spelled from JobStatus in its order:
    `status = 'running'`, `status IN ('queued', 'running')`."""
    values = [s.value for s in JobStatus if s in statuses]
    return f"status = '{values[0]}'" if len(values) == 1 else f"status IN {_in(values)}"


STATUSES = [s.value for s in JobStatus]
TASKS = [t.value for t in TaskKind]


class Document(Base):
    """An input file, stored once per content (sha256)."""

    __tablename__ = "documents"

    id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), primary_key=True, default=uuid.uuid4)
    sha256: Mapped[str] = mapped_column(String(64), unique=True, nullable=False)
    size_bytes: Mapped[int] = mapped_column(BigInteger, nullable=False)
    media_type: Mapped[str] = mapped_column(String(255), nullable=False)
    object_key: Mapped[str] = mapped_column(String(1024), nullable=False)
    page_count: Mapped[int | None] = mapped_column(Integer)
    converted_key: Mapped[str | None] = mapped_column(String(1024))  # an Office document's PDF
    created_at: Mapped[datetime] = _now()


class Job(Base):
    __tablename__ = "jobs"
    __table_args__ = (
        UniqueConstraint("owner", "idempotency_key"),
        CheckConstraint(f"status IN {_in(STATUSES)}", name="status"),
        CheckConstraint(f"tasks <@ ARRAY{TASKS}::varchar[] AND cardinality(tasks) > 0", name="tasks"),
        CheckConstraint(
            "pages_done >= 0 AND pages_failed >= 0 AND pages_done + pages_failed <= pages_total",
            name="progress",
        ),
        Index(None, "owner", "created_at", "id"),
        Index(None, "api_key_id", "status"),
        Index(None, "status"),
        Index(
            "ix_jobs_unfinished",
            "status",
            "updated_at",
            postgresql_where=text(status_is(*UNFINISHED)),  # renders as migration 0004 wrote it
        ),
        Index("ix_jobs_unnotified", "finished_at", postgresql_where=text("notified_at IS NULL")),
        Index(
            "ix_jobs_render_key",
            "render_key",
            postgresql_where=text("render_key IS NOT NULL AND rendered_at IS NOT NULL"),
        ),
    )

    id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), primary_key=True, default=uuid.uuid4)
    owner: Mapped[str] = mapped_column(String(255), nullable=False)
    # The key that submitted the job (None for sweeps); limits on jobs in flight are per key.
    api_key_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("api_keys.id", ondelete="SET NULL"))
    document_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("documents.id"), nullable=False)
    tasks: Mapped[list[str]] = mapped_column(ARRAY(String(32)), nullable=False)
    options: Mapped[dict[str, Any]] = mapped_column(JSONB, nullable=False, default=dict)
    priority: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    status: Mapped[str] = mapped_column(String(32), nullable=False, default=JobStatus.QUEUED.value)
    idempotency_key: Mapped[str | None] = mapped_column(String(255))
    request_fingerprint: Mapped[str | None] = mapped_column(String(64))
    pages_total: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    pages_done: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    pages_failed: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    # The document-level outputs once assembled: task -> object keys.
    outputs: Mapped[dict[str, Any]] = mapped_column(JSONB, nullable=False, server_default="{}", default=dict)
    error_code: Mapped[str | None] = mapped_column(String(64))
    error_message: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = _now()
    updated_at: Mapped[datetime] = _now()
    started_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    # The lifecycle's own stamps (see docvl/lifecycle.py): who holds which step since when.
    claimed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    rendered_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    finalizing_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    recovered_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    notified_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    flow_run_id: Mapped[str | None] = mapped_column(String(64))
    # The submission's trace (when tracing is on): its id, returned by the API, and its W3C traceparent, the
    # parent of the job's spans in the runner, the reconciler and finalisation.
    trace_id: Mapped[str | None] = mapped_column(String(32))
    traceparent: Mapped[str | None] = mapped_column(String(64))
    # What decides its pages' images (docvl/jobs/render_reuse.py): a later job with the same key takes them.
    render_key: Mapped[str | None] = mapped_column(String(64))


class Page(Base):
    """A rendered page image of a job's document."""

    __tablename__ = "pages"
    __table_args__ = (UniqueConstraint("job_id", "index"), CheckConstraint('"index" >= 0', name="index"))

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    job_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"), nullable=False)
    index: Mapped[int] = mapped_column(Integer, nullable=False)
    image_key: Mapped[str] = mapped_column(String(1024), nullable=False)
    width: Mapped[int] = mapped_column(Integer, nullable=False)
    height: Mapped[int] = mapped_column(Integer, nullable=False)
    size_bytes: Mapped[int] = mapped_column(BigInteger, nullable=False)
    # A PDF page's own text (pypdfium2's text page), that its OCR is verified against; None: it had none.
    text_layer: Mapped[str | None] = mapped_column(Text)
    # The image's content hash: what reuse by content keys a page on (None: rendered before it was kept).
    image_sha256: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[datetime] = _now()


class TaskResult(Base):
    """What one task produced for one page; written once (idempotent on job, page, task)."""

    __tablename__ = "task_results"
    __table_args__ = (
        UniqueConstraint("job_id", "page_index", "task"),
        ForeignKeyConstraint(["job_id", "page_index"], ["pages.job_id", "pages.index"], ondelete="CASCADE"),
        CheckConstraint(f"task IN {_in(TASKS)}", name="task"),
        CheckConstraint(
            "(error_code IS NULL) = (output_text IS NOT NULL OR output_key IS NOT NULL)", name="outcome"
        ),
        Index("ix_task_results_reuse_key", "reuse_key", postgresql_where=text("reuse_key IS NOT NULL")),
    )

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    job_id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), nullable=False)
    page_index: Mapped[int] = mapped_column(Integer, nullable=False)
    task: Mapped[str] = mapped_column(String(32), nullable=False)
    output_text: Mapped[str | None] = mapped_column(Text)
    output_key: Mapped[str | None] = mapped_column(String(1024))
    # Whether the artifact passed its check (Python parses, HTML is a document); why not when it did not.
    output_valid: Mapped[bool | None] = mapped_column(Boolean)
    output_problem: Mapped[str | None] = mapped_column(Text)
    prompt_tokens: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    image_tokens: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    generated_tokens: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    queued_ms: Mapped[float] = mapped_column(Float, nullable=False, default=0.0)
    preprocessing_ms: Mapped[float] = mapped_column(Float, nullable=False, default=0.0)
    inference_ms: Mapped[float] = mapped_column(Float, nullable=False, default=0.0)
    model_id: Mapped[str | None] = mapped_column(String(255))
    model_revision: Mapped[str | None] = mapped_column(String(255))
    prompt_template_version: Mapped[str | None] = mapped_column(String(64))
    attempts: Mapped[int] = mapped_column(Integer, nullable=False, default=1)
    # The output's check after generation (docvl/verify): the kept verdict and every generation's.
    verification: Mapped[dict[str, Any] | None] = mapped_column(JSONB)
    error_code: Mapped[str | None] = mapped_column(String(64))
    error_message: Mapped[str | None] = mapped_column(Text)
    # A greedy result's reuse key (docvl/jobs/reuse.py): results with the same key are interchangeable.
    reuse_key: Mapped[str | None] = mapped_column(String(64))
    # A result reused from another job's page (the first one computed, not a reuse of a reuse).
    reused_from_job: Mapped[uuid.UUID | None] = mapped_column(UUID(as_uuid=True))
    reused_from_page: Mapped[int | None] = mapped_column(Integer)
    created_at: Mapped[datetime] = _now()


class JobEvent(Base):
    """Every status change and progress step of a job, in order (the id orders them)."""

    __tablename__ = "job_events"
    __table_args__ = (Index(None, "job_id", "id"),)

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    job_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"), nullable=False)
    kind: Mapped[str] = mapped_column(String(32), nullable=False)
    status: Mapped[str] = mapped_column(String(32), nullable=False)
    data: Mapped[dict[str, Any]] = mapped_column(JSONB, nullable=False, default=dict)
    created_at: Mapped[datetime] = _now()


class ApiKey(Base):
    """An API key, stored as the sha256 of the secret; the secret itself is shown once and never stored."""

    __tablename__ = "api_keys"

    id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), primary_key=True, default=uuid.uuid4)
    owner: Mapped[str] = mapped_column(String(255), nullable=False, index=True)
    prefix: Mapped[str] = mapped_column(String(16), nullable=False)
    key_hash: Mapped[str] = mapped_column(String(64), unique=True, nullable=False)
    name: Mapped[str | None] = mapped_column(String(255))
    created_at: Mapped[datetime] = _now()
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    last_used_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class WebhookSecret(Base):
    """The secret an owner's webhooks are signed with (HMAC-SHA256); kept readable, since it signs."""

    __tablename__ = "webhook_secrets"

    owner: Mapped[str] = mapped_column(String(255), primary_key=True)
    secret: Mapped[str] = mapped_column(String(128), nullable=False)
    created_at: Mapped[datetime] = _now()


class SweepObject(Base):
    """What the sweep learnt about an object of a watched bucket: the version it read (ETag and size, a
    change detector only) and its content's sha256, so that a later sweep finds an unchanged object's job
    without reading it again; the job it was taken in as, while that job exists."""

    __tablename__ = "sweep_objects"

    bucket: Mapped[str] = mapped_column(String(255), primary_key=True)
    key: Mapped[str] = mapped_column(String(1024), primary_key=True)
    etag: Mapped[str] = mapped_column(String(255), nullable=False)
    size_bytes: Mapped[int] = mapped_column(BigInteger, nullable=False)
    sha256: Mapped[str] = mapped_column(String(64), nullable=False)
    job_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("jobs.id", ondelete="SET NULL"), index=True)
    read_at: Mapped[datetime] = _now()


class SweepTotals(Base):
    """What the sweeps of one bucket have done, summed (the platform metrics export them)."""

    __tablename__ = "sweep_totals"

    bucket: Mapped[str] = mapped_column(String(255), primary_key=True)
    sweeps: Mapped[int] = mapped_column(BigInteger, nullable=False, default=0)
    objects_listed: Mapped[int] = mapped_column(BigInteger, nullable=False, default=0)
    objects_read: Mapped[int] = mapped_column(BigInteger, nullable=False, default=0)
    bytes_read: Mapped[int] = mapped_column(BigInteger, nullable=False, default=0)
    jobs_made: Mapped[int] = mapped_column(BigInteger, nullable=False, default=0)
    updated_at: Mapped[datetime] = _now()

"""Settings shared by every deployable that touches the job record: database, broker, object storage.

Environment prefix DOCVL_. Each deployable's own Settings class extends this one.
"""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import Annotated, Literal
from urllib.parse import urlsplit

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from docvl import namespace as namespaces


def split_list(value: object) -> object:
    """Comma-separated environment values as lists."""
    if isinstance(value, str):
        return [item.strip() for item in value.split(",") if item.strip()]
    return value


class ReuseScope(StrEnum):
    """Whose earlier work a job may reuse (docvl/jobs/reuse.py)."""

    OWNER = "owner"  # the job's owner's only (the default)
    DEPLOYMENT = "deployment"  # any owner's
    OFF = "off"  # nothing is reused


class CoreSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="DOCVL_", extra="ignore")

    database_url: str = "postgresql+psycopg://postgres@127.0.0.1:5432/docvl"
    database_wait_s: float = Field(60.0, ge=0, description="How long start-up waits for the database.")
    redis_url: str = "redis://127.0.0.1:6379/0"
    namespace: str = Field(
        "",
        description="The stack's name on shared servers: its Redis keys start with it and its Prefect "
        "deployments carry it; empty: the name of the stack's database (see docvl/namespace.py).",
    )

    object_store: Literal["s3", "local"] = "s3"
    s3_endpoint: str = Field("http://127.0.0.1:9000", description="MinIO or S3 endpoint URL.")
    s3_access_key: SecretStr = SecretStr("minioadmin")
    s3_secret_key: SecretStr = SecretStr("minioadmin")
    s3_bucket: str = "docvl"
    s3_region: str | None = None
    storage_dir: Path = Field(Path("var/storage"), description="Root of the local object store.")
    model_worker_targets: Annotated[list[str], NoDecode] = Field(
        default=["127.0.0.1:50061"],
        description="Model workers (HOST:PORT, comma-separated), used round-robin.",
    )
    presign_expiry_s: int = Field(3600, ge=1, le=7 * 24 * 3600, description="Lifetime of result links.")
    metrics_host: str = Field(
        "127.0.0.1",
        description="Address each process's /metrics (Prometheus) listens on (0.0.0.0 in containers).",
    )
    webhook_allow_private: bool = Field(
        False,
        description="Let webhooks go to loopback, private and link-local addresses (one machine, tests).",
    )
    office_input: Literal["auto", "on", "off"] = Field(
        "auto",
        description="Office documents (docx, pptx, xlsx, odt, doc, rtf, ...), converted to PDF by "
        "LibreOffice: auto takes them when LibreOffice is installed and can be contained here; on refuses "
        "to start without it; off refuses them.",
    )
    soffice_path: str = Field("soffice", description="LibreOffice's soffice (a name on PATH or a path).")
    office_timeout_s: float = Field(120, gt=0, description="A conversion running longer is killed.")
    office_memory_mb: int = Field(2048, ge=256, description="Address space a conversion may use.")
    office_concurrency: int = Field(2, ge=1, description="Conversions at once in one job runner process.")
    office_max_unpacked_bytes: int = Field(
        512 * 1024 * 1024, ge=1, description="An Office file that expands to more is refused (zip bombs)."
    )

    @field_validator("model_worker_targets", mode="before")
    @classmethod
    def _split_targets(cls, value: object) -> object:
        return split_list(value)

    @field_validator("database_url")
    @classmethod
    def _postgres_only(cls, value: str) -> str:
        if not value.startswith("postgresql"):
            raise ValueError("DOCVL_DATABASE_URL must be a postgresql:// or postgresql+psycopg:// URL")
        return value.replace("postgresql://", "postgresql+psycopg://", 1)

    @field_validator("namespace")
    @classmethod
    def _namespace_name(cls, value: str) -> str:
        return namespaces.check(value) if value else value

    @model_validator(mode="after")
    def _derive_namespace(self) -> CoreSettings:
        if not self.namespace:
            self.namespace = namespaces.derive(self.database_url)
        return self

    @field_validator("s3_endpoint")
    @classmethod
    def _endpoint_url(cls, value: str) -> str:
        if "://" not in value:
            value = "http://" + value
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError("DOCVL_S3_ENDPOINT must look like http://host:port or https://host")
        return value


class FrontDoorSettings(CoreSettings):
    """What the REST API and the gRPC gateway share: limits on submissions and where flows start."""

    model_config = SettingsConfigDict(env_prefix="DOCVL_", extra="ignore")

    max_upload_bytes: int = Field(256 * 1024 * 1024, ge=1, description="Larger documents are refused (413).")
    max_pages: int = Field(500, ge=1, description="Documents with more pages are refused at submission.")
    max_tasks_per_job: int = Field(4, ge=1, le=4)
    max_question_chars: int = Field(2000, ge=1)
    max_in_flight_per_key: int = Field(
        64, ge=1, description="Jobs queued or running per API key; more are refused (429)."
    )
    retry_after_s: int = Field(10, ge=1, description="Retry-After given with a 429.")
    spool_dir: Path | None = Field(
        None, description="Where uploads are checked before storing; default: temp."
    )
    watch_poll_s: float = Field(0.5, gt=0, description="How often event streams look for new events.")
    gpu_hour_price: float = Field(
        0.0, ge=0, description="What a GPU-hour costs, for the price in quotes (dry_run); 0: no price."
    )
    price_currency: str = Field("USD", min_length=1, max_length=8, description="The quotes' currency.")
    source_buckets: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="Buckets in which callers may name documents (s3://bucket/key); none by default.",
    )
    prefect_api_url: str | None = Field(
        None, validation_alias="PREFECT_API_URL", description="Prefect's API (read from PREFECT_API_URL)."
    )

    @field_validator("source_buckets", mode="before")
    @classmethod
    def _split_buckets(cls, value: object) -> object:
        return split_list(value)


class CeleryWorkerSettings(CoreSettings):
    """What every Celery worker process shares (the page worker and the job runner): its metrics and its
    tasks' time limits."""

    model_config = SettingsConfigDict(env_prefix="DOCVL_", extra="ignore")

    worker_metrics_port: int = Field(
        9104, ge=0, le=65535, description="Port of /metrics, for every pool process together; 0: no metrics."
    )
    worker_metrics_dir: Path | None = Field(
        None,
        description="Where the pool processes keep their metrics (emptied at start; one per worker); "
        "default: docvl-worker-metrics-PORT in the temporary directory.",
    )
    task_time_limit_s: int = Field(1800, ge=10, description="A task is killed after this long.")
    reuse_scope: ReuseScope = Field(
        ReuseScope.OWNER,
        description="Whose earlier work a job may reuse instead of doing it again (a page's result instead "
        "of calling the model, a document's rendered pages instead of rendering it): owner (the job's "
        "owner's), deployment (anyone's: a fast answer then tells an owner that someone processed the same "
        "page) or off.",
    )
    visibility_timeout_s: int = Field(
        3600,
        ge=5,
        description="An unacknowledged task is redelivered after this long: keep it above the limit.",
    )

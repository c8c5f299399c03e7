"""Configuration of the Celery worker deployable (environment prefix DOCVL_)."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from docvl.settings import CoreSettings


class WorkerSettings(CoreSettings):
    model_config = SettingsConfigDict(env_prefix="DOCVL_", extra="ignore")

    inference_timeout_s: float = Field(600.0, gt=0)
    worker_metrics_port: int = Field(
        9104, ge=0, le=65535, description="Port of /metrics, for every pool process together; 0: no metrics."
    )
    worker_metrics_dir: Path | None = Field(
        None,
        description="Where the pool processes keep their metrics (emptied at start; one per worker); "
        "default: docvl-worker-metrics-PORT in the temporary directory.",
    )
    max_new_tokens: int = Field(0, ge=0, description="Per page; 0 lets the model worker choose its default.")
    task_retries: int = Field(5, ge=0, description="Retries of a page on a retryable error before it fails.")
    retry_backoff_s: float = Field(2.0, gt=0, description="First retry delay; doubles each retry (max 60 s).")
    task_time_limit_s: int = Field(1800, ge=10, description="A page task is killed after this long.")
    visibility_timeout_s: int = Field(
        3600,
        ge=5,
        description="An unacknowledged task is redelivered after this long: keep it above the limit.",
    )
    webhook_timeout_s: float = Field(10.0, gt=0, description="How long a webhook receiver has to answer.")
    webhook_retries: int = Field(8, ge=0, description="Retries of a webhook (backoff doubling, max 300 s).")

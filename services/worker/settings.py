"""Configuration of the Celery worker deployable (environment prefix DOCVL_)."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field, field_validator
from pydantic_settings import NoDecode, SettingsConfigDict

from docvl.settings import CoreSettings


class WorkerSettings(CoreSettings):
    model_config = SettingsConfigDict(env_prefix="DOCVL_", extra="ignore")

    model_worker_targets: Annotated[list[str], NoDecode] = Field(
        default=["127.0.0.1:50061"],
        description="Model workers (HOST:PORT, comma-separated), used round-robin.",
    )
    inference_timeout_s: float = Field(600.0, gt=0)
    max_new_tokens: int = Field(0, ge=0, description="Per page; 0 lets the model worker choose its default.")
    task_retries: int = Field(5, ge=0, description="Retries of a page on a retryable error before it fails.")
    retry_backoff_s: float = Field(2.0, gt=0, description="First retry delay; doubles each retry (max 60 s).")
    task_time_limit_s: int = Field(1800, ge=10, description="A page task is killed after this long.")
    visibility_timeout_s: int = Field(
        3600,
        ge=5,
        description="An unacknowledged task is redelivered after this long: keep it above the limit.",
    )

    @field_validator("model_worker_targets", mode="before")
    @classmethod
    def _split(cls, value: object) -> object:
        if isinstance(value, str):
            return [t.strip() for t in value.split(",") if t.strip()]
        return value

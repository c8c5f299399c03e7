"""Configuration of `docvl up` (environment prefix DOCVL_): where each service listens and what it runs."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

from pydantic import Field, field_validator
from pydantic_settings import NoDecode, SettingsConfigDict

from docvl.settings import CoreSettings, split_list


class UpSettings(CoreSettings):
    model_config = SettingsConfigDict(env_prefix="DOCVL_", extra="ignore")

    model: Path | None = Field(
        None,
        validation_alias="DOCVL_MODEL",
        description="A DeepSeek-VL checkpoint directory (transformers format); unset: the tiny random model.",
    )
    layout_model: Path | None = Field(
        None,
        validation_alias="DOCVL_LAYOUT_MODEL",
        description="A DeepSeek-OCR-2 checkpoint directory for the layout task, served by a second model "
        "worker; unset: the tiny random one when DOCVL_MODEL is unset too, else no layout worker.",
    )
    data_dir: Path = Field(Path("var"), description="Embedded databases, objects, logs, the local API key.")
    object_store: str = "local"  # type: ignore[assignment]  # one machine: a local directory by default
    api_port: int = Field(8000, ge=1, le=65535, description="REST API (docs at /docs).")
    gateway_port: int = Field(50051, ge=1, le=65535, description="gRPC JobService.")
    prefect_port: int = Field(4200, ge=1, le=65535, description="Prefect server and UI.")
    prefect_database: str | None = Field(
        None,
        description="Prefect's database, on docvl's Postgres server; default: docvl's database's name "
        "followed by _prefect (each stack keeps its own Prefect state).",
    )
    model_worker_port: int = Field(50061, ge=1, le=65535)
    layout_worker_port: int = Field(50062, ge=1, le=65535, description="The DeepSeek-OCR-2 model worker.")
    # Each process's /metrics (Prometheus); 0: off for that process.
    api_metrics_port: int = Field(9101, ge=0, le=65535)
    gateway_metrics_port: int = Field(9102, ge=0, le=65535, validation_alias="DOCVL_GATEWAY_METRICS_PORT")
    model_worker_metrics_port: int = Field(
        9103, ge=0, le=65535, validation_alias="DOCVL_MODEL_WORKER_METRICS_PORT"
    )
    layout_worker_metrics_port: int = Field(9107, ge=0, le=65535, description="The DeepSeek-OCR-2 worker.")
    worker_metrics_port: int = Field(9104, ge=0, le=65535, description="The page workers' pool, summed.")
    job_runner_metrics_port: int = Field(9105, ge=0, le=65535, description="The job runners' pool, summed.")
    flows_metrics_port: int = Field(9106, ge=0, le=65535, description="The flow runner and platform gauges.")
    worker_concurrency: int = Field(2, ge=1, description="Celery page-task processes.")
    job_runner_concurrency: int = Field(
        2, ge=1, description="Job runner processes (Celery on the jobs queue: render and dispatch)."
    )
    tiny_max_new_tokens: int = Field(
        24, ge=1, description="Generation cap with the tiny model (its text is junk)."
    )
    source_buckets: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="Buckets callers may name documents in (comma-separated); default: DOCVL_S3_BUCKET.",
    )
    demo: bool = Field(True, description="Submit the bundled samples at start and print their results.")
    start_timeout_s: float = Field(300.0, gt=0, description="How long each service may take to become ready.")

    @field_validator("source_buckets", mode="before")
    @classmethod
    def _split_buckets(cls, value: object) -> object:
        return split_list(value)

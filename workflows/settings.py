"""Configuration of the flow runner deployable (environment prefix DOCVL_)."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, field_validator
from pydantic_settings import NoDecode, SettingsConfigDict

from docvl.settings import CeleryWorkerSettings, split_list


class FlowSettings(CeleryWorkerSettings):
    """The flow runner's and the job runner's (both run the flows)."""

    model_config = SettingsConfigDict(env_prefix="DOCVL_", extra="ignore")

    flows_metrics_port: int = Field(
        9106,
        ge=0,
        le=65535,
        description="Port of /metrics of `docvl flows serve` (the reconciler's and the platform's "
        "gauges); 0: no metrics.",
    )
    platform_metrics_timeout_s: float = Field(
        2.0, gt=0, description="How long a scrape waits for the database and the broker."
    )
    render_dpi: int = Field(
        110,
        ge=36,
        le=600,
        description="PDF render resolution, capped by DOCVL_RENDER_MAX_SIDE.",
    )
    render_max_side: int = Field(
        1024,
        ge=0,
        description="A rendered page's longer side is at most this many pixels (DeepSeek-VL looks at 1024 at "
        "most; rendering more costs CPU and nothing else); 0: DOCVL_RENDER_DPI alone decides.",
    )
    max_pages: int = Field(500, ge=1, description="Documents with more pages are refused.")
    max_document_bytes: int = Field(512 * 1024 * 1024, ge=1, description="Larger documents are refused.")
    max_page_pixels: int = Field(40_000_000, ge=1_000_000)
    job_timeout_s: float = Field(
        6 * 3600, gt=0, description="A job still unfinished this long after its submission fails."
    )
    start_batch: int = Field(8, ge=1, le=256, description="Jobs a job runner starts in one flow run.")
    reconcile_interval_s: float = Field(30, ge=1, description="How often the reconciler runs.")
    start_grace_s: float = Field(
        10, gt=0, description="A job not started (or finished) this long after it could be is re-driven."
    )
    claim_stale_s: float = Field(
        30, gt=0, description="A render without progress for this long is taken over (its runner died)."
    )
    finalize_stale_s: float = Field(
        60, gt=0, description="A finalisation held this long without ending is taken over."
    )
    redispatch_after_s: float = Field(
        60,
        gt=0,
        description="A job with no page finished for this long has its unfinished page tasks sent again "
        "(same task ids, each result written once; a copy that finds its result written does nothing).",
    )
    sweep_cron: str = Field("0 2 * * *", description="When the scheduled bucket sweep runs.")
    sweep_bucket: str | None = Field(None, description="Bucket the sweep reads; default: DOCVL_S3_BUCKET.")
    sweep_prefix: str = "incoming/"
    sweep_tasks: Annotated[list[str], NoDecode] = Field(default_factory=lambda: ["ocr"])

    @field_validator("sweep_tasks", mode="before")
    @classmethod
    def _split(cls, value: object) -> object:
        return split_list(value)

    sweep_owner: str = "sweep"
    sweep_priority: int = Field(0, ge=0, le=9)
    sweep_start: Literal["runner", "inline"] = Field(
        "runner", description="runner: the job runners start the jobs; inline: the sweep's flow run does."
    )

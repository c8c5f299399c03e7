"""Configuration of the REST API deployable (environment prefix DOCVL_)."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from docvl.settings import FrontDoorSettings


class ApiSettings(FrontDoorSettings):
    model_config = SettingsConfigDict(env_prefix="DOCVL_", extra="ignore")

    api_host: str = Field("127.0.0.1", description="Address the REST API listens on.")
    api_port: int = Field(8000, ge=0, le=65535, description="Port of the REST API.")
    api_metrics_port: int = Field(9101, ge=0, le=65535, description="Port of /metrics; 0: no metrics.")
    sse_keepalive_s: float = Field(15.0, gt=0, description="Idle event streams get a comment this often.")
    poll_after_s: int = Field(
        1, ge=1, description="Retry-After of GET /v1/jobs/{id} on an unfinished job: how often to poll."
    )

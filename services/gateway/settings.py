"""Configuration of the gRPC job gateway deployable (environment prefix DOCVL_, its own fields
DOCVL_GATEWAY_*)."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from docvl.settings import FrontDoorSettings

MiB = 1024 * 1024
GRPC_MESSAGE_CEILING = 2**31 - 1  # gRPC message limits are 32-bit


class GatewaySettings(FrontDoorSettings):
    model_config = SettingsConfigDict(env_prefix="DOCVL_", extra="ignore", populate_by_name=True)

    host: str = Field(
        "127.0.0.1", validation_alias="DOCVL_GATEWAY_HOST", description="Address the gateway listens on."
    )
    port: int = Field(
        50051, ge=0, le=65535, validation_alias="DOCVL_GATEWAY_PORT", description="0: any free port."
    )
    metrics_port: int = Field(
        9102,
        ge=0,
        le=65535,
        validation_alias="DOCVL_GATEWAY_METRICS_PORT",
        description="Port of /metrics; 0: no metrics.",
    )
    max_workers: int = Field(
        32,
        ge=1,
        validation_alias="DOCVL_GATEWAY_MAX_WORKERS",
        description="Calls served at once; each WatchJob stream holds one while it runs.",
    )
    shutdown_grace_s: float = Field(
        30.0,
        ge=0,
        validation_alias="DOCVL_GATEWAY_SHUTDOWN_GRACE_S",
        description="On SIGTERM, how long calls in flight may take to finish.",
    )

    @property
    def max_message_bytes(self) -> int:
        """Largest message the gateway takes: a document at the upload limit plus room for the fields."""
        return min(self.max_upload_bytes + MiB, GRPC_MESSAGE_CEILING)

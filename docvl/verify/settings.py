"""Settings of verification, read by the page workers (environment prefix DOCVL_)."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from docvl.verify.sandbox import BWRAP
from docvl.verify.web import CHROMIUM


class VerifySettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="DOCVL_", extra="ignore")

    verify: bool = Field(True, description="on: check every page's output after generation; off: none.")
    verify_attempts: int = Field(
        2, ge=1, le=5, description="Generations at most for a page whose output fails its check."
    )
    verify_temperature: float = Field(
        0.7, gt=0, le=2, description="Sampling temperature of the regenerations (the first is greedy)."
    )
    verify_repetition_threshold: float = Field(
        0.3, ge=0, le=1, description="An OCR output with a larger share of repeated n-gram runs fails."
    )
    verify_chart_timeout_s: float = Field(20.0, gt=0, description="Wall clock for running chart code.")
    verify_render_timeout_s: float = Field(15.0, gt=0, description="Per Chromium step of an HTML render.")
    verify_bwrap: str = Field(BWRAP, description="The bubblewrap binary that contains chart code.")
    verify_chromium: str = Field(CHROMIUM, description="The Chromium binary that renders HTML.")

"""Configuration of the page worker deployable (environment prefix DOCVL_)."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from docvl.settings import CeleryWorkerSettings
from docvl.tasks import TaskKind


class WorkerSettings(CeleryWorkerSettings):
    model_config = SettingsConfigDict(env_prefix="DOCVL_", extra="ignore")

    inference_timeout_s: float = Field(600.0, gt=0)
    max_new_tokens: int = Field(0, ge=0, description="Per page; 0 lets the model worker choose its default.")
    max_new_tokens_by_task: dict[str, int] = Field(
        default_factory=dict,
        description='Per task, over max_new_tokens, e.g. {"layout": 4096} (a grounded page runs long).',
    )

    def max_new_tokens_for(self, task: TaskKind) -> int:
        return self.max_new_tokens_by_task.get(task.value, self.max_new_tokens)

    task_retries: int = Field(5, ge=0, description="Retries of a page on a retryable error before it fails.")
    retry_backoff_s: float = Field(2.0, gt=0, description="First retry delay; doubles each retry (max 60 s).")
    webhook_timeout_s: float = Field(10.0, gt=0, description="How long a webhook receiver has to answer.")
    webhook_retries: int = Field(8, ge=0, description="Retries of a webhook (backoff doubling, max 300 s).")

"""Configuration of the model worker deployable (environment prefix DOCVL_MODEL_WORKER_)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from docvl.inference.types import RepeatGuard

MiB = 1024 * 1024


class ModelWorkerSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="DOCVL_MODEL_WORKER_", extra="ignore")

    model_dir: Path = Field(
        description="Directory of a DeepSeek-VL or DeepSeek-OCR-2 checkpoint in transformers format."
    )
    model_id: str | None = Field(
        None, description="Name reported with every answer; default: the checkpoint's."
    )
    model_revision: str | None = Field(
        None, description="Revision reported; default: a fingerprint of the files."
    )
    host: str = "127.0.0.1"
    port: int = Field(50061, ge=0, le=65535)
    tasks: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="Only these of the model family's tasks (comma-separated, e.g. layout); empty: every "
        "task the family serves. The platform routes by what workers say they serve, so this keeps, say, a "
        "DeepSeek-OCR-2 worker to layout while DeepSeek-VL workers take ocr.",
    )
    metrics_host: str = Field("127.0.0.1", description="Address /metrics (Prometheus) listens on.")
    metrics_port: int = Field(9103, ge=0, le=65535, description="Port of /metrics; 0: no metrics.")
    device: Literal["auto", "cpu", "cuda"] = "auto"
    cpu_threads: int = Field(
        0,
        ge=0,
        description="torch threads on the CPU; 0: the cores the preprocessing pool leaves (at least 1), so "
        "the model and preprocessing do not fight over cores.",
    )

    max_batch_size: int = Field(8, ge=1, le=256)
    max_wait_ms: int = Field(10, ge=0, le=10_000)
    vision_batch_size: int = Field(0, ge=0, description="Images encoded at once; 0: 1 on the CPU, 8 on CUDA.")
    max_queue: int = Field(
        256, ge=1, description="Requests waiting beyond this are refused (RESOURCE_EXHAUSTED)."
    )
    preprocess_threads: int = Field(
        2, ge=1, description="Threads that decode and preprocess images (when preprocess_processes is 0)."
    )
    preprocess_processes: int = Field(
        0,
        ge=0,
        le=256,
        description="Worker processes that decode and preprocess images instead of threads (each loads the "
        "processor, not the model, about 0.3 s and 200 MiB); 0: threads. The processor holds the GIL, so "
        "threads stop scaling near one core: at a GPU's rate use processes, about one per 7 pages/s.",
    )
    scheduler: Literal["window", "continuous"] = Field(
        "continuous",
        description="window: a batch closes on max_batch_size or max_wait_ms and generates until its "
        "longest row ends. continuous: iteration-level scheduling, rows join and leave the running batch "
        "at every decoding step, admitted by the token budget below (max_batch_size caps its rows).",
    )
    max_batch_total_tokens: int = Field(
        0,
        ge=0,
        description="continuous: cache tokens the running rows may reserve together (each reserves its "
        "prompt, image tokens included, plus its max_new_tokens); a request that alone needs more is "
        "refused (RESOURCE_EXHAUSTED). 0: sized from the device (on CUDA, from gpu_memory_fraction of the "
        "card less the weights, a fifth kept for activations; on the CPU 65,536).",
    )
    gpu_memory_fraction: float = Field(
        0.9,
        gt=0,
        le=1,
        description="continuous, on CUDA with max_batch_total_tokens 0: the share of the card's memory the "
        "worker may use, weights included.",
    )
    max_prefill_tokens: int = Field(
        8192,
        ge=1,
        description="continuous: prompt tokens prefilled in one step (a lone newcomer always may).",
    )

    priority_aging_s: float = Field(
        30.0,
        gt=0,
        description="continuous: a waiting request's priority (0..9, higher first) rises by one for every "
        "this many seconds it waits, so an old low-priority request is admitted eventually (a priority-0 one "
        "outranks fresh priority-9 ones after 9 × this).",
    )

    default_max_new_tokens: int = Field(512, ge=1)
    max_new_tokens_limit: int = Field(4096, ge=1)
    max_images_per_request: int = Field(4, ge=1)
    max_image_bytes: int = Field(32 * MiB, ge=1)
    max_image_pixels: int = Field(50_000_000, ge=1)
    max_prompt_chars: int = Field(8192, ge=1)
    no_repeat_ngram: int = Field(
        0,
        ge=0,
        description="Repetition guard: no n-gram of this many generated tokens repeats within the last "
        "DOCVL_MODEL_WORKER_NO_REPEAT_WINDOW tokens (DeepSeek-OCR ships 30 and 90); 0: off. Recorded with "
        "the prompt version of every answer.",
    )
    no_repeat_window: int = Field(90, ge=2, description="The repetition guard's window, in tokens.")

    @model_validator(mode="after")
    def _check_limits(self) -> ModelWorkerSettings:
        if self.default_max_new_tokens > self.max_new_tokens_limit:
            raise ValueError("default_max_new_tokens must not exceed max_new_tokens_limit")
        return self

    def torch_threads(self, cores: int) -> int:
        """torch's threads for a model on the CPU: the setting, or the cores left to it by preprocessing
        (torch's own default, every core, makes its threads and the preprocessing threads take turns on
        the same cores: measured 2.4× fewer tokens/s on 2 cores, see docs/benchmarks.md)."""
        if self.cpu_threads:
            return self.cpu_threads
        preprocessing = self.preprocess_processes or self.preprocess_threads
        return max(1, cores - preprocessing)

    @property
    def repeat_guard(self) -> RepeatGuard | None:
        if self.no_repeat_ngram == 0:
            return None
        return RepeatGuard(self.no_repeat_ngram, max(self.no_repeat_window, self.no_repeat_ngram))

    @property
    def grpc_message_limit(self) -> int:
        """Largest message the server takes: every image at its limit plus room for the rest."""
        return self.max_images_per_request * self.max_image_bytes + 4 * MiB

    @field_validator("tasks", mode="before")
    @classmethod
    def _split_tasks(cls, value: object) -> object:
        return (
            [part.strip() for part in value.split(",") if part.strip()] if isinstance(value, str) else value
        )

"""Domain types of the model worker: what is asked, what comes back. No transport types here."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import StrEnum

from docvl.tasks import TaskKind


class FinishReason(StrEnum):
    STOP = "stop"
    LENGTH = "length"
    CANCELLED = "cancelled"


@dataclass(frozen=True)
class GenerationParams:
    """max_new_tokens 0 means the worker's default; temperature 0 means greedy."""

    max_new_tokens: int = 0
    temperature: float = 0.0
    top_p: float = 1.0
    seed: int | None = None

    @property
    def greedy(self) -> bool:
        return self.temperature == 0.0


@dataclass(frozen=True)
class ModelIdentity:
    """What decides a model worker's answer besides the request: its checkpoint and its prompts."""

    model_id: str
    model_revision: str
    prompt_template_version: str


@dataclass(frozen=True)
class InferenceRequest:
    task: TaskKind
    images: Sequence[bytes]
    question: str | None = None
    prompt_override: str | None = None
    params: GenerationParams = field(default_factory=GenerationParams)
    request_id: str = ""
    priority: int = 0  # 0..9, higher first (the job's): orders admission in the continuous scheduler


@dataclass(frozen=True)
class Generated:
    """One request's share of a generate call."""

    text: str
    token_ids: list[int]
    finish_reason: FinishReason
    prompt_tokens: int
    image_tokens: int


@dataclass(frozen=True)
class Timings:
    queued_ms: float
    preprocessing_ms: float
    inference_ms: float
    batch_size: int


@dataclass(frozen=True)
class InferenceResult:
    request_id: str
    text: str
    prompt_tokens: int
    image_tokens: int
    generated_tokens: int
    finish_reason: FinishReason
    model_id: str
    model_revision: str
    prompt_template_version: str
    timings: Timings


@dataclass(frozen=True)
class ModelDescription:
    model_id: str
    model_revision: str
    model_type: str  # the checkpoint's config: deepseek_vl_hybrid, deepseek_vl, deepseek_ocr2
    device: str
    dtype: str
    image_tokens_per_image: int  # DeepSeek-OCR-2: an image's global view alone (local tiles add more)
    random_weights: bool
    family: str = ""  # deepseek-vl-hybrid, deepseek-vl, deepseek-ocr2: it decides prompts and tasks
    tasks: tuple[TaskKind, ...] = ()  # what this worker serves; other tasks are refused
    prompt_template_version: str = ""  # of the family's prompts


@dataclass
class WorkerStats:
    requests_completed: int = 0
    requests_failed: int = 0
    requests_dropped: int = 0
    batches: int = 0
    generated_tokens: int = 0


@dataclass(frozen=True)
class RepeatGuard:
    """No n-gram of `ngram` generated tokens may repeat within the last `window` generated tokens (the
    guard against loops that DeepSeek-OCR ships, with its defaults of 30 and 90). Only generated tokens
    count: the prompt and its image tokens never ban anything."""

    ngram: int
    window: int

    @property
    def version(self) -> str:
        """Recorded with the prompt version of every answer it shaped."""
        return f"norepeat{self.ngram}w{self.window}"

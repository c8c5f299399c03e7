"""Results reused by content: a page whose inputs match an earlier greedy result takes it instead of calling
the model.

The inputs are the page image's content (sha256 of the rendered image), the task, the question, the
generation cap, and the model: its id, its revision and the prompt template version of the worker that
answered. Greedy decoding makes the answer a function of those, so an earlier result with the same key is
the answer the model would give again. A sampled result (a regeneration after a failed check samples) gets
no key and is never reused. By default a result is reused for its owner's jobs only: across owners, a fast
answer would tell one owner that another has processed the same page (`DOCVL_REUSE_SCOPE=deployment`
widens it, `off` turns reuse off).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from docvl.inference.types import ModelIdentity
from docvl.settings import ReuseScope
from docvl.tasks import TaskKind

KEY_VERSION = "reuse-v1"  # a change of what goes into the key changes this: old keys then match nothing


def allowed(scope: ReuseScope, job_reuse: bool) -> bool:
    """Whether a job may reuse earlier work: the deployment's scope is not off and the job did not say
    reuse=false."""
    return job_reuse and scope is not ReuseScope.OFF


def whose(scope: ReuseScope, owner: str) -> str | None:
    """The owner whose earlier work a job of `owner` may reuse; None: anyone's."""
    return None if scope is ReuseScope.DEPLOYMENT else owner


@dataclass(frozen=True)
class ReusePolicy:
    """How a page worker reuses: within whose results, and which models serve a task now (a result of
    another model, or of a model since replaced, is not the answer the page would get)."""

    scope: ReuseScope
    models: Callable[[TaskKind], Sequence[ModelIdentity]]

    def owner_filter(self, owner: str) -> str | None:
        """The owner whose results may be reused; None: anyone's."""
        return whose(self.scope, owner)

    def keys(self, inputs: PageInputs) -> list[str]:
        """The inputs' key under each model serving their task now."""
        return [inputs.key(model) for model in self.models(inputs.task)]


@dataclass(frozen=True)
class PageInputs:
    """What, besides the model, decides a page task's answer."""

    image_sha256: str
    task: TaskKind
    question: str | None
    max_new_tokens: int

    def key(self, model: ModelIdentity) -> str:
        parts = (
            KEY_VERSION,
            self.image_sha256,
            self.task.value,
            self.question or "",
            str(self.max_new_tokens),
            model.model_id,
            model.model_revision,
            model.prompt_template_version,
        )
        return hashlib.sha256("\x1f".join(parts).encode()).hexdigest()


def image_sha256(image: bytes) -> str:
    """A page image's content hash, as render records it and reuse keys on it."""
    return hashlib.sha256(image).hexdigest()


def result_key(
    inputs: PageInputs, model: ModelIdentity | None, *, greedy: bool, kept_attempt: int
) -> str | None:
    """The key a fresh result is stored under: none for a sampled one (a sampled request, or a kept
    regeneration, which samples) or one whose model did not say who it is."""
    if not greedy or kept_attempt != 1 or model is None:
        return None
    return inputs.key(model)

"""Generation with verification: a page whose output fails its check is generated again with sampling
(up to the attempts setting) and the better-scoring output is kept; every attempt is recorded."""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from docvl.inference.types import InferenceRequest, InferenceResult
from docvl.postprocess import Artifact, artifact
from docvl.verify.verifier import PageInput, Verdict, Verifier

log = logging.getLogger(__name__)
Generate = Callable[[InferenceRequest], InferenceResult]


@dataclass(frozen=True)
class Checked:
    result: InferenceResult  # the kept generation
    made: Artifact
    verification: dict[str, Any] | None  # the kept verdict, `kept_attempt` and every attempt's verdict


def generate_checked(
    generate: Generate, request: InferenceRequest, page: PageInput, verifier: Verifier | None
) -> Checked:
    result = generate(request)
    made = artifact(request.task, result.text)
    if verifier is None or not verifier.enabled:
        return Checked(result, made, None)
    verdict = verifier.check(request.task, made, page)
    if verdict is None:
        return Checked(result, made, None)
    tries: list[tuple[InferenceResult, Artifact, Verdict]] = [(result, made, verdict)]
    settings = verifier.settings
    while tries[-1][2]["passed"] is False and len(tries) < settings.verify_attempts:
        params = dataclasses.replace(request.params, temperature=settings.verify_temperature, seed=len(tries))
        again = generate(dataclasses.replace(request, params=params))
        remade = artifact(request.task, again.text)
        redone = verifier.check(request.task, remade, page) or {}
        log.info("page regenerated (attempt %d): passed %s", len(tries) + 1, redone.get("passed"))
        tries.append((again, remade, redone))
    best = max(range(len(tries)), key=lambda i: (Verifier.score(tries[i][2]), -i))
    kept_result, kept_made, kept = tries[best]
    attempts = [
        {"attempt": i + 1, "temperature": _temperature(request, i, settings.verify_temperature)}
        | {"generated_tokens": r.generated_tokens}
        | v
        for i, (r, _, v) in enumerate(tries)
    ]
    verification = {"task": request.task.value} | kept | {"kept_attempt": best + 1, "attempts": attempts}
    return Checked(kept_result, kept_made, verification)


def _temperature(request: InferenceRequest, index: int, sampled: float) -> float:
    return request.params.temperature if index == 0 else sampled


__all__ = ["Checked", "PageInput", "generate_checked"]

"""What callers see of verification: a page's verdict and attempts, and the per-task summary of a job."""

from __future__ import annotations

from statistics import fmean
from typing import Any

from pydantic import BaseModel, Field


class Verdict(BaseModel):
    """One output's check. Which fields are set depends on the task; unset ones are null."""

    passed: bool | None = Field(
        None, description="Whether the output passed its check; null: it could not be checked here."
    )
    executed: bool | None = Field(
        None, description="chart2code: the code ran and drew a figure; null: not run (see `reason`)."
    )
    rendered: bool | None = Field(None, description="web2html: Chromium rendered the HTML.")
    similarity: float | None = Field(
        None, description="chart2code, web2html: SSIM (0-1, greyscale) of the rendering to the input image."
    )
    repetition: float | None = Field(
        None, description="ocr: share of the text in runs of one n-gram repeated 3 times or more."
    )
    text_layer_cer: float | None = Field(
        None, description="ocr: character error rate against the PDF page's text layer (null: none)."
    )
    text_layer_f1: float | None = Field(None, description="ocr: word F1 against the PDF page's text layer.")
    text_layer_recall: float | None = Field(
        None, description="web2html: share of the input's text-layer words found in the rendered page."
    )
    error: str | None = Field(None, description="Why the code did not run or the HTML did not render.")
    reason: str | None = Field(None, description="Why the output could not be checked here.")
    seconds: float | None = Field(None, description="Time the check took.")


class Attempt(Verdict):
    attempt: int = Field(description="1 for the first generation; later ones were sampled.")
    temperature: float = 0.0
    generated_tokens: int = 0


class Verification(Verdict):
    """The kept output's verdict, and every generation's."""

    kept_attempt: int = Field(1, description="Which attempt's output the result holds.")
    attempts: list[Attempt] = Field(default_factory=list)

    @classmethod
    def of(cls, stored: dict[str, Any] | None) -> Verification | None:
        return cls.model_validate(stored) if stored else None


class TaskSummary(BaseModel):
    pages_checked: int = Field(description="Page results whose output was checked.")
    pages_passed: int = Field(description="Of those, the ones that passed.")
    pages_regenerated: int = Field(0, description="Pages generated more than once after a failed check.")
    mean_similarity: float | None = Field(
        None, description="chart2code, web2html: mean similarity over the checked pages."
    )
    mean_repetition: float | None = Field(None, description="ocr: mean repetition over the checked pages.")


def summarise(verifications: list[tuple[str, Verification | None]]) -> dict[str, TaskSummary]:
    """Per task, from (task, verification) of each page result; tasks with nothing checked are left out."""
    by_task: dict[str, list[Verification]] = {}
    for task, verification in verifications:
        if verification is not None and verification.passed is not None:
            by_task.setdefault(task, []).append(verification)
    summary: dict[str, TaskSummary] = {}
    for task, checked in by_task.items():
        similarities = [v.similarity for v in checked if v.similarity is not None]
        repetitions = [v.repetition for v in checked if v.repetition is not None]
        summary[task] = TaskSummary(
            pages_checked=len(checked),
            pages_passed=sum(1 for v in checked if v.passed),
            pages_regenerated=sum(1 for v in checked if len(v.attempts) > 1),
            mean_similarity=round(fmean(similarities), 4) if similarities else None,
            mean_repetition=round(fmean(repetitions), 4) if repetitions else None,
        )
    return summary


def describe_summary(summary: TaskSummary) -> str:
    """One line for people: `docvl result` prints it under each task."""
    line = f"verified: {summary.pages_passed} of {summary.pages_checked} checked pages passed"
    if summary.pages_regenerated:
        line += f", {summary.pages_regenerated} regenerated"
    if summary.mean_similarity is not None:
        line += f", mean similarity {summary.mean_similarity:.2f}"
    if summary.mean_repetition is not None:
        line += f", mean repetition {summary.mean_repetition:.2f}"
    return line


def describe(verification: Verification) -> str:
    """One line of a page's verdict, e.g. `(check: passed; executed, similarity 0.81; 2 attempts, kept 2)`."""
    if verification.passed is None:
        return f"(check: not done here: {verification.reason or 'unavailable'})"
    facts = ["passed" if verification.passed else "failed"]
    for name in ("executed", "rendered"):
        value = getattr(verification, name)
        if value is not None:
            facts.append(name if value else f"not {name}: {verification.error}")
    for name in ("similarity", "repetition", "text_layer_cer", "text_layer_f1", "text_layer_recall"):
        value = getattr(verification, name)
        if value is not None:
            facts.append(f"{name.replace('_', ' ')} {value:.2f}")
    if len(verification.attempts) > 1:
        facts.append(f"{len(verification.attempts)} attempts, kept {verification.kept_attempt}")
    return f"(check: {'; '.join(facts)})"

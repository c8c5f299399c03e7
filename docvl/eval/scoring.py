"""Each item's scores and each task's summary.

An item without output (its page failed, or its submission did) is scored as an empty output: CER 1,
ANLS 0, nothing executed. Metrics that come from the platform's per-page `verification` (chart2code's
`executed` and `similarity`, web2html's `rendered` and `similarity`) are left out where the results
carry no verification.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass, field
from typing import Any

from docvl.eval import metrics
from docvl.eval.runner import Outcome
from docvl.tasks import TaskKind

Scores = dict[str, float | None]

# Per task: its metrics in report order, and whether higher is better.
METRICS: dict[TaskKind, dict[str, bool]] = {
    TaskKind.OCR: {"cer": False, "edit_distance": False, "facts_passed": True},
    TaskKind.CHART2CODE: {"executed": True, "similarity": True, "data_value_recall": True, "valid": True},
    TaskKind.WEB2HTML: {"rendered": True, "similarity": True, "text_similarity": True, "valid": True},
    TaskKind.QA: {"anls": True, "relaxed_accuracy": True},
    TaskKind.LAYOUT: {},  # not scored yet (issue 21: IoU and text-in-box against layout references)
}
# The metric the worst items are picked by: the first of these that has values.
PRIMARY: dict[TaskKind, tuple[str, ...]] = {
    TaskKind.OCR: ("cer", "facts_passed"),
    TaskKind.CHART2CODE: ("similarity", "executed", "data_value_recall", "valid"),
    TaskKind.WEB2HTML: ("similarity", "rendered", "text_similarity", "valid"),
    TaskKind.QA: ("anls", "relaxed_accuracy"),
    TaskKind.LAYOUT: (),
}
WORST = 5


def _flag(value: Any) -> float | None:
    return None if value is None else 1.0 if value else 0.0


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)


def score(outcome: Outcome) -> Scores:
    """The item's scores (None: not applicable to this item)."""
    item, text = outcome.item, outcome.output
    output = text or ""
    verification = outcome.verification
    failed = text is None
    scores: Scores = {}
    if item.task is TaskKind.LAYOUT:
        return scores
    if item.task is TaskKind.OCR:
        if item.reference is not None:
            scores["cer"] = metrics.page_cer(output, item.reference)
            scores["edit_distance"] = metrics.page_edit_distance(output, item.reference)
        if item.facts:
            passed = sum(metrics.check_fact(fact, output) for fact in item.facts) if not failed else 0
            scores["facts_passed"] = passed / len(item.facts)
    elif item.task is TaskKind.QA:
        scores["anls"] = metrics.anls(output, item.answers)
        scores["relaxed_accuracy"] = metrics.relaxed_accuracy(output, item.answers)
    else:
        ran = "executed" if item.task is TaskKind.CHART2CODE else "rendered"
        if verification is not None:
            scores[ran] = _flag(verification.get(ran))
            scores["similarity"] = _number(verification.get("similarity"))
        elif failed:
            scores[ran] = 0.0
        if item.task is TaskKind.CHART2CODE and item.reference is not None:
            scores["data_value_recall"] = metrics.data_value_recall(output, item.reference)
        if item.task is TaskKind.WEB2HTML and item.reference is not None:
            scores["text_similarity"] = metrics.html_text_similarity(output, item.reference)
        scores["valid"] = 0.0 if failed else _flag(outcome.page.valid if outcome.page else None)
    return scores


@dataclass
class MetricSummary:
    mean: float
    median: float
    n: int


@dataclass
class TaskSummary:
    task: TaskKind
    items: int = 0
    succeeded: int = 0
    submission_failures: int = 0
    metrics: dict[str, MetricSummary] = field(default_factory=dict)
    worst: list[tuple[str, str, float]] = field(default_factory=list)  # (item id, metric, value)
    notes: list[str] = field(default_factory=list)


def summarise(task: TaskKind, scored: list[tuple[Outcome, Scores]]) -> TaskSummary:
    summary = TaskSummary(task, items=len(scored))
    summary.succeeded = sum(outcome.succeeded for outcome, _ in scored)
    summary.submission_failures = sum(outcome.error is not None for outcome, _ in scored)
    for name in METRICS[task]:
        values = [s[name] for _, s in scored if s.get(name) is not None]
        numbers = [v for v in values if v is not None]
        if numbers:
            summary.metrics[name] = MetricSummary(
                statistics.fmean(numbers), statistics.median(numbers), len(numbers)
            )
    primary = next((name for name in PRIMARY[task] if name in summary.metrics), None)
    if primary is not None:
        higher_better = METRICS[task][primary]
        ranked = [(o.item.id, s[primary]) for o, s in scored if s.get(primary) is not None]
        ranked.sort(key=lambda pair: (pair[1] if higher_better else -(pair[1] or 0.0), pair[0]))
        summary.worst = [(item_id, primary, value) for item_id, value in ranked[:WORST] if value is not None]
    verified = any(outcome.verification is not None for outcome, _ in scored)
    if task in (TaskKind.CHART2CODE, TaskKind.WEB2HTML) and not verified:
        ran = "execution" if task is TaskKind.CHART2CODE else "render"
        summary.notes.append(
            f"no per-page verification in the results: {ran} rate and similarity are not available "
            "(valid is the platform's own syntax check)"
        )
    if task is TaskKind.CHART2CODE and "data_value_recall" not in summary.metrics:
        summary.notes.append("no reference code with numbers: data-value recall is not available")
    return summary

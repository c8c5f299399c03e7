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

from docvl.eval import layout, metrics, olmocr
from docvl.eval.runner import Outcome
from docvl.tasks import TaskKind

Scores = dict[str, float | None]

# Per task: its metrics in report order, and whether higher is better.
METRICS: dict[TaskKind, dict[str, bool]] = {
    TaskKind.OCR: {"cer": False, "edit_distance": False, "facts_passed": True},
    TaskKind.CHART2CODE: {"executed": True, "similarity": True, "data_value_recall": True, "valid": True},
    TaskKind.WEB2HTML: {"rendered": True, "similarity": True, "text_similarity": True, "valid": True},
    TaskKind.QA: {"anls": True, "relaxed_accuracy": True},
    TaskKind.LAYOUT: {
        "f1": True,
        "precision": True,
        "recall": True,
        "label_f1": True,
        "label_precision": True,
        "label_recall": True,
        "mean_iou": True,
        "text_in_box_cer": False,
    },
}
# The metric the worst items are picked by: the first of these that has values.
PRIMARY: dict[TaskKind, tuple[str, ...]] = {
    TaskKind.OCR: ("cer", "facts_passed"),
    TaskKind.CHART2CODE: ("similarity", "executed", "data_value_recall", "valid"),
    TaskKind.WEB2HTML: ("similarity", "rendered", "text_similarity", "valid"),
    TaskKind.QA: ("anls", "relaxed_accuracy"),
    TaskKind.LAYOUT: ("f1", "label_f1"),
}
WORST = 5


def _flag(value: Any) -> float | None:
    return None if value is None else 1.0 if value else 0.0


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)


def check_facts(outcome: Outcome) -> list[bool]:
    """Whether each of the item's olmOCR-Bench tests passes on its output (all fail without output, as
    the benchmark fails a page whose Markdown is missing)."""
    if outcome.output is None:
        return [False] * len(outcome.item.facts)
    return [metrics.check_fact(fact, outcome.output) for fact in outcome.item.facts]


def score(outcome: Outcome, checked: list[bool] | None = None) -> Scores:
    """The item's scores (None: not applicable to this item); `checked` is `check_facts(outcome)` when
    the caller has it already."""
    item, text = outcome.item, outcome.output
    output = text or ""
    verification = outcome.verification
    failed = text is None
    scores: Scores = {}
    if item.task is TaskKind.LAYOUT:
        return {} if item.layout is None else layout.score_page(outcome.layout, item.layout)
    if item.task is TaskKind.OCR:
        if item.reference is not None:
            scores["cer"] = metrics.page_cer(output, item.reference)
            scores["edit_distance"] = metrics.page_edit_distance(output, item.reference)
        if item.facts:
            passed = check_facts(outcome) if checked is None else checked
            scores["facts_passed"] = sum(passed) / len(item.facts)
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


@dataclass
class PassRate:
    passed: int = 0
    tests: int = 0

    @property
    def rate(self) -> float:
        return self.passed / self.tests if self.tests else 0.0

    def add(self, passed: bool) -> None:
        self.passed += passed
        self.tests += 1


@dataclass
class OlmocrSummary:
    """olmOCR-Bench's figures: the pass rate per test type and per category (its JSONL files: the
    leaderboard's columns) and overall as the leaderboard computes it, the mean of the categories' pass
    rates; `all_tests` is the plain share of tests passed."""

    by_type: dict[str, PassRate]
    by_category: dict[str, PassRate]
    all_tests: PassRate

    @property
    def overall(self) -> float:
        rates = [c.rate for c in self.by_category.values() if c.tests]
        return statistics.fmean(rates) if rates else 0.0


UNCATEGORISED = "(no category)"


def summarise_facts(checked: list[tuple[Outcome, list[bool]]]) -> OlmocrSummary | None:
    """The olmOCR-Bench summary of the items' tests; None when no item has one."""
    by_type: dict[str, PassRate] = {}
    by_category: dict[str, PassRate] = {}
    everything = PassRate()
    for outcome, results in checked:
        for fact, passed in zip(outcome.item.facts, results, strict=True):
            by_type.setdefault(fact.kind, PassRate()).add(passed)
            by_category.setdefault(fact.category or UNCATEGORISED, PassRate()).add(passed)
            everything.add(passed)
    if not everything.tests:
        return None
    ordered: dict[str, PassRate] = {kind: by_type[kind] for kind in olmocr.KINDS if kind in by_type}
    return OlmocrSummary(ordered, dict(sorted(by_category.items())), everything)

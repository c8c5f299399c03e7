"""The reports of a run: Markdown for people, JSON (every item's scores and output) for programs."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from docvl.eval.katex import default_renderer
from docvl.eval.runner import Outcome
from docvl.eval.scoring import (
    METRICS,
    OlmocrSummary,
    PassRate,
    Scores,
    TaskSummary,
    check_facts,
    score,
    summarise,
    summarise_facts,
)
from docvl.tasks import TaskKind

DESCRIPTIONS = {
    "cer": "character error rate (edit distance / reference length; lower is better)",
    "edit_distance": "normalised edit distance (/ the longer length, 0-1; lower is better)",
    "facts_passed": "share of the page's olmOCR-Bench tests that pass (by type below)",
    "executed": "share of the code that ran and drew a figure (verification)",
    "rendered": "share of the HTML that rendered (verification)",
    "similarity": "similarity of the rendering to the input image, 0-1 (verification)",
    "data_value_recall": "share of the reference code's numbers found in the generated code",
    "text_similarity": "similarity of the page's visible text to the reference HTML's, 0-1",
    "valid": "share that passed the platform's own check (the code parses, the HTML is a document)",
    "anls": "ANLS (DocVQA; threshold 0.5)",
    "relaxed_accuracy": "relaxed accuracy (ChartQA; numbers within 5 %)",
    "f1": "block F1, label-agnostic: blocks matched to the reference's at IoU >= 0.5",
    "precision": "matched / predicted blocks (label-agnostic)",
    "recall": "matched / reference blocks (label-agnostic)",
    "label_f1": "block F1, label-aware: a match also needs the same label",
    "label_precision": "matched / predicted blocks (label-aware)",
    "label_recall": "matched / reference blocks (label-aware)",
    "mean_iou": "mean IoU of the matched blocks (label-agnostic)",
    "text_in_box_cer": "CER of each matched block's text against the reference text of its box",
}


@dataclass
class Run:
    set_dir: Path
    api_url: str
    started_at: datetime
    finished_at: datetime
    outcomes: list[Outcome]

    @property
    def submission_failures(self) -> int:
        return sum(outcome.error is not None for outcome in self.outcomes)


def models(outcomes: list[Outcome]) -> list[dict[str, str | None]]:
    """The distinct (model, revision, prompt version) that produced the outputs."""
    seen: dict[tuple[str | None, str | None, str | None], None] = {}
    for outcome in outcomes:
        page = outcome.page
        if page is not None and page.model_id is not None:
            seen[(page.model_id, page.model_revision, page.prompt_template_version)] = None
    return [{"model_id": m, "model_revision": r, "prompt_template_version": p} for m, r, p in seen]


def build(run: Run) -> tuple[dict[str, Any], list[TaskSummary]]:
    checked = [(outcome, check_facts(outcome)) for outcome in run.outcomes]
    scored = [(outcome, score(outcome, results)) for outcome, results in checked]
    summaries = [
        summarise(task, [pair for pair in scored if pair[0].item.task is task])
        for task in TaskKind
        if any(outcome.item.task is task for outcome in run.outcomes)
    ]
    report: dict[str, Any] = {
        "set": str(run.set_dir),
        "api": run.api_url,
        "started_at": run.started_at.isoformat(),
        "finished_at": run.finished_at.isoformat(),
        "models": models(run.outcomes),
        "items": len(run.outcomes),
        "submission_failures": run.submission_failures,
        "tasks": {str(s.task): _summary_json(s) for s in summaries},
        "olmocr": _olmocr_json(summarise_facts(checked), checked),
        "results": [
            _item_json(outcome, scores, results)
            for (outcome, scores), (_, results) in zip(scored, checked, strict=True)
        ],
    }
    return report, summaries


def _rate_json(rate: PassRate) -> dict[str, Any]:
    return {"passed": rate.passed, "tests": rate.tests, "pass_rate": rate.rate}


def _olmocr_json(
    summary: OlmocrSummary | None, checked: list[tuple[Outcome, list[bool]]]
) -> dict[str, Any] | None:
    if summary is None:
        return None
    has_math = any(fact.kind == "math" for outcome, _ in checked for fact in outcome.item.facts)
    return {
        "overall": summary.overall,
        "all_tests": _rate_json(summary.all_tests),
        "by_type": {kind: _rate_json(rate) for kind, rate in summary.by_type.items()},
        "by_category": {name: _rate_json(rate) for name, rate in summary.by_category.items()},
        "math_comparison": default_renderer().name if has_math else None,
    }


def _summary_json(summary: TaskSummary) -> dict[str, Any]:
    return {
        "items": summary.items,
        "succeeded": summary.succeeded,
        "submission_failures": summary.submission_failures,
        "metrics": {
            name: {"mean": m.mean, "median": m.median, "n": m.n} for name, m in summary.metrics.items()
        },
        "worst": [{"id": i, "metric": name, "value": v} for i, name, v in summary.worst],
        "notes": summary.notes,
    }


def _item_json(outcome: Outcome, scores: Scores, results: list[bool]) -> dict[str, Any]:
    item, page = outcome.item, outcome.page
    return {
        "id": item.id,
        "task": str(item.task),
        "file": item.file,
        "page": item.page,
        "job_id": outcome.job_id,
        "job_status": None if outcome.status is None else str(outcome.status),
        "succeeded": outcome.succeeded,
        "error": outcome.error,
        "job_error": outcome.job_error,
        "page_error": None if page is None or page.error is None else page.error.model_dump(),
        "seconds": round(outcome.seconds, 3),
        "model_id": None if page is None else page.model_id,
        "output": outcome.output,
        "verification": outcome.verification,
        "scores": scores,
        "facts": [
            {"id": fact.id, "type": fact.kind, "category": fact.category, "passed": passed}
            for fact, passed in zip(item.facts, results, strict=True)
        ],
    }


def _fmt(value: float) -> str:
    return f"{value:.3f}"


def markdown(report: dict[str, Any], summaries: list[TaskSummary]) -> str:
    lines = [
        "# docvl eval report",
        "",
        f"- set: `{report['set']}`",
        f"- platform: {report['api']}",
        f"- run: {report['started_at']} to {report['finished_at']}",
        f"- items: {report['items']}, submission failures: {report['submission_failures']}",
    ]
    produced = report["models"]
    if produced:
        for model in produced:
            lines.append(
                f"- model: `{model['model_id']}` revision `{model['model_revision']}`, prompts "
                f"`{model['prompt_template_version']}`"
            )
    else:
        lines.append("- model: unknown (no page result came back)")
    for summary in summaries:
        lines += ["", f"## {summary.task}", ""]
        lines.append(f"items: {summary.items}, succeeded: {summary.succeeded}")
        if summary.submission_failures:
            lines[-1] += f", {summary.submission_failures} could not be submitted or followed"
        lines.append("")
        if summary.metrics:
            lines += ["| metric | mean | median | items | what |", "|---|---|---|---|---|"]
            for name in METRICS[summary.task]:
                m = summary.metrics.get(name)
                if m is not None:
                    lines.append(
                        f"| {name} | {_fmt(m.mean)} | {_fmt(m.median)} | {m.n} | {DESCRIPTIONS[name]} |"
                    )
        else:
            lines.append("No metric could be computed.")
        if summary.worst:
            worst = ", ".join(f"`{i}` ({_fmt(v)})" for i, _, v in summary.worst)
            lines += ["", f"Worst by {summary.worst[0][1]}: {worst}"]
        lines += ["", *(f"Note: {note}." for note in summary.notes)] if summary.notes else []
    if report["olmocr"] is not None:
        lines += ["", *_olmocr_markdown(report["olmocr"])]
    failures = [r for r in report["results"] if r["error"] is not None]
    if failures:
        lines += ["", "## Submission failures", ""]
        lines += [f"- `{r['id']}`: {r['error']}" for r in failures]
    lines += ["", "Every item's scores and output are in the JSON report beside this file.", ""]
    return "\n".join(lines)


def _olmocr_markdown(summary: dict[str, Any]) -> list[str]:
    def row(name: str, rate: dict[str, Any]) -> str:
        return f"| {name} | {rate['passed']} | {rate['tests']} | {100 * rate['pass_rate']:.1f} |"

    lines = [
        "## olmOCR-Bench tests",
        "",
        f"**Overall {100 * summary['overall']:.1f}** (the leaderboard's figure: the mean of the categories' "
        "pass rates; docs/eval.md says where docvl's checks differ from the benchmark's).",
        "",
        "| test type | passed | tests | pass rate (%) |",
        "|---|---|---|---|",
        *(row(kind, rate) for kind, rate in summary["by_type"].items()),
        row("all tests", summary["all_tests"]),
        "",
        "| category | passed | tests | pass rate (%) |",
        "|---|---|---|---|",
        *(row(name, rate) for name, rate in summary["by_category"].items()),
    ]
    if summary["math_comparison"]:
        lines += ["", f"Math tests compared by {summary['math_comparison']}."]
    return lines


def write(run: Run, out: Path) -> tuple[Path, Path]:
    """Write OUT (Markdown) and OUT with the suffix .json; returns both paths."""
    report, summaries = build(run)
    out.parent.mkdir(parents=True, exist_ok=True)
    json_path = out.with_suffix(".json")
    if json_path == out:
        raise ValueError(f"{out} ends in .json: name the Markdown report, e.g. report.md")
    json_path.write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    out.write_text(markdown(report, summaries), encoding="utf-8")
    return out, json_path

"""The price of a job before it runs: a submission with `dry_run` is checked exactly as a submission is
(the same intake, so the same refusals), then answered with what it would cost instead of being stored.

Every estimate comes from this deployment's own history (docvl/db/estimates.py): per task, the medians of
its recent computed results (generated tokens, image tokens, the model worker's inference seconds) and the
rate at which page tasks finish now; until a task has history, the documented defaults below stand in.
Start and finish times divide the page tasks queued ahead (at the job's priority or above) and the job's
own by the current rate. GPU-seconds add up the model worker's inference time per page task: batching
shares a step between requests, so on a busy worker this is an upper bound of the job's share. The price
is GPU-hours times the configured price of a GPU-hour.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from pydantic import BaseModel, Field

from docvl.db import estimates
from docvl.db.database import Database
from docvl.tasks import TaskKind

# Until a task has results here: expected generated tokens per page (a page of OCR, a chart's code, a
# page's HTML, a short answer, a grounded page), the image tokens of DeepSeek-VL's 576-token image, and
# the inference time at DEFAULT_TOKENS_PER_S for one request.
DEFAULT_OUTPUT_TOKENS: dict[TaskKind, int] = {
    TaskKind.OCR: 700,
    TaskKind.CHART2CODE: 450,
    TaskKind.WEB2HTML: 900,
    TaskKind.QA: 40,
    TaskKind.LAYOUT: 900,
}
DEFAULT_IMAGE_TOKENS = 576
DEFAULT_TOKENS_PER_S = 40.0


class TaskQuote(BaseModel):
    task: TaskKind
    page_tasks: int = Field(description="Pages this task runs on.")
    image_tokens: int = Field(description="Image tokens the model reads for them.")
    output_tokens: int = Field(description="Tokens it is expected to generate for them.")
    gpu_seconds: float = Field(description="The model worker's expected inference time for them.")
    basis: str = Field(
        description="Where the per-page figures come from: `history` (the medians of this deployment's "
        "last results of the task, `history_results` of them) or `default` (no history yet)."
    )
    history_results: int = Field(description="How many recent results the medians are over.")


class QuoteView(BaseModel):
    """What a job would cost and when it would finish, were it submitted now. Nothing was stored."""

    dry_run: bool = Field(True, description="Always true: this is a quote, no job was made.")
    pages: int = Field(
        description="Pages that would be processed (after the page range; Office documents "
        "converted to count them)."
    )
    page_tasks: int = Field(description="Pages times tasks: the model requests the job makes.")
    image_tokens: int
    output_tokens: int = Field(description="Expected generated tokens, all tasks.")
    tasks: list[TaskQuote]
    queue_ahead: int = Field(
        description="Page tasks of unfinished jobs at this priority or above, not done yet."
    )
    page_tasks_per_s: float | None = Field(
        description="The rate page tasks finish at now (last 5 minutes); null when none finished: the "
        "times then assume one model worker at the per-task inference times."
    )
    expected_start: dt.datetime
    expected_finish: dt.datetime
    gpu_seconds: float
    price: float | None = Field(
        description="gpu_seconds at the configured price of a GPU-hour; null when none is configured."
    )
    currency: str | None = None


@dataclass(frozen=True)
class Pricing:
    gpu_hour: float = 0.0  # 0: no price configured
    currency: str = "USD"


def quote(
    db: Database,
    tasks: list[TaskKind],
    pages: int,
    priority: int,
    pricing: Pricing,
    now: dt.datetime | None = None,
) -> QuoteView:
    now = now or dt.datetime.now(dt.UTC)
    with db.transaction() as s:
        history = {task: estimates.task_history(s, task) for task in tasks}
        rate = estimates.page_tasks_per_second(s)
        ahead = estimates.page_tasks_ahead(s, priority)
    per_task = [_task_quote(task, pages, history[task]) for task in tasks]
    gpu_seconds = round(sum(t.gpu_seconds for t in per_task), 3)  # the price is of the figure shown
    page_tasks = pages * len(tasks)
    if rate is not None:
        wait_s, run_s = ahead / rate, page_tasks / rate
    else:  # nothing finished lately: one request at a time at the per-task times
        mean_s = gpu_seconds / page_tasks if page_tasks else 0.0
        wait_s, run_s = ahead * mean_s, gpu_seconds
    start = now + dt.timedelta(seconds=wait_s)
    price = round(gpu_seconds / 3600 * pricing.gpu_hour, 9) if pricing.gpu_hour > 0 else None
    return QuoteView(
        pages=pages,
        page_tasks=page_tasks,
        image_tokens=sum(t.image_tokens for t in per_task),
        output_tokens=sum(t.output_tokens for t in per_task),
        tasks=per_task,
        queue_ahead=ahead,
        page_tasks_per_s=None if rate is None else round(rate, 4),
        expected_start=start,
        expected_finish=start + dt.timedelta(seconds=run_s),
        gpu_seconds=gpu_seconds,
        price=price,
        currency=pricing.currency if price is not None else None,
    )


def _task_quote(task: TaskKind, pages: int, history: estimates.TaskHistory) -> TaskQuote:
    if history.results:
        output, image, seconds = history.generated_tokens, history.image_tokens, history.inference_s
    else:
        output = DEFAULT_OUTPUT_TOKENS[task]
        image = DEFAULT_IMAGE_TOKENS
        seconds = output / DEFAULT_TOKENS_PER_S
    return TaskQuote(
        task=task,
        page_tasks=pages,
        image_tokens=round(image * pages),
        output_tokens=round(output * pages),
        gpu_seconds=round(seconds * pages, 3),
        basis="history" if history.results else "default",
        history_results=history.results,
    )

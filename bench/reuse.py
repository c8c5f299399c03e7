"""Benchmark of results reused by content (issue 22): the same 50-page PDF submitted again by its owner.

One PDF (the first 50 pages of a real thesis from tests/corpus, as bench/pipeline.py uses) is submitted
by one owner and run through the Prefect flow, the Celery page tasks and the model worker (tiny model),
on bench/pipeline.py's services: first when nothing can be reused, then again (`--repeats` times: each
should take the first job's render and every page's result without a model worker request), then once
more with `reuse=false` (rendered and computed again). Per submission: seconds from submit (the input
stored, the job written) to the job's finish as Postgres stamped it, requests that reached the model worker
(its /metrics, `docvl_model_requests_total`), pages whose result says `reused_from`, `reused` events,
whether the render was taken, the stages (render, page tasks, finish) and the CPU each process used. The
document's pages rendered alone, and stored alone, say what a reusing submission no longer spends.

    .venv/bin/python bench/reuse.py [--pages 50] [--concurrency 4] [--max-new-tokens 32] [--repeats 3]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import threading
import time
import urllib.request
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import psutil  # noqa: E402
from prometheus_client.parser import text_string_to_metric_families  # noqa: E402
from sqlalchemy import func, select  # noqa: E402

from bench.model_worker import machine, write_section  # noqa: E402
from bench.pipeline import (  # noqa: E402
    PROCESSES,
    WARM_UP_PAGES,
    Services,
    cpu_by_process,
    cpu_spent,
    first_pages,
    new_job,
    run_job,
    services,
    stage_times,
)
from docvl.broker.dispatch import CeleryDispatch  # noqa: E402
from docvl.db import page_results  # noqa: E402
from docvl.db.models import JobEvent  # noqa: E402
from docvl.documents import open_document  # noqa: E402
from docvl.storage.base import page_key  # noqa: E402
from docvl.storage.s3 import S3ObjectStore  # noqa: E402
from tests.support.services import celery_worker  # noqa: E402

SHARED = {"Postgres", "Redis"}  # the machine's servers: other work uses them too
TARGET = 0.05  # issue 22: the second run in at most 5 % of the first's time


@dataclass(frozen=True)
class Submission:
    name: str
    job_id: uuid.UUID
    status: str
    seconds: float  # submit → finished
    model_requests: float  # that reached the model worker while it ran
    reused: int  # page results with reused_from
    reused_events: int
    render_taken: bool  # a `render_reused` event: the job took an earlier render's page images
    stages: dict[str, float]
    calls: dict[str, float]  # seconds in the render's steps (CallTimes)
    cpu: dict[str, float]


class CallTimes:
    """Wall seconds spent in some functions in any thread of this process (the flow's render) while it
    is entered: each is wrapped, and restored on exit."""

    def __init__(self, targets: dict[str, tuple[Any, str]]) -> None:
        self.targets = targets
        self.seconds = dict.fromkeys(targets, 0.0)
        self._lock = threading.Lock()
        self._saved: list[tuple[Any, str, Any]] = []

    def _wrapped(self, name: str, function: Callable[..., Any]) -> Callable[..., Any]:
        def timed(*args: Any, **kwargs: Any) -> Any:
            started = time.perf_counter()
            try:
                return function(*args, **kwargs)
            finally:
                with self._lock:
                    self.seconds[name] += time.perf_counter() - started

        return timed

    def __enter__(self) -> CallTimes:
        for name, (owner, attribute) in self.targets.items():
            function = getattr(owner, attribute)
            self._saved.append((owner, attribute, function))
            setattr(owner, attribute, self._wrapped(name, function))
        return self

    def __exit__(self, *exc: object) -> None:
        for owner, attribute, function in reversed(self._saved):
            setattr(owner, attribute, function)
        self._saved.clear()


RENDER_STEPS = {  # what the render does besides rendering, by what it calls
    "page images stored (S3 PUT)": (S3ObjectStore, "put"),
    "pages registered (Postgres, `add_pages`)": (page_results, "add_pages"),
    "page tasks sent (Celery, `send_pages`)": (CeleryDispatch, "send_pages"),
}


def model_requests(metrics_url: str) -> float:
    """Requests that have reached the model worker's batcher so far, whatever their outcome."""
    with urllib.request.urlopen(metrics_url, timeout=10) as response:
        text = response.read().decode()
    return sum(
        sample.value
        for family in text_string_to_metric_families(text)
        if family.name == "docvl_model_requests"
        for sample in family.samples
        if sample.name == "docvl_model_requests_total"
    )


def submit(platform: Services, flows: Any, pdf: Path, name: str, options: dict[str, Any]) -> Submission:
    ours = psutil.Process()
    requests_before, cpu_before = model_requests(platform.model_metrics), cpu_by_process(ours)
    submitted = time.time()
    job_id = new_job(platform.db, platform.store, pdf, options=options)
    with CallTimes(RENDER_STEPS) as calls:
        status, started, seconds = run_job(platform.db, flows, job_id)
    finished = started + seconds
    requests = model_requests(platform.model_metrics) - requests_before
    cpu = cpu_spent(cpu_before, cpu_by_process(ours))
    with platform.db.transaction() as s:
        results = page_results.results(s, job_id)
        events = s.execute(
            select(func.count()).where(JobEvent.job_id == job_id, JobEvent.kind == "reused")
        ).scalar_one()
        taken = s.execute(
            select(func.count()).where(JobEvent.job_id == job_id, JobEvent.kind == "render_reused")
        ).scalar_one()
    return Submission(
        name=name,
        job_id=job_id,
        status=status,
        seconds=finished - submitted,
        model_requests=requests,
        reused=sum(1 for r in results if r.reused_from_job is not None),
        reused_events=int(events),
        render_taken=bool(taken),
        stages=stage_times(platform.db, job_id, started),
        calls=calls.seconds,
        cpu=cpu,
    )


def render_alone(pdf: Path) -> float:
    """Seconds to render the PDF's pages as a job runner does (its DPI and size cap, PNG, text layer),
    in this process, stored nowhere."""
    from workflows.flows import render_limits

    limits = render_limits()
    started = time.perf_counter()
    with open_document(
        pdf,
        max_pages=limits.max_pages,
        dpi=limits.dpi,
        max_pixels=limits.max_pixels,
        max_side=limits.max_side,
    ) as opened:
        for _ in opened.pages():
            pass
    return time.perf_counter() - started


def store_alone(platform: Services, job_id: uuid.UUID) -> float:
    """Seconds to store the job's page images again, one after another as the render does, under a
    scratch job's keys."""
    with platform.db.transaction() as s:
        keys = [page.image_key for page in page_results.pages(s, job_id)]
    images = [platform.store.get(key) for key in keys]
    scratch = uuid.uuid4()
    started = time.perf_counter()
    for index, image in enumerate(images):
        platform.store.put(page_key(scratch, index), image, content_type="image/png")
    return time.perf_counter() - started


def run(tmp: Path, page_count: int, concurrency: int, max_new_tokens: int, repeats: int) -> str:
    load = os.getloadavg()[0]
    pdf = first_pages(page_count, tmp / "document.pdf")
    with services(tmp, max_new_tokens, "s3") as platform:
        with celery_worker(platform.env, tmp / "celery.log", concurrency=concurrency):
            from prefect.settings import temporary_settings

            from workflows import flows

            with temporary_settings(updates={"flows.heartbeat_frequency": None}):
                # Warm-up, not measured (other pages of the same PDF: nothing of it can be reused later).
                warm_up = first_pages(WARM_UP_PAGES, tmp / "warm-up.pdf", start=100)
                run_job(platform.db, flows, new_job(platform.db, platform.store, warm_up))
                runs = [submit(platform, flows, pdf, "first", {})]
                runs += [submit(platform, flows, pdf, f"again ({i + 1})", {}) for i in range(repeats)]
                runs.append(submit(platform, flows, pdf, "again, reuse=false", {"reuse": "false"}))
        rendered = statistics.median(render_alone(pdf) for _ in range(3))
        stored = statistics.median(store_alone(platform, runs[1].job_id) for _ in range(3))
    return report(page_count, concurrency, max_new_tokens, runs, rendered, stored, load)


def report(
    pages: int,
    concurrency: int,
    max_new_tokens: int,
    runs: list[Submission],
    rendered: float,
    stored: float,
    load: float,
) -> str:
    first, again, recomputed = runs[0], runs[1:-1], runs[-1]
    second = again[0]

    def median(values: Iterable[float]) -> float:
        return statistics.median(list(values))

    again_s = median(r.seconds for r in again)
    ratio = second.seconds / first.seconds
    render = "render (running → last page stored)"
    render_s = median(r.stages[render] for r in again)
    steps = [median(r.calls[name] for r in again) for name in RENDER_STEPS]
    tail = "pages (last page stored → last page result)"
    start = "flow run start → job running (Prefect flow and task run, claim)"
    finish = "assemble and finish"
    stage_rows = [
        f"| {name} | {first.stages[name]:.2f} | {median(r.stages[name] for r in again):.2f} | "
        f"{recomputed.stages[name]:.2f} |"
        for name in first.stages
    ]
    stage_rows[4:4] = [  # after the render's row
        f"| of the render: {name} | {first.calls[name]:.2f} | {median(r.calls[name] for r in again):.2f} | "
        f"{recomputed.calls[name]:.2f} |"
        for name in RENDER_STEPS
    ]
    cpu_rows = [
        f"| {name} | {first.cpu[name]:.2f} | {median(r.cpu[name] for r in again):.2f} | "
        f"{recomputed.cpu[name]:.2f} |"
        for name in [*PROCESSES, "other"]
        if name not in SHARED
    ]
    lines = [
        "### Results reused by content: the same PDF submitted again (tiny model, CPU)",
        "",
        f"Measured {time.strftime('%Y-%m-%d')} by `bench/reuse.py` in one run on: {machine()}.",
        "",
        f"A {pages}-page PDF (the first {pages} pages of `009-pdflatex-geotopo`, as `bench/pipeline.py`), "
        f"OCR, max_new_tokens={max_new_tokens}, the tiny model at full resolution, model worker "
        f"max_batch_size=8, a Celery page worker with {concurrency} processes (`DOCVL_REUSE_SCOPE=owner`, "
        "the default), objects on moto's S3 server, the flow run in this process as a job runner runs it; "
        f"every job has the same owner. After an unmeasured {WARM_UP_PAGES}-page warm-up job (other pages), "
        f"the PDF is submitted, then again {len(again)} times, then once with `reuse=false`. Seconds: "
        "submit (input stored, job written) → job finished as Postgres stamped it; model worker requests: "
        "the change of its `docvl_model_requests_total` over the job. The machine was shared with other "
        f"work (load average {load:.1f} at the start).",
        "",
        "| submission | status | seconds | of the first | model worker requests | pages reused | "
        "`reused` events | render |",
        "|---|---|---|---|---|---|---|---|",
        *[
            f"| {r.name} | {r.status} | {r.seconds:.2f} | {r.seconds / first.seconds:.1%} | "
            f"{r.model_requests:.0f} | {r.reused} | {r.reused_events} | "
            f"{'taken from an earlier job' if r.render_taken else 'rendered'} |"
            for r in runs
        ],
        "",
        f"The second submission took **{ratio:.1%}** of the first's time (target ≤ {TARGET:.0%}: "
        f"**{'met' if ratio <= TARGET else 'not met'}**; median of the {len(again)} reusing submissions: "
        f"{again_s / first.seconds:.1%}) with {second.model_requests:.0f} model worker requests and "
        f"{second.reused} of {pages} pages reused; `reuse=false` took "
        f"{recomputed.seconds / first.seconds:.0%} of the first, with {recomputed.model_requests:.0f} "
        f"requests. At {again_s:.2f} s for a reusing "
        f"submission, the target holds for a first run of {again_s / TARGET:.0f} s or more "
        f"({again_s / TARGET / pages:.2f} s a page; here {first.seconds / pages:.2f} s a page).",
        "",
        f"Where the time goes (reusing submissions: median of {len(again)}), from the job's event and page "
        "timestamps in Postgres:",
        "",
        "| stage | first | again (median) | reuse=false |",
        "|---|---|---|---|",
        *stage_rows,
        f"| the {pages} pages rendered alone (pdfium, PNG, text layer; in this process, stored nowhere; "
        f"median of 3) | | {rendered:.2f} | |",
        f"| its {pages} page images stored again, one after another (S3 PUTs from this process, nothing "
        f"else running; median of 3) | | {stored:.2f} | |",
        "",
        f"A reusing submission {'took' if all(r.render_taken for r in again) else 'did not always take'} "
        "the first job's render (a listing of its page images, then its pages registered as the job's own "
        f"in one transaction): {render_s:.2f} s from running to its pages registered, against "
        f"{first.stages[render]:.2f} s of rendering and storing for the first. Its results came through one "
        f"reuse task: {median(r.stages[tail] for r in again):.2f} s from its pages registered to the last "
        f"result written. The rest is the flow run starting and claiming the job "
        f"({median(r.stages[start] for r in again):.2f} s) and the outputs assembled and the job finished "
        f"({median(r.stages[finish] for r in again):.2f} s). The {pages} pages rendered alone take "
        f"{rendered:.2f} s (pdfium, PNG, text layer) and storing them {stored:.2f} s: what a reusing "
        f"submission no longer spends ({steps[0]:.2f} s of S3 PUTs in it).",
        "",
        f"CPU seconds by process during each (this machine has {os.cpu_count()} cores), of this process "
        "and the services it started; Postgres and Redis are this machine's servers, shared with other "
        "work, and not counted:",
        "",
        "| process | first | again (median) | reuse=false |",
        "|---|---|---|---|",
        *cpu_rows,
    ]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--pages", type=int, default=50)
    parser.add_argument("--concurrency", type=int, default=4, help="Celery pool processes")
    parser.add_argument("--max-new-tokens", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=3, help="submissions after the first that reuse")
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "benchmarks.md")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="docvl-bench-") as tmp:
        report_text = run(Path(tmp), args.pages, args.concurrency, args.max_new_tokens, args.repeats)
    write_section(args.out, "### Results reused by content", report_text)
    print(report_text)


if __name__ == "__main__":
    main()

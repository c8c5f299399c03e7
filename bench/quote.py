"""How close a quote (`dry_run=true`) comes to what the job then costs: `docvl up` under steady load.

1. `docvl up` (tiny model) on a database of its own; one job per task first, so that every task has history.
2. Steady load: closed-loop REST clients submit single-image QA jobs and 2-page PDF OCR jobs, each followed
   to its end, again and again (reuse=false, so every page is computed), for `--settle` seconds first: the
   quote's rate is the page tasks finished over the last 5 minutes, so a platform up for less reads low.
3. Under that load, a mixed batch (images with qa, ocr and chart2code; PDFs of the corpus with page
   ranges, one or two tasks; reuse=false) is submitted one job a `--gap` seconds, each quoted right before
   it is submitted with the same options (`Client.quote`), `--rounds` times.
4. Once every job of the batch has ended, its quote is compared with Postgres: pages (`pages_total`),
   output tokens (the sum of its results' `generated_tokens`), GPU-seconds (the sum of their
   `inference_ms`), and the expected finish against `finished_at` (error in seconds, and as a ratio of
   the job's duration, submitted -> finished). Median and p90 of each absolute relative error.

    .venv/bin/python bench/quote.py [--settle 300] [--rounds 2] [--gap 1.0] [--max-new-tokens 24]

Writes the "Quotes" section of docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import datetime as dt
import statistics
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import psycopg  # noqa: E402

from bench.model_worker import machine, write_section  # noqa: E402
from bench.pipeline import SOURCE as THESIS  # noqa: E402
from bench.small_jobs import IMAGE, QUESTION  # noqa: E402
from bench.up_platform import Platform  # noqa: E402
from docvl.client import Client  # noqa: E402
from docvl.jobs.quote import QuoteView  # noqa: E402
from tests.support.services import scratch_database  # noqa: E402

REPORT = ROOT / "docs" / "benchmarks.md"
HEADING = "### Quotes"
SAMPLES = ROOT / "docvl" / "samples"
CORPUS = ROOT / "tests" / "corpus" / "pdf-samples"
GPU_HOUR_PRICE = 2.5  # any price: the quoted price is GPU-seconds times it, so its error is theirs


@dataclass(frozen=True)
class Item:
    """One submission of the batch: a document, its tasks and its options."""

    name: str
    path: Path
    tasks: list[str]
    options: dict[str, Any]


def _item(name: str, path: Path, tasks: list[str], pages: str | None = None) -> Item:
    options: dict[str, Any] = {"reuse": False}
    if "qa" in tasks:
        options["question"] = QUESTION
    if pages is not None:
        options["pages"] = pages
    return Item(name, path, tasks, options)


BATCH = [
    _item("page.png", IMAGE, ["qa"]),
    _item("thesis p. 1-3", THESIS, ["ocr"], "1-3"),
    _item("chart.png", SAMPLES / "chart.png", ["chart2code"]),
    _item("4-page PDF", CORPUS / "004-pdflatex-4-pages" / "pdflatex-4-pages.pdf", ["ocr"]),
    _item("page.png", IMAGE, ["ocr"]),
    _item("thesis p. 30-35", THESIS, ["ocr", "qa"], "30-35"),
    _item("webpage.png", SAMPLES / "webpage.png", ["qa"]),
    _item("multicolumn PDF", CORPUS / "026-latex-multicolumn" / "multicolumn.pdf", ["ocr"]),
    _item("chart.png", SAMPLES / "chart.png", ["qa", "chart2code"]),
    _item("thesis p. 50-51", THESIS, ["chart2code"], "50-51"),
    _item("1-page PDF", CORPUS / "001-trivial" / "minimal-document.pdf", ["qa"]),
    _item("thesis p. 70-79", THESIS, ["ocr"], "70-79"),
]
WARM_UP = [BATCH[0], BATCH[4], BATCH[2]]  # one job per task: qa, ocr, chart2code
LOAD_QA = _item("load: page.png", IMAGE, ["qa"])
LOAD_OCR = _item("load: thesis p. 100-101", THESIS, ["ocr"], "100-101")


@dataclass(frozen=True)
class Quoted:
    item: Item
    quote: QuoteView
    job_id: str
    submitted: dt.datetime


@dataclass(frozen=True)
class Actual:
    status: str
    pages: int
    output_tokens: int
    gpu_seconds: float
    finished: dt.datetime
    rendered: dt.datetime | None  # the job's pages stored and their tasks sent


def submit(client: Client, item: Item) -> str:
    return str(client.submit(item.path, item.tasks, **item.options).id)


def closed_loop(platform: Platform, item: Item, stop: threading.Event, done: list[int]) -> None:
    """Submit the item and follow it to its end, again and again, until `stop`."""
    with Client(platform.url, platform.key, timeout=120) as client:
        while not stop.is_set():
            client.wait(submit(client, item), timeout_s=600)
            done.append(1)


def actuals(platform: Platform, job_ids: list[str]) -> dict[str, Actual]:
    url = platform.database_url.replace("postgresql+psycopg://", "postgresql://")
    with psycopg.connect(url) as conn:
        rows = conn.execute(
            """
            SELECT j.id::text, j.status, j.pages_total, j.finished_at, j.rendered_at,
                   coalesce(sum(r.generated_tokens), 0), coalesce(sum(r.inference_ms), 0) / 1000.0
            FROM jobs j LEFT JOIN task_results r ON r.job_id = j.id
            WHERE j.id = ANY(%s::uuid[]) GROUP BY j.id
            """,
            [job_ids],
        ).fetchall()
    return {row[0]: Actual(row[1], row[2], int(row[5]), float(row[6]), row[3], row[4]) for row in rows}


def rate_between(platform: Platform, start: dt.datetime, end: dt.datetime) -> float:
    """Page tasks computed per second between `start` and `end`, the load's and the batch's."""
    url = platform.database_url.replace("postgresql+psycopg://", "postgresql://")
    with psycopg.connect(url) as conn:
        row = conn.execute(
            "SELECT count(*) FROM task_results WHERE reused_from_job IS NULL "
            "AND created_at BETWEEN %s AND %s",
            [start, end],
        ).fetchone()
    return (row[0] if row else 0) / (end - start).total_seconds()


def run(settle_s: float, rounds: int, gap_s: float, max_new_tokens: int, qa_clients: int) -> str:
    load_before = _load()
    with (
        scratch_database("bench_quote") as database_url,
        tempfile.TemporaryDirectory(prefix="docvl-quote-") as tmp,
    ):
        platform = Platform(
            Path(tmp) / "var",
            {
                "DOCVL_DATABASE_URL": database_url,
                "DOCVL_MAX_IN_FLIGHT_PER_KEY": "1000",
                "DOCVL_TINY_MAX_NEW_TOKENS": str(max_new_tokens),
                "DOCVL_GPU_HOUR_PRICE": str(GPU_HOUR_PRICE),
            },
        )
        stop = threading.Event()
        done: list[int] = []
        loops = [
            threading.Thread(target=closed_loop, args=(platform, item, stop, done), daemon=True)
            for item in [*[LOAD_QA] * qa_clients, LOAD_OCR]
        ]
        try:
            with Client(platform.url, platform.key, timeout=120) as client:
                for item in WARM_UP:
                    client.wait(submit(client, item), timeout_s=600)
                for loop in loops:
                    loop.start()
                time.sleep(settle_s)  # the load runs: the quote's rate window fills
                settled = len(done)
                quoted: list[Quoted] = []
                for _ in range(rounds):
                    for item in BATCH:
                        quote = client.quote(item.path, item.tasks, **item.options)
                        submitted = dt.datetime.now(dt.UTC)
                        quoted.append(Quoted(item, quote, submit(client, item), submitted))
                        time.sleep(gap_s)
                for one in quoted:
                    client.wait(one.job_id, timeout_s=900)
            stop.set()
            for loop in loops:
                loop.join(600)
            found = actuals(platform, [q.job_id for q in quoted])
            rate = rate_between(platform, quoted[0].submitted, max(a.finished for a in found.values()))
        finally:
            stop.set()
            platform.stop()
    machine_load = f"load average {load_before} at the start, {_load()} at the end"
    return report(quoted, found, rate, settle_s, settled, gap_s, max_new_tokens, qa_clients, machine_load)


def relative(quoted: float, actual: float) -> float:
    return abs(quoted - actual) / actual if actual else (0.0 if quoted == actual else float("inf"))


def spread(values: list[float]) -> tuple[float, float]:
    """Median and p90 (nearest rank)."""
    ordered = sorted(values)
    return statistics.median(ordered), ordered[min(len(ordered) - 1, round(0.9 * len(ordered)) - 1)]


def report(
    quoted: list[Quoted],
    found: dict[str, Actual],
    rate: float,
    settle_s: float,
    settled: int,
    gap_s: float,
    max_new_tokens: int,
    qa_clients: int,
    machine_load: str,
) -> str:
    rows: list[str] = []
    errors: dict[str, list[float]] = {
        name: [] for name in ("pages", "output tokens", "GPU-seconds", "finish")
    }
    late: list[float] = []
    for one in quoted:
        q, a = one.quote, found[one.job_id]
        took = (a.finished - one.submitted).total_seconds()
        off = (a.finished - q.expected_finish).total_seconds()  # > 0: finished later than quoted
        errors["pages"].append(relative(q.pages, a.pages))
        errors["output tokens"].append(relative(q.output_tokens, a.output_tokens))
        errors["GPU-seconds"].append(relative(q.gpu_seconds, a.gpu_seconds))
        errors["finish"].append(abs(off) / took)
        late.append(off)
        bases = "/".join(t.basis for t in q.tasks)
        rendered = "-" if a.rendered is None else f"{(a.rendered - one.submitted).total_seconds():.1f}"
        rows.append(
            f"| {one.item.name} | {', '.join(one.item.tasks)} | {a.status} | {q.pages} / {a.pages} | "
            f"{q.output_tokens} / {a.output_tokens} | {q.gpu_seconds:.2f} / {a.gpu_seconds:.2f} | "
            f"{q.queue_ahead} | {q.page_tasks_per_s if q.page_tasks_per_s is not None else '-'} | "
            f"{rendered} | {(q.expected_finish - one.submitted).total_seconds():.1f} / {took:.1f} | "
            f"{off:+.1f} | {bases} |"
        )
    summary = []
    for name, values in errors.items():
        median, p90 = spread(values)
        summary.append(f"| {name} | {median:.1%} | {p90:.1%} |")
    late_median, _ = spread([abs(x) for x in late])
    quoted_rate = statistics.median(q.quote.page_tasks_per_s or 0.0 for q in quoted)
    failed = sum(1 for a in found.values() if a.status != "succeeded")
    return "\n".join(
        [
            HEADING,
            "",
            f"Measured {time.strftime('%Y-%m-%d')} by `bench/quote.py` in one run on: {machine()}; the "
            f"machine is shared with other work ({machine_load}).",
            "",
            f"`docvl up` (tiny model, {max_new_tokens} new tokens at most, `DOCVL_GPU_HOUR_PRICE`="
            f"{GPU_HOUR_PRICE}) on a database of its own; one job per task first (qa, ocr, chart2code), "
            f"then a steady load: {qa_clients} closed-loop REST clients submitting single-image QA jobs and "
            f"one submitting 2-page PDF OCR jobs, each following its job to the end, reuse=false "
            f"({settled} load jobs ended in the {settle_s:.0f} s before the batch). Then a mixed batch of "
            f"{len(BATCH)} submissions, {len(quoted) // len(BATCH)} times ({len(quoted)} jobs, reuse=false, "
            f"one every {gap_s:g} s, without waiting for them), each quoted (`Client.quote`) right before "
            f"it was submitted. Actual: from Postgres once every job had ended ({failed} did not succeed).",
            "",
            "| absolute relative error of the quote | median | p90 |",
            "|---|---|---|",
            *summary,
            "",
            f"Finish: |actual − expected finish| over the job's duration (submitted → finished), "
            f"median absolute error {late_median:.1f} s. Page tasks computed per second while the batch "
            f"ran (first submission → last finish), the load's and the batch's: {rate:.3f}; the quotes' "
            f"rate (last 5 minutes): median {quoted_rate:.3f}.",
            "",
            "Each job (quoted / actual; ahead: page tasks queued ahead in the quote; rate: its page tasks "
            "per second; rendered: seconds from submission until its pages were stored and their tasks sent; "
            "to finish: seconds from submission; late: actual − expected finish, s):",
            "",
            "| document | tasks | status | pages | output tokens | GPU-s | ahead | rate /s | rendered s | "
            "to finish s | late s | basis |",
            "|---|---|---|---|---|---|---|---|---|---|---|---|",
            *rows,
            "",
        ]
    )


def _load() -> str:
    with open("/proc/loadavg") as fh:
        return fh.read().split()[0]


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n")[0] if __doc__ else None,
    )
    parser.add_argument("--settle", type=float, default=300, help="Seconds of load before the batch.")
    parser.add_argument("--rounds", type=int, default=2, help="Times the batch is submitted.")
    parser.add_argument("--gap", type=float, default=1.0, help="Seconds between the batch's submissions.")
    parser.add_argument("--qa-clients", type=int, default=2, help="Closed-loop QA clients of the load.")
    parser.add_argument("--max-new-tokens", type=int, default=24, help="docvl up's cap with the tiny model.")
    parser.add_argument("--out", type=Path, default=REPORT)
    args = parser.parse_args()
    section = run(args.settle, args.rounds, args.gap, args.max_new_tokens, args.qa_clients)
    write_section(args.out, HEADING, section)
    print(section)


if __name__ == "__main__":
    main()

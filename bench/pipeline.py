"""Benchmark of the whole pipeline against the model worker alone, on this machine.

A 50-page PDF (the first 50 pages of a real 117-page thesis from tests/corpus) goes through the
Prefect flow, the Celery page tasks and the model worker (tiny model, full resolution); then the same 50
page images go straight to the same model worker at the same concurrency, alternating over several rounds.
The ratio of the two pages/s, the CPU each process used on each path, the model worker's batching, the time
per stage and Prefect's per-run overhead go into docs/benchmarks.md.

    .venv/bin/python bench/pipeline.py [--pages 50] [--concurrency 4] [--max-new-tokens 32]
        [--store s3|local] [--rounds 7]

`--store s3` (the default) keeps objects in moto's S3 server, a Python process on the same cores;
`--store local` keeps them in a local directory, as the embedded platform does.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import psutil  # noqa: E402
import pypdfium2 as pdfium  # noqa: E402
from sqlalchemy import select  # noqa: E402

from bench.model_worker import machine, write_section  # noqa: E402
from docvl.db import jobs, migrate, page_results  # noqa: E402
from docvl.db.database import Database  # noqa: E402
from docvl.db.models import JobEvent, Page  # noqa: E402
from docvl.inference.client import InferenceClient  # noqa: E402
from docvl.inference.types import GenerationParams, InferenceRequest  # noqa: E402
from docvl.storage.base import ObjectStore  # noqa: E402
from docvl.storage.local import LocalObjectStore  # noqa: E402
from docvl.storage.s3 import S3ObjectStore  # noqa: E402
from docvl.tasks import TaskKind  # noqa: E402
from model_worker.tiny import build_tiny  # noqa: E402
from tests.support.helpers import model_worker_process  # noqa: E402
from tests.support.services import (  # noqa: E402
    celery_worker,
    free_port,
    moto_s3_server,
    prefect_server,
    scratch_database,
)

WARM_UP_PAGES = 8
STORES = {
    "s3": "moto's S3 server (a Python process on the same cores; MinIO in production)",
    "local": "a local directory (the embedded platform's store)",
}
SOURCE = ROOT / "tests" / "corpus" / "pdf-samples" / "009-pdflatex-geotopo" / "GeoTopo-komprimiert.pdf"


def first_pages(count: int, out: Path, start: int = 0) -> Path:
    source = pdfium.PdfDocument(str(SOURCE))
    document = pdfium.PdfDocument.new()
    document.import_pages(source, list(range(start, start + count)))
    document.save(str(out))
    return out


def direct(target: str, images: list[bytes], concurrency: int, max_new_tokens: int) -> float:
    """Seconds for the model worker alone to answer every page, `concurrency` requests at a time."""
    pending = list(enumerate(images))
    lock = threading.Lock()

    def client_loop() -> None:
        with InferenceClient(target) as client:
            while True:
                with lock:
                    if not pending:
                        return
                    _, image = pending.pop(0)
                client.generate(
                    InferenceRequest(TaskKind.OCR, [image], params=GenerationParams(max_new_tokens))
                )

    threads = [threading.Thread(target=client_loop) for _ in range(concurrency)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return time.perf_counter() - started


def served(target: str) -> tuple[int, int]:
    """The model worker's (requests completed, batches) so far: their change over a path is its batching."""
    with InferenceClient(target) as client:
        stats = client.model_info()["stats"]
    return int(stats["requests_completed"]), int(stats["batches"])


PROCESSES = {  # what each process on the machine is, by its command line (first match)
    "model worker": ("model-worker", "model_worker"),
    "Celery page worker": ("celery",),
    "this process (flow: render, dispatch; direct clients)": ("bench/pipeline.py", "bench/reuse.py"),
    "moto (S3)": ("moto",),
    "Prefect server": ("prefect",),
    "Postgres": ("postgres",),
    "Redis": ("redis",),
}


def cpu_by_process(root: psutil.Process | None = None) -> dict[str, float]:
    """CPU seconds used so far by every process on the machine (with `root`: by it and its descendants
    only), summed by what it is."""
    used: dict[str, float] = {}
    for process in psutil.process_iter() if root is None else [root, *root.children(recursive=True)]:
        try:
            command, times = " ".join(process.cmdline()), process.cpu_times()
        except psutil.Error:
            continue
        name = next((n for n, marks in PROCESSES.items() if any(m in command for m in marks)), "other")
        used[name] = used.get(name, 0.0) + times.user + times.system
    return used


def cpu_spent(before: dict[str, float], after: dict[str, float]) -> dict[str, float]:
    return {name: after.get(name, 0.0) - before.get(name, 0.0) for name in [*PROCESSES, "other"]}


def mean_batch(before: tuple[int, int], after: tuple[int, int]) -> float:
    return (after[0] - before[0]) / max(1, after[1] - before[1])


def run_job(db: Database, flows: Any, job_id: uuid.UUID) -> tuple[str, float, float]:
    """Start the job in a flow run here (as a job runner does) and wait until its page tasks end it; its
    status, the flow's start (time.time()) and the seconds from it to the job's finish as Postgres stamped
    it (polled slowly, so that waiting takes no CPU from the pipeline)."""
    started = time.time()
    flows.start_jobs([job_id])
    while True:
        with db.transaction() as s:
            job = jobs.get_job(s, job_id)
            if job.finished_at is not None:
                return str(job.status), started, job.finished_at.timestamp() - started
        time.sleep(0.2)


def flow_overhead(runs: int = 5) -> dict[str, float]:
    """Mean seconds of an empty flow run against the server, with Prefect's flow heartbeat on and off."""
    from prefect import flow
    from prefect.settings import temporary_settings

    @flow(persist_result=False)
    def empty() -> None:
        return None

    def mean_run() -> float:
        empty()  # the first run pays for imports and registration
        times = []
        for _ in range(runs):
            started = time.perf_counter()
            empty()
            times.append(time.perf_counter() - started)
        return statistics.mean(times)

    result = {"heartbeat on (default)": mean_run()}
    with temporary_settings(updates={"flows.heartbeat_frequency": None}):
        result["heartbeat off"] = mean_run()
    return result


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--pages", type=int, default=50)
    parser.add_argument("--concurrency", type=int, default=4, help="Celery pool processes = direct clients")
    parser.add_argument("--max-new-tokens", type=int, default=32)
    parser.add_argument("--store", choices=["s3", "local"], default="s3", help="where objects are kept")
    parser.add_argument("--rounds", type=int, default=7, help="pipeline/direct pairs, alternating")
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "benchmarks.md")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="docvl-bench-") as tmp:
        report = run(Path(tmp), args.pages, args.concurrency, args.max_new_tokens, args.store, args.rounds)
    write_section(args.out, "### Pipeline", report)
    print(report)


@dataclass(frozen=True)
class Services:
    """The platform's services for a benchmark: Postgres (a scratch database), the object store, Redis, a
    Prefect server and a model worker with the tiny model; `env` configures a Celery worker and the flows
    run in this process (it is also set in os.environ)."""

    db: Database
    store: ObjectStore
    target: str  # the model worker
    model_metrics: str  # its /metrics
    env: dict[str, str]


@contextlib.contextmanager
def services(tmp: Path, max_new_tokens: int, store_kind: str) -> Iterator[Services]:
    model_dir = build_tiny(tmp / "tiny")
    metrics_port = free_port()
    with (
        scratch_database("bench") as url,
        scratch_database("bench_prefect") as prefect_url,
        moto_s3_server(tmp / "moto.log") as s3,
        prefect_server(prefect_url, tmp) as prefect_api,
        model_worker_process(
            model_dir,
            tmp / "model-worker.log",
            "--max-batch-size",
            "8",
            env={"DOCVL_MODEL_WORKER_METRICS_PORT": str(metrics_port)},
        ) as (_, target),
    ):
        db = Database(url)
        migrate.upgrade(db)
        store: ObjectStore = S3ObjectStore(s3, "bench", "bench", "docvl-bench")
        if store_kind == "local":
            store = LocalObjectStore(tmp / "storage")
        store.ensure_ready()
        env = {
            "DOCVL_DATABASE_URL": url,
            "DOCVL_REDIS_URL": f"redis://127.0.0.1:6379/{1 + os.getpid() % 14}",
            "DOCVL_S3_ENDPOINT": s3,
            "DOCVL_S3_ACCESS_KEY": "bench",
            "DOCVL_S3_SECRET_KEY": "bench",
            "DOCVL_S3_BUCKET": "docvl-bench",
            "DOCVL_OBJECT_STORE": store_kind,
            "DOCVL_STORAGE_DIR": str(tmp / "storage"),
            "DOCVL_MODEL_WORKER_TARGETS": target,
            "DOCVL_MAX_NEW_TOKENS": str(max_new_tokens),
            "PREFECT_API_URL": prefect_api,
            "PREFECT_LOGGING_LEVEL": "WARNING",
            # Every page is still checked (OCR: repetition, CER against the text layer), but not generated
            # again: the tiny random model loops on nearly every page, so regeneration would double the
            # model's work in this path only (docs/benchmarks.md, "Reading the pipeline numbers").
            "DOCVL_VERIFY_ATTEMPTS": "1",
        }
        os.environ.update(env)
        with InferenceClient(target) as client:
            client.wait_ready(600)
        try:
            yield Services(db, store, target, f"http://127.0.0.1:{metrics_port}/metrics", env)
        finally:
            db.dispose()


def run(
    tmp: Path, page_count: int, concurrency: int, max_new_tokens: int, store_kind: str, round_count: int
) -> str:
    pdf = first_pages(page_count, tmp / "document.pdf")
    with services(tmp, max_new_tokens, store_kind) as platform:
        db, store, target = platform.db, platform.store, platform.target
        with celery_worker(platform.env, tmp / "celery.log", concurrency=concurrency):
            from prefect.settings import temporary_settings

            from workflows import flows

            with temporary_settings(updates={"flows.heartbeat_frequency": None}):
                # Warm-up, not measured: the Celery pool processes make their connections on their first
                # tasks, as the direct run below finds the model worker warm from the pipeline run.
                run_job(
                    db, flows, new_job(db, store, first_pages(WARM_UP_PAGES, tmp / "warm-up.pdf", start=100))
                )
                rounds: list[tuple[float, float]] = []
                batches: list[tuple[float, float]] = []
                cpu: list[tuple[dict[str, float], dict[str, float]]] = []
                for _ in range(
                    round_count
                ):  # alternate the two paths, so that drift on the machine hits both
                    job_id = new_job(db, store, pdf, options=COMPUTED)  # every round computes its pages
                    before, cpu_before = served(target), cpu_by_process()
                    status, started, pipeline_s = run_job(db, flows, job_id)
                    between, cpu_between = served(target), cpu_by_process()
                    with db.transaction() as s:
                        images = [store.get(p.image_key) for p in page_results.pages(s, job_id)]
                    cpu_direct = cpu_by_process()
                    rounds.append((pipeline_s, direct(target, images, concurrency, max_new_tokens)))
                    batches.append((mean_batch(before, between), mean_batch(between, served(target))))
                    cpu.append((cpu_spent(cpu_before, cpu_between), cpu_spent(cpu_direct, cpu_by_process())))
            stages = stage_times(db, job_id, started)
            with db.transaction() as s:
                results = page_results.results(s, job_id)
            overhead = flow_overhead()
    return report(
        page_count,
        concurrency,
        max_new_tokens,
        store_kind,
        str(status),
        rounds,
        batches,
        cpu,
        stages,
        results,
        overhead,
    )


COMPUTED = {"reuse": "false"}  # the same pages again would take the earlier results (docvl/jobs/reuse.py)


def new_job(
    db: Database, store: ObjectStore, pdf: Path, owner: str = "bench", options: dict[str, Any] | None = None
) -> uuid.UUID:
    with pdf.open("rb") as fh:
        stored = store.put_input(fh)
    with db.transaction() as s:
        document = jobs.get_or_create_document(
            s,
            sha256=stored.sha256,
            size_bytes=stored.size,
            media_type="application/pdf",
            object_key=stored.key,
        )
        job, _ = jobs.create_job(s, jobs.NewJob(owner, document.id, [TaskKind.OCR], options or {}))
        return job.id


def stage_times(db: Database, job_id: uuid.UUID, started: float) -> dict[str, float]:
    with db.transaction() as s:
        events = list(
            s.execute(select(JobEvent).where(JobEvent.job_id == job_id).order_by(JobEvent.id)).scalars()
        )
        stored = dict(
            s.execute(select(Page.index, Page.created_at).where(Page.job_id == job_id)).tuples().all()
        )
        results = page_results.results(s, job_id)
    pages = list(stored.values())
    # Per page: stored → result written, and the part of it spent outside the model worker (Celery's queue,
    # loading the image, post-processing, writing the result).
    through = [(r.created_at - stored[r.page_index]).total_seconds() for r in results]
    outside = [
        t - (r.queued_ms + r.preprocessing_ms + r.inference_ms) / 1000
        for t, r in zip(through, results, strict=True)
    ]
    running = next(e.created_at for e in events if e.status == "running" and e.kind == "status")
    progress = [e.created_at for e in events if e.kind == "progress"]
    end = events[-1].created_at
    rendered = max(pages)
    first_result = min(r.created_at for r in results)
    return {
        "flow run start → job running (Prefect flow and task run, claim)": running.timestamp() - started,
        "running → first page stored": (min(pages) - running).total_seconds(),
        "running → first page result": (first_result - running).total_seconds(),
        "render (running → last page stored)": (rendered - running).total_seconds(),
        "pages (last page stored → last page result)": (max(progress) - rendered).total_seconds(),
        "assemble and finish": (end - max(progress)).total_seconds(),
        "per page, page stored → result written (mean)": statistics.mean(through),
        "per page, of that outside the model worker (Celery queue, image load, post-process, write)": (
            statistics.mean(outside)
        ),
    }


def report(
    pages: int,
    concurrency: int,
    max_new_tokens: int,
    store_kind: str,
    status: str,
    rounds: list[tuple[float, float]],
    batches: list[tuple[float, float]],
    cpu: list[tuple[dict[str, float], dict[str, float]]],
    stages: dict[str, float],
    results: list[Any],
    overhead: dict[str, float],
) -> str:
    pipeline_s = statistics.median(p for p, _ in rounds)
    direct_s = statistics.median(d for _, d in rounds)
    pipeline_total = sum(p for p, _ in rounds)
    direct_total = sum(d for _, d in rounds)
    inference = sum(r.inference_ms for r in results) / 1000
    model_queue = sum(r.queued_ms for r in results) / 1000
    preprocessing = sum(r.preprocessing_ms for r in results) / 1000
    lines = [
        "### Pipeline: whole path against the model worker alone (tiny model, CPU)",
        "",
        f"Measured {time.strftime('%Y-%m-%d')} by `bench/pipeline.py` in one run on: {machine()}.",
        "",
        f"A {pages}-page PDF (the first {pages} pages of `009-pdflatex-geotopo` from the shared corpus), "
        f"OCR, max_new_tokens={max_new_tokens}, the tiny model at full resolution (576 image tokens), model "
        "worker "
        f"max_batch_size=8, Celery worker with {concurrency} processes; the direct run sends the same "
        f"{pages} rendered page images to the same model worker from {concurrency} clients. Job status: "
        f"{status}. Both paths are measured warm: an {WARM_UP_PAGES}-page job (other pages of the same PDF) "
        f"goes through the pipeline first, unmeasured; then {len(rounds)} rounds each send a new job through "
        "the pipeline and its page images straight to the model worker. Throughput is pages over seconds "
        "summed over all rounds (so a hiccup of the machine in one round weighs what it lasted). The flow "
        "runs in this process with Prefect's flow heartbeat off (its cost is below). "
        f"Objects are kept in {STORES[store_kind]}. Postgres, Redis, the Prefect server, the Celery worker "
        "and the model worker all share this machine's cores.",
        "",
        "| path | pages/s (all rounds) | seconds (median) | seconds per round |",
        "|---|---|---|---|",
        f"| whole pipeline (flow start → job finished) | {pages * len(rounds) / pipeline_total:.2f} | "
        f"{pipeline_s:.1f} | {', '.join(f'{p:.1f}' for p, _ in rounds)} |",
        f"| model worker alone | {pages * len(rounds) / direct_total:.2f} | {direct_s:.1f} | "
        f"{', '.join(f'{d:.1f}' for _, d in rounds)} |",
        "",
        f"The pipeline keeps **{direct_total / pipeline_total:.0%}** of the model worker's throughput "
        f"(target: 90%). Per round: {', '.join(f'{d / p:.0%}' for p, d in rounds)} (median "
        f"{statistics.median(d / p for p, d in rounds):.0%}); the ratio of the medians: "
        f"{direct_s / pipeline_s:.0%}.",
        "",
        "Requests per generate call in the model worker (its batching), per round: pipeline "
        f"{', '.join(f'{p:.2f}' for p, _ in batches)}; model worker alone "
        f"{', '.join(f'{d:.2f}' for _, d in batches)}.",
        "",
        "CPU seconds by process while each path ran (median over the rounds; this machine has "
        f"{os.cpu_count()} cores):",
        "",
        "| process | whole pipeline | model worker alone |",
        "|---|---|---|",
        *[
            f"| {name} | {statistics.median(p[name] for p, _ in cpu):.2f} | "
            f"{statistics.median(d[name] for _, d in cpu):.2f} |"
            for name in cpu[0][0]
        ],
        f"| all | {statistics.median(sum(p.values()) for p, _ in cpu):.2f} | "
        f"{statistics.median(sum(d.values()) for _, d in cpu):.2f} |",
        "",
        "Per stage of the last round's job (from its event and page timestamps in Postgres):",
        "",
        *[f"- {name}: {seconds:.2f} s" for name, seconds in stages.items()],
        f"- summed over pages, inside the model worker: preprocessing {preprocessing:.1f} s, "
        f"queue {model_queue:.1f} s, batched inference {inference:.1f} s",
        "",
        "Prefect's own cost per flow run (an empty flow, mean of 5, against the server on Postgres):",
        "",
        *[f"- {name}: {seconds * 1000:.0f} ms" for name, seconds in overhead.items()],
    ]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()

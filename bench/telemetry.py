"""What metrics and tracing cost: the pipeline benchmark's job (a 50-page PDF, OCR, the tiny model) with every
process's Prometheus /metrics and OpenTelemetry tracing on, against the same with both off, in one run.

The processes run as deployed — a model worker, a Celery page worker (4 processes) and a job runner (a
Celery worker on the `jobs` queue) — and are started afresh for each mode, since tracing is set up at
start. Modes alternate (off, on, off, on) so that drift on the machine hits both. With tracing on, every
process exports to an OTLP/HTTP receiver in this process (a collector's work, on the same cores) with the
SDK's default batching, and every /metrics endpoint is scraped every 5 s, as Prometheus would.

    .venv/bin/python bench/telemetry.py [--pages 50] [--rounds 2]

Writes the "Telemetry cost" section of docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from bench.model_worker import machine, write_section  # noqa: E402
from bench.pipeline import COMPUTED, WARM_UP_PAGES, first_pages, new_job  # noqa: E402
from docvl.broker.dispatch import CeleryDispatch  # noqa: E402
from docvl.db import jobs, migrate  # noqa: E402
from docvl.db.database import Database  # noqa: E402
from docvl.inference.client import InferenceClient  # noqa: E402
from docvl.namespace import derive  # noqa: E402
from docvl.storage.s3 import S3ObjectStore  # noqa: E402
from model_worker.tiny import build_tiny  # noqa: E402
from tests.support.helpers import model_worker_process  # noqa: E402
from tests.support.otlp import OtlpReceiver, otlp_receiver  # noqa: E402
from tests.support.services import celery_worker, free_port, moto_s3_server, prefect_server, scratch_database  # noqa: E402

HEADING = "### Telemetry cost"
MODES = ("off", "on", "off", "on")  # also "metrics" or "tracing" alone, with --modes


def wait_finished(db: Database, job_id: uuid.UUID, timeout_s: float = 600) -> str:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        with db.transaction() as s:
            job = jobs.get_job(s, job_id)
            if job.finished_at is not None:
                return str(job.status)
        time.sleep(0.02)
    raise TimeoutError(f"job {job_id} did not finish in {timeout_s} s")


@contextmanager
def scraping(urls: list[str], every_s: float = 5.0) -> Iterator[list[int]]:
    """Scrape every URL every `every_s` seconds until the block ends; yields the count of scrapes."""
    done = threading.Event()
    scrapes = [0]

    def loop() -> None:
        while not done.wait(every_s):
            for url in urls:
                try:
                    httpx.get(url, timeout=2).raise_for_status()
                    scrapes[0] += 1
                except httpx.HTTPError:
                    pass

    thread = threading.Thread(target=loop, daemon=True)
    thread.start()
    try:
        yield scrapes
    finally:
        done.set()
        thread.join(10)


def segment(
    mode: str, tmp: Path, base: dict[str, str], model_dir: Path, db: Database, store: S3ObjectStore,
    pdfs: tuple[Path, Path], rounds: int, receiver: OtlpReceiver,
) -> tuple[list[float], int, int]:  # fmt: skip
    """Seconds per round of the measured job with telemetry `mode`; the scrapes and spans seen."""
    metrics_on, tracing_on = mode in ("on", "metrics"), mode in ("on", "tracing")
    ports = {name: free_port() if metrics_on else 0 for name in ("model", "worker", "runner")}
    tracing = {"OTEL_EXPORTER_OTLP_ENDPOINT": receiver.endpoint} if tracing_on else {}
    logs = tmp / f"logs-{mode}-{time.monotonic_ns()}"
    logs.mkdir()
    model_env = {**tracing, "DOCVL_MODEL_WORKER_METRICS_PORT": str(ports["model"])}
    with model_worker_process(
        model_dir, logs / "model-worker.log", "--max-batch-size", "8", env=model_env
    ) as (
        _,
        target,
    ):
        with InferenceClient(target) as client:
            client.wait_ready(600)
        env = {**base, **tracing, "DOCVL_MODEL_WORKER_TARGETS": target}
        pages_env = {**env, "DOCVL_WORKER_METRICS_PORT": str(ports["worker"]),
                     "DOCVL_WORKER_METRICS_DIR": str(logs / "worker-metrics")}  # fmt: skip
        runner_env = {**env, "DOCVL_WORKER_METRICS_PORT": str(ports["runner"]),
                      "DOCVL_WORKER_METRICS_DIR": str(logs / "runner-metrics"),
                      "OTEL_SERVICE_NAME": "docvl-job-runner"}  # fmt: skip
        urls = [f"http://127.0.0.1:{port}/metrics" for port in ports.values()] if metrics_on else []
        spans_before = receiver.received
        with (
            celery_worker(pages_env, logs / "celery.log", concurrency=4),
            celery_worker(runner_env, logs / "job-runner.log", queues="jobs", concurrency=1),
            scraping(urls) as scrapes,
        ):
            dispatch = CeleryDispatch.connect(base["DOCVL_REDIS_URL"], derive(base["DOCVL_DATABASE_URL"]))
            warm_up, measured = pdfs
            job_id = new_job(db, store, warm_up)
            dispatch.start_jobs()
            wait_finished(db, job_id)
            times = []
            for _ in range(rounds):
                job_id = new_job(db, store, measured, options=COMPUTED)
                started = time.perf_counter()
                dispatch.start_jobs()
                status = wait_finished(db, job_id)
                times.append(time.perf_counter() - started)
                assert status == "succeeded", status
    return times, scrapes[0], receiver.received - spans_before


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--pages", type=int, default=50)
    parser.add_argument("--rounds", type=int, default=2, help="measured jobs per segment")
    parser.add_argument("--max-new-tokens", type=int, default=32)
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "benchmarks.md")
    parser.add_argument("--modes", default=",".join(MODES), help="the segments, in order")
    args = parser.parse_args()
    modes = args.modes.split(",")
    with tempfile.TemporaryDirectory(prefix="docvl-bench-telemetry-") as name:
        tmp = Path(name)
        model_dir = build_tiny(tmp / "tiny")
        pdfs = (
            first_pages(WARM_UP_PAGES, tmp / "warm-up.pdf", start=100),
            first_pages(args.pages, tmp / "job.pdf"),
        )
        with (
            scratch_database("bench_telemetry") as url,
            scratch_database("bench_telemetry_prefect") as prefect_url,
            moto_s3_server(tmp / "moto.log") as s3,
            prefect_server(prefect_url, tmp) as prefect_api,
            otlp_receiver() as receiver,
        ):
            db = Database(url)
            migrate.upgrade(db)
            store = S3ObjectStore(s3, "bench", "bench", "docvl-bench")
            store.ensure_ready()
            base = {
                "DOCVL_DATABASE_URL": url,
                "DOCVL_REDIS_URL": f"redis://127.0.0.1:6379/{1 + os.getpid() % 14}",
                "DOCVL_S3_ENDPOINT": s3, "DOCVL_S3_ACCESS_KEY": "bench", "DOCVL_S3_SECRET_KEY": "bench",
                "DOCVL_S3_BUCKET": "docvl-bench", "DOCVL_OBJECT_STORE": "s3",
                "DOCVL_MAX_NEW_TOKENS": str(args.max_new_tokens), "PREFECT_API_URL": prefect_api,
                "PREFECT_LOGGING_LEVEL": "WARNING", "DOCVL_LOG_LEVEL": "INFO",
            }  # fmt: skip
            results: dict[str, list[float]] = {mode: [] for mode in modes}
            scrapes = spans = 0
            for mode in modes:
                times, scraped, seen = segment(
                    mode, tmp, base, model_dir, db, store, pdfs, args.rounds, receiver
                )
                results[mode].extend(times)
                scrapes, spans = scrapes + scraped, spans + seen
                print(mode, [f"{t:.1f}" for t in times], flush=True)
            db.dispose()
    for mode, times in results.items():
        print(mode, f"median {statistics.median(times):.2f} s", flush=True)
    if "on" not in results or "off" not in results:
        return
    off, on = statistics.median(results["off"]), statistics.median(results["on"])
    ratio = off / on
    on_pages = len(results["on"]) * args.pages + modes.count("on") * WARM_UP_PAGES
    section = f"""{HEADING}

Measured {time.strftime("%Y-%m-%d")} by `bench/telemetry.py` in one run on: {machine()}.

The pipeline benchmark's job — the first {args.pages} pages of `009-pdflatex-geotopo`, OCR,
max_new_tokens={args.max_new_tokens}, the tiny model at full resolution — submitted as deployed (a job
runner process starts it; a Celery page worker with 4 processes; the model worker), with telemetry off
(every `/metrics` port 0, no OTLP endpoint) and on (every process serving `/metrics`, scraped every 5 s,
and tracing every process to an OTLP/HTTP receiver on this machine with the SDK's default batching).
Processes are started afresh per mode; modes alternate {", ".join(modes)}, {args.rounds} jobs each after a
warm-up job. Seconds from the start request to the job finished:

| telemetry | seconds (median) | pages/s | each job (s) |
|---|---|---|---|
| off | {off:.1f} | {args.pages / off:.2f} | {", ".join(f"{t:.1f}" for t in results["off"])} |
| on | {on:.1f} | {args.pages / on:.2f} | {", ".join(f"{t:.1f}" for t in results["on"])} |

With metrics and tracing on, the pipeline keeps **{ratio:.0%}** of its throughput with them off (target:
97%). The receiver took {spans} spans ({spans / on_pages:.0f} per page, warm-up jobs included) and {scrapes}
scrapes were answered.
"""
    write_section(args.out, HEADING, section)
    print(section)


if __name__ == "__main__":
    main()

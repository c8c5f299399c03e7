"""The whole path with real processes: Postgres, Redis, moto's S3 server, a Celery worker, a model worker
with the tiny model, and the flow reporting to a local Prefect server on Postgres."""

from __future__ import annotations

import itertools
import json
import os
import subprocess
import threading
import uuid
from collections.abc import Callable, Iterator, Mapping
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from docvl.db import jobs, page_results
from docvl.db.database import Database
from docvl.inference.client import InferenceClient
from docvl.inference.types import GenerationParams, InferenceRequest
from docvl.job_status import JobStatus
from docvl.postprocess import artifact
from docvl.storage.s3 import S3ObjectStore
from docvl.tasks import TaskKind
from tests.support.helpers import model_worker_process
from tests.support.platform import environment
from tests.support.scripted import LAYOUT_PAGE
from tests.support.scripted_worker import scripted_worker_process
from tests.support.services import celery_worker, ensure_redis, prefect_server, scratch_database
from tests.support.tcp_proxy import TcpProxy

pytestmark = pytest.mark.slow
CORPUS = (
    Path(__file__).resolve().parents[1] / "corpus" / "pdf-samples"
)  # a copy of ../shared/corpus (CC-BY-SA-4.0)
FOUR_PAGES = CORPUS / "004-pdflatex-4-pages" / "pdflatex-4-pages.pdf"
MAX_NEW_TOKENS = 24
VL_QUEUES = "ocr,chart2code,web2html,qa,webhooks"  # the layout queue has its own worker (layout_worker)


@dataclass
class Platform:
    env: dict[str, str]
    db: Database
    store: S3ObjectStore
    model: InferenceClient
    model_proxy: TcpProxy
    logs: Path


@pytest.fixture(scope="module")
def platform(
    migrated_database: Database,
    s3_endpoint: str,
    tiny_small_dir: Path,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Platform]:
    ensure_redis()
    logs = tmp_path_factory.mktemp("pipeline")
    bucket = f"docvl-{uuid.uuid4().hex[:12]}"
    with (
        scratch_database("prefect") as prefect_db,
        prefect_server(prefect_db, logs) as prefect_api,
        model_worker_process(tiny_small_dir, logs / "model-worker.log") as (_, target),
    ):
        host, port = target.split(":")
        model_proxy = TcpProxy(host, int(port)).start()  # the page tasks reach the model worker through it
        env = {
            "DOCVL_DATABASE_URL": migrated_database.url,
            "DOCVL_REDIS_URL": f"redis://127.0.0.1:6379/{1 + os.getpid() % 14}",
            "DOCVL_OBJECT_STORE": "s3",
            "DOCVL_S3_ENDPOINT": s3_endpoint,
            "DOCVL_S3_ACCESS_KEY": "testing",
            "DOCVL_S3_SECRET_KEY": "testing",
            "DOCVL_S3_BUCKET": bucket,
            "DOCVL_MODEL_WORKER_TARGETS": f"127.0.0.1:{model_proxy.port}",
            "DOCVL_VISIBILITY_TIMEOUT_S": "8",
            "DOCVL_MAX_NEW_TOKENS": str(MAX_NEW_TOKENS),
            "DOCVL_RETRY_BACKOFF_S": "0.5",
            "PREFECT_API_URL": prefect_api,
            "PREFECT_LOGGING_LEVEL": "WARNING",
        }
        store = S3ObjectStore(s3_endpoint, "testing", "testing", bucket)
        store.ensure_ready()
        model = InferenceClient(target)
        model.wait_ready(120)
        with celery_worker(env, logs / "celery.log", queues=VL_QUEUES), environment(env):
            yield Platform(env, migrated_database, store, model, model_proxy, logs)
        model.close()
        model_proxy.stop()


def submit(platform: Platform, path: Path, tasks: list[TaskKind], **options: object) -> uuid.UUID:
    with path.open("rb") as fh:
        stored = platform.store.put_input(fh)
    with platform.db.transaction() as s:
        document = jobs.get_or_create_document(
            s,
            sha256=stored.sha256,
            size_bytes=stored.size,
            media_type="application/pdf",
            object_key=stored.key,
        )
        # reuse=false: these tests follow pages through the model worker, and the same documents come back
        # (tests/jobs/test_reuse.py tests reuse)
        options = {"reuse": "false", **options}
        job, _ = jobs.create_job(s, jobs.NewJob("tester", document.id, tasks, options=options))
        return job.id


def run_flow(job_id: uuid.UUID, timeout_s: float = 240) -> JobStatus:
    """Start the job in a flow run of this process (as a job runner does), then follow it to its end."""
    from workflows import flows

    for cached in (flows.settings, flows.context, flows.dispatch):
        cached.cache_clear()
    flows.start_jobs([job_id])
    return wait_finished(flows.context().db, job_id, timeout_s)


def wait_finished(db: Database, job_id: uuid.UUID, timeout_s: float = 240) -> JobStatus:
    from tests.support.helpers import wait_for

    def finished() -> JobStatus | None:
        with db.transaction() as s:
            status = JobStatus(jobs.get_job(s, job_id).status)
        return status if status.finished else None

    return wait_for(finished, timeout_s, f"job {job_id} to finish")


def test_a_multi_page_pdf_goes_through_the_whole_path(platform: Platform) -> None:
    job_id = submit(platform, FOUR_PAGES, [TaskKind.OCR, TaskKind.QA], question="What is the title?")
    assert run_flow(job_id) is JobStatus.SUCCEEDED
    with platform.db.transaction() as s:
        job = jobs.get_job(s, job_id)
        pages = page_results.pages(s, job_id)
        results = page_results.results(s, job_id)
        events = [(e.kind, e.status) for e in jobs.events(s, job_id)]
    assert (job.pages_total, job.pages_done, job.pages_failed) == (4, 4, 0)
    assert len(results) == 8
    for result in results:
        image = platform.store.get(pages[result.page_index].image_key)
        task = TaskKind(result.task)
        direct = platform.model.generate(
            InferenceRequest(
                task,
                [image],
                question="What is the title?" if task is TaskKind.QA else None,
                params=GenerationParams(MAX_NEW_TOKENS),
            )
        )
        assert result.output_text == artifact(task, direct.text).text
        assert result.generated_tokens == direct.generated_tokens
        assert result.model_revision == direct.model_revision
        assert result.prompt_template_version == direct.prompt_template_version
    assert events[0] == ("status", "queued")
    assert events[1] == ("status", "running")
    assert events[-1] == ("status", "succeeded")
    assert [kind for kind, _ in events].count("progress") == 4
    markdown = platform.store.get(job.outputs["ocr"]).decode()
    assert [f"<!-- page {n} -->" in markdown for n in range(1, 5)] == [True] * 4
    assert b'"answer"' in platform.store.get(job.outputs["qa"])


BAD = [
    ("005-libreoffice-writer-password/libreoffice-writer-password.pdf", "encrypted_document", "encrypted"),
    ("017-unreadable-meta-data/unreadablemetadata.pdf", "corrupt_document", "damaged"),
]


def test_documents_that_cannot_be_processed_fail_with_the_cause(
    platform: Platform, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    truncated = tmp_path / "truncated.pdf"
    truncated.write_bytes(FOUR_PAGES.read_bytes()[:2000])
    notes = tmp_path / "notes.pdf"
    notes.write_bytes(b"meeting notes, plain text")
    cases = [(CORPUS / path, code, words) for path, code, words in BAD] + [
        (truncated, "corrupt_document", "truncated"),
        (notes, "unsupported_document", "not a PDF"),
    ]
    for path, code, words in cases:
        assert_refused(platform, path, code, words)
    monkeypatch.setenv("DOCVL_MAX_PAGES", "3")
    assert_refused(platform, FOUR_PAGES, "too_many_pages", "4 pages, over the limit of 3")
    monkeypatch.setenv("DOCVL_MAX_DOCUMENT_BYTES", "1000")
    assert_refused(platform, FOUR_PAGES, "document_too_large", "over the limit of 1000")


def assert_refused(platform: Platform, path: Path, code: str, words: str) -> None:
    """The flow fails the job, and its row and last event name the cause."""
    job_id = submit(platform, path, [TaskKind.OCR])
    assert run_flow(job_id) is JobStatus.FAILED, path
    with platform.db.transaction() as s:
        job = jobs.get_job(s, job_id)
        last = jobs.events(s, job_id)[-1]
    assert job.error_code == code
    assert job.error_message is not None
    assert words in job.error_message
    assert last.status == "failed"
    assert last.data["error"]["code"] == code


def test_the_shared_corpus_is_processed_or_refused(platform: Platform) -> None:
    import json

    entries = json.loads((CORPUS / "files.json").read_text())["data"]
    refused = {path for path, _, _ in BAD}
    for entry in entries:
        if entry["path"] in refused or entry["pages"] > 20:  # the 117-page one: the killed-worker test
            continue
        job_id = submit(platform, CORPUS / entry["path"], [TaskKind.OCR])
        assert run_flow(job_id) is JobStatus.SUCCEEDED, entry["path"]
        with platform.db.transaction() as s:
            job = jobs.get_job(s, job_id)
        assert (job.pages_total, job.pages_done) == (entry["pages"], entry["pages"]), entry["path"]


def test_cancelling_revokes_the_pages_and_stops_the_flow(platform: Platform) -> None:
    import threading

    from docvl.jobs.finish import cancel
    from tests.support.helpers import wait_for
    from workflows import flows

    geotopo = CORPUS / "009-pdflatex-geotopo" / "GeoTopo-komprimiert.pdf"
    job_id = submit(platform, geotopo, [TaskKind.OCR])
    outcome: list[JobStatus] = []
    runner = threading.Thread(target=lambda: outcome.append(run_flow(job_id)))
    runner.start()

    def some_pages_done() -> bool:
        with platform.db.transaction() as s:
            return jobs.get_job(s, job_id).pages_done >= 2

    wait_for(some_pages_done, 120, "the first pages")
    cancelled = cancel(flows.context(), job_id, flows.dispatch())
    assert cancelled.changed
    runner.join(60)
    assert outcome == [JobStatus.CANCELLED]

    # A job submitted after the cancellation queues behind the revoked pages: once it is done, they are too.
    assert run_flow(submit(platform, CORPUS / "001-trivial" / "minimal-document.pdf", [TaskKind.OCR])) is (
        JobStatus.SUCCEEDED
    )
    with platform.db.transaction() as s:
        job = jobs.get_job(s, job_id)
    assert job.status == JobStatus.CANCELLED
    assert job.pages_done <= job.pages_total < 117, "the render stopped at its next page batch"
    again = cancel(flows.context(), job_id, flows.dispatch())
    assert not again.changed


def test_the_sweep_takes_each_document_in_once(platform: Platform, monkeypatch: pytest.MonkeyPatch) -> None:
    from workflows import flows

    monkeypatch.setenv("DOCVL_SWEEP_START", "inline")
    flows.settings.cache_clear()
    prefix = f"incoming-{uuid.uuid4().hex[:8]}/"
    one = (CORPUS / "001-trivial" / "minimal-document.pdf").read_bytes()
    two = (CORPUS / "002-trivial-libre-office-writer" / "002-trivial-libre-office-writer.pdf").read_bytes()
    platform.store.put(prefix + "a.pdf", one)
    platform.store.put(prefix + "b.pdf", two)

    def sweep(bucket: str, prefix: str, tasks: list[str]) -> int:
        made: int = flows.sweep_bucket(bucket, prefix, tasks)
        with platform.db.transaction() as s:
            for job in jobs.list_jobs(s, owner="sweep"):
                wait_finished(platform.db, job.id)
        return made

    assert sweep(platform.store.bucket, prefix, ["ocr"]) == 2
    assert sweep(platform.store.bucket, prefix, ["ocr"]) == 0
    platform.store.put(prefix + "renamed-copy-of-a.pdf", one)
    assert sweep(platform.store.bucket, prefix, ["ocr"]) == 0, "the same content under another name"
    platform.store.put(prefix + "notes.txt", b"not a document")
    assert sweep(platform.store.bucket, prefix, ["ocr"]) == 1
    assert sweep(platform.store.bucket, prefix, ["ocr", "chart2code"]) == 3, "other tasks: new jobs"
    with platform.db.transaction() as s:
        swept = [
            j for j in jobs.list_jobs(s, owner="sweep") if j.options.get("source", "").startswith(prefix)
        ]
    statuses = sorted((j.options["source"].removeprefix(prefix), tuple(j.tasks), j.status) for j in swept)
    assert statuses == [
        ("a.pdf", ("ocr",), "succeeded"),
        ("a.pdf", ("ocr", "chart2code"), "succeeded"),
        ("b.pdf", ("ocr",), "succeeded"),
        ("b.pdf", ("ocr", "chart2code"), "succeeded"),
        ("notes.txt", ("ocr",), "failed"),
        ("notes.txt", ("ocr", "chart2code"), "failed"),
    ]


def test_the_model_worker_away_for_a_while_then_back(platform: Platform) -> None:
    import threading

    from tests.support.helpers import wait_for

    job_id = submit(platform, FOUR_PAGES, [TaskKind.OCR])
    celery_log = platform.logs / "celery.log"
    retries_before = celery_log.read_text().count("retrying in")
    platform.model_proxy.stop()
    outcome: list[JobStatus] = []
    runner = threading.Thread(target=lambda: outcome.append(run_flow(job_id)))
    runner.start()
    wait_for(lambda: celery_log.read_text().count("retrying in") > retries_before, 60, "a page task to retry")
    platform.model_proxy.start()
    runner.join(120)
    assert outcome == [JobStatus.SUCCEEDED]
    with platform.db.transaction() as s:
        job = jobs.get_job(s, job_id)
        attempts = [r.attempts for r in page_results.results(s, job_id)]
    assert (job.pages_done, job.pages_failed) == (4, 0)
    assert max(attempts) > 1


def test_a_celery_worker_killed_mid_task_loses_nothing(platform: Platform) -> None:
    import re
    import signal
    import threading

    from tests.support.helpers import wait_for

    geotopo = CORPUS / "009-pdflatex-geotopo" / "GeoTopo-komprimiert.pdf"
    log = platform.logs / "victim.log"
    with celery_worker(platform.env, log, new_session=True) as victim:
        job_id = submit(platform, geotopo, [TaskKind.OCR])
        outcome: list[JobStatus] = []
        runner = threading.Thread(target=lambda: outcome.append(run_flow(job_id)))
        runner.start()

        def unfinished() -> set[str]:
            text = log.read_text()
            received = set(re.findall(r"Task docvl\.page\[([^\]]+)\] received", text))
            finished = set(re.findall(r"Task docvl\.page\[([^\]]+)\] succeeded", text))
            return received - finished if len(finished) >= 2 else set()

        held = wait_for(unfinished, 120, "the second worker to hold unfinished pages")
        os.killpg(victim.pid, signal.SIGKILL)  # the worker and its pool processes, mid-task
        victim.wait(30)
    assert held
    runner.join(240)
    with platform.db.transaction() as s:
        job = jobs.get_job(s, job_id)
        rows = page_results.results(s, job_id)
    failed = [(r.page_index, r.attempts, r.error_code, r.error_message) for r in rows if r.error_code]
    assert outcome == [JobStatus.SUCCEEDED], f"pages failed: {failed}; held by the victim: {sorted(held)}"
    assert (job.pages_total, job.pages_done, job.pages_failed) == (117, 117, 0)
    assert len(rows) == 117


def test_a_start_request_is_taken_by_a_job_runner_and_recorded_in_prefect(platform: Platform) -> None:
    import httpx

    from tests.support.dispatch import celery_dispatch

    job_id = submit(platform, FOUR_PAGES, [TaskKind.OCR])
    with celery_worker(platform.env, platform.logs / "job-runner.log", queues="jobs"):
        celery_dispatch(platform.env).start_jobs()
        assert wait_finished(platform.db, job_id, 120) is JobStatus.SUCCEEDED
    with platform.db.transaction() as s:
        job = jobs.get_job(s, job_id)
    assert job.flow_run_id is not None
    run = httpx.get(f"{platform.env['PREFECT_API_URL']}/flow_runs/{job.flow_run_id}", timeout=10).json()
    assert run["state_type"] == "COMPLETED"
    assert run["parameters"] == {"job_ids": [str(job_id)]}


def test_one_flow_run_starts_the_jobs_waiting_after_its_batch(platform: Platform) -> None:
    """Under load a flow run goes on with the jobs that wait once its batch is started (its creation costs
    more CPU than a job's start): with batches of one, three waiting jobs are started by one start
    request in one flow run, whose log in Prefect names each of them (sent by the runner as it stops, at
    the latest)."""

    from tests.support.dispatch import celery_dispatch

    job_ids = [submit(platform, FOUR_PAGES, [TaskKind.OCR]) for _ in range(3)]
    # the runner's log lines go in batches: every 60 s here, so they reach Prefect as the runner stops
    runner_env = {**platform.env, "DOCVL_START_BATCH": "1", "PREFECT_LOGGING_TO_API_BATCH_INTERVAL": "60"}
    with celery_worker(runner_env, platform.logs / "batch-of-one-runner.log", queues="jobs"):
        celery_dispatch(platform.env).start_jobs()
        for job_id in job_ids:
            assert wait_finished(platform.db, job_id, 120) is JobStatus.SUCCEEDED
    # stopped: the runner sent what its flow run's log still held
    with platform.db.transaction() as s:
        runs = {jobs.get_job(s, job_id).flow_run_id for job_id in job_ids}
    assert len(runs) == 1
    [run] = runs
    assert run is not None
    body = {"logs": {"flow_run_id": {"any_": [str(run)]}}}
    expected = {f"job {job_id}: started" for job_id in job_ids}
    assert expected <= (logged := _prefect_log(platform, body)), (
        f"not in the flow run's log: {expected - logged}"
    )


def test_a_flow_run_looking_for_jobs_takes_a_new_one_that_sent_no_start_request(platform: Platform) -> None:
    """While a flow run looks for jobs that arrive after its batch (claim_soon), it says so in Redis and new
    jobs send no start request (the API's start_new_job) but wake it: it claims them itself. When it stops
    looking it withdraws that (and claims once more)."""
    import redis

    from tests.support.dispatch import celery_dispatch
    from tests.support.helpers import wait_for
    from workflows import flows

    for cached in (flows.settings, flows.context, flows.dispatch):
        cached.cache_clear()
    dispatch = celery_dispatch(platform.env)
    broker = redis.Redis.from_url(platform.env["DOCVL_REDIS_URL"])
    mark, queue = f"{dispatch.namespace}:runner-looking", f"{dispatch.namespace}:jobs"
    claimed: list[uuid.UUID] = []
    looking = threading.Thread(target=lambda: claimed.extend(flows.claim_soon(within_s=60)))
    looking.start()
    try:
        wait_for(lambda: broker.exists(mark), 30, "the flow run to say it is looking")
        requests = broker.llen(queue)
        job_id = submit(platform, FOUR_PAGES, [TaskKind.OCR])
        dispatch.start_new_job()  # what the API does once the job is committed
        assert broker.llen(queue) == requests, "a start request was sent while a runner was looking"
    finally:
        looking.join(90)
    assert claimed == [job_id]
    assert not broker.exists(mark)
    # taken, or (when the runner's claim found the job before it waited) gone within WAKE_TTL_MS
    wait_for(lambda: not broker.llen(f"{dispatch.namespace}:runner-wake"), 10, "the wake-up to go")
    flows.release(claimed)
    assert run_flow(job_id) is JobStatus.SUCCEEDED


def _prefect_log(platform: Platform, body: Mapping[str, object]) -> set[str]:
    import httpx

    found = httpx.post(f"{platform.env['PREFECT_API_URL']}/logs/filter", json=body, timeout=10)
    found.raise_for_status()
    return {line["message"] for line in found.json()}


def test_a_page_that_fails_after_its_retries_leaves_a_partial_success(
    platform: Platform, tmp_path: Path
) -> None:
    import numpy as np
    from PIL import Image

    # A two-frame TIFF scan: a normal page, and a page whose image the model worker refuses (over 32 MiB).
    noise = np.random.default_rng(0).integers(0, 256, (3400, 3400, 3), dtype=np.uint8)
    frames = [Image.new("RGB", (800, 1000), "white"), Image.fromarray(noise)]
    scan = tmp_path / "scan.tiff"
    frames[0].save(scan, save_all=True, append_images=frames[1:])
    job_id = submit(platform, scan, [TaskKind.OCR])
    assert run_flow(job_id) is JobStatus.PARTIALLY_SUCCEEDED
    with platform.db.transaction() as s:
        job = jobs.get_job(s, job_id)
        results = {r.page_index: r for r in page_results.results(s, job_id)}
    assert (job.pages_total, job.pages_done, job.pages_failed) == (2, 1, 1)
    assert job.error_code == "some_pages_failed"
    assert results[0].output_text is not None
    assert results[1].error_code == "invalid_input"
    assert results[1].error_message is not None
    assert "over the limit" in results[1].error_message
    assert "page 2: failed" in platform.store.get(job.outputs["ocr"]).decode()


def _registered_without_dispatch(platform: Platform, job_id: uuid.UUID) -> None:
    """Start the job and store its pages, sending no page task (as if every task had been lost)."""
    from docvl.jobs.context import Context
    from docvl.jobs.render import RenderLimits, drive
    from tests.support.dispatch import RecordingDispatch

    ctx = Context(platform.db, platform.store)
    assert not drive(ctx, job_id, RenderLimits(max_pages=500, dpi=72), RecordingDispatch())


def reconcile_until_finished(platform: Platform, job_id: uuid.UUID, timeout_s: float = 120) -> JobStatus:
    """Run the reconciler flow (as its schedule would) until the job has finished."""
    from tests.support.helpers import wait_for
    from workflows import flows

    def finished() -> JobStatus | None:
        flows.reconcile()
        with platform.db.transaction() as s:
            status = JobStatus(jobs.get_job(s, job_id).status)
        return status if status.finished else None

    return wait_for(finished, timeout_s, f"the reconciler to finish job {job_id}")


def test_page_tasks_lost_without_a_trace_are_sent_again(
    platform: Platform, monkeypatch: pytest.MonkeyPatch
) -> None:
    from workflows import flows

    monkeypatch.setenv("DOCVL_REDISPATCH_AFTER_S", "1")
    flows.settings.cache_clear()
    try:
        job_id = submit(platform, FOUR_PAGES, [TaskKind.OCR])
        _registered_without_dispatch(platform, job_id)
        assert reconcile_until_finished(platform, job_id) is JobStatus.SUCCEEDED
    finally:
        flows.settings.cache_clear()
    with platform.db.transaction() as s:
        job = jobs.get_job(s, job_id)
        rows = page_results.results(s, job_id)
        recovered = [e.data for e in jobs.events(s, job_id) if e.kind == "recovered"]
    assert (job.pages_total, job.pages_done, job.pages_failed) == (4, 4, 0)
    assert len(rows) == 4
    assert recovered[0] == {"action": "redispatch", "page_tasks": 4}


def served_order(platform: Platform, queued: list[tuple[str, uuid.UUID]], broker_db: int) -> list[str]:
    """Queue every page task of the jobs, in order, before any worker looks (on a Redis database of the
    test's own), then let one worker process take them one at a time; who was served in which order."""
    from docvl.jobs.context import Context
    from docvl.jobs.pages import unfinished_work
    from tests.support.dispatch import celery_dispatch
    from tests.support.helpers import wait_for

    env = {**platform.env, "DOCVL_REDIS_URL": f"redis://127.0.0.1:6379/{broker_db}"}
    dispatch = celery_dispatch(env)
    dispatch.app.control.purge()
    sent = 0
    for _, job_id in queued:
        _registered_without_dispatch(platform, job_id)
        work = unfinished_work(Context(platform.db, platform.store), job_id)
        dispatch.send_pages(work)
        sent += len(work)
    with celery_worker(env, platform.logs / f"celery-order-{broker_db}.log", concurrency=1):

        def all_done() -> bool:
            with platform.db.transaction() as s:
                return sum(len(page_results.results(s, job_id)) for _, job_id in queued) == sent

        wait_for(all_done, 120, "every queued page")
    with platform.db.transaction() as s:
        order = sorted((r.created_at, who) for who, job_id in queued for r in page_results.results(s, job_id))
    return [who for _, who in order]


def test_interactive_jobs_go_before_batch_jobs(platform: Platform) -> None:
    """Page tasks of a priority-9 job queued after those of a priority-0 job are served first."""
    batch = submit(platform, FOUR_PAGES, [TaskKind.OCR])
    interactive = submit(platform, FOUR_PAGES, [TaskKind.OCR])
    with platform.db.transaction() as s:
        jobs.get_job(s, batch, lock=True).priority = 0
        jobs.get_job(s, interactive, lock=True).priority = 9
    order = served_order(
        platform, [("batch", batch), ("interactive", interactive)], 1 + (os.getpid() + 3) % 14
    )
    assert order == ["interactive"] * 4 + ["batch"] * 4


def test_task_queues_take_turns_within_a_priority(platform: Platform) -> None:
    """A question queued behind a document's OCR pages of the same priority is answered second, not after
    them all: a page worker takes its page queues in turn (within one priority)."""
    ocr = submit(platform, FOUR_PAGES, [TaskKind.OCR])
    qa = submit(platform, FOUR_PAGES, [TaskKind.QA], pages="1", question="What is this?")
    order = served_order(platform, [("ocr", ocr), ("qa", qa)], 1 + (os.getpid() + 5) % 14)
    assert order.index("qa") <= 1, order


def test_a_job_runner_killed_mid_render_is_resumed_by_the_reconciler(
    platform: Platform, monkeypatch: pytest.MonkeyPatch
) -> None:
    import signal

    from tests.support.dispatch import celery_dispatch
    from tests.support.helpers import wait_for
    from workflows import flows

    monkeypatch.setenv("DOCVL_CLAIM_STALE_S", "2")  # the dead runner's claim is free again after 2 s
    flows.settings.cache_clear()
    geotopo = CORPUS / "009-pdflatex-geotopo" / "GeoTopo-komprimiert.pdf"
    job_id = submit(platform, geotopo, [TaskKind.OCR])
    with celery_worker(
        platform.env, platform.logs / "doomed-runner.log", queues="jobs", new_session=True
    ) as victim:
        celery_dispatch(platform.env).start_jobs()

        def rendering() -> bool:
            with platform.db.transaction() as s:
                job = jobs.get_job(s, job_id)
                return job.rendered_at is None and job.pages_total >= 8

        wait_for(rendering, 120, "the runner to be mid-render")
        os.killpg(victim.pid, signal.SIGKILL)  # the runner and its pool processes, mid-render
        victim.wait(30)
    with platform.db.transaction() as s:
        before = {p.index: p.created_at for p in page_results.pages(s, job_id)}
        assert jobs.get_job(s, job_id).rendered_at is None
    assert 8 <= len(before) < 117
    try:
        with celery_worker(platform.env, platform.logs / "second-runner.log", queues="jobs"):
            assert reconcile_until_finished(platform, job_id, 240) is JobStatus.SUCCEEDED
    finally:
        flows.settings.cache_clear()
    with platform.db.transaction() as s:
        job = jobs.get_job(s, job_id)
        after = {p.index: p.created_at for p in page_results.pages(s, job_id)}
        rows = page_results.results(s, job_id)
    assert (job.pages_total, job.pages_done, job.pages_failed) == (117, 117, 0)
    assert len(rows) == len({(r.page_index, r.task) for r in rows}) == 117
    assert all(after[i] == created for i, created in before.items()), "pages stored before the kill kept"
    assert {"action": "resume_render"} in [e.data for e in jobs_events(platform, job_id, "recovered")]


def jobs_events(platform: Platform, job_id: uuid.UUID, kind: str) -> list[Any]:
    with platform.db.transaction() as s:
        return [e for e in jobs.events(s, job_id) if e.kind == kind]


def test_jobs_wait_while_prefect_is_away_and_start_when_it_is_back(platform: Platform) -> None:
    from tests.support.dispatch import celery_dispatch
    from tests.support.helpers import wait_for
    from tests.support.services import free_port

    job_id = submit(platform, FOUR_PAGES, [TaskKind.OCR])
    away = {**platform.env, "PREFECT_API_URL": f"http://127.0.0.1:{free_port()}/api"}  # nothing listens
    log = platform.logs / "runner-without-prefect.log"
    with celery_worker(away, log, queues="jobs"):
        celery_dispatch(platform.env).start_jobs()
        wait_for(lambda: "could not start 1 jobs" in log.read_text(), 120, "the runner to give up")
    with platform.db.transaction() as s:
        job = jobs.get_job(s, job_id)
    assert (job.status, job.claimed_at, job.pages_total) == (JobStatus.QUEUED, None, 0), (
        "untouched, unclaimed"
    )
    with celery_worker(platform.env, platform.logs / "runner-with-prefect.log", queues="jobs"):
        celery_dispatch(platform.env).start_jobs()  # what the reconciler asks once back
        assert wait_finished(platform.db, job_id, 120) is JobStatus.SUCCEEDED


def test_the_flow_runner_reconciles_on_its_own(platform: Platform) -> None:
    """`docvl flows serve` runs a reconciler pass every DOCVL_RECONCILE_INTERVAL_S: a job whose page tasks
    were all lost finishes with nobody calling the reconciler here."""
    import subprocess
    import sys

    from tests.support.helpers import ROOT, stop_process

    job_id = submit(platform, FOUR_PAGES, [TaskKind.OCR])
    _registered_without_dispatch(platform, job_id)
    log = platform.logs / "flows-serve-reconciling.log"
    env = {**os.environ, **platform.env, "DOCVL_RECONCILE_INTERVAL_S": "1", "DOCVL_REDISPATCH_AFTER_S": "1"}
    with log.open("wb") as out:
        runner = subprocess.Popen(
            [sys.executable, "-m", "docvl", "flows", "serve"],
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        assert wait_finished(platform.db, job_id, 120) is JobStatus.SUCCEEDED
        assert runner.poll() is None, log.read_text()
    finally:
        stop_process(runner)
    assert {"action": "redispatch", "page_tasks": 4} in [
        e.data for e in jobs_events(platform, job_id, "recovered")
    ]


@dataclass
class LayoutWorker:
    """The scripted DeepSeek-OCR-2 worker (tests/support/scripted.py: a TEST-ONLY logits hook makes the tiny
    random model write a real grounded page) behind a proxy, and a page worker on the layout queue that
    reaches it there: killing the worker and starting another one behind the same proxy is a restart."""

    proxy: TcpProxy
    process: subprocess.Popen[bytes]
    start: Callable[[], tuple[subprocess.Popen[bytes], str]]


@pytest.fixture(scope="module")
def layout_worker(platform: Platform, tiny_ocr2_dir: Path) -> Iterator[LayoutWorker]:
    script = platform.logs / "layout-script.json"
    script.write_text(json.dumps({TaskKind.LAYOUT.value: LAYOUT_PAGE}))
    with ExitStack() as stack:
        started = itertools.count()

        def start() -> tuple[subprocess.Popen[bytes], str]:
            log = platform.logs / f"layout-worker-{next(started)}.log"
            process, target = stack.enter_context(scripted_worker_process(tiny_ocr2_dir, script, log))
            with InferenceClient(target) as client:
                client.wait_ready(120)
            return process, target

        process, target = start()
        host, port = target.split(":")
        proxy = TcpProxy(host, int(port)).start()
        stack.callback(proxy.stop)
        env = {
            **platform.env,
            "DOCVL_MODEL_WORKER_TARGETS": f"127.0.0.1:{proxy.port}",
            "DOCVL_MAX_NEW_TOKENS_BY_TASK": json.dumps({TaskKind.LAYOUT.value: 512}),
            # the pages retry while a new worker loads (retries double from 0.5 s up to 60 s: ~7 minutes)
            "DOCVL_TASK_RETRIES": "12",
        }
        stack.enter_context(celery_worker(env, platform.logs / "layout-celery.log", queues="layout"))
        yield LayoutWorker(proxy, process, start)


def test_the_layout_worker_killed_mid_job_loses_nothing(
    platform: Platform, layout_worker: LayoutWorker
) -> None:
    """kill -9 of the DeepSeek-OCR-2 worker while a 4-page layout job runs, another one started behind the
    same address: the job succeeds with one layout result per page and its document.json."""
    import signal
    import threading

    from tests.support.helpers import wait_for

    job_id = submit(platform, FOUR_PAGES, [TaskKind.LAYOUT])
    celery_log = platform.logs / "layout-celery.log"
    outcome: list[JobStatus] = []
    runner = threading.Thread(target=lambda: outcome.append(run_flow(job_id, 400)))
    runner.start()

    def first_page_done() -> bool:
        with platform.db.transaction() as s:
            return jobs.get_job(s, job_id).pages_done >= 1

    wait_for(first_page_done, 240, "a first layout page")
    layout_worker.process.send_signal(signal.SIGKILL)  # mid-job: the other pages are queued or generating
    layout_worker.process.wait(30)
    wait_for(lambda: "retrying in" in celery_log.read_text(), 120, "a layout page task to retry")
    layout_worker.process, target = layout_worker.start()
    host, port = target.split(":")
    layout_worker.proxy.target = (host, int(port))
    runner.join(420)
    assert outcome == [JobStatus.SUCCEEDED]
    with platform.db.transaction() as s:
        job = jobs.get_job(s, job_id)
        rows = page_results.results(s, job_id)
    assert (job.pages_total, job.pages_done, job.pages_failed) == (4, 4, 0)
    assert sorted(r.page_index for r in rows) == [0, 1, 2, 3], "one layout result per page, none twice"
    assert max(r.attempts for r in rows) > 1
    assert job.outputs is not None
    assert [key.rsplit("/", 1)[-1] for key in job.outputs["layout"]] == [
        "document.json",
        "layout.md",
        "chunks.jsonl",
    ]
    document = json.loads(platform.store.get(job.outputs["layout"][0]))
    assert [page["number"] for page in document["pages"]] == [1, 2, 3, 4]

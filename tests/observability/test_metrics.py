"""Prometheus metrics of every deployable, scraped over HTTP after real jobs ran on the platform of
tests/support/platform.py: the model worker, the Celery page worker (two pool processes, summed in
multiprocess mode), the job runner and the flow runner (with the platform gauges) in their own processes; the
REST API and the gRPC gateway in this process, as their tests run them, with /metrics served here."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import httpx
import pytest
import redis
from fastapi.testclient import TestClient
from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import func, select

from docvl.db.models import Job
from docvl.errors import InvalidInput
from docvl.inference.client import InferenceClient
from docvl.inference.types import InferenceRequest
from docvl.job_status import JobStatus
from docvl.namespace import redis_prefix
from docvl.observability import metrics
from docvl.observability.metrics import model
from docvl.observability.metrics.platform import PlatformCollector, queue_keys
from docvl.tasks import TaskKind
from docvl.v1 import jobs_pb2 as pb
from docvl.v1 import jobs_pb2_grpc as pb_grpc
from services.api.app import create_app
from services.gateway.server import start
from services.gateway.settings import GatewaySettings
from tests.support.helpers import ROOT, wait_for
from tests.support.platform import FrontDoorPlatform
from tests.support.services import free_port

pytestmark = pytest.mark.slow
FOUR_PAGES = ROOT / "tests" / "corpus" / "pdf-samples" / "004-pdflatex-4-pages" / "pdflatex-4-pages.pdf"
CHART = (ROOT / "docvl" / "samples" / "chart.png").read_bytes()
WATCH = "docvl.v1.JobService/WatchJob"


class Scrape:
    """One scrape of a /metrics endpoint, parsed with prometheus_client's own parser."""

    def __init__(self, url: str) -> None:
        response = httpx.get(url, timeout=10)
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/plain")
        self.samples: dict[tuple[str, frozenset[tuple[str, str]]], float] = {}
        for family in text_string_to_metric_families(response.text):
            for sample in family.samples:
                self.samples[(sample.name, frozenset(sample.labels.items()))] = sample.value

    def value(self, name: str, **labels: str) -> float:
        """The sample's value; 0 when the series does not exist yet."""
        return self.samples.get((name, frozenset(labels.items())), 0.0)

    def names(self) -> set[str]:
        return {name for name, _ in self.samples}


@pytest.fixture(scope="module")
def local_metrics() -> Iterator[str]:
    """/metrics of this process: the REST API's and the gateway's, as `docvl api` and `docvl gateway`
    serve them on their own ports."""
    server = metrics.serve(free_port())
    assert server is not None
    yield server.url
    server.close()


def scrape_all(frontdoor: FrontDoorPlatform, local: str) -> dict[str, Scrape]:
    return {"local": Scrape(local), **{name: Scrape(url) for name, url in frontdoor.metrics.items()}}


def delta(
    after: dict[str, Scrape], before: dict[str, Scrape], process: str, name: str, **labels: str
) -> float:
    return after[process].value(name, **labels) - before[process].value(name, **labels)


def test_a_job_moves_the_metrics_of_every_process(frontdoor: FrontDoorPlatform, local_metrics: str) -> None:
    before = scrape_all(frontdoor, local_metrics)
    key = frontdoor.key(f"metrics-{uuid.uuid4().hex[:8]}")
    with TestClient(create_app()) as api, FOUR_PAGES.open("rb") as document:
        response = api.post(
            "/v1/jobs",
            headers={"Authorization": f"Bearer {key}"},
            files={"file": (FOUR_PAGES.name, document)},
            data={"tasks": ["ocr"]},
        )
        assert response.status_code == 202, response.text
        job_id = uuid.UUID(response.json()["id"])
        assert (
            api.get(f"/v1/jobs/{uuid.uuid4()}", headers={"Authorization": f"Bearer {key}"}).status_code == 404
        )
        assert api.get("/no/such/path").status_code == 404
    assert frontdoor.wait_finished(job_id) == JobStatus.SUCCEEDED

    def settled() -> dict[str, Scrape] | None:
        now = scrape_all(frontdoor, local_metrics)
        done = delta(now, before, "worker", "docvl_worker_page_tasks_total", task="ocr", outcome="succeeded")
        return now if done >= 4 else None

    after = wait_for(settled, 30, "the page workers' counters")

    # REST API: by route template and status; the raw paths never become labels.
    submit = {"route": "/v1/jobs", "method": "POST"}
    assert delta(after, before, "local", "docvl_api_requests_total", **submit, status="202") == 1
    assert delta(after, before, "local", "docvl_api_request_duration_seconds_count", **submit) == 1
    assert delta(after, before, "local", "docvl_api_received_bytes_total") >= FOUR_PAGES.stat().st_size
    assert after["local"].value("docvl_api_uploads_in_flight") == 0
    one_job = {"route": "/v1/jobs/{job_id}", "method": "GET", "status": "404"}
    assert delta(after, before, "local", "docvl_api_requests_total", **one_job) == 1
    unmatched = {"route": "<unmatched>", "method": "GET", "status": "404"}
    assert delta(after, before, "local", "docvl_api_requests_total", **unmatched) == 1
    assert not any("/no/such/path" in str(labels) for _, labels in after["local"].samples)

    # Celery page worker: the sum over its two pool processes, each of which wrote its own files.
    ocr = {"task": "ocr"}
    assert delta(after, before, "worker", "docvl_worker_page_tasks_total", **ocr, outcome="succeeded") == 4
    assert delta(after, before, "worker", "docvl_worker_page_task_duration_seconds_count", **ocr) == 4
    assert len(pool_processes(frontdoor.logs / "worker-metrics")) >= 2

    # Model worker: four requests, in batches; tokens generated; no GPU gauges on the CPU.
    model = "model-worker"
    assert delta(after, before, model, "docvl_model_requests_total", outcome="completed") == 4
    assert delta(after, before, model, "docvl_model_batch_size_sum") == 4
    batches = delta(after, before, model, "docvl_model_batch_size_count")
    assert 1 <= batches <= 4
    assert delta(after, before, model, "docvl_model_generation_seconds_count") == batches
    assert delta(after, before, model, "docvl_model_vision_seconds_count") == batches
    assert delta(after, before, model, "docvl_model_preprocessing_seconds_count") == 4
    assert delta(after, before, model, "docvl_model_generated_tokens_total") > 0
    assert delta(after, before, model, "docvl_model_image_tokens_total") > 0
    assert after[model].value("docvl_model_tokens_per_second") > 0
    assert after[model].value("docvl_model_requests_queued") == 0
    assert not any(name.startswith("docvl_model_gpu_memory") for name in after[model].names())

    # The job runner started it; whichever process finished it counted its end.
    assert delta(after, before, "job-runner", "docvl_job_starts_total", outcome="started") == 1
    ended = sum(
        delta(after, before, process, "docvl_jobs_finished_total", status="succeeded")
        for process in ("worker", "job-runner", "flows")
    )
    assert ended == 1

    # Platform gauges, read from Postgres and Redis at scrape time by the flow runner.
    platform = Scrape(frontdoor.metrics["flows"])
    assert platform.value("docvl_platform_up", source="database") == 1
    assert platform.value("docvl_platform_up", source="broker") == 1
    with frontdoor.db.transaction() as s:
        succeeded = s.execute(
            select(func.count()).select_from(Job).where(Job.status == JobStatus.SUCCEEDED)
        ).scalar_one()
    assert platform.value("docvl_platform_jobs", status="succeeded") == succeeded >= 1
    assert ("docvl_platform_queue_length", frozenset({("queue", "ocr")})) in platform.samples
    assert ("docvl_platform_oldest_queued_job_age_seconds", frozenset()) in platform.samples


def pool_processes(directory: Path) -> set[str]:
    """The pids that wrote counter files in a worker's multiprocess directory."""
    return {path.stem.rsplit("_", 1)[1] for path in directory.glob("counter_*.db")}


def test_gateway_calls_by_method_and_code_and_its_open_streams(
    frontdoor: FrontDoorPlatform, local_metrics: str
) -> None:
    gateway, port = start(GatewaySettings(host="127.0.0.1", port=0), frontdoor.service)
    bearer = (("authorization", f"Bearer {frontdoor.key(f'metrics-{uuid.uuid4().hex[:8]}')}"),)
    before = Scrape(local_metrics)
    try:
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            stub: Any = pb_grpc.JobServiceStub(channel)
            job = stub.SubmitJob(
                pb.SubmitJobRequest(content=CHART, tasks=["ocr"]), metadata=bearer, timeout=60
            )
            with pytest.raises(grpc.RpcError) as missing:
                stub.GetJob(pb.GetJobRequest(job_id=str(uuid.uuid4())), metadata=bearer, timeout=10)
            assert missing.value.code() == grpc.StatusCode.NOT_FOUND
            with pytest.raises(grpc.RpcError):
                stub.GetJob(pb.GetJobRequest(job_id=job.id), timeout=10)  # no key
            open_while_watching: list[float] = []
            for _ in stub.WatchJob(pb.WatchJobRequest(job_id=job.id), metadata=bearer, timeout=180):
                if not open_while_watching:
                    open_while_watching.append(
                        Scrape(local_metrics).value("docvl_gateway_open_streams", method=WATCH)
                    )
    finally:
        gateway.stop(5)
    after = Scrape(local_metrics)

    def moved(method: str, code: str) -> float:
        labels = {"method": f"docvl.v1.JobService/{method}", "code": code}
        return after.value("docvl_gateway_calls_total", **labels) - before.value(
            "docvl_gateway_calls_total", **labels
        )

    assert moved("SubmitJob", "OK") == 1
    assert moved("GetJob", "NOT_FOUND") == 1
    assert moved("GetJob", "UNAUTHENTICATED") == 1
    assert moved("WatchJob", "OK") == 1
    assert open_while_watching == [1]
    assert after.value("docvl_gateway_open_streams", method=WATCH) == 0
    count = "docvl_gateway_call_duration_seconds_count"
    assert after.value(count, method=WATCH) - before.value(count, method=WATCH) == 1


def test_platform_gauges_sum_every_priority_and_survive_a_dead_database(frontdoor: FrontDoorPlatform) -> None:
    queue = f"metrics-test-{uuid.uuid4().hex[:8]}"  # a queue no worker takes from
    broker = redis.Redis.from_url(frontdoor.env["DOCVL_REDIS_URL"])
    keys = queue_keys(queue)
    assert keys[:2] == [queue, f"{queue}:1"]
    assert keys[-1] == f"{queue}:9"
    prefix = redis_prefix(frontdoor.settings.namespace)  # the stack's keys; another stack's are not counted
    try:
        broker.rpush(prefix + queue, "a")
        broker.rpush(f"{prefix}{queue}:3", "b", "c")
        broker.rpush(f"{prefix}{queue}:9", "d")
        broker.rpush(f"elsewhere:{queue}", "e")
        live = PlatformCollector(
            frontdoor.db.url, frontdoor.env["DOCVL_REDIS_URL"], [queue], 2.0, key_prefix=prefix
        )
        samples = {(s.name, tuple(s.labels.values())): s.value for f in live.collect() for s in f.samples}
        assert samples[("docvl_platform_queue_length", (queue,))] == 4
        assert samples[("docvl_platform_up", ("database",))] == 1
    finally:
        broker.delete(*(prefix + key for key in keys), f"elsewhere:{queue}")
        broker.close()

    closed = free_port()  # nothing listens there
    dead = PlatformCollector(
        f"postgresql+psycopg://postgres@127.0.0.1:{closed}/docvl",
        f"redis://127.0.0.1:{closed}/0",
        [queue],
        1.0,
    )
    started = time.monotonic()
    samples = {(s.name, tuple(s.labels.values())): s.value for f in dead.collect() for s in f.samples}
    assert time.monotonic() - started < 10
    assert samples[("docvl_platform_up", ("database",))] == 0
    assert samples[("docvl_platform_up", ("broker",))] == 0
    assert not any(name == "docvl_platform_jobs" for name, _ in samples)


def test_gpu_memory_gauges_read_their_callbacks_at_scrape_time() -> None:
    """What the model worker registers on CUDA (no GPU here: the callbacks stand in for torch.cuda's)."""
    readings = iter([(1000, 4000), (1500, 4000)])
    current = next(readings)
    registry = CollectorRegistry()
    registry.register(model.GpuMemory(lambda: current[0], lambda: current[1]))
    assert registry.get_sample_value("docvl_model_gpu_memory_allocated_bytes") == 1000
    current = next(readings)
    assert registry.get_sample_value("docvl_model_gpu_memory_allocated_bytes") == 1500
    assert registry.get_sample_value("docvl_model_gpu_memory_reserved_bytes") == 4000


def test_model_worker_errors_are_counted_by_code(frontdoor: FrontDoorPlatform) -> None:
    url = frontdoor.metrics["model-worker"]
    errors = "docvl_model_errors_total"
    before = Scrape(url)
    with InferenceClient(frontdoor.settings.model_worker_targets[0]) as client:
        with pytest.raises(InvalidInput):
            client.generate(InferenceRequest(task=TaskKind.OCR, images=[]), timeout=30)
        with pytest.raises(InvalidInput):
            client.generate(InferenceRequest(task=TaskKind.OCR, images=[b"not an image"]), timeout=30)
    after = Scrape(url)
    assert after.value(errors, code="invalid_input") - before.value(errors, code="invalid_input") == 2

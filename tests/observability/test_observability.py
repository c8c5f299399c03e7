"""Traces and logs across real processes: one job submitted over REST to a `docvl api` process, run by the
platform's job runner, Celery page worker and model worker, every one exporting its spans over OTLP/HTTP to
the receiver in this process (tests/support/otlp.py) and writing JSON lines to its log file."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from docvl.client import Client
from docvl.jobs.views import JobView
from docvl.v1 import jobs_pb2 as pb
from docvl.v1 import jobs_pb2_grpc as pb_grpc
from services.gateway.server import start
from services.gateway.settings import GatewaySettings
from tests.support.helpers import ROOT, png, stop_process, wait_for
from tests.support.otlp import ReceivedSpan
from tests.support.platform import FrontDoorPlatform, gateway_process
from tests.support.services import free_port

SERVICES = {"docvl-api", "docvl-job-runner", "docvl-worker", "docvl-model-worker"}
TASKS = ["ocr", "qa"]


@pytest.fixture(scope="module")
def api_url(frontdoor: FrontDoorPlatform) -> Iterator[str]:
    """`docvl api` in its own process, on the platform, tracing to its receiver."""
    port = free_port()
    log_path = frontdoor.logs / "api.log"
    env = {**os.environ, **frontdoor.env, "OTEL_SERVICE_NAME": "docvl-api"}
    with log_path.open("wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "docvl", "api", "--port", str(port)],
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    url = f"http://127.0.0.1:{port}"

    def ready() -> bool:
        if process.poll() is not None:
            raise AssertionError(f"the API exited:\n{log_path.read_text()}")
        try:
            urllib.request.urlopen(url + "/readyz", timeout=1).close()
            return True
        except OSError:
            return False

    try:
        wait_for(ready, 60, "the API")
        yield url
    finally:
        stop_process(process)


@pytest.fixture(scope="module")
def key(frontdoor: FrontDoorPlatform) -> str:
    return frontdoor.key(f"traced-{uuid.uuid4().hex[:8]}")


@pytest.fixture(scope="module")
def job(api_url: str, key: str) -> JobView:
    """A finished job of one page and two tasks (two page tasks), submitted over REST."""
    with Client(api_url, key) as client:
        submitted = client.submit(png(11), TASKS, question="What is shown?", filename="page.png")
        done = client.wait(submitted.id, timeout_s=120)
    assert done.status == "succeeded", done
    return done


def _whole(spans: list[ReceivedSpan], services: set[str], generated: int) -> bool:
    """Every process's spans are in, the finalisation's too, and every parent has arrived."""
    ids = {s.span_id for s in spans}
    return (
        {s.service for s in spans} >= services
        and any(s.name == "docvl.finalize" for s in spans)
        and sum(s.name == "docvl.generate" for s in spans) == generated
        and all(s.parent_id is None or s.parent_id in ids for s in spans)
    )


def _trace(
    frontdoor: FrontDoorPlatform, trace_id: str, services: set[str], generated: int
) -> list[ReceivedSpan]:
    def arrived() -> list[ReceivedSpan] | None:
        found = frontdoor.traces.trace(trace_id)
        return found if _whole(found, services, generated) else None

    try:
        return wait_for(arrived, 60, "the job's spans from every process", interval=0.2)
    except AssertionError:
        spans = frontdoor.traces.trace(trace_id)
        ids = {s.span_id for s in spans}
        orphans = [(s.service, s.name) for s in spans if s.parent_id and s.parent_id not in ids]
        seen = sorted({(s.service, s.name) for s in spans})
        raise AssertionError(f"trace {trace_id} incomplete: orphans {orphans}, spans {seen}") from None


def _ancestors(span: ReceivedSpan, spans: list[ReceivedSpan]) -> list[ReceivedSpan]:
    by_id = {s.span_id: s for s in spans}
    chain = []
    while span.parent_id is not None:
        span = by_id[span.parent_id]
        chain.append(span)
    return chain


def test_one_trace_holds_the_job_across_every_process(frontdoor: FrontDoorPlatform, job: JobView) -> None:
    assert job.trace_id is not None
    assert len(job.trace_id) == 32
    spans = _trace(frontdoor, job.trace_id, SERVICES, len(TASKS))
    roots = [s for s in spans if s.parent_id is None]
    assert len(roots) == 1, roots
    submission = roots[0]
    assert (submission.service, submission.name) == ("docvl-api", "POST /v1/jobs")
    assert submission.attributes["docvl.job_id"] == str(job.id)

    def ancestors(span: ReceivedSpan) -> list[ReceivedSpan]:
        return _ancestors(span, spans)

    start = next(s for s in spans if s.name == "docvl.job.start")
    assert start.service == "docvl-job-runner"
    assert start.links, "the job's start links its flow's task run"
    pages = [s for s in spans if s.name == "run/docvl.page"]
    assert {(s.service, s.attributes["docvl.page"], s.attributes["docvl.task"]) for s in pages} == {
        ("docvl-worker", 0, task) for task in TASKS
    }
    for page in pages:
        assert page.attributes["docvl.job_id"] == str(job.id)
        chain = ancestors(page)
        assert start in chain
        assert chain[-1] == submission
    for name in ("docvl.preprocess", "docvl.batch_wait", "docvl.generate"):
        found = [s for s in spans if s.name == name]
        assert len(found) == len(TASKS), name
        for span in found:
            chain = ancestors(span)
            assert span.service == "docvl-model-worker"
            assert chain[0].service == "docvl-model-worker"
            assert chain[0].attributes["docvl.job_id"] == str(job.id)
            assert any(s in pages for s in chain), f"{name} is not under a page task"
    assert all(int(str(s.attributes["docvl.batch_size"])) >= 1 for s in spans if s.name == "docvl.generate")
    assert {s.service for s in spans if s.name == "docvl.page.write"} == {"docvl-worker"}


def test_a_grpc_submission_roots_its_job_trace_in_the_gateway(frontdoor: FrontDoorPlatform, key: str) -> None:
    env = {**os.environ, **frontdoor.env, "OTEL_SERVICE_NAME": "docvl-gateway"}
    with (
        gateway_process(env, frontdoor.logs / "gateway.log") as (_, port),
        grpc.insecure_channel(f"127.0.0.1:{port}") as channel,
    ):
        stub = pb_grpc.JobServiceStub(channel)
        request = pb.SubmitJobRequest(content=png(12), tasks=["ocr"])
        submitted = stub.SubmitJob(request, metadata=(("x-api-key", key),), timeout=60)
        frontdoor.wait_finished(uuid.UUID(submitted.id))
        done = stub.GetJob(pb.GetJobRequest(job_id=submitted.id), metadata=(("x-api-key", key),), timeout=30)
    assert done.trace_id == submitted.trace_id
    services = {"docvl-gateway", "docvl-job-runner", "docvl-worker", "docvl-model-worker"}
    spans = _trace(frontdoor, done.trace_id, services, 1)
    (root,) = [s for s in spans if s.parent_id is None]
    assert (root.service, root.name) == ("docvl-gateway", "/docvl.v1.JobService/SubmitJob")
    (page,) = [s for s in spans if s.name == "run/docvl.page"]
    assert _ancestors(page, spans)[-1] == root


def test_the_gateway_returns_the_trace_id_too(frontdoor: FrontDoorPlatform, job: JobView, key: str) -> None:
    gateway, port = start(GatewaySettings(host="127.0.0.1", port=0), frontdoor.service)
    try:
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            found = pb_grpc.JobServiceStub(channel).GetJob(
                pb.GetJobRequest(job_id=str(job.id)), metadata=(("x-api-key", key),), timeout=30
            )
    finally:
        gateway.stop(0)
    assert found.trace_id == job.trace_id


def _lines(path: Path, job_id: str) -> list[dict[str, object]]:
    """Every line of the log naming the job, each of which must be a JSON object carrying its id."""
    found = []
    for line in path.read_text().splitlines():
        if job_id in line:
            record = json.loads(line)
            assert record.get("job_id") == job_id, line
            found.append(record)
    return found


def test_one_job_id_greps_its_whole_path_from_the_logs(frontdoor: FrontDoorPlatform, job: JobView) -> None:
    job_id = str(job.id)
    logs = frontdoor.logs

    def messages(name: str) -> list[str]:
        return [str(r["message"]) for r in _lines(logs / name, job_id)]

    assert any(m.startswith("job submitted") for m in messages("api.log"))
    runner = messages("job-runner.log")
    assert any(m.startswith("job rendered") for m in runner)  # a new job's start is logged with its render
    page_lines = [r for r in _lines(logs / "celery.log", job_id) if str(r["message"]).startswith("page ")]
    assert {(r["page"], r["task"]) for r in page_lines} == {(0, t) for t in TASKS}
    assert all(r["trace_id"] == job.trace_id for r in page_lines)
    model = [r for r in _lines(logs / "model-worker.log", job_id) if str(r["message"]).startswith("request")]
    assert {(r["page"], r["task"], r["service"]) for r in model} == {
        (0, t, "docvl-model-worker") for t in TASKS
    }
    finished = [m for name in ("celery.log", "job-runner.log") for m in messages(name)]
    assert any(m.startswith("job finished: succeeded") for m in finished)

"""The gRPC job gateway in this process, in front of the real platform (tests/support/platform.py):
submissions by upload and by storage URI, watching, results, ownership, refusals, idempotency, cancelling,
listing, health, reflection and shutdown; and `docvl gateway` as a process."""

from __future__ import annotations

import copy
import dataclasses
import os
import signal
import threading
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, cast

import grpc
import httpx
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import ProtoReflectionDescriptorDatabase
from prometheus_client.parser import text_string_to_metric_families

from docvl.v1 import jobs_pb2 as pb
from docvl.v1 import jobs_pb2_grpc as pb_grpc
from services.gateway.server import SERVICE_NAME, Gateway, start
from services.gateway.settings import GatewaySettings
from tests.support.helpers import ROOT, wait_for
from tests.support.platform import FrontDoorPlatform, gateway_process
from tests.support.services import free_port

pytestmark = pytest.mark.slow

CHART = (ROOT / "docvl" / "samples" / "chart.png").read_bytes()
CORPUS = ROOT / "tests" / "corpus" / "pdf-samples"
FOUR_PAGES = CORPUS / "004-pdflatex-4-pages" / "pdflatex-4-pages.pdf"
MANY_PAGES = CORPUS / "009-pdflatex-geotopo" / "GeoTopo-komprimiert.pdf"  # 117 pages
DEADLINE_S = 180.0


@pytest.fixture(scope="module")
def gateway(frontdoor: FrontDoorPlatform) -> Iterator[Gateway]:
    gateway, _ = start(GatewaySettings(host="127.0.0.1", port=0), frontdoor.service)
    yield gateway
    gateway.stop(1)


@pytest.fixture(scope="module")
def channel(gateway: Gateway) -> Iterator[grpc.Channel]:
    with grpc.insecure_channel(f"127.0.0.1:{gateway.port}") as channel:
        yield channel


@pytest.fixture(scope="module")
def stub(channel: grpc.Channel) -> Any:
    return pb_grpc.JobServiceStub(channel)


def owner() -> str:
    return f"gw-{uuid.uuid4().hex[:10]}"


def auth(key: str) -> tuple[tuple[str, str]]:
    return (("x-api-key", key),)


def refused(call: Callable[[], object]) -> tuple[grpc.StatusCode, str]:
    """The status code and message of a call that must fail."""
    with pytest.raises(grpc.RpcError) as info:
        call()
    error = cast(grpc.Call, info.value)
    return error.code(), error.details() or ""


def submit_chart(stub: Any, key: str, **fields: Any) -> pb.Job:
    request = pb.SubmitJobRequest(content=CHART, tasks=["ocr"], **fields)
    return cast(pb.Job, stub.SubmitJob(request, metadata=auth(key), timeout=60))


def listed(stub: Any, key: str) -> list[str]:
    response = stub.ListJobs(pb.ListJobsRequest(), metadata=auth(key), timeout=30)
    return [job.id for job in response.jobs]


def finish(frontdoor: FrontDoorPlatform, *jobs: pb.Job) -> None:
    """Let the test's jobs end before the next test, so that none queues behind another's pages."""
    for job in jobs:
        frontdoor.wait_finished(uuid.UUID(job.id), DEADLINE_S)


def test_a_png_is_watched_to_completion_and_its_results_read(frontdoor: FrontDoorPlatform, stub: Any) -> None:
    bearer = (("authorization", f"Bearer {frontdoor.key(owner())}"),)
    request = pb.SubmitJobRequest(content=CHART, tasks=["ocr", "qa"], question="What does the chart show?")
    job = stub.SubmitJob(request, metadata=bearer, timeout=60)
    assert job.status == "queued"
    assert list(job.tasks) == ["ocr", "qa"]
    assert job.question == "What does the chart show?"
    assert job.priority == 5
    assert job.HasField("created_at")
    assert not job.HasField("error")
    assert not job.HasField("finished_at")

    updates = list(stub.WatchJob(pb.WatchJobRequest(job_id=job.id), metadata=bearer, timeout=DEADLINE_S))

    assert updates, "the stream ended without an update"
    ids = [u.event_id for u in updates]
    assert ids == sorted(set(ids))
    last = updates[-1]
    assert (last.kind, last.event_status, last.job.status) == ("status", "succeeded", "succeeded")
    assert (last.job.progress.pages_total, last.job.progress.pages_done) == (1, 1)
    assert last.job.HasField("finished_at")
    progress = [u for u in updates if u.kind == "progress"]
    assert [u.page_index for u in progress] == [0]
    assert all(u.job.id == job.id for u in updates)

    result = stub.GetJobResult(pb.GetJobRequest(job_id=job.id), metadata=bearer, timeout=30)
    assert result.job.status == "succeeded"
    assert sorted((p.page, p.task) for p in result.pages) == [(1, "ocr"), (1, "qa")]
    for page in result.pages:
        assert page.model_id
        assert page.model_revision
        assert page.HasField("text")
        assert not page.HasField("error")
        assert page.attempts >= 1
    assert {o.task for o in result.outputs} == {"ocr", "qa"}
    assert all(o.name and o.key and o.url.startswith("http") for o in result.outputs)

    # Resuming after the last event sends nothing more: the job has ended.
    after = pb.WatchJobRequest(job_id=job.id, after_event_id=last.event_id)
    assert list(stub.WatchJob(after, metadata=bearer, timeout=30)) == []


def test_a_pdf_named_by_its_storage_uri_is_processed(frontdoor: FrontDoorPlatform, stub: Any) -> None:
    key = frontdoor.key(owner())
    object_key = f"incoming/{uuid.uuid4().hex}.pdf"
    frontdoor.store.put(object_key, FOUR_PAGES.read_bytes(), content_type="application/pdf")
    uri = f"s3://{frontdoor.settings.s3_bucket}/{object_key}"

    job = stub.SubmitJob(pb.SubmitJobRequest(source_uri=uri, tasks=["ocr"]), metadata=auth(key), timeout=60)
    assert frontdoor.wait_finished(uuid.UUID(job.id), DEADLINE_S) == "succeeded"

    done = stub.GetJob(pb.GetJobRequest(job_id=job.id), metadata=auth(key), timeout=30)
    assert (done.status, done.progress.pages_total, done.progress.pages_done) == ("succeeded", 4, 4)
    result = stub.GetJobResult(pb.GetJobRequest(job_id=job.id), metadata=auth(key), timeout=30)
    assert [p.page for p in result.pages] == [1, 2, 3, 4]


@pytest.mark.parametrize(
    "metadata",
    [
        (),
        (("x-api-key", "dvl_forged-key-that-was-never-issued"),),
        (("authorization", "Bearer dvl_forged-key-that-was-never-issued"),),
        (("authorization", "Basic dXNlcjpwYXNz"),),
    ],
    ids=["missing", "forged", "forged-bearer", "not-bearer"],
)
def test_calls_without_a_valid_key_are_unauthenticated(stub: Any, metadata: tuple[tuple[str, str]]) -> None:
    calls: list[Callable[[], object]] = [
        lambda: stub.SubmitJob(pb.SubmitJobRequest(content=CHART, tasks=["ocr"]), metadata=metadata),
        lambda: stub.ListJobs(pb.ListJobsRequest(), metadata=metadata),
        lambda: stub.GetJob(pb.GetJobRequest(job_id=str(uuid.uuid4())), metadata=metadata),
        lambda: list(stub.WatchJob(pb.WatchJobRequest(job_id=str(uuid.uuid4())), metadata=metadata)),
    ]
    for call in calls:
        code, message = refused(call)
        assert code == grpc.StatusCode.UNAUTHENTICATED
        assert "API key" in message


def test_another_owners_job_is_not_found(frontdoor: FrontDoorPlatform, stub: Any) -> None:
    mine, theirs = frontdoor.key(owner()), frontdoor.key(owner())
    job = submit_chart(stub, mine)
    by_id = pb.GetJobRequest(job_id=job.id)
    calls: list[Callable[[], object]] = [
        lambda: stub.GetJob(by_id, metadata=auth(theirs)),
        lambda: list(stub.WatchJob(pb.WatchJobRequest(job_id=job.id), metadata=auth(theirs))),
        lambda: stub.CancelJob(pb.CancelJobRequest(job_id=job.id), metadata=auth(theirs)),
        lambda: stub.GetJobResult(by_id, metadata=auth(theirs)),
    ]
    for call in calls:
        code, message = refused(call)
        assert code == grpc.StatusCode.NOT_FOUND
        assert job.id in message
    assert listed(stub, theirs) == []
    assert listed(stub, mine) == [job.id]

    code, message = refused(lambda: stub.GetJob(pb.GetJobRequest(job_id="job-1"), metadata=auth(mine)))
    assert (code, "not a job id" in message) == (grpc.StatusCode.INVALID_ARGUMENT, True)
    finish(frontdoor, job)


@pytest.mark.parametrize(
    ("fields", "words"),
    [
        ({"content": CHART, "tasks": ["summarise"]}, "unknown task 'summarise'"),
        ({"content": CHART, "tasks": []}, "at least one task"),
        ({"content": CHART, "tasks": ["qa"]}, "the qa task needs a question"),
        ({"content": CHART, "tasks": ["ocr"], "priority": 12}, "priority 12 is out of range"),
        ({"content": b"", "tasks": ["ocr"]}, "empty"),
        ({"content": b"hello", "tasks": ["ocr"]}, "checked by its content"),
        ({"content": CHART, "tasks": ["ocr"], "idempotency_key": "not a key!"}, "Idempotency-Key must be"),
        ({"content": CHART, "tasks": ["ocr"], "webhook_url": "ftp://example.com"}, "webhook_url"),
        ({"source_uri": "s3://{bucket}/incoming/missing.pdf", "tasks": ["ocr"]}, "no such object"),
        ({"source_uri": "https://example.com/a.pdf", "tasks": ["ocr"]}, "s3://bucket/key"),
        ({"tasks": ["ocr"]}, "`content`"),
    ],
    ids=[
        "unknown-task",
        "no-task",
        "qa-without-question",
        "priority",
        "empty-content",
        "not-a-document",
        "idempotency-key",
        "webhook-url",
        "unreadable-source",
        "not-a-storage-uri",
        "no-document",
    ],
)
def test_refused_submissions_say_why_and_create_nothing(
    frontdoor: FrontDoorPlatform, stub: Any, fields: dict[str, Any], words: str
) -> None:
    key = frontdoor.key(owner())
    if "source_uri" in fields:
        fields = {**fields, "source_uri": fields["source_uri"].format(bucket=frontdoor.settings.s3_bucket)}
    code, message = refused(
        lambda: stub.SubmitJob(pb.SubmitJobRequest(**fields), metadata=auth(key), timeout=60)
    )
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    assert words in message
    assert listed(stub, key) == []


@pytest.mark.parametrize(
    ("field", "value", "named"),
    [
        ("question", "What is\x00 shown?", "`question`"),
        ("question", "What is \x07shown?", "`question`"),
        ("webhook_url", "https://example.com/hook\x00", "`webhook_url`"),
        ("webhook_url", "https://example.com/ho\r\nok", "`webhook_url`"),
        ("pages", "1\x00", "`pages`"),
        ("password", "pass\x00word", "`password`"),
        ("idempotency_key", "order\x00-1", "Idempotency-Key"),
        ("source_uri", "s3://{bucket}/incoming/a\x00.png", "`source`"),
    ],
)
def test_control_characters_are_invalid_arguments_naming_the_field(
    frontdoor: FrontDoorPlatform, stub: Any, field: str, value: str, named: str
) -> None:
    """Text Postgres cannot store (NUL) or a caller should not send is INVALID_ARGUMENT, not INTERNAL."""
    key = frontdoor.key(owner())
    fields: dict[str, Any] = {"content": CHART, field: value}
    if field == "source_uri":
        fields = {field: value.format(bucket=frontdoor.settings.s3_bucket)}
    request = pb.SubmitJobRequest(tasks=["qa" if field == "question" else "ocr"], **fields)
    code, message = refused(lambda: stub.SubmitJob(request, metadata=auth(key), timeout=60))
    assert code == grpc.StatusCode.INVALID_ARGUMENT, message
    assert named in message
    assert listed(stub, key) == []


def test_an_idempotency_key_replays_its_job_and_refuses_another_request(
    frontdoor: FrontDoorPlatform, stub: Any
) -> None:
    key = frontdoor.key(owner())
    idempotency_key = f"retry-{uuid.uuid4()}"
    first = submit_chart(stub, key, idempotency_key=idempotency_key)
    again = submit_chart(stub, key, idempotency_key=idempotency_key)
    assert again.id == first.id

    other = pb.SubmitJobRequest(content=CHART, tasks=["chart2code"], idempotency_key=idempotency_key)
    code, message = refused(lambda: stub.SubmitJob(other, metadata=auth(key), timeout=60))
    assert code == grpc.StatusCode.FAILED_PRECONDITION
    assert "use a new key" in message
    assert listed(stub, key) == [first.id]
    finish(frontdoor, first)


def test_a_running_job_is_cancelled_and_a_stopping_gateway_ends_its_watchers(
    frontdoor: FrontDoorPlatform, stub: Any
) -> None:
    key = frontdoor.key(owner())
    request = pb.SubmitJobRequest(content=MANY_PAGES.read_bytes(), tasks=["ocr"])
    job = stub.SubmitJob(request, metadata=auth(key), timeout=60)

    def running() -> bool:
        current = stub.GetJob(pb.GetJobRequest(job_id=job.id), metadata=auth(key), timeout=30)
        return bool(current.status == "running" and current.progress.pages_done >= 1)

    wait_for(running, DEADLINE_S, "the job to run its first page", interval=0.1)

    # A second gateway, stopped while a client watches the running job: the stream ends UNAVAILABLE.
    second, port = start(GatewaySettings(host="127.0.0.1", port=0), frontdoor.service)
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        watcher = pb_grpc.JobServiceStub(channel)
        stream = watcher.WatchJob(pb.WatchJobRequest(job_id=job.id), metadata=auth(key), timeout=60)
        assert next(stream).job.id == job.id
        stopping = threading.Thread(target=second.stop, args=(10,))
        stopping.start()
        code, message = refused(lambda: list(stream))
        stopping.join(30)
    assert code == grpc.StatusCode.UNAVAILABLE
    assert "after_event_id" in message

    cancelled = stub.CancelJob(pb.CancelJobRequest(job_id=job.id), metadata=auth(key), timeout=30)
    assert cancelled.status == "cancelled"
    assert 1 <= cancelled.progress.pages_done < 117
    # Cancelling an ended job changes nothing.
    again = stub.CancelJob(pb.CancelJobRequest(job_id=job.id), metadata=auth(key), timeout=30)
    assert again.status == "cancelled"
    updates = list(stub.WatchJob(pb.WatchJobRequest(job_id=job.id), metadata=auth(key), timeout=30))
    assert updates[-1].event_status == "cancelled"


def test_jobs_are_listed_newest_first_a_page_at_a_time(frontdoor: FrontDoorPlatform, stub: Any) -> None:
    key = frontdoor.key(owner())
    older = submit_chart(stub, key)
    newer = submit_chart(stub, key, priority=7)

    first = stub.ListJobs(pb.ListJobsRequest(limit=1), metadata=auth(key), timeout=30)
    assert [j.id for j in first.jobs] == [newer.id]
    assert first.jobs[0].priority == 7
    assert first.next_cursor
    second = stub.ListJobs(pb.ListJobsRequest(limit=1, cursor=first.next_cursor), metadata=auth(key))
    assert [j.id for j in second.jobs] == [older.id]
    assert second.next_cursor == ""

    finish(frontdoor, older, newer)
    succeeded = stub.ListJobs(pb.ListJobsRequest(status="succeeded"), metadata=auth(key), timeout=30)
    assert {j.id for j in succeeded.jobs} == {older.id, newer.id}
    assert stub.ListJobs(pb.ListJobsRequest(status="running"), metadata=auth(key)).jobs == []
    code, message = refused(lambda: stub.ListJobs(pb.ListJobsRequest(status="done"), metadata=auth(key)))
    assert (code, "unknown status" in message) == (grpc.StatusCode.INVALID_ARGUMENT, True)
    code, message = refused(lambda: stub.ListJobs(pb.ListJobsRequest(cursor="x"), metadata=auth(key)))
    assert (code, "cursor" in message) == (grpc.StatusCode.INVALID_ARGUMENT, True)


def test_a_key_at_its_in_flight_limit_is_told_when_to_retry(frontdoor: FrontDoorPlatform) -> None:
    service = copy.copy(frontdoor.service)
    service.limits = dataclasses.replace(service.limits, max_in_flight=0, retry_after_s=7)
    limited, port = start(GatewaySettings(host="127.0.0.1", port=0), service)
    key = frontdoor.key(owner())
    try:
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            stub = pb_grpc.JobServiceStub(channel)
            with pytest.raises(grpc.RpcError) as info:
                submit_chart(stub, key)
            error = cast(grpc.Call, info.value)
            assert error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
            assert "submit again" in (error.details() or "")
            assert ("retry-after", "7") in tuple(error.trailing_metadata() or ())
            assert listed(stub, key) == []
    finally:
        limited.stop(1)


def test_health_answers_serving_and_reflection_lists_the_service(channel: grpc.Channel) -> None:
    health = health_pb2_grpc.HealthStub(channel)
    for name in ("", SERVICE_NAME):
        answer = health.Check(health_pb2.HealthCheckRequest(service=name), timeout=10)
        assert answer.status == health_pb2.HealthCheckResponse.SERVING
    assert SERVICE_NAME in ProtoReflectionDescriptorDatabase(channel).get_services()


def test_the_gateway_command_serves_until_sigterm(frontdoor: FrontDoorPlatform, tmp_path: Path) -> None:
    metrics_port = free_port()
    env = {**os.environ, **frontdoor.env, "DOCVL_GATEWAY_METRICS_PORT": str(metrics_port)}
    with gateway_process(env, tmp_path / "gateway.log") as (process, port):
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            health = health_pb2_grpc.HealthStub(channel)
            answer = health.Check(health_pb2.HealthCheckRequest(service=SERVICE_NAME), timeout=10)
            assert answer.status == health_pb2.HealthCheckResponse.SERVING
            stub = pb_grpc.JobServiceStub(channel)
            assert listed(stub, frontdoor.key(owner())) == []
        # Its own /metrics: this process's calls, by method and code.
        scraped = httpx.get(f"http://127.0.0.1:{metrics_port}/metrics", timeout=10).text
        calls = {
            (s.labels["method"], s.labels["code"]): s.value
            for family in text_string_to_metric_families(scraped)
            for s in family.samples
            if s.name == "docvl_gateway_calls_total"
        }
        assert calls[("docvl.v1.JobService/ListJobs", "OK")] == 1
        assert calls[("grpc.health.v1.Health/Check", "OK")] == 1
        os.kill(process.pid, signal.SIGTERM)
        assert process.wait(30) == 0, (tmp_path / "gateway.log").read_text()


def test_watch_streams_are_capped_so_unary_calls_always_get_a_thread(frontdoor: FrontDoorPlatform) -> None:
    small, _ = start(GatewaySettings(host="127.0.0.1", port=0, max_workers=9), frontdoor.service)  # 1 watch
    key = frontdoor.key(owner())
    try:
        with grpc.insecure_channel(f"127.0.0.1:{small.port}") as channel:
            stub = pb_grpc.JobServiceStub(channel)
            job = stub.SubmitJob(
                pb.SubmitJobRequest(content=MANY_PAGES.read_bytes(), tasks=["ocr"]),
                metadata=auth(key),
                timeout=60,
            )
            first = stub.WatchJob(pb.WatchJobRequest(job_id=job.id), metadata=auth(key), timeout=DEADLINE_S)
            next(first)  # the first stream is open and holds the one watch slot
            code, message = refused(
                lambda: next(stub.WatchJob(pb.WatchJobRequest(job_id=job.id), metadata=auth(key), timeout=30))
            )
            assert code == grpc.StatusCode.RESOURCE_EXHAUSTED
            assert "poll GetJob" in message
            assert stub.GetJob(pb.GetJobRequest(job_id=job.id), metadata=auth(key), timeout=30).id == job.id
            stub.CancelJob(pb.CancelJobRequest(job_id=job.id), metadata=auth(key), timeout=30)
            assert list(first)[-1].job.status == "cancelled"  # the stream ends with the job, freeing its slot
            again = stub.WatchJob(pb.WatchJobRequest(job_id=job.id), metadata=auth(key), timeout=30)
            assert list(again)[-1].job.status == "cancelled"
    finally:
        small.stop(1)

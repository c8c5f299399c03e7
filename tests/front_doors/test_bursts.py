"""Bursts of submissions at the REST API, in-process (TestClient) with the real database: the key's
limit of jobs in flight holds exactly under concurrency, also across several API processes (each its own
app and service here), and a submission refused for its key (401) or its limit (429) is answered before
any of its body is read. The jobs are not run (the dispatch records its start requests): they stay in
flight, so the limit is what decides. The early admission's logic alone: tests/core/test_admission.py."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import grpc
import pytest
from fastapi.testclient import TestClient

from docvl.db import api_keys, jobs
from docvl.db.database import Database
from docvl.jobs.intake import Limits
from docvl.jobs.service import JobService
from docvl.storage.local import LocalObjectStore
from docvl.v1 import jobs_pb2 as pb
from docvl.v1 import jobs_pb2_grpc as pb_grpc
from services.api.app import create_app
from services.api.settings import ApiSettings
from services.gateway.server import start
from services.gateway.settings import GatewaySettings
from tests.support.dispatch import RecordingDispatch
from tests.support.helpers import ROOT

PAGE = (ROOT / "docvl" / "samples" / "page.png").read_bytes()
RETRY_AFTER_S = 7


@dataclass
class Api:
    client: TestClient
    service: JobService


class Body:
    """A multipart submission's body, handed to the server piece by piece: `pieces_read` says how much of
    it the server asked for."""

    BOUNDARY = "burst-boundary"

    def __init__(self, image: bytes = PAGE) -> None:
        self.content = (
            (
                f'--{self.BOUNDARY}\r\nContent-Disposition: form-data; name="tasks"\r\n\r\nocr\r\n'
                f'--{self.BOUNDARY}\r\nContent-Disposition: form-data; name="file"; filename="page.png"\r\n'
                "Content-Type: image/png\r\n\r\n"
            ).encode()
            + image
            + f"\r\n--{self.BOUNDARY}--\r\n".encode()
        )
        self.pieces_read = 0

    def __iter__(self) -> Iterator[bytes]:
        for offset in range(0, len(self.content), 16 * 1024):
            self.pieces_read += 1
            yield self.content[offset : offset + 16 * 1024]

    @property
    def content_type(self) -> str:
        return f"multipart/form-data; boundary={self.BOUNDARY}"


def post(api: Api, key: str | None, body: Body, headers: dict[str, str] | None = None) -> Any:
    sent = {"Content-Type": body.content_type, **(headers or {})}
    if key is not None:
        sent["Authorization"] = f"Bearer {key}"
    return api.client.post("/v1/jobs", headers=sent, content=iter(body))


@pytest.fixture
def apis(db: Database, tmp_path: Path) -> Iterator[list[Api]]:
    """Three API apps on the same database and store, as three API processes would be: each its own
    service (and so its own early admission), with a limit of 4 jobs in flight per key."""
    store = LocalObjectStore(tmp_path / "store")
    store.ensure_ready()
    limits = Limits(max_upload_bytes=1 << 20, max_pages=10, max_in_flight=4, retry_after_s=RETRY_AFTER_S)
    with ExitStack() as stack:
        started = []
        for i in range(3):
            spool = tmp_path / f"spool-{i}"
            spool.mkdir()
            service = JobService(
                db,
                store,
                limits,
                RecordingDispatch(),
                source_store=cast(Any, None),
                spool_dir=spool,
            )
            client = stack.enter_context(TestClient(create_app(ApiSettings(), service)))
            started.append(Api(client, service))
        yield started


def new_key(db: Database) -> tuple[str, uuid.UUID]:
    with db.transaction() as s:
        created = api_keys.create_key(s, f"burst-{uuid.uuid4().hex[:8]}")
        return created.secret, created.key.id


def in_flight(db: Database, key_id: uuid.UUID) -> int:
    with db.transaction() as s:
        return jobs.in_flight(s, key_id)


def burst(targets: list[Api], key: str, count: int) -> list[Any]:
    """`count` submissions with `key`, sent at once from as many threads, spread over `targets`."""
    start = threading.Barrier(count)
    answers: list[Any] = [None] * count

    def send(i: int) -> None:
        start.wait(30)
        answers[i] = post(targets[i % len(targets)], key, Body())

    threads = [threading.Thread(target=send, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert all(answer is not None for answer in answers), "a submission got no answer"
    return answers


@pytest.mark.parametrize("processes", [1, 3])
def test_a_burst_gets_exactly_the_key_limit(apis: list[Api], db: Database, processes: int) -> None:
    """24 submissions at once with a limit of 4: 4 accepted, 20 told when to retry, 4 jobs recorded. With
    three processes each lets up to 4 in early; the check at insert holds the limit."""
    key, key_id = new_key(db)
    answers = burst(apis[:processes], key, 24)
    statuses = sorted(answer.status_code for answer in answers)
    assert statuses == [202] * 4 + [429] * 20, [a.text for a in answers if a.status_code not in (202, 429)]
    for refused in (a for a in answers if a.status_code == 429):
        assert refused.headers["retry-after"] == str(RETRY_AFTER_S)
        assert refused.json()["error"]["code"] == "too_many_submissions"
    assert in_flight(db, key_id) == 4
    accepted = {answer.json()["id"] for answer in answers if answer.status_code == 202}
    assert len(accepted) == 4


def test_a_refused_submission_is_answered_before_its_body_is_read(apis: list[Api], db: Database) -> None:
    api = apis[0]
    key, key_id = new_key(db)
    for _ in range(4):
        taken = Body()
        assert post(api, key, taken).status_code == 202
        assert taken.pieces_read > 1  # what the probe sees of a body that is read
    over = Body()
    refused = post(api, key, over)
    assert refused.status_code == 429, refused.text
    assert refused.headers["retry-after"] == str(RETRY_AFTER_S)
    assert "4 jobs queued, running or being submitted" in refused.json()["error"]["message"]
    assert over.pieces_read == 0
    for secret in (None, "dvl_unknown", key[:-1]):
        unknown = Body()
        answer = post(api, secret, unknown)
        assert (answer.status_code, answer.headers.get("www-authenticate")) == (401, "Bearer"), answer.text
        assert answer.json()["error"]["code"] == "unauthenticated"
        assert unknown.pieces_read == 0
    assert in_flight(db, key_id) == 4
    assert [sorted(cast(Path, a.service.spool_dir).iterdir()) for a in apis] == [[], [], []]


def test_a_retry_at_the_limit_is_answered_with_its_job(apis: list[Api], db: Database) -> None:
    """A retry with its Idempotency-Key is not a new job: at the limit it gets its job, not a 429, and it
    is not counted again."""
    api = apis[0]
    key, key_id = new_key(db)
    firsts = [post(api, key, Body(), {"Idempotency-Key": f"doc-{i}"}) for i in range(4)]
    assert [a.status_code for a in firsts] == [202] * 4
    retried = Body()
    again = post(api, key, retried, {"Idempotency-Key": "doc-2"})
    assert again.status_code == 202, again.text
    assert again.headers["idempotent-replayed"] == "true"
    assert again.json()["id"] == firsts[2].json()["id"]
    assert retried.pieces_read > 0  # let in: the replay checks that the request is the same
    assert post(api, key, Body(), {"Idempotency-Key": "doc-new"}).status_code == 429
    assert in_flight(db, key_id) == 4


def test_a_refused_document_is_not_looked_at(apis: list[Api], db: Database) -> None:
    """At the limit, a document that is not one (it would be 415 once read) is refused for the limit: its
    content was never inspected, over REST and over gRPC (whose message arrives whole, but is not spooled)."""
    api = apis[0]
    key, _ = new_key(db)
    for _ in range(4):
        assert post(api, key, Body()).status_code == 202
    junk = Body(b"not a document at all")
    assert (post(api, key, junk).status_code, junk.pieces_read) == (429, 0)
    gateway, port = start(GatewaySettings(host="127.0.0.1", port=0), api.service)
    try:
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            stub = pb_grpc.JobServiceStub(channel)
            request = pb.SubmitJobRequest(content=b"not a document at all", tasks=["ocr"])
            with pytest.raises(grpc.RpcError) as refused:
                stub.SubmitJob(request, metadata=(("x-api-key", key),), timeout=30)
            error = cast(grpc.Call, refused.value)
            assert error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED, error.details()
            assert ("retry-after", str(RETRY_AFTER_S)) in tuple(error.trailing_metadata() or ())
            with pytest.raises(grpc.RpcError) as unknown:
                stub.SubmitJob(request, metadata=(("x-api-key", "dvl_unknown"),), timeout=30)
            assert cast(grpc.Call, unknown.value).code() == grpc.StatusCode.UNAUTHENTICATED
    finally:
        gateway.stop(1)

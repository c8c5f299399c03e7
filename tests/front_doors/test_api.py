"""The REST API in-process with its real lifespan, in front of the running platform
(tests/support/platform.py): real Postgres, Redis, moto's S3 server, Prefect flow runner, Celery worker and
tiny model worker."""

from __future__ import annotations

import asyncio
import json
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, cast

import pytest
from fastapi.testclient import TestClient

from docvl.db import api_keys, jobs
from docvl.db.api_keys import Caller
from docvl.job_status import JobStatus
from docvl.jobs import watch, webhooks
from docvl.jobs.service import JobService
from docvl.jobs.views import EventView
from docvl.tasks import TaskKind
from services.api.app import create_app
from services.api.settings import ApiSettings
from tests.support.helpers import ROOT, wait_for
from tests.support.platform import FrontDoorPlatform
from tests.support.services import free_port

pytestmark = pytest.mark.slow
CORPUS = ROOT / "tests" / "corpus" / "pdf-samples"  # a copy of ../shared/corpus (CC-BY-SA-4.0)
FOUR_PAGES = CORPUS / "004-pdflatex-4-pages" / "pdflatex-4-pages.pdf"
CHART = ROOT / "docvl" / "samples" / "chart.png"
PAGE = ROOT / "docvl" / "samples" / "page.png"


@pytest.fixture(scope="module")
def api(frontdoor: FrontDoorPlatform) -> Iterator[TestClient]:
    """The app as `docvl api` builds it: settings from the environment, the real lifespan."""
    with TestClient(create_app()) as client:
        yield client


def auth(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def submit(
    api: TestClient,
    key: str,
    path: Path,
    tasks: list[str],
    *,
    headers: dict[str, str] | None = None,
    **fields: Any,
) -> Any:
    data: dict[str, Any] = {"tasks": tasks, **fields}
    with path.open("rb") as fh:
        return api.post(
            "/v1/jobs", headers={**auth(key), **(headers or {})}, files={"file": (path.name, fh)}, data=data
        )


def sse_events(api: TestClient, key: str, job_id: str, **params: Any) -> list[tuple[str, dict[str, Any]]]:
    """Read the job's event stream to its end: (event name, data) pairs."""
    events: list[tuple[str, dict[str, Any]]] = []
    with api.stream("GET", f"/v1/jobs/{job_id}/events", headers=auth(key), params=params) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        name, data = "message", ""
        for line in response.iter_lines():
            if line.startswith("event: "):
                name = line[len("event: ") :]
            elif line.startswith("data: "):
                data = line[len("data: ") :]
            elif line == "" and data:
                events.append((name, json.loads(data)))
                name, data = "message", ""
    return events


def owner_jobs(frontdoor: FrontDoorPlatform, owner: str) -> int:
    with frontdoor.db.transaction() as s:
        return len(jobs.list_jobs(s, owner=owner))


# -- the one watch loop (docvl/jobs/watch.py), behind SSE and gRPC WatchJob, against scripted reads -------

WATCHER = Caller("watcher", uuid.uuid4())


class ScriptedEvents:
    """In place of JobService for the watch loop: scripted answers to its event reads, (event ids, ended),
    then nothing new; and the wake-ups of its subscribers."""

    def __init__(self, *answers: tuple[list[int], bool]) -> None:
        self.answers = list(answers)
        self.asked: list[int] = []  # the `after_id` of each read
        self.wakes: list[Callable[[], None]] = []

    def poll_events(self, caller: Caller, job_id: uuid.UUID, after_id: int) -> tuple[list[EventView], bool]:
        self.asked.append(after_id)
        ids, ended = self.answers.pop(0) if self.answers else ([], False)
        now, running = datetime.now(UTC), JobStatus.RUNNING
        events = [EventView(id=i, kind="progress", status=running, data={}, created_at=now) for i in ids]
        return events, ended

    @contextmanager
    def subscribed(self, job_id: uuid.UUID, wake: Callable[[], None]) -> Iterator[None]:
        self.wakes.append(wake)
        try:
            yield
        finally:
            self.wakes.remove(wake)


def shown(items: list[EventView | watch.Mark]) -> list[int | str]:
    return [item.id if isinstance(item, EventView) else item.value for item in items]


def test_the_watch_loop_resumes_keeps_alive_and_ends_after_the_final_event() -> None:
    svc = ScriptedEvents(([4, 5], False), ([], False), ([6], True))

    async def read() -> list[EventView | watch.Mark]:
        stream = watch.follow(
            cast(JobService, svc), WATCHER, uuid.uuid4(), after_id=3, poll_s=0.5, keepalive_s=0.2
        )
        return [item async for item in stream]

    assert shown(asyncio.run(read())) == ["open", 4, 5, "keep-alive", 6, "end"]
    assert svc.asked == [3, 5, 5]  # each look resumes after the last event sent
    assert svc.wakes == []


def test_a_notification_ends_the_wait_and_a_gone_client_ends_the_stream() -> None:
    """poll_s is a minute: only the wake-ups (from another thread, as the notifier's) make it look again."""
    svc = ScriptedEvents(([1], False))
    looks = 0

    async def connected() -> bool:
        nonlocal looks
        looks += 1
        return looks <= 1  # asked before every look but the first: the client leaves after the second

    async def read() -> list[EventView | watch.Mark]:
        stream = watch.follow(cast(JobService, svc), WATCHER, uuid.uuid4(), poll_s=60, keep_going=connected)
        return [item async for item in stream]

    stop = threading.Event()

    def notify() -> None:
        while not stop.wait(0.05):
            for wake in list(svc.wakes):
                wake()

    waker = threading.Thread(target=notify)
    waker.start()
    started = time.monotonic()
    try:
        items = asyncio.run(read())
    finally:
        stop.set()
        waker.join()
    assert time.monotonic() - started < 10
    assert shown(items) == ["open", 1]  # no `end`: the job has not ended
    assert svc.asked == [0, 1]
    assert svc.wakes == []


def test_the_blocking_watch_yields_the_events_and_unsubscribes_when_closed() -> None:
    svc = ScriptedEvents(([1, 2], False), ([3], True))
    events = watch.follow_blocking(cast(JobService, svc), WATCHER, uuid.uuid4(), poll_s=0.01)
    assert [e.id for e in events] == [1, 2, 3]
    assert svc.wakes == []
    svc = ScriptedEvents(([1, 2], False))
    stream = watch.follow_blocking(cast(JobService, svc), WATCHER, uuid.uuid4(), poll_s=60)
    assert next(stream).id == 1
    assert len(svc.wakes) == 1
    stream.close()  # a client that leaves (gRPC closes the generator)
    assert svc.wakes == []


def test_submit_watch_and_fetch_a_pdf(api: TestClient, frontdoor: FrontDoorPlatform) -> None:
    key = frontdoor.key("alice")
    response = submit(api, key, FOUR_PAGES, ["ocr", "qa"], question="What is the title?")
    assert response.status_code == 202, response.text
    job = response.json()
    assert response.headers["location"] == f"/v1/jobs/{job['id']}"
    assert job["status"] == "queued"
    assert job["tasks"] == ["ocr", "qa"]
    assert job["progress"] == {"pages_total": 0, "pages_done": 0, "pages_failed": 0}
    assert job["error"] is None

    events = sse_events(api, key, job["id"])
    assert events[-1][0] == "end"
    statuses = [data["status"] for name, data in events if name == "status"]
    assert statuses == ["queued", "running", "succeeded"]
    progress = [data["data"]["pages_done"] for name, data in events if name == "progress"]
    assert progress == [1, 2, 3, 4]
    replay = sse_events(api, key, job["id"], after=events[1][1]["id"])  # resume after the second event
    assert [e[1]["id"] for e in replay[:-1]] == [e[1]["id"] for e in events[2:-1]]
    # past any event id (Postgres bigints): refused as a query, nothing replayed as a Last-Event-ID
    past = api.get(f"/v1/jobs/{job['id']}/events", headers=auth(key), params={"after": 2**63})
    assert past.status_code == 422
    last = {**auth(key), "Last-Event-ID": str(2**64)}
    with api.stream("GET", f"/v1/jobs/{job['id']}/events", headers=last) as resumed:
        assert resumed.status_code == 200
        assert [line for line in resumed.iter_lines() if line.startswith("event:")] == ["event: end"]

    done = api.get(f"/v1/jobs/{job['id']}", headers=auth(key)).json()
    assert done["status"] == "succeeded"
    assert done["progress"] == {"pages_total": 4, "pages_done": 4, "pages_failed": 0}
    assert done["started_at"] is not None
    assert done["finished_at"] is not None

    result = api.get(f"/v1/jobs/{job['id']}/result", headers=auth(key)).json()
    assert [(p["page"], p["task"]) for p in result["pages"]] == [
        (page, task) for page in (1, 2, 3, 4) for task in ("ocr", "qa")
    ]
    assert all(
        p["model_id"] and p["model_revision"] and p["prompt_template_version"] for p in result["pages"]
    )
    assert [f["name"] for f in result["outputs"]["ocr"]] == ["document.md"]
    assert [f["name"] for f in result["outputs"]["qa"]] == ["answers.json"]
    markdown = api.get(f"/v1/jobs/{job['id']}/outputs/document.md", headers=auth(key))
    assert markdown.status_code == 200
    assert markdown.content == frontdoor.store.get(result["outputs"]["ocr"][0]["key"])
    assert markdown.text.count("<!-- page ") == 4


def test_submit_a_document_already_in_storage(api: TestClient, frontdoor: FrontDoorPlatform) -> None:
    key = frontdoor.key("alice")
    frontdoor.store.put("incoming/chart.png", CHART.read_bytes(), content_type="image/png")
    body = {"source": f"s3://{frontdoor.settings.s3_bucket}/incoming/chart.png", "tasks": ["chart2code"]}
    response = api.post("/v1/jobs", headers=auth(key), json=body)
    assert response.status_code == 202, response.text
    job_id = response.json()["id"]
    assert frontdoor.wait_finished(uuid.UUID(job_id)) is JobStatus.SUCCEEDED
    result = api.get(f"/v1/jobs/{job_id}/result", headers=auth(key)).json()
    assert [f["name"] for f in result["outputs"]["chart2code"]] == ["page-0001.py"]


def test_idempotency_keys(api: TestClient, frontdoor: FrontDoorPlatform) -> None:
    key = frontdoor.key("idem")
    idem = {"Idempotency-Key": f"order-{uuid.uuid4()}"}
    first = submit(api, key, PAGE, ["ocr"], headers=idem)
    again = submit(api, key, PAGE, ["ocr"], headers=idem)
    assert first.status_code == again.status_code == 202
    assert again.json()["id"] == first.json()["id"]
    assert again.headers["idempotent-replayed"] == "true"
    other = submit(api, key, PAGE, ["ocr", "web2html"], headers=idem)
    assert other.status_code == 409
    assert other.json()["error"]["code"] == "conflict"
    assert first.json()["id"] in other.json()["error"]["message"]
    malformed = submit(api, key, PAGE, ["ocr"], headers={"Idempotency-Key": "not a key!"})
    assert malformed.status_code == 422
    assert "Idempotency-Key" in malformed.json()["error"]["message"]
    assert owner_jobs(frontdoor, "idem") == 1
    frontdoor.wait_finished(uuid.UUID(first.json()["id"]))


def test_a_caller_sees_only_its_own_jobs(api: TestClient, frontdoor: FrontDoorPlatform) -> None:
    alice, bob = frontdoor.key("iso-alice"), frontdoor.key("iso-bob")
    job_id = submit(api, alice, PAGE, ["ocr"]).json()["id"]
    frontdoor.wait_finished(uuid.UUID(job_id))
    for method, path in [
        ("GET", f"/v1/jobs/{job_id}"),
        ("GET", f"/v1/jobs/{job_id}/result"),
        ("GET", f"/v1/jobs/{job_id}/events"),
        ("GET", f"/v1/jobs/{job_id}/outputs/document.md"),
        ("POST", f"/v1/jobs/{job_id}/cancel"),
    ]:
        response = api.request(method, path, headers=auth(bob))
        assert response.status_code == 404, (method, path)
        assert response.json()["error"]["code"] == "not_found"
        assert api.request(method, path, headers=auth(alice)).status_code == 200, (method, path)
    assert api.get("/v1/jobs", headers=auth(bob)).json()["jobs"] == []
    assert [j["id"] for j in api.get("/v1/jobs", headers=auth(alice)).json()["jobs"]] == [job_id]


def test_a_key_revoked_while_in_use_is_refused_within_a_second(
    api: TestClient, frontdoor: FrontDoorPlatform
) -> None:
    """A key Postgres accepted is taken as valid for AUTHENTICATED_FOR_S without asking again (a busy key
    costs no read per request); once revoked it is refused when that has passed."""
    from docvl.jobs.service import AUTHENTICATED_FOR_S

    key = frontdoor.key("revoked-in-use")
    assert api.get("/v1/jobs", headers=auth(key)).status_code == 200
    with frontdoor.db.transaction() as s:
        api_keys.revoke(s, api_keys.authenticate(s, key).key_id)
    revoked_at = time.monotonic()
    while (response := api.get("/v1/jobs", headers=auth(key))).status_code == 200:
        assert time.monotonic() - revoked_at < AUTHENTICATED_FOR_S + 5, "the revoked key still works"
        time.sleep(0.05)
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "unauthenticated"


def test_every_call_but_health_needs_a_valid_key(api: TestClient, frontdoor: FrontDoorPlatform) -> None:
    key = frontdoor.key("revoked")
    with frontdoor.db.transaction() as s:
        key_id = api_keys.authenticate(s, key).key_id
        api_keys.revoke(s, key_id)
    for headers in [{}, auth("dvl_forged"), auth(key), {"Authorization": "Basic abc"}]:
        response = api.get("/v1/jobs", headers=headers)
        assert response.status_code == 401
        assert response.headers["www-authenticate"] == "Bearer"
        assert response.json()["error"]["code"] == "unauthenticated"
    assert api.get("/healthz").json() == {"status": "ok"}
    ready = api.get("/readyz")
    assert ready.status_code == 200, ready.text
    assert ready.json()["checks"] == {
        "database": "ok",
        "storage": "ok",
        "broker": "ok",
        "prefect": "ok",
        "office": "ok",
    }


@pytest.mark.parametrize(
    ("tasks", "fields", "file", "status", "code", "hint"),
    [
        (["ocr", "summarise"], {}, PAGE.read_bytes(), 422, "invalid_input", "summarise"),
        (["qa"], {}, PAGE.read_bytes(), 422, "invalid_input", "question"),
        ([], {}, PAGE.read_bytes(), 422, "invalid_input", "task"),
        (["ocr"], {}, b"", 422, "empty_document", "empty"),
        (["ocr"], {}, b"name,value\n1,2\n", 415, "unsupported_document", "PDF"),
        (["ocr"], {}, FOUR_PAGES.read_bytes()[:4000], 422, "corrupt_document", ""),
        (["ocr"], {"priority": "11"}, PAGE.read_bytes(), 422, "invalid_input", "priority"),
        (["ocr"], {"priority": "high"}, PAGE.read_bytes(), 422, "invalid_input", "priority"),
        (["ocr"], {"webhook_url": "ftp://x"}, PAGE.read_bytes(), 422, "invalid_input", "webhook_url"),
    ],
)
def test_bad_submissions_are_refused_and_nothing_is_stored(
    api: TestClient,
    frontdoor: FrontDoorPlatform,
    tasks: list[str],
    fields: dict[str, str],
    file: bytes,
    status: int,
    code: str,
    hint: str,
) -> None:
    owner = f"bad-{uuid.uuid4().hex[:8]}"
    key = frontdoor.key(owner)
    inputs = {o.key for o in frontdoor.store.list("inputs/")}
    response = api.post(
        "/v1/jobs",
        headers=auth(key),
        files={"file": ("document.pdf", file)},
        data={"tasks": tasks, **fields},
    )
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert error["code"] == code
    assert hint in error["message"]
    assert owner_jobs(frontdoor, owner) == 0
    assert {o.key for o in frontdoor.store.list("inputs/")} == inputs


def test_bad_sources_are_refused(api: TestClient, frontdoor: FrontDoorPlatform) -> None:
    key = frontdoor.key("bad-source")
    bucket = frontdoor.settings.s3_bucket
    frontdoor.store.put("jobs/someone-else/pages/00000.png", PAGE.read_bytes())
    for source, hint in [
        (f"s3://{bucket}/incoming/missing.pdf", "no such object"),
        ("s3://no-such-bucket-here/a.pdf", f"only in the bucket(s) {bucket}"),
        (f"s3://{bucket}/jobs/someone-else/pages/00000.png", "platform's own storage"),  # another's page
        (f"s3://{bucket}/inputs/{'0' * 64}", "platform's own storage"),
        (f"s3://{bucket}/incoming/../jobs/x.png", "platform's own storage"),
        ("https://example.com/a.pdf", "s3://bucket/key"),
        ("s3://", "s3://bucket/key"),
        ("s3://[x/k", "s3://bucket/key"),
    ]:
        response = api.post("/v1/jobs", headers=auth(key), json={"source": source, "tasks": ["ocr"]})
        assert response.status_code == 422, (source, response.text)
        assert hint in response.json()["error"]["message"], source
    no_body = api.post("/v1/jobs", headers=auth(key), content=b"x", params={})
    assert no_body.status_code == 422
    assert owner_jobs(frontdoor, "bad-source") == 0


def test_unknown_fields_are_refused_by_name(api: TestClient, frontdoor: FrontDoorPlatform) -> None:
    """A misspelt or unsupported option is refused, never ignored while the job runs anyway."""
    owner = f"unknown-{uuid.uuid4().hex[:8]}"
    key = frontdoor.key(owner)
    source = f"s3://{frontdoor.settings.s3_bucket}/incoming/chart.png"
    as_form = submit(api, key, PAGE, ["ocr"], dryrun="true", prority="9")
    as_json = api.post(
        "/v1/jobs", headers=auth(key), json={"source": source, "tasks": ["ocr"], "dryrun": True}
    )
    for response, unknown in ((as_form, ["dryrun", "prority"]), (as_json, ["dryrun"])):
        assert response.status_code == 422, response.text
        error = response.json()["error"]
        assert error["code"] == "invalid_input"
        assert all(f"`{name}`" in error["message"] for name in unknown), error["message"]
        assert "priority" in error["message"].split("accepted", 1)[1], error["message"]  # the accepted ones
    # The idempotency key is a header, in both bodies: a body field is refused, saying so.
    for response in (
        submit(api, key, PAGE, ["ocr"], idempotency_key="order-1"),
        api.post(
            "/v1/jobs", headers=auth(key), json={"source": source, "tasks": ["ocr"], "idempotency_key": "k"}
        ),
    ):
        assert response.status_code == 422, response.text
        assert "Idempotency-Key" in response.json()["error"]["message"]
    source_in_form = submit(api, key, PAGE, ["ocr"], source=source)
    assert source_in_form.status_code == 422, source_in_form.text
    assert "`source`" in source_in_form.json()["error"]["message"]
    assert owner_jobs(frontdoor, owner) == 0


CONTROL_CHARACTERS = [
    ("question", "What is\x00 shown?"),
    ("question", "What is \x1b[31mshown?"),
    ("webhook_url", "https://example.com/hook\x00"),
    ("webhook_url", "https://example.com/ho\nok"),
    ("pages", "1-2\x00"),
    ("password", "pass\x00word"),
    ("password", "pass\tword"),
]


@pytest.mark.parametrize(("field", "value"), CONTROL_CHARACTERS)
def test_control_characters_are_refused_naming_the_field(
    api: TestClient, frontdoor: FrontDoorPlatform, field: str, value: str
) -> None:
    """Text Postgres cannot store (NUL) or a caller should not send (other control characters) is refused
    as invalid input, over the form and JSON alike, and nothing is stored."""
    owner = f"ctl-{uuid.uuid4().hex[:8]}"
    key = frontdoor.key(owner)
    tasks = ["qa"] if field == "question" else ["ocr"]
    fields: dict[str, Any] = {field: value}
    as_form = submit(api, key, PAGE, tasks, **fields)
    body = {"source": f"s3://{frontdoor.settings.s3_bucket}/incoming/chart.png", "tasks": tasks, field: value}
    as_json = api.post("/v1/jobs", headers=auth(key), json=body)
    for response in (as_form, as_json):
        assert response.status_code == 422, response.text
        error = response.json()["error"]
        assert error["code"] == "invalid_input"
        assert f"`{field}`" in error["message"], error["message"]
        assert "control character" in error["message"], error["message"]
    assert value not in as_form.text
    assert owner_jobs(frontdoor, owner) == 0


def test_control_characters_in_the_source_and_the_idempotency_key_are_refused(
    api: TestClient, frontdoor: FrontDoorPlatform
) -> None:
    owner = f"ctl-{uuid.uuid4().hex[:8]}"
    key = frontdoor.key(owner)
    bucket = frontdoor.settings.s3_bucket
    source = api.post(
        "/v1/jobs", headers=auth(key), json={"source": f"s3://{bucket}/incoming/a\x00.png", "tasks": ["ocr"]}
    )
    assert (source.status_code, source.json()["error"]["code"]) == (422, "invalid_input")
    assert "`source`" in source.json()["error"]["message"]
    for header in ("order\x00-1", "order\x01-1", "order-1\n"):
        response = submit(api, key, PAGE, ["ocr"], headers={"Idempotency-Key": header})
        assert (response.status_code, response.json()["error"]["code"]) == (422, "invalid_input"), header
        assert "Idempotency-Key" in response.json()["error"]["message"]
    assert owner_jobs(frontdoor, owner) == 0


def test_a_question_may_hold_tabs_and_line_breaks(api: TestClient, frontdoor: FrontDoorPlatform) -> None:
    key = frontdoor.key(f"lines-{uuid.uuid4().hex[:8]}")
    question = "Two lines:\r\nwhat is the title,\tand who wrote it?"
    response = submit(api, key, PAGE, ["qa"], question=question)
    assert response.status_code == 202, response.text
    assert response.json()["question"] == question
    api.post(f"/v1/jobs/{response.json()['id']}/cancel", headers=auth(key))


def test_encrypted_pdfs_are_refused_at_the_door(api: TestClient, frontdoor: FrontDoorPlatform) -> None:
    catalogue = json.loads((CORPUS / "files.json").read_text())["data"]
    encrypted = next(entry for entry in catalogue if entry["encrypted"])
    response = submit(api, frontdoor.key("enc"), CORPUS / encrypted["path"], ["ocr"])
    assert response.status_code == 422
    assert response.json()["error"]["code"] == "encrypted_document"


@pytest.fixture
def limited(frontdoor: FrontDoorPlatform) -> Iterator[TestClient]:
    settings = ApiSettings(
        max_upload_bytes=200_000,
        max_pages=2,
        max_tasks_per_job=1,
        max_question_chars=20,
        max_in_flight_per_key=1,
        retry_after_s=7,
    )
    with TestClient(create_app(settings)) as client:
        yield client


def test_every_limit_has_its_own_error(limited: TestClient, frontdoor: FrontDoorPlatform) -> None:
    key = frontdoor.key("limits")
    big = b"%PDF-1.7\n" + b"0" * 300_000
    too_big = limited.post(
        "/v1/jobs", headers=auth(key), files={"file": ("a.pdf", big)}, data={"tasks": "ocr"}
    )
    assert too_big.status_code == 413
    assert too_big.json()["error"]["code"] == "too_large"

    def chunks() -> Iterator[bytes]:  # no Content-Length: cut off as it streams
        for _ in range(50):
            yield b"0" * 100_000

    streamed = limited.post(
        "/v1/jobs",
        headers={**auth(key), "Content-Type": "multipart/form-data; boundary=xyz"},
        content=chunks(),
    )
    assert streamed.status_code == 413
    pages = submit(limited, key, FOUR_PAGES, ["ocr"])
    assert (pages.status_code, pages.json()["error"]["code"]) == (422, "too_many_pages")
    tasks = submit(limited, key, PAGE, ["ocr", "web2html"])
    assert tasks.status_code == 422
    assert "at most 1" in tasks.json()["error"]["message"]
    question = submit(limited, key, PAGE, ["qa"], question="why " * 10)
    assert question.status_code == 422
    assert "over the limit of 20" in question.json()["error"]["message"]
    first = submit(limited, key, PAGE, ["ocr"])
    assert first.status_code == 202
    second = submit(limited, key, CHART, ["ocr"])
    if frontdoor.status(uuid.UUID(first.json()["id"])).finished:
        pytest.fail("the first job finished before the second submission: the in-flight check was not tested")
    assert second.status_code == 429
    assert second.headers["retry-after"] == "7"
    assert second.json()["error"]["code"] == "too_many_submissions"
    assert owner_jobs(frontdoor, "limits") == 1
    frontdoor.wait_finished(uuid.UUID(first.json()["id"]))
    # Room again, once the API reads the key's count after the job ended (FRESH_FOR_S, 0.25 s, at most).
    wait_for(lambda: submit(limited, key, CHART, ["ocr"]).status_code == 202, 5, "room for another job")


def test_cancel_a_running_job(api: TestClient, frontdoor: FrontDoorPlatform) -> None:
    key = frontdoor.key("cancel")
    job_id = submit(api, key, FOUR_PAGES, ["ocr", "qa"], question="Why?").json()["id"]
    cancelled = api.post(f"/v1/jobs/{job_id}/cancel", headers=auth(key))
    assert cancelled.status_code == 200
    assert cancelled.json()["status"] == "cancelled"
    again = api.post(f"/v1/jobs/{job_id}/cancel", headers=auth(key))
    assert again.json()["status"] == "cancelled"
    events = sse_events(api, key, job_id)
    assert [d["status"] for n, d in events if n == "status"][-1] == "cancelled"


class Receiver:
    """A local webhook receiver: answers with the planned status codes in turn (then 200)."""

    def __init__(self, plan: list[int]) -> None:
        self.plan = plan
        self.calls: list[tuple[dict[str, str], bytes, int]] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                code = receiver.plan.pop(0) if receiver.plan else 200
                receiver.calls.append(({k.lower(): v for k, v in self.headers.items()}, body, code))
                self.send_response(code)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", free_port()), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join()


def test_webhooks_are_signed_retried_and_recorded(api: TestClient, frontdoor: FrontDoorPlatform) -> None:
    key = frontdoor.key("hooks")
    secret = frontdoor.webhook_secret("hooks")
    receiver = Receiver([503])
    try:
        job_id = submit(api, key, PAGE, ["ocr"], webhook_url=receiver.url).json()["id"]
        assert frontdoor.wait_finished(uuid.UUID(job_id)) is JobStatus.SUCCEEDED
        wait_for(lambda: len(receiver.calls) >= 2, 60, "the webhook to be retried")
    finally:
        receiver.close()
    (_, first, code), (headers, body, delivered_code) = receiver.calls[:2]
    assert (code, delivered_code) == (503, 200)
    assert first == body
    assert webhooks.verify(secret, body, headers["x-docvl-signature"])
    assert not webhooks.verify("whsec_other", body, headers["x-docvl-signature"])
    payload = json.loads(body)
    assert payload["event"] == "job.finished"
    assert payload["job"]["id"] == job_id
    assert payload["job"]["status"] == "succeeded"

    def recorded() -> list[dict[str, Any]] | None:
        events = api.get(f"/v1/jobs/{job_id}/result", headers=auth(key))  # keeps the key in use
        assert events.status_code == 200
        with frontdoor.db.transaction() as s:
            found = [e.data for e in jobs.events(s, uuid.UUID(job_id)) if e.kind == "webhook"]
        return found if len(found) == 2 else None

    attempts = wait_for(recorded, 30, "the webhook attempts in the job's events")
    assert [(a["attempt"], a["delivered"]) for a in attempts] == [(1, False), (2, True)]
    assert len(receiver.calls) == 2  # delivered once: no more calls


def test_listing_filters_by_status_and_pages_with_a_cursor(
    api: TestClient, frontdoor: FrontDoorPlatform
) -> None:
    key = frontdoor.key("lister")
    ids = [submit(api, key, path, ["ocr"]).json()["id"] for path in (PAGE, CHART)]
    cancelled = submit(api, key, FOUR_PAGES, ["ocr"]).json()["id"]
    api.post(f"/v1/jobs/{cancelled}/cancel", headers=auth(key))
    for job_id in ids:
        frontdoor.wait_finished(uuid.UUID(job_id))
    seen, cursor = [], None
    while True:
        page = api.get(
            "/v1/jobs", headers=auth(key), params={"limit": 1, **({"cursor": cursor} if cursor else {})}
        )
        body = page.json()
        seen += [j["id"] for j in body["jobs"]]
        cursor = body["next_cursor"]
        if cursor is None:
            break
    assert seen == [cancelled, *reversed(ids)]  # newest first
    only = api.get("/v1/jobs", headers=auth(key), params={"status": "cancelled"}).json()["jobs"]
    assert [j["id"] for j in only] == [cancelled]
    bad = api.get("/v1/jobs", headers=auth(key), params={"cursor": "garbage!"})
    assert (bad.status_code, bad.json()["error"]["code"]) == (422, "invalid_input")
    bad_status = api.get("/v1/jobs", headers=auth(key), params={"status": "paused"})
    assert bad_status.status_code == 422


def test_openapi_documents_the_error_schema(api: TestClient) -> None:
    spec = api.get("/openapi.json").json()
    assert {"/v1/jobs", "/v1/jobs/{job_id}", "/v1/jobs/{job_id}/result", "/v1/jobs/{job_id}/events"} <= set(
        spec["paths"]
    )
    assert "ErrorBody" in spec["components"]["schemas"]
    submit_op = spec["paths"]["/v1/jobs"]["post"]
    assert {"multipart/form-data", "application/json"} <= set(submit_op["requestBody"]["content"])
    assert {"409", "413", "415", "429"} <= set(submit_op["responses"])
    assert api.get("/docs").status_code == 200
    unknown = api.get("/v1/nothing-here")
    assert unknown.json()["error"]["code"] == "not_found"


def test_an_oversized_json_submission_is_refused(api: TestClient, frontdoor: FrontDoorPlatform) -> None:
    key = frontdoor.key("odd")
    body = b'{"source": "s3://x/y", "tasks": ["ocr"], "question": "' + b"q" * 70_000 + b'"}'
    big = api.post("/v1/jobs", headers={**auth(key), "Content-Type": "application/json"}, content=body)
    assert (big.status_code, big.json()["error"]["code"]) == (422, "invalid_input")
    assert "at most 65536 bytes" in big.json()["error"]["message"]


def test_a_submission_stands_while_the_broker_is_away(frontdoor: FrontDoorPlatform) -> None:
    """The job is committed and answered 202 even though its start request cannot be sent; a later
    request (what the reconciler sends) starts it. Readiness reports the broker but stays ready."""
    from tests.support.dispatch import celery_dispatch
    from tests.support.platform import environment
    from tests.support.services import free_port

    owner = f"outage-{uuid.uuid4().hex[:8]}"
    key = frontdoor.key(owner)
    with (
        environment({"DOCVL_REDIS_URL": f"redis://127.0.0.1:{free_port()}/0"}),
        TestClient(create_app()) as away,
    ):
        ready = away.get("/readyz")
        assert ready.status_code == 200, ready.text
        assert ready.json()["checks"]["broker"] != "ok"
        response = submit(away, key, PAGE, ["ocr"])
    assert response.status_code == 202, response.text
    job_id = uuid.UUID(response.json()["id"])
    # Stored: queued, or already started by a job runner's flow run that was still looking in Postgres for
    # jobs waiting (it lingers 0.3 s after its batch; the broker has no part in that).
    assert frontdoor.status(job_id) in (JobStatus.QUEUED, JobStatus.RUNNING, JobStatus.SUCCEEDED)
    celery_dispatch(frontdoor.env).start_jobs()
    assert frontdoor.wait_finished(job_id) is JobStatus.SUCCEEDED


def test_a_poller_gets_304_while_the_job_is_unchanged(api: TestClient, frontdoor: FrontDoorPlatform) -> None:
    """GET /v1/jobs/{id} carries an ETag; If-None-Match with it is answered 304 without a body until the
    job changes, then 200 with a new ETag. Retry-After (DOCVL_POLL_AFTER_S) only while unfinished."""
    owner = f"poller-{uuid.uuid4().hex[:8]}"
    key = frontdoor.key(owner)
    with frontdoor.db.transaction() as s:  # a queued job nothing starts within the test (no start request)
        document = jobs.get_or_create_document(
            s, sha256=uuid.uuid4().hex * 2, size_bytes=1, media_type="image/png", object_key="inputs/none"
        )
        job, _ = jobs.create_job(s, jobs.NewJob(owner=owner, document_id=document.id, tasks=[TaskKind.OCR]))
        job_id = job.id
    url = f"/v1/jobs/{job_id}"

    first = api.get(url, headers=auth(key))
    assert first.status_code == 200
    assert first.json()["status"] == "queued"
    etag = first.headers["etag"]
    assert first.headers["retry-after"] == str(ApiSettings().poll_after_s)

    unchanged = api.get(url, headers={**auth(key), "If-None-Match": etag})
    assert (unchanged.status_code, unchanged.content) == (304, b"")
    assert unchanged.headers["etag"] == etag
    assert "retry-after" in unchanged.headers
    weak = api.get(url, headers={**auth(key), "If-None-Match": f'"other", W/{etag}'})
    assert weak.status_code == 304
    assert api.get(url, headers={**auth(key), "If-None-Match": '"other"'}).status_code == 200

    assert api.post(f"{url}/cancel", headers=auth(key)).status_code == 200
    changed = api.get(url, headers={**auth(key), "If-None-Match": etag})
    assert changed.status_code == 200
    assert changed.json()["status"] == "cancelled"
    assert changed.headers["etag"] != etag
    assert "retry-after" not in changed.headers  # finished: nothing more to poll for
    again = api.get(url, headers={**auth(key), "If-None-Match": changed.headers["etag"]})
    assert again.status_code == 304
    assert "retry-after" not in again.headers
    other = api.get(url, headers={**auth(frontdoor.key("poller-other")), "If-None-Match": etag})
    assert other.status_code == 404  # the ETag tells nothing to another owner


def test_streams_look_rarely_while_notifications_are_live() -> None:
    """A stream's timed look is a safety net while the service's notifications are live (they wake it at
    each event); without them, or while their connection is down, it looks every poll_s."""

    class Notifier:
        connected = threading.Event()

    class Service:
        notifier = Notifier()

    assert watch.wait_s(ScriptedEvents(), 0.5) == 0.5  # no notifier at all
    assert watch.wait_s(Service(), 0.5) == 0.5  # its connection is down
    Notifier.connected.set()
    assert watch.wait_s(Service(), 0.5) == watch.LIVE_POLL_S
    assert watch.wait_s(Service(), 0.5, keepalive_s=2) == 2  # a keep-alive still goes out in time
    assert watch.wait_s(Service(), 30) == 30  # never more often than asked

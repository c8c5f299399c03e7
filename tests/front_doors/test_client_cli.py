"""The typed client (docvl.client) and the user-side CLI (docvl submit/status/result/cancel/jobs) against
the REST API served for real by uvicorn, in front of the running platform (tests/support/platform.py)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from docvl.client import ApiError, Client, WaitTimeout
from docvl.job_status import JobStatus
from docvl.jobs.views import JobView
from docvl.tasks import TaskKind
from tests.support.helpers import ROOT, png
from tests.support.platform import FrontDoorPlatform, api_in_thread
from tests.support.services import free_port

pytestmark = pytest.mark.slow

CHART = ROOT / "docvl" / "samples" / "chart.png"
PDF = ROOT / "tests" / "corpus" / "pdf-samples" / "004-pdflatex-4-pages" / "pdflatex-4-pages.pdf"


@pytest.fixture(scope="module")
def api_url(frontdoor: FrontDoorPlatform) -> Iterator[str]:
    """The REST API on a free loopback port, served by uvicorn in a thread."""
    with api_in_thread(frontdoor.service) as url:
        yield url


def docvl(*args: str, url: str, key: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "docvl", *args],
        env={**os.environ, "DOCVL_API_URL": url, "DOCVL_API_KEY": key},
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def test_cli_submit_wait_out_then_result_status_jobs(
    frontdoor: FrontDoorPlatform, api_url: str, tmp_path: Path
) -> None:
    key = frontdoor.key(f"cli-{uuid.uuid4().hex[:8]}")
    out = tmp_path / "out"
    done = docvl(
        "submit",
        "docvl/samples/chart.png",
        "tests/corpus/pdf-samples/004-pdflatex-4-pages/pdflatex-4-pages.pdf",
        "--task",
        "ocr",
        "--task",
        "qa",
        "--question",
        "What is shown?",
        "--wait",
        "--out",
        str(out),
        url=api_url,
        key=key,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    summary = {line.split()[0]: line.split() for line in done.stdout.splitlines() if line.strip()}
    assert len(summary) == 2, done.stdout
    pages = {}
    for job_id, fields in summary.items():
        assert fields[1] == "succeeded", done.stdout
        directory = out / job_id
        assert {"result.json", "document.md", "answers.json"} <= {p.name for p in directory.iterdir()}
        saved = json.loads((directory / "result.json").read_text())
        assert saved["job"]["id"] == job_id
        assert (directory / "document.md").read_text().startswith("<!-- page 1 -->")
        answers = json.loads((directory / "answers.json").read_text())
        pages[job_id] = len(answers["pages"])
        assert pages[job_id] == saved["job"]["progress"]["pages_total"]
    assert sorted(pages.values()) == [1, 4]

    for job_id, count in pages.items():
        shown = docvl("result", job_id, "--json", url=api_url, key=key)
        assert shown.returncode == 0, shown.stderr
        assert len(json.loads(shown.stdout)["pages"]) == count * 2

        text = docvl("result", job_id, url=api_url, key=key)
        assert text.returncode == 0, text.stderr
        assert "== ocr ==" in text.stdout
        assert "<!-- page 1 -->" in text.stdout
        assert "== qa ==" in text.stdout
        assert f"-- page {count} --" in text.stdout

        state = docvl("status", job_id, url=api_url, key=key)
        assert state.returncode == 0, state.stderr
        assert state.stdout.splitlines()[0] == f"{job_id} succeeded"

    listed = docvl("jobs", url=api_url, key=key)
    assert listed.returncode == 0, listed.stderr
    assert all(job_id in listed.stdout for job_id in pages)
    as_json = docvl("jobs", "--json", "--status", "succeeded", url=api_url, key=key)
    assert {j["id"] for j in json.loads(as_json.stdout)} == set(pages)


def test_client_submit_wait_result_download_events_and_listing(
    frontdoor: FrontDoorPlatform, api_url: str
) -> None:
    owner = f"client-{uuid.uuid4().hex[:8]}"
    with Client(api_url, frontdoor.key(owner)) as client:
        job = client.submit(png(11), ["ocr"], idempotency_key="first", filename="noise.png")
        assert job.status is JobStatus.QUEUED
        assert job.tasks == [TaskKind.OCR]
        assert client.submit(png(11), ["ocr"], idempotency_key="first").id == job.id  # replayed

        updates: list[JobView] = []
        final = client.wait(job.id, on_update=updates.append, timeout_s=180)
        assert final.status is JobStatus.SUCCEEDED
        assert updates[-1].status is JobStatus.SUCCEEDED
        assert updates[-1].progress == final.progress == client.get(job.id).progress
        counted = [u.progress.pages_done + u.progress.pages_failed for u in updates]
        assert counted == sorted(counted)
        assert final.progress.pages_done == final.progress.pages_total == 1

        result = client.result(job.id)
        assert result.pages
        assert all(page.model_id for page in result.pages)
        [document] = result.outputs["ocr"]
        assert document.name == "document.md"
        with pytest.raises(ApiError) as missing_output:
            client.read_output(job.id, "nothing.md")
        assert (missing_output.value.status, missing_output.value.code) == (404, "not_found")

        events = list(client.events(job.id))
        assert events == list(client.events(job.id))  # replayed, and the stream ends
        assert events[-1].status is JobStatus.SUCCEEDED
        assert [e.id for e in events] == sorted(e.id for e in events)
        assert list(client.events(job.id, after=events[-2].id)) == events[-1:]

        source = f"incoming/{uuid.uuid4().hex}.png"
        frontdoor.store.put(source, png(12), content_type="image/png")
        with_source = client.submit_source(
            f"s3://{frontdoor.store.bucket}/{source}", ["qa"], question="What?", priority=7
        )
        assert with_source.priority == 7
        assert client.wait(with_source.id, timeout_s=180).status is JobStatus.SUCCEEDED

        listed = [j.id for j in client.iter_jobs(limit=1)]
        assert listed == [j.id for j in client.jobs(limit=50).jobs]
        assert set(listed) == {job.id, with_source.id}
        assert [j.id for j in client.iter_jobs(JobStatus.SUCCEEDED, limit=1)] == [
            j.id for j in client.jobs(JobStatus.SUCCEEDED).jobs
        ]
        assert client.cancel(job.id).status is JobStatus.SUCCEEDED  # finished: unchanged

        with pytest.raises(ApiError) as missing:
            client.get(uuid.uuid4())
        assert (missing.value.status, missing.value.code) == (404, "not_found")


def test_client_download_streams_the_stored_file(
    frontdoor: FrontDoorPlatform, api_url: str, tmp_path: Path
) -> None:
    with Client(api_url, frontdoor.key(f"dl-{uuid.uuid4().hex[:8]}")) as client:
        job = client.submit(CHART, ["ocr", "chart2code"])
        assert client.wait(job.id, timeout_s=180).status is JobStatus.SUCCEEDED
        result = client.result(job.id)
        [document] = result.outputs["ocr"]
        path = client.download(job.id, "document.md", tmp_path)
        assert path == tmp_path / "document.md"
        assert path.read_bytes() == frontdoor.store.get(document.key)
        [code] = result.outputs["chart2code"]
        named = client.download(job.id, code.name, tmp_path / "sub" / "chart.py")
        assert named.read_bytes() == frontdoor.store.get(code.key)
        assert sorted(p.name for p in tmp_path.rglob("*")) == ["chart.py", "document.md", "sub"]


def test_client_errors(frontdoor: FrontDoorPlatform, api_url: str) -> None:
    with Client(api_url, "not-a-key") as client, pytest.raises(ApiError) as wrong_key:
        client.jobs()
    assert (wrong_key.value.status, wrong_key.value.code) == (401, "unauthenticated")

    with Client(api_url, api_key="") as client, pytest.raises(ApiError) as no_key:
        client.get(uuid.uuid4())
    assert no_key.value.code == "unauthenticated"

    unreachable = f"http://127.0.0.1:{free_port()}"
    with Client(unreachable, "any") as client, pytest.raises(ApiError) as down:
        client.get(uuid.uuid4())
    assert (down.value.status, down.value.code) == (0, "unavailable")
    assert unreachable in down.value.message

    with Client(api_url, frontdoor.key(f"err-{uuid.uuid4().hex[:8]}")) as client:
        with pytest.raises(ApiError) as not_a_document:
            client.submit(b"just some text", ["ocr"], filename="notes.txt")
        assert (not_a_document.value.status, not_a_document.value.code) == (415, "unsupported_document")
        with pytest.raises(ApiError) as no_question:
            client.submit(CHART, ["qa"])
        assert (no_question.value.status, no_question.value.code) == (422, "invalid_input")


def test_cli_refuses_a_non_document(frontdoor: FrontDoorPlatform, api_url: str, tmp_path: Path) -> None:
    notes = tmp_path / "notes.txt"
    notes.write_text("not a document\n")
    key = frontdoor.key(f"bad-{uuid.uuid4().hex[:8]}")
    refused = docvl("submit", str(notes), "--task", "ocr", url=api_url, key=key)
    assert refused.returncode == 1, refused.stdout + refused.stderr
    assert "error (unsupported_document)" in refused.stderr
    assert refused.stdout == ""

    usage = docvl("submit", str(tmp_path / "missing.pdf"), "--task", "ocr", url=api_url, key=key)
    assert usage.returncode == 2
    wrong = docvl("status", str(uuid.uuid4()), url=api_url, key="wrong")
    assert wrong.returncode == 1
    assert "error (unauthenticated)" in wrong.stderr


def test_cli_sends_a_password_from_a_file_and_a_page_range(
    frontdoor: FrontDoorPlatform, api_url: str, tmp_path: Path
) -> None:
    encrypted = PDF.parent.parent / "005-libreoffice-writer-password" / "libreoffice-writer-password.pdf"
    key = frontdoor.key(f"pw-{uuid.uuid4().hex[:8]}")
    password_file = tmp_path / "password"
    password_file.write_text("openpassword\n")
    done = docvl(
        "submit", str(encrypted), "--task", "ocr", "--password-file", str(password_file), "--wait",
        url=api_url, key=key,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    assert "succeeded" in done.stdout
    password_file.write_text("wrong\n")
    wrong = docvl(
        "submit", str(encrypted), "--task", "ocr", "--password-file", str(password_file), url=api_url, key=key
    )
    assert wrong.returncode == 1
    assert "error (wrong_password)" in wrong.stderr
    assert (
        "--password " not in docvl("submit", "--help", url=api_url, key=key).stdout
    )  # never on the command line

    ranged = docvl(
        "submit", str(PDF), "--task", "ocr", "--pages", "2-3", "--json", "--wait", url=api_url, key=key
    )
    assert ranged.returncode == 0, ranged.stdout + ranged.stderr
    with Client(api_url, key) as client:
        job = client.jobs(limit=1).jobs[0]
        assert (job.pages, job.progress.pages_total) == ("2-3", 2)
        assert [p.page for p in client.result(job.id).pages] == [2, 3]


class _NoEventStreams(httpx.HTTPTransport):
    """Breaks every event stream, as a proxy that cuts long responses would."""

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/events"):
            raise httpx.ReadError("stream cut", request=request)
        return super().handle_request(request)


def test_wait_polls_when_the_event_stream_breaks_and_cancel_from_the_cli(
    frontdoor: FrontDoorPlatform, api_url: str
) -> None:
    key = frontdoor.key(f"poll-{uuid.uuid4().hex[:8]}")
    with Client(api_url, key, transport=_NoEventStreams(), poll_interval_s=0.2) as client:
        job = client.submit(png(21), ["ocr"])
        with pytest.raises(ApiError) as broken:
            next(client.events(job.id))
        assert broken.value.code == "unavailable"
        updates: list[JobView] = []
        assert client.wait(job.id, on_update=updates.append, timeout_s=180).status is JobStatus.SUCCEEDED
        assert updates[-1].status is JobStatus.SUCCEEDED

    with Client(api_url, key) as client:
        doomed = client.submit(PDF, ["ocr"])
        with pytest.raises(WaitTimeout) as timed_out:
            client.wait(doomed.id, timeout_s=0.01)  # not 0.3 s: the four pages were done in less
        assert timed_out.value.code == "timeout"
        cancelled = docvl("cancel", str(doomed.id), url=api_url, key=key)
        assert cancelled.returncode == 0, cancelled.stderr
        status = client.get(doomed.id).status
        assert status.finished
        assert cancelled.stdout.strip() == f"{doomed.id} {status}"


def test_wait_on_a_running_job_never_goes_backwards() -> None:
    """The stream replays the job's events from the first; updates start from the job as it is now."""
    job_id = uuid.uuid4()
    now = "2026-01-01T00:00:00Z"
    calls = {"get": 0}

    def job(status: str, done: int) -> dict[str, object]:
        return {
            "id": str(job_id),
            "status": status,
            "tasks": ["ocr"],
            "priority": 5,
            "progress": {"pages_total": 4, "pages_done": done, "pages_failed": 0},
            "error": None,
            "created_at": now,
            "updated_at": now,
        }

    def event(n: int, kind: str, status: str, data: dict[str, int]) -> str:
        body = {"id": n, "kind": kind, "status": status, "data": data, "created_at": now}
        return f"id: {n}\nevent: {kind}\ndata: {json.dumps(body)}\n\n"

    stream = (
        event(1, "status", "queued", {})
        + ": keep-alive\n\n"
        + event(2, "status", "running", {"pages_total": 4})
        + "".join(
            event(2 + i, "progress", "running", {"pages_total": 4, "pages_done": i, "pages_failed": 0})
            for i in range(1, 5)
        )
        + event(7, "status", "succeeded", {})
        + "event: end\ndata: {}\n\n"
    )

    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/events"):
            return httpx.Response(200, text=stream, headers={"Content-Type": "text/event-stream"})
        calls["get"] += 1
        return httpx.Response(200, json=job("running", 2) if calls["get"] == 1 else job("succeeded", 4))

    updates: list[JobView] = []
    with Client("http://docvl.test", "k", transport=httpx.MockTransport(handler)) as client:
        final = client.wait(job_id, on_update=updates.append)
        assert [e.id for e in client.events(job_id)] == [1, 2, 3, 4, 5, 6, 7]
    assert final.status is JobStatus.SUCCEEDED
    assert [(u.status.value, u.progress.pages_done) for u in updates] == [
        ("running", 2),
        ("running", 3),
        ("running", 4),
        ("succeeded", 4),
    ]
    assert calls["get"] == 2  # the job first, and once more when the stream has ended

    gets = []

    def ended(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/events"):
            return handler(request)
        gets.append(request.url.path)
        return httpx.Response(200, json=job("succeeded", 4))

    updates.clear()
    submitted = JobView.model_validate(job("queued", 0))  # what submit returned
    with Client("http://docvl.test", "k", transport=httpx.MockTransport(ended)) as client:
        final = client.wait(submitted, on_update=updates.append)
    assert final.status is JobStatus.SUCCEEDED
    assert len(gets) == 1, "waiting on the job submit returned does not ask for it first"
    assert [(u.status.value, u.progress.pages_done) for u in updates] == [
        ("queued", 0),
        ("running", 0),
        ("running", 1),
        ("running", 2),
        ("running", 3),
        ("running", 4),
        ("succeeded", 4),
    ]

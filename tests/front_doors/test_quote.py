"""A quote before a job (dry_run), through the running platform (tests/support/platform.py): REST (form and
JSON), gRPC, the client and the CLI answer what a job would cost and when it would end, checking the
document exactly as a submission does (the same refusals) and storing nothing."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from docvl.client import Client
from docvl.db.models import Document, Job
from docvl.job_status import JobStatus
from docvl.jobs.quote import DEFAULT_OUTPUT_TOKENS, Pricing
from docvl.jobs.service import JobService
from docvl.tasks import TaskKind
from docvl.v1 import jobs_pb2 as pb
from docvl.v1 import jobs_pb2_grpc as pb_grpc
from services.api.app import create_app
from services.api.settings import ApiSettings
from services.gateway.server import Gateway, start
from services.gateway.settings import GatewaySettings
from tests.support import office_files
from tests.support.helpers import ROOT, png
from tests.support.platform import FrontDoorPlatform, api_in_thread

pytestmark = pytest.mark.slow
CORPUS = ROOT / "tests" / "corpus" / "pdf-samples"
FOUR_PAGES = CORPUS / "004-pdflatex-4-pages" / "pdflatex-4-pages.pdf"
ENCRYPTED = CORPUS / "005-libreoffice-writer-password" / "libreoffice-writer-password.pdf"


@pytest.fixture(scope="module")
def api(frontdoor: FrontDoorPlatform) -> Iterator[TestClient]:
    with TestClient(create_app(ApiSettings(), frontdoor.service)) as client:
        yield client


def auth(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def stored(frontdoor: FrontDoorPlatform) -> tuple[int, int, int]:
    """Jobs and documents in the database, objects in the bucket."""
    with frontdoor.db.transaction() as s:
        counts = s.execute(
            select(select(func.count()).select_from(Job).scalar_subquery(), func.count(Document.id))
        ).one()
    return int(counts[0]), int(counts[1]), len(list(frontdoor.store.list("")))


def post(api: TestClient, key: str, path: Path, **fields: Any) -> Any:
    with path.open("rb") as document:
        return api.post("/v1/jobs", headers=auth(key), files={"file": (path.name, document)}, data=fields)


def test_a_quote_counts_pages_tasks_and_tokens_and_stores_nothing(
    frontdoor: FrontDoorPlatform, api: TestClient
) -> None:
    key = frontdoor.key(f"quote-{uuid.uuid4().hex[:8]}")
    before = stored(frontdoor)
    answer = post(api, key, FOUR_PAGES, tasks=["ocr", "layout"], pages="1-3", priority="9", dry_run="true")
    assert answer.status_code == 200, answer.text
    quote = answer.json()
    assert quote["dry_run"] is True
    assert (quote["pages"], quote["page_tasks"]) == (3, 6)
    assert [t["task"] for t in quote["tasks"]] == ["ocr", "layout"]
    assert all(t["page_tasks"] == 3 for t in quote["tasks"])
    assert quote["output_tokens"] == sum(t["output_tokens"] for t in quote["tasks"])
    assert quote["gpu_seconds"] == pytest.approx(sum(t["gpu_seconds"] for t in quote["tasks"]), abs=0.01)
    assert quote["expected_start"] <= quote["expected_finish"]
    assert quote["price"] is None, "no price of a GPU-hour is configured here"
    assert stored(frontdoor) == before, "a quote stores no job, no document and no object"
    assert api.get("/v1/jobs", headers=auth(key)).json()["jobs"] == []

    source = f"s3://{frontdoor.settings.s3_bucket}/quote-{uuid.uuid4().hex[:8]}.pdf"
    frontdoor.store.put(source.split("/", 3)[3], FOUR_PAGES.read_bytes(), content_type="application/pdf")
    named = api.post(
        "/v1/jobs", headers=auth(key), json={"source": source, "tasks": ["ocr"], "dry_run": True}
    )
    assert named.status_code == 200, named.text
    assert (named.json()["pages"], named.json()["page_tasks"]) == (4, 4)


def test_the_estimates_follow_this_deployments_history(frontdoor: FrontDoorPlatform, api: TestClient) -> None:
    """After a QA job, a QA quote is priced from the medians of the deployment's QA results; a task
    without history (chart2code, never run here) from the documented defaults."""
    key = frontdoor.key(f"quote-{uuid.uuid4().hex[:8]}")
    image = png(91_000 + uuid.uuid4().int % 1000)
    sent = api.post(
        "/v1/jobs",
        headers=auth(key),
        files={"file": ("page.png", image)},
        data={"tasks": ["qa"], "question": "What is it?", "reuse": "false"},
    )
    assert frontdoor.wait_finished(uuid.UUID(sent.json()["id"])) is JobStatus.SUCCEEDED
    quote = api.post(
        "/v1/jobs",
        headers=auth(key),
        files={"file": ("page.png", image)},
        data={"tasks": ["qa", "chart2code"], "question": "And now?", "dry_run": "true"},
    ).json()
    qa, chart = quote["tasks"]
    assert (qa["basis"], chart["basis"]) == ("history", "default")
    assert qa["history_results"] >= 1
    assert 0 < qa["output_tokens"] <= 12, "the tiny model's answers are capped at 12 tokens in these tests"
    assert chart["output_tokens"] == DEFAULT_OUTPUT_TOKENS[TaskKind.CHART2CODE]
    assert (quote["page_tasks_per_s"] or 0) > 0, "pages finished lately"


def test_a_quote_gets_the_refusal_a_submission_gets(frontdoor: FrontDoorPlatform, api: TestClient) -> None:
    key = frontdoor.key(f"quote-{uuid.uuid4().hex[:8]}")
    for path, fields in (
        (FOUR_PAGES, {"tasks": ["qa"]}),  # no question
        (FOUR_PAGES, {"tasks": ["ocr"], "pages": "7-9"}),  # past the last page
        (ENCRYPTED, {"tasks": ["ocr"]}),  # no password
    ):
        submitted = post(api, key, path, **fields)
        quoted = post(api, key, path, **fields, dry_run="true")
        assert submitted.status_code >= 400
        assert (quoted.status_code, quoted.json()) == (submitted.status_code, submitted.json())


def test_an_office_document_is_converted_to_count_its_pages(
    frontdoor: FrontDoorPlatform, api: TestClient, tmp_path: Path
) -> None:
    if frontdoor.service.converter is None or frontdoor.service.converter.unavailable() is not None:
        pytest.skip("LibreOffice is not installed (.ci/run installs it)")
    key = frontdoor.key(f"quote-{uuid.uuid4().hex[:8]}")
    answer = post(api, key, office_files.word(tmp_path / "three.docx", 3), tasks=["ocr"], dry_run="true")
    assert answer.status_code == 200, answer.text
    assert answer.json()["pages"] == 3
    assert list(tmp_path.iterdir()) == [tmp_path / "three.docx"]


def test_a_configured_gpu_hour_prices_the_quote(frontdoor: FrontDoorPlatform) -> None:
    live = frontdoor.service
    priced = JobService(
        live.db,
        live.store,
        live.limits,
        live.dispatch,
        source_store=live.source_store,
        pricing=Pricing(2.5, "EUR"),
    )
    key = frontdoor.key(f"quote-{uuid.uuid4().hex[:8]}")
    with TestClient(create_app(ApiSettings(), priced)) as client:
        quote = post(client, key, FOUR_PAGES, tasks=["ocr"], dry_run="true").json()
    assert quote["currency"] == "EUR"
    assert quote["price"] == pytest.approx(quote["gpu_seconds"] / 3600 * 2.5, rel=1e-3, abs=1e-8)


def test_grpc_the_client_and_the_cli_quote_too(frontdoor: FrontDoorPlatform) -> None:
    key = frontdoor.key(f"quote-{uuid.uuid4().hex[:8]}")
    before = stored(frontdoor)
    gateway: Gateway
    gateway, port = start(GatewaySettings(host="127.0.0.1", port=0), frontdoor.service)
    try:
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            request = pb.SubmitJobRequest(
                content=FOUR_PAGES.read_bytes(), tasks=["ocr"], pages="2-", dry_run=True
            )
            answer = pb_grpc.JobServiceStub(channel).SubmitJob(
                request, metadata=(("x-api-key", key),), timeout=60
            )
    finally:
        gateway.stop(1)
    assert (answer.id, answer.status) == ("", "quoted")
    assert (answer.quote.pages, answer.quote.page_tasks, answer.quote.tasks[0].task) == (3, 3, "ocr")
    assert not answer.quote.HasField("price")

    with api_in_thread(frontdoor.service) as url:
        with Client(url, key) as client:
            quote = client.quote(FOUR_PAGES, ["ocr", "qa"], question="Why?")
        assert (quote.pages, quote.page_tasks) == (4, 8)
        command = [sys.executable, "-m", "docvl", "submit", str(FOUR_PAGES), "-t", "ocr", "--dry-run"]
        env = {**os.environ, "DOCVL_API_URL": url, "DOCVL_API_KEY": key}
        text = subprocess.run(
            command, env=env, cwd=ROOT, capture_output=True, text=True, timeout=120, check=False
        )
        as_json = subprocess.run(
            [*command, "--json"], env=env, cwd=ROOT, capture_output=True, text=True, timeout=120, check=False
        )
    assert text.returncode == 0, text.stderr
    assert text.stdout.startswith("4 pages, 4 page tasks, ")
    assert json.loads(as_json.stdout)["pages"] == 4
    assert stored(frontdoor) == before

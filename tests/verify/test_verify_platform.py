"""Verification end to end, on the running platform (tests/support/platform.py): a PDF page through OCR,
chart2code and web2html; its verdicts and the job's summary over gRPC, REST (the Python client) and `docvl
result`."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from docvl.client import Client
from docvl.v1 import jobs_pb2 as pb
from docvl.v1 import jobs_pb2_grpc as pb_grpc
from services.gateway.server import start
from services.gateway.settings import GatewaySettings
from tests.front_doors import test_client_cli
from tests.support.helpers import ROOT
from tests.support.platform import FrontDoorPlatform

pytestmark = pytest.mark.slow
PDF = ROOT / "tests" / "corpus" / "pdf-samples" / "004-pdflatex-4-pages" / "pdflatex-4-pages.pdf"
TASKS = ["ocr", "chart2code", "web2html"]
api_url = test_client_cli.api_url  # the REST API served by uvicorn, as the client tests have it


@pytest.fixture(scope="module")
def stub(frontdoor: FrontDoorPlatform) -> Iterator[Any]:
    import grpc

    gateway, _ = start(GatewaySettings(host="127.0.0.1", port=0), frontdoor.service)
    with grpc.insecure_channel(f"127.0.0.1:{gateway.port}") as channel:
        yield pb_grpc.JobServiceStub(channel)
    gateway.stop(1)


@pytest.fixture(scope="module")
def verified_job(frontdoor: FrontDoorPlatform, stub: Any) -> tuple[str, str]:
    """(job id, key) of a finished job: page 1 of a PDF with a text layer, through three checked tasks."""
    key = frontdoor.key(f"verify-{uuid.uuid4().hex[:8]}")
    request = pb.SubmitJobRequest(content=PDF.read_bytes(), tasks=TASKS, pages="1")
    job = stub.SubmitJob(request, metadata=(("x-api-key", key),), timeout=60)
    frontdoor.wait_finished(uuid.UUID(job.id), 240)
    return job.id, key


def test_grpc_result_carries_verdicts_and_summaries(stub: Any, verified_job: tuple[str, str]) -> None:
    job_id, key = verified_job
    result = stub.GetJobResult(pb.GetJobRequest(job_id=job_id), metadata=(("x-api-key", key),), timeout=30)
    pages = {page.task: page for page in result.pages}
    assert set(pages) == set(TASKS)
    for page in pages.values():
        assert page.HasField("verification"), page.task
        verdict = page.verification.verdict
        assert verdict.HasField("passed")  # bubblewrap and Chromium are here: every check ran
        attempts = page.verification.attempts
        assert [a.attempt for a in attempts] == list(range(1, len(attempts) + 1))
        assert len(attempts) == (1 if attempts[0].passed else 2)  # DOCVL_VERIFY_ATTEMPTS: 2
        assert 1 <= page.verification.kept_attempt <= len(attempts)
        if len(attempts) == 2:
            assert attempts[1].temperature > 0
    chart = pages["chart2code"].verification.verdict
    assert chart.HasField("executed")
    assert 0.0 <= chart.similarity <= 1.0
    web = pages["web2html"].verification.verdict
    assert web.HasField("rendered")
    assert 0.0 <= web.similarity <= 1.0
    assert web.HasField("text_layer_recall")  # the PDF page has a text layer
    ocr = pages["ocr"].verification.verdict
    assert 0.0 <= ocr.repetition <= 1.0
    assert ocr.HasField("text_layer_cer")
    assert 0.0 <= ocr.text_layer_f1 <= 1.0
    summaries = {s.task: s for s in result.summaries}
    assert set(summaries) == set(TASKS)
    for task, summary in summaries.items():
        assert summary.pages_checked == 1
        assert summary.pages_passed == int(pages[task].verification.verdict.passed)
    assert summaries["chart2code"].HasField("mean_similarity")
    assert summaries["ocr"].HasField("mean_repetition")


def test_rest_client_and_cli_show_them(api_url: str, verified_job: tuple[str, str]) -> None:
    job_id, key = verified_job
    with Client(api_url, key) as client:
        view = client.result(uuid.UUID(job_id))
    assert set(view.summary) == set(TASKS)
    for page in view.pages:
        assert page.verification is not None
        assert page.verification.passed is not None
        assert page.verification.attempts
    done = test_client_cli.docvl("result", job_id, url=api_url, key=key)
    assert done.returncode == 0, done.stderr
    assert done.stdout.count("verified: ") == 3
    assert "(check: " in done.stdout  # chart2code's and web2html's pages

"""Layout end to end, through the running platform (tests/support/platform.py): a page of a real PDF
submitted with `layout` over REST, over gRPC and with the CLI goes through the job runner, a page worker
and the DeepSeek-OCR-2 model worker, and comes back as a document.json valid against the schema the API
serves, with blocks boxed inside the page, its figure cropped and stored, and chunks.jsonl anchored to the
page. A platform whose workers serve no layout refuses it at submission.

The layout worker is the tiny random DeepSeek-OCR-2, steered by a TEST-ONLY logits hook to write a real
grounded answer (tests/support/scripted.py, LAYOUT_PAGE): its own output would be junk, and what is tested
here is everything the platform does with a real one."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import replace
from typing import Any, cast

import grpc
import jsonschema
import pytest
from fastapi.testclient import TestClient

from docvl.inference.routing import ModelFleet
from docvl.job_status import JobStatus
from docvl.jobs.service import JobService
from docvl.v1 import jobs_pb2 as pb
from docvl.v1 import jobs_pb2_grpc as pb_grpc
from services.api.app import create_app
from services.api.settings import ApiSettings
from services.gateway.server import Gateway, start
from services.gateway.settings import GatewaySettings
from tests.support.helpers import ROOT
from tests.support.platform import FrontDoorPlatform, api_in_thread

pytestmark = pytest.mark.slow
PDF = ROOT / "tests" / "corpus" / "pdf-samples" / "004-pdflatex-4-pages" / "pdflatex-4-pages.pdf"
SCHEMA = "/v1/schemas/document-v1.json"
# What the scripted answer's labels become in docvl's vocabulary, in reading order.
LABELS = ["title", "text", "section_header", "table", "figure", "caption", "footer"]


@pytest.fixture(scope="module")
def api(frontdoor: FrontDoorPlatform) -> Iterator[TestClient]:
    with TestClient(create_app(ApiSettings(), frontdoor.service)) as client:
        yield client


@pytest.fixture(scope="module")
def stub(frontdoor: FrontDoorPlatform) -> Iterator[Any]:
    gateway: Gateway
    gateway, port = start(GatewaySettings(host="127.0.0.1", port=0), frontdoor.service)
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        yield pb_grpc.JobServiceStub(channel)
    gateway.stop(1)


def owner() -> str:
    return f"layout-e2e-{uuid.uuid4().hex[:8]}"


def checked_document(
    frontdoor: FrontDoorPlatform, document: dict[str, Any], served_schema: dict[str, Any], number: int
) -> None:
    """The document is valid against the served schema, its one page is the PDF's page `number` (the
    document's own numbering, whatever the page range) with the scripted blocks,
    every box is inside the page (pixels and points) and not degenerate, and the figure's crop is stored."""
    jsonschema.Draft202012Validator(served_schema).validate(document)
    (page,) = document["pages"]
    assert page["number"] == number
    assert [b["label"] for b in page["blocks"]] == LABELS
    assert page["width_pt"], "a PDF page keeps its size in points"
    assert page["height_pt"]
    for block in page["blocks"]:
        for unit in ("px", "pt"):
            x0, y0, x1, y1 = block[f"box_{unit}"]
            assert 0 <= x0 < x1 <= page[f"width_{unit}"], block
            assert 0 <= y0 < y1 <= page[f"height_{unit}"], block
    table = page["blocks"][LABELS.index("table")]
    assert "1,200" in table["text"]
    (figure,) = [b for b in page["blocks"] if b["label"] == "figure"]
    crop = frontdoor.store.get(figure["figure_key"])
    assert crop.startswith(b"\x89PNG"), "the figure is cropped from the page image and stored"


def checked_chunks(chunks: list[dict[str, Any]], document: dict[str, Any]) -> None:
    (page,) = document["pages"]
    ids = {b["id"] for b in page["blocks"]}
    assert chunks
    for chunk in chunks:
        assert chunk["pages"] == [page["number"]]
        assert chunk["boxes"]
        assert all(box["page"] == page["number"] and box["block_id"] in ids for box in chunk["boxes"])
    assert any("1,200" in chunk["text"] for chunk in chunks)
    assert any(chunk["heading_path"] for chunk in chunks), "chunks under a heading carry its path"


def test_a_pdf_page_with_layout_over_rest(frontdoor: FrontDoorPlatform, api: TestClient) -> None:
    headers = {"Authorization": f"Bearer {frontdoor.key(owner())}"}
    with PDF.open("rb") as pdf:
        submitted = api.post(
            "/v1/jobs",
            headers=headers,
            files={"file": (PDF.name, pdf, "application/pdf")},
            data={"tasks": ["layout", "ocr"], "pages": "2"},
        )
    assert submitted.status_code == 202, submitted.text
    job_id = uuid.UUID(submitted.json()["id"])
    assert frontdoor.wait_finished(job_id, 300) is JobStatus.SUCCEEDED

    served_schema = api.get(SCHEMA).json()
    document = api.get(f"/v1/jobs/{job_id}/document", headers=headers)
    assert document.status_code == 200, document.text
    checked_document(frontdoor, document.json(), served_schema, 2)
    chunks = api.get(f"/v1/jobs/{job_id}/chunks", headers=headers)
    checked_chunks([json.loads(line) for line in chunks.text.splitlines()], document.json())

    result = api.get(f"/v1/jobs/{job_id}/result", headers=headers).json()
    assert [f["name"] for f in result["outputs"]["layout"]] == ["document.json", "layout.md", "chunks.jsonl"]
    assert {p["task"] for p in result["pages"]} == {"layout", "ocr"}
    (layout_page,) = [p for p in result["pages"] if p["task"] == "layout"]
    assert layout_page["verification"] is not None, "the boxes were checked against the page"
    assert "<|ref|>" in layout_page["text"], "the page result keeps the grounded answer"


def test_a_pdf_page_with_layout_over_grpc(frontdoor: FrontDoorPlatform, stub: Any, api: TestClient) -> None:
    metadata = (("x-api-key", frontdoor.key(owner())),)
    job = stub.SubmitJob(
        pb.SubmitJobRequest(content=PDF.read_bytes(), tasks=["layout"], pages="1"), metadata=metadata
    )
    updates = list(stub.WatchJob(pb.WatchJobRequest(job_id=job.id), metadata=metadata, timeout=300))
    assert updates[-1].job.status == "succeeded"

    def fetched(kind: int) -> bytes:
        request = pb.GetJobDocumentRequest(job_id=job.id, format=cast(Any, kind))
        return b"".join(m.data for m in stub.GetJobDocument(request, metadata=metadata, timeout=30))

    document = json.loads(fetched(pb.DOCUMENT_FORMAT_DOCUMENT_JSON))
    checked_document(frontdoor, document, api.get(SCHEMA).json(), 1)
    chunks = [json.loads(line) for line in fetched(pb.DOCUMENT_FORMAT_CHUNKS_JSONL).decode().splitlines()]
    checked_chunks(chunks, document)


def test_a_pdf_page_with_layout_with_the_cli(frontdoor: FrontDoorPlatform, api: TestClient) -> None:
    env = {**os.environ, "DOCVL_API_KEY": frontdoor.key(owner())}

    def docvl(*args: str, url: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "docvl", *args],
            env={**env, "DOCVL_API_URL": url},
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=400,
            check=False,
        )

    with api_in_thread(frontdoor.service) as url:
        sent = docvl("submit", str(PDF), "--task", "layout", "--pages", "3", "--wait", url=url)
        assert sent.returncode == 0, sent.stderr
        job_id = sent.stdout.split()[0]
        as_json = docvl("result", job_id, "--format", "json", url=url)
        assert as_json.returncode == 0, as_json.stderr
        as_chunks = docvl("result", job_id, "--format", "chunks", url=url)
        assert as_chunks.returncode == 0, as_chunks.stderr
    document = json.loads(as_json.stdout)
    checked_document(frontdoor, document, api.get(SCHEMA).json(), 3)
    checked_chunks([json.loads(line) for line in as_chunks.stdout.splitlines()], document)


def test_layout_is_refused_at_submission_where_no_worker_serves_it(
    frontdoor: FrontDoorPlatform, stub: Any
) -> None:
    """A deployment of DeepSeek-VL workers only (the platform's first target) refuses layout at once,
    saying so, and creates no job; the tasks it serves are still taken."""
    vl_only = ModelFleet(frontdoor.settings.model_worker_targets[:1])
    vl_only.refresh(stale_only=False)
    live = frontdoor.service
    service = JobService(
        live.db,
        live.store,
        replace(live.limits, served=vl_only.check_served),
        live.dispatch,
        source_store=live.source_store,
    )
    mine = owner()
    headers = {"Authorization": f"Bearer {frontdoor.key(mine)}"}
    try:
        with TestClient(create_app(ApiSettings(), service)) as client:
            refused = client.post(
                "/v1/jobs",
                headers=headers,
                files={"file": (PDF.name, PDF.read_bytes(), "application/pdf")},
                data={"tasks": ["ocr", "layout"]},
            )
            assert refused.status_code == 422, refused.text
            assert refused.json()["error"]["code"] == "invalid_input"
            message = refused.json()["error"]["message"]
            assert "serves layout" in message
            assert "DeepSeek-OCR-2" in message
            assert client.get("/v1/jobs", headers=headers).json()["jobs"] == [], "nothing was created"
            taken = client.post(
                "/v1/jobs",
                headers=headers,
                files={"file": (PDF.name, PDF.read_bytes(), "application/pdf")},
                data={"tasks": ["ocr"], "pages": "1"},
            )
            assert taken.status_code == 202, taken.text
    finally:
        vl_only.close()

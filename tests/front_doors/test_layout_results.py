"""How users get a layout job's results: REST (the public schema, the document, the chunks), gRPC
(GetJobDocument), the Python client and `docvl result --format`, on layout jobs written into the record
as the layout pipeline leaves them (tests/front_doors/layout_jobs.py), in front of a job service that only
reads (no broker, no model worker)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from typing import Any, cast

import grpc
import pytest
from fastapi.testclient import TestClient

from docvl.client import ApiError, Client
from docvl.db import api_keys
from docvl.db.database import Database
from docvl.job_status import JobStatus
from docvl.jobs.service import JobService
from docvl.layout import SCHEMA_ID, Document, chunk_document, document_markdown, schema, validate
from docvl.tasks import TaskKind
from docvl.v1 import jobs_pb2 as pb
from docvl.v1 import jobs_pb2_grpc as pb_grpc
from services.api.app import create_app
from services.api.settings import ApiSettings
from services.gateway import mapping
from services.gateway.server import Gateway, start
from services.gateway.settings import GatewaySettings
from tests.front_doors.layout_jobs import HOSTILE, HOSTILE_TEXT, layout_service, stored_layout_job
from tests.support.helpers import ROOT
from tests.support.platform import api_in_thread

SCHEMA = "/v1/schemas/document-v1.json"


@pytest.fixture(scope="module")
def svc(migrated_database: Database, tmp_path_factory: pytest.TempPathFactory) -> JobService:
    return layout_service(migrated_database, tmp_path_factory.mktemp("layout-store"))


@pytest.fixture(scope="module")
def api(svc: JobService) -> Iterator[TestClient]:
    with TestClient(create_app(ApiSettings(), svc)) as client:
        yield client


@pytest.fixture(scope="module")
def api_url(svc: JobService) -> Iterator[str]:
    with api_in_thread(svc) as url:
        yield url


@pytest.fixture(scope="module")
def stub(svc: JobService) -> Iterator[Any]:
    gateway: Gateway
    gateway, port = start(GatewaySettings(host="127.0.0.1", port=0), svc)
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        yield pb_grpc.JobServiceStub(channel)
    gateway.stop(1)


def key(svc: JobService, owner: str) -> str:
    with svc.db.transaction() as s:
        return api_keys.create_key(s, owner).secret


def owner() -> str:
    return f"layout-{uuid.uuid4().hex[:8]}"


def auth(secret: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {secret}"}


def expected_chunks(document: Document) -> list[dict[str, Any]]:
    return [c.to_json() for c in chunk_document(document)]


# -- REST ------------------------------------------------------------------------------------------------


def test_the_schema_is_public_and_the_routes_are_documented(api: TestClient) -> None:
    served = api.get(SCHEMA)  # no API key
    assert served.status_code == 200
    assert served.headers["content-type"] == "application/schema+json"
    assert served.json() == schema()
    assert served.json()["$id"] == SCHEMA_ID

    spec = api.get("/openapi.json").json()
    assert "security" not in spec["paths"][SCHEMA]["get"]
    for path, media_type in (("document", "application/json"), ("chunks", "application/x-ndjson")):
        operation = spec["paths"][f"/v1/jobs/{{job_id}}/{path}"]["get"]
        assert operation["security"] == [{"HTTPBearer": []}]
        assert media_type in operation["responses"]["200"]["content"]
        conflict = operation["responses"]["409"]["description"]
        for code in ("layout_not_requested", "job_not_finished", "layout_unavailable"):
            assert code in conflict
    outputs = spec["components"]["schemas"]["ResultView"]["properties"]["outputs"]["description"]
    assert "document.json" in outputs
    assert SCHEMA in outputs
    assert "chunks.jsonl" in outputs


def test_a_finished_layout_jobs_document_and_chunks(api: TestClient, svc: JobService) -> None:
    secret = key(svc, mine := owner())
    job_id, document = stored_layout_job(svc, mine)

    served = api.get(f"/v1/jobs/{job_id}/document", headers=auth(secret))
    assert served.status_code == 200
    assert served.headers["content-type"] == "application/json"
    validate(served.json())
    assert served.json() == document.to_json()
    (page,) = served.json()["pages"]
    assert [b["label"] for b in page["blocks"]] == ["title", "text", "table"]
    assert page["blocks"][0]["box_px"] == pytest.approx([59.56, 61.66, 358.21, 107.91])

    chunks = api.get(f"/v1/jobs/{job_id}/chunks", headers=auth(secret))
    assert chunks.status_code == 200
    assert chunks.headers["content-type"] == "application/x-ndjson"
    lines = [json.loads(line) for line in chunks.text.splitlines()]
    assert lines == expected_chunks(document)
    assert lines
    assert all(chunk["pages"] == [1] and chunk["boxes"] for chunk in lines)

    result = api.get(f"/v1/jobs/{job_id}/result", headers=auth(secret)).json()
    assert [f["name"] for f in result["outputs"]["layout"]] == ["document.json", "layout.md", "chunks.jsonl"]
    download = api.get(f"/v1/jobs/{job_id}/outputs/chunks.jsonl", headers=auth(secret))
    assert download.headers["content-type"] == "application/x-ndjson"
    assert download.content == chunks.content


def test_layout_results_are_refused_clearly(api: TestClient, svc: JobService) -> None:
    secret = key(svc, mine := owner())
    finished, _ = stored_layout_job(svc, mine)
    ocr_only, _ = stored_layout_job(svc, mine, tasks=(TaskKind.OCR,))
    running, _ = stored_layout_job(svc, mine, status=JobStatus.RUNNING)
    failed, _ = stored_layout_job(svc, mine, status=JobStatus.FAILED, with_outputs=False)
    theirs = key(svc, owner())
    for path in ("document", "chunks"):
        for job_id, headers, status, code, says in (
            (finished, auth(theirs), 404, "not_found", "no job"),
            (finished, {}, 401, "unauthenticated", ""),
            (uuid.uuid4(), auth(secret), 404, "not_found", ""),
            (ocr_only, auth(secret), 409, "layout_not_requested", "tasks=layout"),
            (running, auth(secret), 409, "job_not_finished", "wait"),
            (failed, auth(secret), 409, "layout_unavailable", "ended failed (all_pages_failed"),
        ):
            refused = api.get(f"/v1/jobs/{job_id}/{path}", headers=headers)
            assert refused.status_code == status, (path, code, refused.text)
            assert refused.json()["error"]["code"] == code
            assert says in refused.json()["error"]["message"]
    assert api.get("/v1/jobs/not-a-uuid/document", headers=auth(secret)).status_code == 422


def test_the_consoles_page_view_carries_each_pages_blocks(api: TestClient, svc: JobService) -> None:
    secret = key(svc, mine := owner())
    job_id, document = stored_layout_job(svc, mine, HOSTILE)
    view = api.get(f"/v1/jobs/{job_id}/pages", headers=auth(secret)).json()
    (result,) = view["pages"][0]["results"]
    assert result["task"] == "layout"
    assert result["html"] is None
    layout = result["layout"]
    assert (layout["width_px"], layout["height_px"]) == (850, 1100)
    blocks = document.pages[0].blocks
    assert [b["id"] for b in layout["blocks"]] == [b.id for b in blocks]
    assert [b["boxes_px"] for b in layout["blocks"]] == [[list(r) for r in b.boxes_px] for b in blocks]
    assert layout["blocks"][-1]["text"] == HOSTILE_TEXT  # as the model wrote it: the console sets it as text


# -- the Python client and the CLI ------------------------------------------------------------------------


def test_the_client_returns_the_document_the_chunks_and_the_schema(api_url: str, svc: JobService) -> None:
    secret = key(svc, mine := owner())
    job_id, document = stored_layout_job(svc, mine)
    running, _ = stored_layout_job(svc, mine, status=JobStatus.RUNNING)
    with Client(api_url, secret) as client:
        assert client.document(job_id) == document.to_json()
        assert client.chunks(str(job_id)) == expected_chunks(document)
        assert client.schema() == schema()
        with pytest.raises(ApiError) as refused:
            client.chunks(running)
    assert (refused.value.status, refused.value.code) == (409, "job_not_finished")


def docvl(*args: str, url: str, secret: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "docvl", *args],
        env={**os.environ, "DOCVL_API_URL": url, "DOCVL_API_KEY": secret},
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_docvl_result_prints_the_document_the_chunks_or_the_markdown(api_url: str, svc: JobService) -> None:
    secret = key(svc, mine := owner())
    job_id, document = stored_layout_job(svc, mine)
    ocr_only, _ = stored_layout_job(svc, mine, tasks=(TaskKind.OCR,))

    as_json = docvl("result", str(job_id), "--format", "json", url=api_url, secret=secret)
    assert as_json.returncode == 0, as_json.stderr
    assert json.loads(as_json.stdout) == document.to_json()
    as_chunks = docvl("result", str(job_id), "--format", "chunks", url=api_url, secret=secret)
    assert as_chunks.returncode == 0, as_chunks.stderr
    assert [json.loads(line) for line in as_chunks.stdout.splitlines()] == expected_chunks(document)

    default = docvl("result", str(job_id), url=api_url, secret=secret)  # the Markdown, as for OCR
    assert default.returncode == 0, default.stderr
    assert default.stdout == f"== layout ==\n{document_markdown(document)}"
    whole = docvl("result", str(job_id), "--json", url=api_url, secret=secret)
    assert json.loads(whole.stdout)["outputs"]["layout"][0]["name"] == "document.json"

    refused = docvl("result", str(ocr_only), "--format", "chunks", url=api_url, secret=secret)
    assert refused.returncode == 1
    assert refused.stderr.startswith("error (layout_not_requested): ")
    both = docvl("result", str(job_id), "--format", "json", "--json", url=api_url, secret=secret)
    assert both.returncode == 2
    assert "--format" in both.stderr
    unknown = docvl("result", str(job_id), "--format", "xml", url=api_url, secret=secret)
    assert unknown.returncode == 2


# -- gRPC -------------------------------------------------------------------------------------------------


def fetched(stub: Any, secret: str, job_id: uuid.UUID, **fields: Any) -> list[pb.JobDocumentChunk]:
    request = pb.GetJobDocumentRequest(job_id=str(job_id), **fields)
    return list(stub.GetJobDocument(request, metadata=(("x-api-key", secret),), timeout=30))


def refused(stub: Any, secret: str, job_id: uuid.UUID | str) -> tuple[grpc.StatusCode, str]:
    with pytest.raises(grpc.RpcError) as info:
        fetched(stub, secret, cast(uuid.UUID, job_id))
    error = cast(grpc.Call, info.value)
    return error.code(), error.details() or ""


def test_get_job_document_streams_the_document_and_the_chunks(
    stub: Any, svc: JobService, monkeypatch: pytest.MonkeyPatch
) -> None:
    secret = key(svc, mine := owner())
    job_id, document = stored_layout_job(svc, mine)
    for fields, name, content_type in (
        ({}, "document.json", "application/json"),
        ({"format": pb.DOCUMENT_FORMAT_DOCUMENT_JSON}, "document.json", "application/json"),
        ({"format": pb.DOCUMENT_FORMAT_CHUNKS_JSONL}, "chunks.jsonl", "application/x-ndjson"),
    ):
        (message,) = fetched(stub, secret, job_id, **fields)
        assert (message.name, message.content_type) == (name, content_type)
        assert message.data == svc.store.get(f"jobs/{job_id}/outputs/{name}")

    monkeypatch.setattr(mapping, "DOCUMENT_PIECE_BYTES", 100)  # the gateway runs in this process
    pieces = fetched(stub, secret, job_id)
    assert len(pieces) > 2
    assert all(len(p.data) <= 100 for p in pieces)
    assert (pieces[0].name, pieces[1].name, pieces[1].content_type) == ("document.json", "", "")
    assert json.loads(b"".join(p.data for p in pieces)) == document.to_json()


def test_get_job_document_refusals(stub: Any, svc: JobService) -> None:
    secret = key(svc, mine := owner())
    ocr_only, _ = stored_layout_job(svc, mine, tasks=(TaskKind.OCR,))
    running, _ = stored_layout_job(svc, mine, status=JobStatus.RUNNING)
    theirs, _ = stored_layout_job(svc, owner())
    code, message = refused(stub, secret, ocr_only)
    assert code is grpc.StatusCode.FAILED_PRECONDITION
    assert "tasks=layout" in message
    code, message = refused(stub, secret, running)
    assert code is grpc.StatusCode.FAILED_PRECONDITION
    assert "wait" in message
    assert refused(stub, secret, theirs)[0] is grpc.StatusCode.NOT_FOUND
    assert refused(stub, secret, "not-a-uuid")[0] is grpc.StatusCode.INVALID_ARGUMENT
    assert refused(stub, "dvl_unknown", theirs)[0] is grpc.StatusCode.UNAUTHENTICATED
    with pytest.raises(grpc.RpcError) as info:
        fetched(stub, secret, running, format=7)
    assert cast(grpc.Call, info.value).code() is grpc.StatusCode.INVALID_ARGUMENT

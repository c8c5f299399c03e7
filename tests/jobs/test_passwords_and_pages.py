"""Password-protected PDFs and page ranges through the front doors (REST, gRPC and the CLI) in front of the
real platform (tests/support/platform.py): the password opens the PDF once at submission and is found nowhere
afterwards; a page range processes only its pages, which keep the document's numbers."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import text

from docvl.job_status import JobStatus
from docvl.v1 import jobs_pb2 as pb
from docvl.v1 import jobs_pb2_grpc as pb_grpc
from services.api.app import create_app
from services.gateway.server import start
from services.gateway.settings import GatewaySettings
from tests.support.helpers import ROOT
from tests.support.platform import FrontDoorPlatform

pytestmark = pytest.mark.slow
CORPUS = ROOT / "tests" / "corpus" / "pdf-samples"  # a copy of ../shared/corpus (CC-BY-SA-4.0)
ENCRYPTED = CORPUS / "005-libreoffice-writer-password" / "libreoffice-writer-password.pdf"
PASSWORD = "openpassword"  # the corpus's README gives it
FOUR_PAGES = CORPUS / "004-pdflatex-4-pages" / "pdflatex-4-pages.pdf"


@pytest.fixture(scope="module")
def api(frontdoor: FrontDoorPlatform) -> Iterator[TestClient]:
    with TestClient(create_app()) as client:
        yield client


def post(api: TestClient, key: str, path: Path, tasks: list[str], **fields: Any) -> Any:
    with path.open("rb") as fh:
        return api.post(
            "/v1/jobs",
            headers={"Authorization": f"Bearer {key}"},
            files={"file": (path.name, fh)},
            data={"tasks": tasks, **fields},
        )


def nowhere_in_the_platform(frontdoor: FrontDoorPlatform, secret: str) -> None:
    """The secret is in no table a job touches and in no process's log."""
    with frontdoor.db.transaction() as s:
        for table in ("jobs", "job_events", "documents", "pages", "task_results"):
            found = s.execute(
                text(f"SELECT count(*) FROM {table} t WHERE row_to_json(t)::text LIKE :pattern"),
                {"pattern": f"%{secret}%"},
            ).scalar_one()
            assert found == 0, f"the password is in {table}"
    for log in frontdoor.logs.glob("*"):
        if log.is_file():
            assert secret not in log.read_text(errors="replace"), f"the password is in {log.name}"


def test_an_encrypted_pdf_is_processed_with_its_password_which_is_kept_nowhere(
    api: TestClient, frontdoor: FrontDoorPlatform
) -> None:
    key = frontdoor.key("pdf-password")
    missing = post(api, key, ENCRYPTED, ["ocr"])
    assert missing.status_code == 422
    assert missing.json()["error"]["code"] == "encrypted_document"
    assert "`password`" in missing.json()["error"]["message"]
    wrong = post(api, key, ENCRYPTED, ["ocr"], password="not-the-password")
    assert wrong.status_code == 422
    assert wrong.json()["error"] == {
        "code": "wrong_password",
        "message": "the PDF's password is wrong: check it and submit again",
    }

    response = post(api, key, ENCRYPTED, ["ocr"], password=PASSWORD)
    assert response.status_code == 202, response.text
    assert PASSWORD not in response.text
    job_id = uuid.UUID(response.json()["id"])
    assert frontdoor.wait_finished(job_id) is JobStatus.SUCCEEDED
    view = api.get(f"/v1/jobs/{job_id}", headers={"Authorization": f"Bearer {key}"})
    assert view.json()["progress"]["pages_total"] == 1
    assert PASSWORD not in view.text
    with frontdoor.db.transaction() as s:
        object_key = s.execute(
            text("SELECT d.object_key FROM jobs j JOIN documents d ON d.id = j.document_id WHERE j.id = :id"),
            {"id": job_id},
        ).scalar_one()
    stored = frontdoor.store.get(object_key)
    assert stored.startswith(b"%PDF-")
    assert b"/Encrypt" not in stored  # the decrypted copy is what was stored
    nowhere_in_the_platform(frontdoor, PASSWORD)


def test_a_json_submission_from_storage_takes_a_password_too(
    api: TestClient, frontdoor: FrontDoorPlatform
) -> None:
    frontdoor.store.put("incoming/locked.pdf", ENCRYPTED.read_bytes(), content_type="application/pdf")
    body = {
        "source": f"s3://{frontdoor.settings.s3_bucket}/incoming/locked.pdf",
        "tasks": ["ocr"],
        "password": PASSWORD,
    }
    headers = {"Authorization": f"Bearer {frontdoor.key('pdf-password-json')}"}
    response = api.post("/v1/jobs", headers=headers, json=body)
    assert response.status_code == 202, response.text
    assert frontdoor.wait_finished(uuid.UUID(response.json()["id"])) is JobStatus.SUCCEEDED
    wrong = api.post("/v1/jobs", headers=headers, json=body | {"password": "nope"})
    assert wrong.json()["error"]["code"] == "wrong_password"


def test_a_page_range_processes_only_its_pages_numbered_as_in_the_document(
    api: TestClient, frontdoor: FrontDoorPlatform
) -> None:
    key = frontdoor.key("page-range")
    headers = {"Authorization": f"Bearer {key}"}
    response = post(api, key, FOUR_PAGES, ["ocr", "qa"], pages="2,4-", question="What is it?")
    assert response.status_code == 202, response.text
    assert response.json()["pages"] == "2,4-"
    job_id = uuid.UUID(response.json()["id"])
    assert frontdoor.wait_finished(job_id) is JobStatus.SUCCEEDED
    job = api.get(f"/v1/jobs/{job_id}", headers=headers).json()
    assert job["progress"] == {"pages_total": 2, "pages_done": 2, "pages_failed": 0}
    result = api.get(f"/v1/jobs/{job_id}/result", headers=headers).json()
    assert [(p["page"], p["task"]) for p in result["pages"]] == [
        (2, "ocr"),
        (2, "qa"),
        (4, "ocr"),
        (4, "qa"),
    ]
    markdown = api.get(f"/v1/jobs/{job_id}/outputs/document.md", headers=headers).text
    assert "<!-- page 2 -->" in markdown
    assert "<!-- page 4 -->" in markdown
    assert "<!-- page 1" not in markdown
    answers = json.loads(api.get(f"/v1/jobs/{job_id}/outputs/answers.json", headers=headers).text)
    assert [a["page"] for a in answers["pages"]] == [2, 4]

    outside = post(api, key, FOUR_PAGES, ["ocr"], pages="3-9")
    assert outside.status_code == 422
    assert outside.json()["error"]["code"] == "pages_out_of_range"
    assert "which has 4 pages" in outside.json()["error"]["message"]
    malformed = post(api, key, FOUR_PAGES, ["ocr"], pages="two")
    assert malformed.status_code == 422
    assert "write it like 1-3,7,12-" in malformed.json()["error"]["message"]


def test_grpc_submissions_take_a_password_and_pages(frontdoor: FrontDoorPlatform) -> None:
    gateway, _ = start(GatewaySettings(host="127.0.0.1", port=0), frontdoor.service)
    try:
        with grpc.insecure_channel(f"127.0.0.1:{gateway.port}") as channel:
            stub = pb_grpc.JobServiceStub(channel)
            metadata = (("x-api-key", frontdoor.key("grpc-password")),)
            job = stub.SubmitJob(
                pb.SubmitJobRequest(content=ENCRYPTED.read_bytes(), tasks=["ocr"], password=PASSWORD),
                metadata=metadata,
            )
            assert frontdoor.wait_finished(uuid.UUID(job.id)) is JobStatus.SUCCEEDED
            with pytest.raises(grpc.RpcError) as wrong:
                stub.SubmitJob(
                    pb.SubmitJobRequest(content=ENCRYPTED.read_bytes(), tasks=["ocr"], password="x"),
                    metadata=metadata,
                )
            assert wrong.value.code() is grpc.StatusCode.INVALID_ARGUMENT
            assert "password is wrong" in (wrong.value.details() or "")
            ranged = stub.SubmitJob(
                pb.SubmitJobRequest(content=FOUR_PAGES.read_bytes(), tasks=["ocr"], pages="1,3"),
                metadata=metadata,
            )
            assert ranged.pages == "1,3"
            assert frontdoor.wait_finished(uuid.UUID(ranged.id)) is JobStatus.SUCCEEDED
            assert (
                stub.GetJob(pb.GetJobRequest(job_id=ranged.id), metadata=metadata).progress.pages_total == 2
            )
            with pytest.raises(grpc.RpcError) as outside:
                stub.SubmitJob(
                    pb.SubmitJobRequest(content=FOUR_PAGES.read_bytes(), tasks=["ocr"], pages="5"),
                    metadata=metadata,
                )
            assert "which has 4 pages" in (outside.value.details() or "")
    finally:
        gateway.stop(1)
    nowhere_in_the_platform(frontdoor, PASSWORD)

"""The whole shared corpus (tests/corpus/pdf-samples: 31 real-world PDFs from many producers, CC-BY-SA-4.0)
submitted over REST to the running platform (tests/support/platform.py), the encrypted one with its password:
30 jobs succeed with their documents' page counts, and the one PDFium cannot parse is refused as corrupt."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from docvl.job_status import JobStatus
from services.api.app import create_app
from tests.support.helpers import ROOT
from tests.support.platform import FrontDoorPlatform

pytestmark = pytest.mark.slow
CORPUS = ROOT / "tests" / "corpus" / "pdf-samples"
FILES = json.loads((CORPUS / "files.json").read_text())["data"]
PASSWORD = "openpassword"  # the corpus's README gives it
UNREADABLE = "017-unreadable-meta-data/unreadablemetadata.pdf"


@pytest.fixture(scope="module")
def api(frontdoor: FrontDoorPlatform) -> Iterator[TestClient]:
    with TestClient(create_app()) as client:
        yield client


def test_every_corpus_pdf_is_processed_with_its_page_count_or_refused_as_corrupt(
    api: TestClient, frontdoor: FrontDoorPlatform
) -> None:
    headers = {"Authorization": f"Bearer {frontdoor.key('corpus')}"}
    submitted: dict[str, uuid.UUID] = {}
    for entry in FILES:
        path = CORPUS / entry["path"]
        fields = {"tasks": ["ocr"], "priority": "1"} | ({"password": PASSWORD} if entry["encrypted"] else {})
        with path.open("rb") as fh:
            response = api.post("/v1/jobs", headers=headers, files={"file": (path.name, fh)}, data=fields)
        if entry["path"] == UNREADABLE:
            assert response.status_code == 422, response.text
            assert response.json()["error"]["code"] == "corrupt_document"
            continue
        assert response.status_code == 202, (entry["path"], response.text)
        submitted[entry["path"]] = uuid.UUID(response.json()["id"])
    assert len(submitted) == len(FILES) - 1 == 30
    right = 0
    for entry in FILES:
        job_id = submitted.get(entry["path"])
        if job_id is None:
            continue
        assert frontdoor.wait_finished(job_id, timeout_s=600) is JobStatus.SUCCEEDED, entry["path"]
        progress = api.get(f"/v1/jobs/{job_id}", headers=headers).json()["progress"]
        assert progress == {"pages_total": entry["pages"], "pages_done": entry["pages"], "pages_failed": 0}
        right += 1
    assert right + 1 == 31  # and the corrupt one refused

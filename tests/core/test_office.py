"""Office documents: recognised by content, refused clearly when damaged or a zip bomb, converted to PDF by
a contained LibreOffice (no network, no macros, limits, timeout), and processed end to end through REST
in front of the real platform (tests/support/platform.py)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import threading
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import ClassVar

import psutil
import pypdfium2 as pdfium
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import text

from docvl.documents import CorruptDocument, DocumentTooLarge, UnsupportedDocument
from docvl.job_status import JobStatus
from docvl.jobs.intake import Limits, spooled
from docvl.office import (
    DOC,
    DOCX,
    ODT,
    PPT,
    PPTX,
    RTF_TYPE,
    XLS,
    XLSX,
    ConversionFailed,
    ConverterLimits,
    OfficeConverter,
    office_type,
)
from services.api.app import create_app
from services.api.settings import ApiSettings
from tests.support import office_files
from tests.support.helpers import ROOT, wait_for
from tests.support.platform import FrontDoorPlatform

MiB = 2**20
LIMITS = Limits(
    max_upload_bytes=64 * MiB, max_pages=50, max_tasks=4, max_question_chars=100, max_in_flight=10,
    retry_after_s=1, office_off=None, max_unpacked_bytes=64 * MiB,
)  # fmt: skip


def pages_of(pdf: Path) -> int:
    document = pdfium.PdfDocument(str(pdf))
    try:
        return len(document)
    finally:
        document.close()


# -- recognising ------------------------------------------------------------------------------------------


def test_office_documents_are_recognised_by_content_not_name(tmp_path: Path) -> None:
    made = {
        DOCX: office_files.word(tmp_path / "a.bin", 1),
        PPTX: office_files.slides(tmp_path / "b.pdf", 1),  # the name says PDF; the content says otherwise
        XLSX: office_files.sheet(tmp_path / "c.txt"),
        ODT: office_files.text_with_macro_and_link(tmp_path / "d", marker=tmp_path / "m", image_url="x.png"),
    }
    rtf = tmp_path / "e.docx"
    rtf.write_bytes(b"{\\rtf1\\ansi Hello}")
    made[RTF_TYPE] = rtf
    for media_type, path in made.items():
        assert office_type(path, max_unpacked_bytes=MiB * 64) == media_type
    # Legacy files are told apart by the streams in their directory.
    ole = tmp_path / "legacy"
    for stream, media_type in (("WordDocument", DOC), ("PowerPoint Document", PPT), ("Workbook", XLS)):
        ole.write_bytes(b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + bytes(500) + stream.encode("utf-16-le"))
        assert office_type(ole, max_unpacked_bytes=MiB) == media_type


def test_archives_that_are_not_office_documents_are_refused_clearly(tmp_path: Path) -> None:
    plain_zip = tmp_path / "photos.zip"
    shutil.make_archive(
        str(tmp_path / "photos"), "zip", root_dir=Path(__file__).resolve().parents[1] / "data"
    )
    with pytest.raises(UnsupportedDocument, match="a ZIP archive, not an Office document"):
        office_type(plain_zip, max_unpacked_bytes=64 * MiB)
    truncated = tmp_path / "truncated.docx"
    truncated.write_bytes(office_files.word(tmp_path / "whole.docx", 2).read_bytes()[:3000])
    with pytest.raises(CorruptDocument, match="damaged ZIP archive"):
        office_type(truncated, max_unpacked_bytes=64 * MiB)
    bomb = office_files.zip_bomb(tmp_path / "bomb.docx", 80 * MiB)
    assert bomb.stat().st_size < MiB
    with pytest.raises(DocumentTooLarge, match="zip bomb"):
        office_type(bomb, max_unpacked_bytes=64 * MiB)
    message = tmp_path / "mail.msg"
    message.write_bytes(b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + bytes(600))
    with pytest.raises(UnsupportedDocument, match="not a Word, Excel or PowerPoint"):
        office_type(message, max_unpacked_bytes=MiB)


def test_intake_takes_office_documents_only_where_they_can_be_converted(tmp_path: Path) -> None:
    path = office_files.word(tmp_path / "a.docx", 2)
    with path.open("rb") as fh, spooled(fh, LIMITS) as spool:
        assert (spool.media_type, spool.page_count) == (DOCX, 0)  # counted once converted
    off = Limits(**{**LIMITS.__dict__, "office_off": "LibreOffice (soffice) is not installed"})
    with (
        path.open("rb") as fh,
        pytest.raises(UnsupportedDocument, match="Office document, not taken here: LibreOffice"),
        spooled(fh, off),
    ):
        pass


# -- converting (LibreOffice, contained) ---------------------------------------------------------------

slow = pytest.mark.slow


@pytest.fixture(scope="module")
def converter() -> OfficeConverter:
    converter = OfficeConverter()
    reason = converter.unavailable()
    assert reason is None, f"these tests need LibreOffice (.ci/run installs it): {reason}"
    return converter


def soffice_processes() -> list[psutil.Process]:
    found = []
    for process in psutil.process_iter(["cmdline"]):
        cmdline = " ".join(process.info["cmdline"] or [])
        if "docvl-office-" in cmdline:
            found.append(process)
    return found


@slow
def test_word_powerpoint_excel_and_their_legacy_forms_become_pdfs(
    converter: OfficeConverter, tmp_path: Path
) -> None:
    docx = office_files.word(tmp_path / "report.docx", 3)
    pptx = office_files.slides(tmp_path / "deck.pptx", 4)
    xlsx = office_files.sheet(tmp_path / "table.xlsx")
    assert pages_of(converter.convert(docx, DOCX).pdf) == 3
    assert pages_of(converter.convert(pptx, PPTX).pdf) == 4
    assert pages_of(converter.convert(xlsx, XLSX).pdf) >= 1
    # The legacy binary formats, made from the same files by LibreOffice itself (a trusted fixture).
    legacy = tmp_path / "legacy"
    for source, extension in ((docx, "doc"), (pptx, "ppt")):
        subprocess.run(
            ["soffice", "--headless", "--norestore", f"-env:UserInstallation={(tmp_path / 'p').as_uri()}",
             "--convert-to", extension, "--outdir", str(legacy), str(source)],
            check=True, capture_output=True, timeout=120,
        )  # fmt: skip
    doc, ppt = legacy / "report.doc", legacy / "deck.ppt"
    assert office_type(doc, max_unpacked_bytes=MiB) == DOC
    assert office_type(ppt, max_unpacked_bytes=MiB) == PPT
    assert pages_of(converter.convert(doc, DOC).pdf) == 3
    assert pages_of(converter.convert(ppt, PPT).pdf) == 4
    assert soffice_processes() == []


class _Counter(BaseHTTPRequestHandler):
    hits: ClassVar[list[str]] = []

    def do_GET(self) -> None:
        self.hits.append(self.path)
        self.send_response(404)
        self.end_headers()

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def image_server() -> Iterator[tuple[str, list[str]]]:
    hits: list[str] = []
    handler = type("Counter", (_Counter,), {"hits": hits})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}/linked.png", hits
    finally:
        server.shutdown()
        server.server_close()


@slow
def test_a_linked_image_is_not_fetched_and_a_macro_does_not_run(
    converter: OfficeConverter, image_server: tuple[str, list[str]], tmp_path: Path
) -> None:
    url, hits = image_server
    marker = tmp_path / "the-macro-ran"
    odt = office_files.text_with_macro_and_link(tmp_path / "trap.odt", marker=marker, image_url=url)
    # The control: LibreOffice run plainly, outside the converter, does fetch the linked image.
    subprocess.run(
        ["soffice", "--headless", "--norestore", f"-env:UserInstallation={(tmp_path / 'p').as_uri()}",
         "--convert-to", "pdf", "--outdir", str(tmp_path / "plain"), str(odt)],
        check=True, capture_output=True, timeout=120,
    )  # fmt: skip
    assert hits == ["/linked.png"]
    hits.clear()
    assert pages_of(converter.convert(odt, ODT).pdf) == 1
    assert hits == []  # its own network namespace: nothing reaches this machine's loopback
    assert not marker.exists()


@slow
def test_a_conversion_that_hangs_or_crashes_fails_and_the_next_one_works(tmp_path: Path) -> None:
    docx = office_files.word(tmp_path / "a.docx", 2)
    hung = OfficeConverter(limits=ConverterLimits(timeout_s=0.3))
    with pytest.raises(ConversionFailed, match="did not finish converting the document within 0 s") as caught:
        hung.convert(docx, DOCX)
    assert caught.value.code == "conversion_failed"
    starved = OfficeConverter(limits=ConverterLimits(memory_bytes=64 * MiB))
    with pytest.raises(ConversionFailed, match=r"LibreOffice (exited with|was killed by|could not)"):
        starved.convert(docx, DOCX)
    assert soffice_processes() == []  # nothing left behind
    assert pages_of(OfficeConverter().convert(docx, DOCX).pdf) == 2


# -- end to end ----------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def api(frontdoor: FrontDoorPlatform) -> Iterator[TestClient]:
    with TestClient(create_app()) as client:
        yield client


def post(api: TestClient, key: str, path: Path, **fields: str) -> tuple[int, dict[str, object]]:
    with path.open("rb") as fh:
        response = api.post(
            "/v1/jobs",
            headers={"Authorization": f"Bearer {key}"},
            files={"file": (path.name, fh)},
            data={"tasks": ["ocr"], **fields},
        )
    body: dict[str, object] = response.json()
    return response.status_code, body


@slow
def test_office_documents_go_through_the_pipeline(
    api: TestClient, frontdoor: FrontDoorPlatform, tmp_path: Path
) -> None:
    key = frontdoor.key("office")
    status, job = post(api, key, office_files.word(tmp_path / "report.docx", 3))
    assert status == 202, job
    job_id = uuid.UUID(str(job["id"]))
    status_d, deck = post(api, key, office_files.slides(tmp_path / "deck.pptx", 4), pages="2,4")
    assert status_d == 202, deck
    deck_id = uuid.UUID(str(deck["id"]))
    assert frontdoor.wait_finished(job_id) is JobStatus.SUCCEEDED
    assert frontdoor.wait_finished(deck_id) is JobStatus.SUCCEEDED
    with frontdoor.db.transaction() as s:
        row = s.execute(
            text(
                "SELECT d.object_key, d.converted_key, d.media_type, d.page_count, j.pages_total FROM jobs j "
                "JOIN documents d ON d.id = j.document_id WHERE j.id = :id"
            ),
            {"id": job_id},
        ).one()
        kinds = (
            s.execute(text("SELECT kind FROM job_events WHERE job_id = :id ORDER BY id"), {"id": job_id})
            .scalars()
            .all()
        )
        deck_pages = (
            s.execute(text("SELECT index FROM pages WHERE job_id = :id ORDER BY index"), {"id": deck_id})
            .scalars()
            .all()
        )
    assert (row.media_type, row.page_count, row.pages_total) == (DOCX, 3, 3)
    assert row.converted_key == row.object_key + ".pdf"
    assert frontdoor.store.get(row.object_key).startswith(b"PK")  # the original, kept
    assert frontdoor.store.get(row.converted_key).startswith(b"%PDF-")  # and its PDF beside it
    assert "converted" in kinds
    assert list(deck_pages) == [1, 3]  # the document's own page numbers


@slow
def test_damaged_and_oversized_office_files_are_refused_or_failed_with_their_reason(
    api: TestClient, frontdoor: FrontDoorPlatform, tmp_path: Path
) -> None:
    key = frontdoor.key("office-bad")
    status, body = post(api, key, office_files.zip_bomb(tmp_path / "bomb.docx", 600 * MiB))
    assert status == 413, body
    assert "zip bomb" in str(body)
    status, job = post(api, key, office_files.damaged_word(tmp_path / "damaged.docx"))
    assert status == 202, job
    job_id = uuid.UUID(str(job["id"]))
    assert frontdoor.wait_finished(job_id) is JobStatus.FAILED
    with frontdoor.db.transaction() as s:
        code = s.execute(text("SELECT error_code FROM jobs WHERE id = :id"), {"id": job_id}).scalar_one()
    assert code == "conversion_failed"
    # The converter is still usable: the next document converts.
    status, good = post(api, key, office_files.sheet(tmp_path / "after.xlsx"))
    assert status == 202
    assert frontdoor.wait_finished(uuid.UUID(str(good["id"]))) is JobStatus.SUCCEEDED


@slow
def test_with_office_input_off_the_api_says_so_and_stays_ready(
    frontdoor: FrontDoorPlatform, tmp_path: Path
) -> None:
    with TestClient(create_app(ApiSettings(office_input="off"))) as client:
        ready = client.get("/readyz")
        assert ready.status_code == 200
        assert ready.json()["checks"]["office"] == "off: Office input is turned off (DOCVL_OFFICE_INPUT=off)"
        status, body = post(client, frontdoor.key("office-off"), office_files.word(tmp_path / "a.docx", 1))
        assert status == 415
        assert "Office document, not taken here" in str(body)
    with TestClient(create_app()) as client:
        assert client.get("/readyz").json()["checks"]["office"] == "ok"


@slow
def test_libreoffice_dies_with_a_converting_process_killed_mid_conversion(tmp_path: Path) -> None:
    docx = office_files.word(tmp_path / "long.docx", 20)
    scratch = tmp_path / "scratch"  # the converter's temporary directory, left behind by a killed process
    scratch.mkdir()
    script = (
        "import sys; from pathlib import Path; from docvl.office import DOCX, OfficeConverter; "
        "OfficeConverter().convert(Path(sys.argv[1]), DOCX)"
    )
    converting = subprocess.Popen(
        [sys.executable, "-c", script, str(docx)], cwd=ROOT, env={**os.environ, "TMPDIR": str(scratch)}
    )
    try:
        wait_for(lambda: any(p.name().startswith("soffice") for p in soffice_processes()), 60, "LibreOffice")
    finally:
        converting.kill()  # kill -9, mid-conversion
        converting.wait()
    wait_for(lambda: soffice_processes() == [], 30, "every LibreOffice process to be gone")
    # Killed with it, not left to run on: the conversion it was doing never finished.
    assert list(scratch.rglob("*.pdf")) == []

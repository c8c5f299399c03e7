"""The checks themselves: OCR against a PDF's text layer and for repetition, HTML rendered in the real
Chromium (JavaScript off, no request leaves it), the verdicts' shapes and the job summary."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import ClassVar

import psutil
import pytest

from docvl.documents import open_document
from docvl.postprocess import Artifact
from docvl.tasks import TaskKind
from docvl.verify import ocr
from docvl.verify.report import Verification, describe, describe_summary, summarise
from docvl.verify.settings import VerifySettings
from docvl.verify.verifier import PageInput, Verifier
from docvl.verify.web import CHROMIUM, WebVerifier
from tests.support.helpers import ROOT, png, wait_for

CORPUS = ROOT / "tests" / "corpus" / "pdf-samples"
TEXT_PDF = CORPUS / "004-pdflatex-4-pages" / "pdflatex-4-pages.pdf"
PAGE = (
    "<!doctype html><html><body style='margin:0;font:20px sans-serif'><h1>Quarterly report</h1>"
    "<p>Revenue grew in every region</p></body></html>"
)


# -- ocr --------------------------------------------------------------------------------------------------


def test_text_layer_is_captured_at_render_time() -> None:
    with open_document(TEXT_PDF, max_pages=10) as opened:
        pages = list(opened.pages())
    assert all(page.text for page in pages)
    with open_document(ROOT / "docvl" / "samples" / "chart.png", max_pages=1) as opened:
        assert [page.text for page in opened.pages()] == [None]  # an image has no text layer


def test_ocr_against_the_text_layer() -> None:
    with open_document(TEXT_PDF, max_pages=10) as opened:
        layer = next(iter(opened.pages())).text
    assert layer is not None
    markdown = "# " + layer.replace("\n", "\n\n**") + "\n"  # the same text, with Markdown around it
    same = ocr.verify(markdown, layer)
    shuffled = ocr.verify(" ".join(reversed(layer.split())), layer)
    junk = ocr.verify("lorem ipsum " * 5, layer)
    assert same["text_layer_cer"] is not None
    assert same["text_layer_cer"] < 0.05
    assert same["text_layer_f1"] == 1.0
    assert shuffled["text_layer_f1"] == 1.0  # order-free
    assert shuffled["text_layer_cer"] > same["text_layer_cer"]  # but characters are in order
    assert junk["text_layer_f1"] == 0.0
    assert junk["text_layer_cer"] > 0.5
    assert ocr.verify("anything", None) == {"repetition": 0.0, "text_layer_cer": None, "text_layer_f1": None}


def test_repetition() -> None:
    prose = "The committee met on Tuesday and agreed the budget for the next financial year."
    looped = prose + " the end of the table" * 40
    assert ocr.repetition(prose) == 0.0
    assert ocr.repetition(looped) > 0.9
    assert 0.0 < ocr.repetition(prose + " yes yes yes") < 0.3
    assert ocr.repetition("表格表格表格表格表格表格") == 1.0  # no spaces: characters
    assert ocr.repetition("") == 0.0


# -- web2html ---------------------------------------------------------------------------------------------


class _Counting(BaseHTTPRequestHandler):
    requests: ClassVar[list[str]] = []

    def do_GET(self) -> None:
        _Counting.requests.append(self.path)
        self.send_response(200)
        self.end_headers()

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture(scope="module")
def web() -> Iterator[WebVerifier]:
    if not Path(CHROMIUM).exists():
        pytest.skip("Debian's chromium is not installed")
    verifier = WebVerifier(timeout_s=20)
    yield verifier
    verifier.close()


@pytest.fixture(scope="module")
def screenshot(web: WebVerifier) -> bytes:
    shot, _ = web.render(PAGE, 480, 270)
    return shot


def test_html_is_rendered_without_javascript_or_network(web: WebVerifier) -> None:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Counting)
    thread = threading.Thread(target=server.serve_forever)
    thread.start()
    base = f"http://127.0.0.1:{server.server_address[1]}"
    hostile = (
        f"<html><head><link rel=stylesheet href='{base}/style.css'><script src='{base}/app.js'></script>"
        f"<meta http-equiv=refresh content='0;url={base}/away'></head><body><p id=p>static</p>"
        f"<img src='{base}/pixel.png'><iframe src='{base}/frame'></iframe>"
        f"<iframe src='file://{ROOT / 'pyproject.toml'}'></iframe><object data='file:///etc/hostname'></object>"
        "<script>document.getElementById('p').textContent = 'javascript ran'</script></body></html>"
    )
    try:
        _, text = web.render(hostile, 320, 200)
    finally:
        server.shutdown()
        thread.join()
        server.server_close()
    assert "static" in text
    assert "javascript ran" not in text
    assert "[project]" not in text  # no local file either
    assert _Counting.requests == []  # nothing reached the server


def test_web_verdicts(web: WebVerifier, screenshot: bytes) -> None:
    same = web.verify(PAGE, screenshot, "Quarterly report. Revenue grew in every region")
    blank = web.verify("<html><body></body></html>", screenshot, "Quarterly report")
    assert same["rendered"] is True
    assert same["similarity"] == 1.0
    assert same["text_layer_recall"] == 1.0
    assert blank["rendered"] is True
    assert 0.0 <= blank["similarity"] < same["similarity"]
    assert blank["text_layer_recall"] == 0.0
    assert web.verify(PAGE, screenshot, None)["text_layer_recall"] is None
    verifier = Verifier(VerifySettings())
    verifier.__dict__["web"] = web  # this process's one browser (cached_property)
    fragment = verifier.check(
        TaskKind.WEB2HTML, Artifact("<p>hi</p>", False, "not a document"), PageInput(screenshot, None)
    )
    assert fragment is not None
    assert fragment["rendered"] is True  # Chromium renders anything,
    assert fragment["passed"] is False  # but a fragment is not the document asked for
    assert fragment["error"] == "not a document"


def chromium_children() -> set[int]:
    """This process's Chromium descendants (one that exits while they are listed is left out)."""
    found = set()
    for child in psutil.Process().children(recursive=True):
        try:
            if "chrom" in child.name():
                found.add(child.pid)
        except psutil.NoSuchProcess:
            continue
    return found


def test_one_browser_per_process_closed_with_it(web: WebVerifier) -> None:
    web.close()  # whatever earlier tests started
    others = chromium_children()  # browsers of other tests in this session (the console's)
    web.render(PAGE, 200, 100)
    first = web._browser
    web.render(PAGE, 200, 100)
    assert web._browser is first  # started once, kept
    assert chromium_children() - others
    web.close()
    wait_for(lambda: not chromium_children() - others, 30, "the verifier's browser to exit")
    assert web.verify(PAGE, png(3), None)["rendered"] is True  # started again on the next use


def test_a_missing_browser_is_said() -> None:
    verdict = WebVerifier("/nonexistent/chromium").verify(PAGE, png(1), None)
    assert verdict["rendered"] is None
    assert "not installed" in verdict["reason"]


# -- verdicts, settings, summary --------------------------------------------------------------------------


def test_verifier_verdicts_and_scores(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DOCVL_VERIFY_CHROMIUM", "/nonexistent/chromium")
    verifier = Verifier(VerifySettings())
    page = PageInput(png(2), "hello world")
    looped = verifier.check(TaskKind.OCR, Artifact("again " * 30, True), page)
    fine = verifier.check(TaskKind.OCR, Artifact("hello world", True), page)
    assert looped is not None
    assert fine is not None
    assert looped["passed"] is False
    assert fine == {"passed": True, "repetition": 0.0, "text_layer_cer": 0.0, "text_layer_f1": 1.0}
    assert Verifier.score(fine) > Verifier.score(looped)
    unparsed = verifier.check(TaskKind.CHART2CODE, Artifact("def (", False, "does not parse"), page)
    assert unparsed == {"passed": False, "executed": False, "similarity": 0.0, "error": "does not parse"}
    unchecked = verifier.check(TaskKind.WEB2HTML, Artifact("<html></html>", True), page)
    assert unchecked is not None
    assert unchecked["passed"] is None  # no browser here: said, not guessed
    assert verifier.check(TaskKind.QA, Artifact("42", True), page) is None
    broken = verifier.check(TaskKind.CHART2CODE, Artifact("print(1)", True), PageInput(b"not an image", None))
    assert broken is not None
    assert broken["passed"] is None  # a check that breaks is said, and never fails the page
    assert "the check itself failed" in broken["reason"]


@pytest.mark.parametrize(("value", "on"), [("on", True), ("off", False), ("1", True), ("false", False)])
def test_verification_can_be_switched_off(monkeypatch: pytest.MonkeyPatch, value: str, on: bool) -> None:
    monkeypatch.setenv("DOCVL_VERIFY", value)
    assert VerifySettings().verify is on


def test_summary_per_task() -> None:
    chart = Verification.model_validate(
        {"passed": True, "executed": True, "similarity": 0.8, "kept_attempt": 2, "attempts": [
            {"attempt": 1, "passed": False, "executed": False, "similarity": 0.0, "error": "NameError"},
            {"attempt": 2, "temperature": 0.7, "passed": True, "executed": True, "similarity": 0.8},
        ]}
    )  # fmt: skip
    failed = Verification.model_validate({"passed": False, "executed": False, "similarity": 0.0})
    refused = Verification.model_validate({"passed": None, "executed": None, "reason": "no bwrap"})
    summary = summarise(
        [("chart2code", chart), ("chart2code", failed), ("chart2code", refused), ("qa", None)]
    )
    assert set(summary) == {"chart2code"}
    assert summary["chart2code"].model_dump() == {
        "pages_checked": 2,
        "pages_passed": 1,
        "pages_regenerated": 1,
        "mean_similarity": 0.4,
        "mean_repetition": None,
    }
    assert describe_summary(summary["chart2code"]) == (
        "verified: 1 of 2 checked pages passed, 1 regenerated, mean similarity 0.40"
    )
    assert describe(chart) == "(check: passed; executed; similarity 0.80; 2 attempts, kept 2)"
    assert "not done here: no bwrap" in describe(refused)

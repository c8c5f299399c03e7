"""`docvl eval` end to end: a tiny labelled set made here (OCR of a page image and of a PDF page with its
text layer, a chart with its source code, a screenshot with its HTML, questions with answers) submitted to
the real platform over REST. The tiny random model's output is junk, so the test checks the reports'
structure, counts and ranges, and that every score equals the metric applied to the stored result."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pypdfium2 as pdfium
import pytest
from PIL import Image, ImageDraw

from docvl.client import Client
from docvl.eval import metrics
from docvl.eval.layout import read_reference, score_page
from docvl.eval.manifest import MANIFEST
from docvl.eval.runner import verification_of
from docvl.layout import Document
from tests.support.helpers import ROOT
from tests.support.platform import FrontDoorPlatform, api_in_thread

pytestmark = pytest.mark.slow

SAMPLES = ROOT / "docvl" / "samples"
GENERATED = ROOT / "sets" / "generated"
PDF = ROOT / "tests" / "corpus" / "pdf-samples" / "004-pdflatex-4-pages" / "pdflatex-4-pages.pdf"
PAGE_TEXT = "\n".join(
    ["# Quarterly Report", ""]
    + [f"Line {n}: revenue grew in every region; costs stayed flat." for n in range(1, 15)]
    + ["", "| Region | Revenue |", "|---|---|", "| North | 1,200 |", "| South | 950 |", "| West | 700 |"]
)
CHART_CODE = """import matplotlib.pyplot as plt

years = ["2021", "2022", "2023", "2024"]
sales = [3.3, 5.6, 7.2, 8.5]
plt.figure(figsize=(6.4, 4.8))
plt.bar(years, sales, width=0.6, color="#1f77b4")
plt.title("Sales by year")
plt.show()
"""
WEB_HTML = """<!DOCTYPE html>
<html><head><style>body{margin:0;font-family:sans-serif;background:#f4f4f4}</style></head>
<body><nav><b>Acme Docs</b> <a>Home</a> <a>Guides</a> <a>API</a> <a>Pricing</a></nav>
<main><h1>Turn documents into data</h1><a class="button">Get started</a>
<section><div>Fast</div><div>Accurate</div><div>Open</div></section></main></body></html>
"""


@pytest.fixture(scope="module")
def api_url(frontdoor: FrontDoorPlatform) -> Iterator[str]:
    """The REST API on a free loopback port, served by uvicorn in a thread."""
    with api_in_thread(frontdoor.service) as url:
        yield url


def _text_image(text: str) -> bytes:
    image = Image.new("RGB", (320, 120), "white")
    ImageDraw.Draw(image).text((20, 40), text, fill="black")
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def _pdf_text(path: Path, page: int) -> str:
    document = pdfium.PdfDocument(path)
    try:
        return str(document[page - 1].get_textpage().get_text_range())
    finally:
        document.close()


def make_set(directory: Path) -> list[dict[str, Any]]:
    directory.mkdir(parents=True)
    for name in ("page.png", "chart.png", "webpage.png"):
        (directory / name).write_bytes((SAMPLES / name).read_bytes())
    (directory / "paper.pdf").write_bytes(PDF.read_bytes())
    (directory / "total.png").write_bytes(_text_image("Total: 42"))
    # a page the set generator typeset, with its layout reference (where it drew each block)
    (directory / "typeset.pdf").write_bytes((GENERATED / "pdfs" / "generated-2.pdf").read_bytes())
    (directory / "typeset.json").write_text((GENERATED / "layout" / "generated-2.json").read_text())
    facts = [
        {"type": "present", "text": "Quarterly Report", "category": "cat_a"},
        {"type": "absent", "text": "Confidential", "category": "cat_a"},
        {"type": "order", "before": "Line 1:", "after": "Line 14:", "max_diffs": 1, "category": "cat_a"},
        {"type": "table", "cell": "North", "right": "1,200", "top_heading": "Region", "category": "cat_b"},
        {"type": "math", "math": "x^2", "category": "cat_b"},
        {"type": "baseline", "category": "baseline"},
    ]
    items: list[dict[str, Any]] = [
        {"id": "ocr-page", "file": "page.png", "task": "ocr", "reference": PAGE_TEXT, "facts": facts},
        {"id": "ocr-pdf-2", "file": "paper.pdf", "page": 2, "task": "ocr", "reference": _pdf_text(PDF, 2)},
        {"id": "chart", "file": "chart.png", "task": "chart2code", "reference": CHART_CODE},
        {"id": "web", "file": "webpage.png", "task": "web2html", "reference": WEB_HTML},
        {
            "id": "qa-total",
            "file": "total.png",
            "task": "qa",
            "question": "What is the total?",
            "reference": ["42", "forty-two"],
        },
        {
            "id": "qa-chart",
            "file": "chart.png",
            "task": "qa",
            "question": "Which year sold most?",
            "reference": "2024",
        },
        {"id": "layout", "file": "typeset.pdf", "task": "layout", "reference": "typeset.json"},
    ]
    (directory / MANIFEST).write_text("".join(json.dumps(item) + "\n" for item in items))
    return items


def docvl_eval(*args: str, timeout: float = 400) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "docvl", "eval", *args],
        env=os.environ.copy(),
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def _expected_scores(item: dict[str, Any], text: str, verification: dict[str, Any] | None) -> dict[str, Any]:
    task, reference = item["task"], item["reference"]
    if task == "ocr":
        expected: dict[str, Any] = {
            "cer": metrics.page_cer(text, reference),
            "edit_distance": metrics.page_edit_distance(text, reference),
        }
        if "facts" in item:
            facts = [
                metrics.Fact(f["type"], **{k: v for k, v in f.items() if k != "type"}) for f in item["facts"]
            ]
            expected["facts_passed"] = sum(metrics.check_fact(f, text) for f in facts) / len(facts)
        return expected
    if task == "qa":
        answers = reference if isinstance(reference, list) else [reference]
        return {
            "anls": metrics.anls(text, answers),
            "relaxed_accuracy": metrics.relaxed_accuracy(text, answers),
        }
    rendering: dict[str, Any] = {}
    if task == "chart2code":
        rendering["data_value_recall"] = metrics.data_value_recall(text, reference)
    else:
        rendering["text_similarity"] = metrics.html_text_similarity(text, reference)
    if verification is not None:
        ran = "executed" if task == "chart2code" else "rendered"
        flag = verification.get(ran)
        rendering[ran] = None if flag is None else float(flag)
        rendering["similarity"] = verification.get("similarity")
    return rendering


def test_eval_runs_a_labelled_set_through_the_platform(
    frontdoor: FrontDoorPlatform, api_url: str, tmp_path: Path
) -> None:
    key = frontdoor.key(f"eval-{uuid.uuid4().hex[:8]}")
    items = make_set(tmp_path / "set")
    out = tmp_path / "reports" / "report.md"
    done = docvl_eval(
        "--set",
        str(tmp_path / "set"),
        "--api",
        api_url,
        "--api-key",
        key,
        "--out",
        str(out),
        "--concurrency",
        "3",
    )
    assert done.returncode == 0, done.stdout + done.stderr
    report = json.loads(out.with_suffix(".json").read_text())
    assert report["items"] == len(items)
    assert report["submission_failures"] == 0
    assert [r["id"] for r in report["results"]] == [i["id"] for i in items]
    counts = {"ocr": 2, "chart2code": 1, "web2html": 1, "qa": 2, "layout": 1}
    assert {task: s["items"] for task, s in report["tasks"].items()} == counts
    assert report["models"], "the report names the model that produced the outputs"

    by_id = {i["id"]: i for i in items}
    with Client(api_url, key) as client:
        for result in report["results"]:
            item = by_id[result["id"]]
            stored = client.result(result["job_id"])
            assert str(stored.job.status) == result["job_status"]
            # A PDF item asks for its one page; an image has only one.
            assert stored.job.pages == (str(item.get("page", 1)) if item["file"].endswith(".pdf") else None)
            assert stored.job.progress.pages_total == 1
            page = next(p for p in stored.pages if p.page == item.get("page", 1) and p.task == item["task"])
            assert page.text == result["output"]
            assert result["succeeded"] is (page.text is not None)
            assert result["model_id"] == page.model_id
            if item["task"] == "layout":  # the job's document against the reference the generator wrote
                document = Document.from_json(client.document(result["job_id"]))
                reference, problems = read_reference(tmp_path / "set" / item["reference"])
                assert reference is not None, problems
                expected = score_page(document.pages[0], reference)
                assert document.pages[0].blocks, "the scripted layout worker's grounded page was parsed"
            else:
                expected = _expected_scores(item, page.text or "", verification_of(page))
            scores = result["scores"]
            for name, value in expected.items():
                assert scores.get(name) == (None if value is None else pytest.approx(value)), (
                    item["id"],
                    name,
                )
            for name, value in scores.items():
                if value is None:
                    continue
                assert value >= 0.0, (item["id"], name)
                if name != "cer":
                    assert value <= 1.0, (item["id"], name)

    for task, summary in report["tasks"].items():
        assert summary["succeeded"] == sum(
            r["succeeded"] for r in report["results"] if by_id[r["id"]]["task"] == task
        )
        for name, metric in summary["metrics"].items():
            values = [
                r["scores"][name]
                for r in report["results"]
                if by_id[r["id"]]["task"] == task and r["scores"].get(name) is not None
            ]
            assert metric["n"] == len(values)
            assert metric["mean"] == pytest.approx(sum(values) / len(values))
        assert summary["worst"], task
        assert {w["id"] for w in summary["worst"]} <= {i["id"] for i in items if i["task"] == task}
    for metric in ("cer", "edit_distance", "facts_passed"):
        assert metric in report["tasks"]["ocr"]["metrics"]
    assert "data_value_recall" in report["tasks"]["chart2code"]["metrics"]
    assert {"anls", "relaxed_accuracy"} <= set(report["tasks"]["qa"]["metrics"])
    assert {"f1", "label_f1", "precision", "recall"} <= set(report["tasks"]["layout"]["metrics"])
    olmocr = report["olmocr"]
    assert list(olmocr["by_type"]) == ["present", "absent", "order", "table", "math", "baseline"]
    assert set(olmocr["by_category"]) == {"cat_a", "cat_b", "baseline"}
    assert olmocr["all_tests"]["tests"] == 6
    ocr_page = next(r for r in report["results"] if r["id"] == "ocr-page")
    assert ocr_page["scores"]["facts_passed"] == pytest.approx(
        sum(f["passed"] for f in ocr_page["facts"]) / 6
    )

    markdown = out.read_text()
    for heading in ("# docvl eval report", "## ocr", "## chart2code", "## web2html", "## qa", "## layout"):
        assert heading in markdown
    assert f"`{report['models'][0]['model_id']}`" in markdown
    assert "| anls |" in markdown


def test_eval_exits_1_when_submissions_fail(api_url: str, tmp_path: Path) -> None:
    make_set(tmp_path / "set")
    out = tmp_path / "report.md"
    done = docvl_eval(
        "--set", str(tmp_path / "set"), "--api", api_url, "--api-key", "dvl_not_a_key", "--out", str(out)
    )
    assert done.returncode == 1, done.stdout + done.stderr
    report = json.loads(out.with_suffix(".json").read_text())
    assert report["submission_failures"] == report["items"] == 7
    assert all(r["error"].startswith("401 unauthenticated") for r in report["results"])
    assert "## Submission failures" in out.read_text()

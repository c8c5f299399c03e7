"""Each converter on a tiny synthetic tree in its benchmark's layout; the sets it writes load."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pypdfium2 as pdfium

from docvl.eval.converters import chartmimic, chartqa, design2code, docvqa, olmocr_bench
from docvl.eval.manifest import load_set
from docvl.eval.olmocr import Fact
from docvl.tasks import TaskKind
from tests.support.helpers import ROOT, png


def _pdf(path: Path, pages: int = 1) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    document = pdfium.PdfDocument.new()
    for _ in range(pages):
        document.new_page(200, 300)
    document.save(path)
    document.close()


def _png(path: Path, seed: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(png(seed))


def test_chartmimic_direct_600_pairs(tmp_path: Path) -> None:
    source = tmp_path / "ChartMimic" / "dataset" / "direct_600"
    for seed, name in enumerate(["bar_1", "line_7"]):
        _png(source / f"{name}.png", seed)
        (source / f"{name}.py").write_text(f"import matplotlib.pyplot as plt\nplt.bar([1, 2], [{seed}, 5])\n")
    _png(source / "orphan.png", 9)
    result = chartmimic(tmp_path / "ChartMimic", tmp_path / "set")
    assert result.items == 2
    assert result.notes == ["1 .png without a .py beside it skipped"]
    items = load_set(tmp_path / "set").items
    assert [i.id for i in items] == ["chartmimic-bar_1", "chartmimic-line_7"]
    assert all(i.task is TaskKind.CHART2CODE for i in items)
    assert items[1].reference == (source / "line_7.py").read_text()
    assert (tmp_path / "set" / items[0].file).read_bytes() == (source / "bar_1.png").read_bytes()


def test_design2code_testset_final_pairs(tmp_path: Path) -> None:
    source = tmp_path / "testset_final"
    for seed in (1, 2):
        _png(source / f"{seed}.png", seed)
        (source / f"{seed}.html").write_text(f"<html><body><h1>Page {seed}</h1></body></html>")
    (source / "rick.jpg").write_bytes(b"placeholder")
    result = design2code(tmp_path, tmp_path / "set")
    items = load_set(tmp_path / "set").items
    assert result.items == 2
    assert [(i.id, i.task) for i in items] == [
        ("design2code-1", TaskKind.WEB2HTML),
        ("design2code-2", TaskKind.WEB2HTML),
    ]
    assert items[0].reference == "<html><body><h1>Page 1</h1></body></html>"


def test_docvqa_val_annotations_with_documents(tmp_path: Path) -> None:
    source = tmp_path / "docvqa"
    _png(source / "documents" / "abc_1.png", 1)
    data = [
        {
            "questionId": 11,
            "question": "What is the date?",
            "image": "documents/abc_1.png",
            "docId": 5,
            "answers": ["1 May 1999", "May 1, 1999"],
        },
        {
            "questionId": 12,
            "question": "Who signed?",
            "image": "documents/abc_1.png",
            "docId": 5,
            "answers": ["J. Smith"],
        },
        {"questionId": 13, "question": "Lost?", "image": "documents/gone.png", "answers": ["x"]},
        {"questionId": 14, "question": "Test split?", "image": "documents/abc_1.png"},
    ]
    (source / "val_v1.0.json").write_text(json.dumps({"dataset_name": "docvqa", "data": data}))
    result = docvqa(source, tmp_path / "set")
    assert result.items == 2
    assert len(result.notes) == 2
    items = load_set(tmp_path / "set").items
    assert [i.id for i in items] == ["docvqa-11", "docvqa-12"]
    assert items[0].question == "What is the date?"
    assert items[0].answers == ("1 May 1999", "May 1, 1999")
    assert items[0].file == items[1].file == "images/abc_1.png"  # one copy of a shared page


def test_chartqa_test_split_human_and_augmented(tmp_path: Path) -> None:
    split = tmp_path / "ChartQA Dataset" / "test"
    _png(split / "png" / "41699.png", 1)
    _png(split / "png" / "multi_col_2.png", 2)
    (split / "test_human.json").write_text(
        json.dumps([{"imgname": "41699.png", "query": "What is the highest value?", "label": "62"}])
    )
    (split / "test_augmented.json").write_text(
        json.dumps(
            [
                {"imgname": "multi_col_2.png", "query": "Which is blue?", "label": "Europe"},
                {"imgname": "missing.png", "query": "?", "label": 3},
                {"imgname": "multi_col_2.png", "query": "", "label": "x"},
            ]
        )
    )
    result = chartqa(tmp_path, tmp_path / "set")
    items = load_set(tmp_path / "set").items
    assert result.items == 2
    assert len(result.notes) == 2
    assert [(i.id, i.answers, i.meta["subset"]) for i in items] == [
        ("chartqa-human-0", ("62",), "human"),
        ("chartqa-augmented-0", ("Europe",), "augmented"),
    ]


def test_olmocr_bench_tests_of_all_six_types_become_facts_per_pdf_page(tmp_path: Path) -> None:
    data = tmp_path / "olmOCR-bench" / "bench_data"
    _pdf(data / "pdfs" / "multi_column" / "doc_a.pdf")
    _pdf(data / "pdfs" / "old_scans" / "letter.pdf", pages=2)
    doc_a = {"pdf": "multi_column/doc_a.pdf", "page": 1}
    tests = [
        doc_a | {"id": "a0", "type": "present", "text": "Title", "checked": "verified", "url": "x"},
        doc_a | {"id": "a1", "type": "order", "before": "AAAA", "after": "BBBB", "max_diffs": 2},
        doc_a | {"id": "a2", "type": "table", "cell": "3.1", "up": "2.9", "top_heading": "Year"},
        doc_a | {"id": "a3", "type": "baseline", "max_repeats": 20},
        doc_a | {"id": "a4", "type": "order", "before": "A", "after": "B", "max_diffs": 2},  # refused
        doc_a | {"id": "a5", "type": "footnote", "marker": "1"},  # a later type docvl does not check
    ]
    (data / "multi_column.jsonl").write_text("\n".join(json.dumps(t) for t in tests) + "\n\n")
    # A file whose tests name the PDF without its folder: looked up under pdfs/<the jsonl's name>/.
    scans = [
        {"pdf": "letter.pdf", "page": 2, "id": "s0", "type": "absent", "text": "Page 2", "last_n": 40},
        {"pdf": "letter.pdf", "page": 2, "id": "s1", "type": "math", "math": "x^2"},
        {"pdf": "nowhere.pdf", "page": 1, "id": "s2", "type": "present", "text": "?"},
    ]
    (data / "old_scans.jsonl").write_text("\n".join(json.dumps(t) for t in scans))
    result = olmocr_bench(tmp_path / "olmOCR-bench", tmp_path / "set")
    assert result.items == 3
    assert result.notes[:3] == [
        "tests converted: 1 present, 1 absent, 1 order, 1 table, 1 math, 2 baseline",
        "a baseline test added to page 1 of 1 PDFs that had none, as the benchmark does",
        "tests of types docvl does not check skipped: 1 footnote",
    ]
    assert result.notes[3].startswith("1 tests the benchmark itself would refuse skipped: multi_column.jsonl")
    assert result.notes[4] == f"1 PDFs named by tests not found under {data / 'pdfs'}"
    items = {i.id: i for i in load_set(tmp_path / "set").items}
    assert set(items) == {
        "olmocr-multi_column_doc_a-p1",
        "olmocr-old_scans_letter-p1",
        "olmocr-old_scans_letter-p2",
    }
    first = items["olmocr-multi_column_doc_a-p1"]
    category = "multi_column"
    assert first.facts == (
        Fact("present", text="Title", id="a0", category=category),
        Fact("order", before="AAAA", after="BBBB", max_diffs=2, id="a1", category=category),
        Fact("table", cell="3.1", up="2.9", top_heading="Year", id="a2", category=category),
        Fact("baseline", max_repeats=20, id="a3", category=category),
    )
    assert first.reference is None
    assert items["olmocr-old_scans_letter-p1"].facts == (
        Fact("baseline", id="old_scans/letter.pdf_baseline", category="baseline"),
    )
    second = items["olmocr-old_scans_letter-p2"]
    assert (second.page, second.file, second.facts) == (
        2,
        "pdfs/old_scans/letter.pdf",
        (
            Fact("absent", text="Page 2", last_n=40, id="s0", category="old_scans"),
            Fact("math", math="x^2", id="s1", category="old_scans"),
        ),
    )


def test_convert_command_and_its_usage_errors(tmp_path: Path) -> None:
    source = tmp_path / "src"
    _png(source / "1.png", 1)
    (source / "1.html").write_text("<html></html>")

    def convert(*args: str) -> subprocess.CompletedProcess[str]:
        command = [sys.executable, "-m", "docvl", "eval", "convert", *args]
        return subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=120, check=False)

    done = convert("--from", "design2code", str(source), str(tmp_path / "set"))
    assert done.returncode == 0, done.stderr
    assert f"wrote 1 items to {tmp_path / 'set' / 'manifest.jsonl'}" in done.stdout
    unknown = convert("--from", "imagenet", str(source), str(tmp_path / "x"))
    assert unknown.returncode == 2
    assert "use one of chartmimic, design2code, docvqa, chartqa, olmocr-bench" in unknown.stderr
    wrong = convert("--from", "chartmimic", str(source), str(tmp_path / "y"))
    assert wrong.returncode == 2
    assert "no ChartMimic .png + .py pairs found" in wrong.stderr

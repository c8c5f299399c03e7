"""The labelled set format: valid sets load, every problem is reported with its line and field."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from docvl.eval.manifest import MANIFEST, Item, ManifestError, load_set, write_manifest
from docvl.eval.metrics import Fact
from docvl.tasks import TaskKind
from tests.support.helpers import ROOT, png

PDF = ROOT / "tests" / "corpus" / "pdf-samples" / "004-pdflatex-4-pages" / "pdflatex-4-pages.pdf"


def _set(tmp_path: Path, lines: list[Any]) -> Path:
    (tmp_path / "img.png").write_bytes(png(1))
    (tmp_path / "doc.pdf").write_bytes(PDF.read_bytes())
    text = "\n".join(line if isinstance(line, str) else json.dumps(line) for line in lines)
    (tmp_path / MANIFEST).write_text(text + "\n", encoding="utf-8")
    return tmp_path


def _problems(directory: Path) -> list[str]:
    with pytest.raises(ManifestError) as raised:
        load_set(directory)
    return raised.value.problems


def test_a_valid_set_loads_every_kind_of_item(tmp_path: Path) -> None:
    directory = _set(
        tmp_path,
        [
            {"id": "o1", "file": "doc.pdf", "page": 3, "task": "ocr", "reference": "text"},
            "",
            {
                "id": "o2",
                "file": "doc.pdf",
                "task": "ocr",
                "facts": [{"type": "order", "before": "a", "after": "b"}],
            },
            {"id": "c1", "file": "img.png", "task": "chart2code", "reference": "plt.plot([1, 2])"},
            {"id": "w1", "file": "img.png", "task": "web2html"},
            {"id": "q1", "file": "img.png", "task": "qa", "question": "Why?", "reference": "because"},
            {"id": "q2", "file": "img.png", "task": "qa", "question": "Max?", "reference": ["12", "twelve"]},
        ],
    )
    labelled = load_set(directory)
    by_id = {item.id: item for item in labelled.items}
    assert list(by_id) == ["o1", "o2", "c1", "w1", "q1", "q2"]
    assert by_id["o1"].page == 3
    assert by_id["o2"].facts == (Fact("order", before="a", after="b"),)
    assert by_id["q1"].answers == ("because",)
    assert by_id["q2"].answers == ("12", "twelve")
    assert by_id["w1"].reference is None
    assert labelled.path(by_id["c1"]) == directory / "img.png"


def test_every_problem_names_its_line_and_field(tmp_path: Path) -> None:
    (tmp_path / "sub").mkdir()
    directory = _set(
        tmp_path,
        [
            {"id": "a", "file": "img.png", "task": "ocr", "reference": "x"},
            {"id": "a", "file": "img.png", "task": "ocr", "reference": "y"},
            {"id": "b", "file": "missing.png", "task": "ocr", "reference": "x"},
            {"id": "c", "file": "img.png", "task": "summarise"},
            {"id": "d", "file": "img.png", "task": "qa", "reference": "x"},
            {"id": "e", "file": "img.png", "task": "qa", "question": "q", "reference": []},
            {"id": "f", "file": "img.png", "page": 2, "task": "ocr", "reference": "x"},
            {"id": "g", "file": "../outside.png", "task": "ocr", "reference": "x"},
            "not json",
            {"id": "h", "file": "img.png", "task": "ocr", "refrence": "typo"},
            {"id": "i", "file": "img.png", "task": "ocr", "facts": [{"type": "footnote", "marker": "1"}]},
            {"id": "j", "file": "img.png", "task": "chart2code", "question": "why?"},
            {"file": "img.png", "task": "ocr", "reference": "x"},
            {"id": "k", "file": "doc.pdf", "page": 0, "task": "ocr", "reference": "x"},
            [1, 2],
        ],
    )
    problems = _problems(directory)
    expected = [
        "line 2: id: 'a' is already the id of line 1",
        "line 3: file: 'missing.png' does not exist",
        "line 4: task: unknown task 'summarise'",
        "line 5: question: missing",
        "line 6: reference: a qa item needs its answer",
        "line 7: page: 'img.png' is not a PDF",
        "line 8: file: '../outside.png' is outside the set's directory",
        "line 9: not JSON",
        "line 10: refrence: unknown field",
        "line 10: reference: an ocr item needs its reference text",
        "line 11: facts[0].marker: unknown field",
        "line 11: facts[0].type: must be one of present, absent, order, table, math, baseline",
        "line 12: question: only qa items have a question",
        "line 13: id: missing",
        "line 14: page: must be a whole number from 1",
        "line 15: not a JSON object",
    ]
    for start in expected:
        assert any(p.startswith(start) for p in problems), (start, problems)
    assert len(problems) == len(expected), "\n".join(problems)


def test_a_missing_or_empty_manifest_says_so(tmp_path: Path) -> None:
    assert "no manifest.jsonl" in _problems(tmp_path)[0]
    (tmp_path / MANIFEST).write_text("\n\n")
    assert _problems(tmp_path) == ["manifest.jsonl has no items"]
    assert "is not a directory" in _problems(tmp_path / "nope")[0]


def test_written_manifests_load_back(tmp_path: Path) -> None:
    (tmp_path / "img.png").write_bytes(png(2))
    items = [
        Item("x", "img.png", TaskKind.QA, question="q?", answers=("1", "one"), meta={"source": "t"}),
        Item("y", "img.png", TaskKind.OCR, facts=(Fact("absent", text="footer", max_diffs=1),)),
        Item("z", "img.png", TaskKind.CHART2CODE, reference="plt.bar([1], [2])"),
    ]
    write_manifest(tmp_path, items)
    assert load_set(tmp_path).items == tuple(items)


def test_eval_exits_2_for_an_invalid_set_or_missing_options(tmp_path: Path) -> None:
    directory = _set(tmp_path, [{"id": "a", "file": "img.png", "task": "qa", "question": "q"}])

    def docvl_eval(*args: str) -> subprocess.CompletedProcess[str]:
        command = [sys.executable, "-m", "docvl", "eval", *args]
        return subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=120, check=False)

    invalid = docvl_eval(
        "--set", str(directory), "--out", str(tmp_path / "r.md"), "--api", "http://127.0.0.1:9"
    )
    assert invalid.returncode == 2
    assert "line 1: reference: a qa item needs its answer" in invalid.stderr
    assert not (tmp_path / "r.md").exists()
    missing = docvl_eval("--set", str(directory))
    assert missing.returncode == 2
    assert "needs --set DIR and --out FILE" in missing.stderr

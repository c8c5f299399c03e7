"""olmOCR-Bench's six test types, each with pages that pass and pages that fail, the tests written in the
benchmark's own JSONL format (bench_data/*.jsonl + pdfs/) and brought in by the converter; then the
report's pass rates per type and per category, overall as the leaderboard computes it."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pypdfium2 as pdfium
import pytest

from docvl.eval import report
from docvl.eval.converters import olmocr_bench
from docvl.eval.katex import Glyph, KatexRenderer, NormalisedLatex, glyphs_match, normalise_latex
from docvl.eval.manifest import load_set
from docvl.eval.metrics import check_fact
from docvl.eval.olmocr import Fact, html_tables, markdown_tables, normalise, trailing_repeats
from docvl.eval.runner import Outcome
from docvl.jobs.views import PageResult

PDF = "doc.pdf"

TABLE_MD = """Some text before.

| Year | Revenue | Cost |
|---|---|---|
| 2021 | 2.9 | 1.0 |
| 2022 | 3.1 | 1.2 |

After the table."""

TABLE_HTML = """<table>
<thead><tr><th rowspan="2">Region</th><th colspan="2">Sales</th></tr>
<tr><th>2022</th><th>2023</th></tr></thead>
<tr><td>North</td><td>10</td><td>12</td></tr>
<tr><td>South</td><td>7<br>(est.)</td><td>9</td></tr>
</table>"""


def _facts(tmp_path: Path, tests: list[Any]) -> list[Fact]:
    """The tests as the benchmark ships them (one JSONL file, its PDF), converted to facts."""
    data = tmp_path / "bench" / "bench_data"
    (data / "pdfs").mkdir(parents=True)
    document = pdfium.PdfDocument.new()
    document.new_page(200, 300)
    document.save(data / "pdfs" / PDF)
    document.close()
    lines = [json.dumps({"pdf": PDF, "page": 1, "id": f"t{n}"} | test) for n, test in enumerate(tests)]
    (data / "cases.jsonl").write_text("\n".join(lines) + "\n")
    result = olmocr_bench(tmp_path / "bench", tmp_path / "set")
    assert not any("skipped" in note for note in result.notes), result.notes
    (item,) = load_set(tmp_path / "set").items
    return [fact for fact in item.facts if fact.category == "cases"]


def _verdicts(tmp_path: Path, tests: list[Any], page: str) -> list[bool]:
    return [check_fact(fact, page) for fact in _facts(tmp_path, tests)]


def test_normalisation_follows_the_benchmark() -> None:
    assert normalise("**Bold** and __strong__ and *it* <b>b</b><i>i</i>") == "Bold and strong and it bi"
    assert normalise("a<br>b<br/>c \n\t d") == "a b c d"
    assert (
        normalise("\u201cquoted\u201d \u2018x\u2019 a\u2013b\u2014c \u2212 5 \u00b5m")
        == "\"quoted\" 'x' a-b-c - 5 μm"
    )
    assert normalise("e\u0301") == "\u00e9"


def test_present(tmp_path: Path) -> None:
    page = "# Annual Report\n\nThe quarterly **revenue** rose \u201csharply\u201d.\n\nPage 3 of 9"
    tests = [
        {"type": "present", "text": "The quarterly revenue rose"},  # bold removed on the page
        {"type": "present", "text": 'rose "sharply"'},  # curly quotes made plain
        {"type": "present", "text": "The quarterly revenue fell"},
        {"type": "present", "text": "The quarterly revenue fell", "max_diffs": 3},
        {"type": "present", "text": "annual report"},
        {"type": "present", "text": "annual report", "case_sensitive": False},
        {"type": "present", "text": "Page 3 of 9", "first_n": 20},
        {"type": "present", "text": "Page 3 of 9", "last_n": 20},
    ]
    assert _verdicts(tmp_path, tests, page) == [True, True, False, True, False, True, False, True]


def test_absent(tmp_path: Path) -> None:
    page = "Running header\n\nBody text of the page.\n\nPage 3 of 9"
    tests = [
        {"type": "absent", "text": "Confidential"},
        {"type": "absent", "text": "Page 3 of 9"},
        {"type": "absent", "text": "Page 4 of 9"},  # one edit away: still absent at max_diffs 0
        {"type": "absent", "text": "Page 4 of 9", "max_diffs": 1},  # found within one edit
        {"type": "absent", "text": "Running header", "last_n": 30},  # only the page's end is looked at
        {"type": "absent", "text": "running HEADER", "case_sensitive": False},
    ]
    assert _verdicts(tmp_path, tests, page) == [True, False, True, False, True, False]


def test_order(tmp_path: Path) -> None:
    page = "First heading\n\nalpha beta gamma\n\nSecond heading\n\nalpha again"
    tests = [
        {"type": "order", "before": "First heading", "after": "Second heading"},
        {"type": "order", "before": "Second heading", "after": "First heading"},
        {"type": "order", "before": "First heading", "after": "Third heading"},
        {"type": "order", "before": "Frist heading", "after": "Second heading", "max_diffs": 2},
        # some match of `before` starts before some match of `after`: the second "alpha" does not matter
        {"type": "order", "before": "alpha", "after": "Second"},
        {"type": "order", "before": "Second", "after": "alpha"},
    ]
    assert _verdicts(tmp_path, tests, page) == [True, False, False, True, True, True]


def test_markdown_and_html_tables_are_parsed_into_grids() -> None:
    (md,) = markdown_tables(TABLE_MD)
    assert md.text[(1, 1)] == "2.9"
    assert (0, 2) in md.headings
    assert (2, 0) in md.headings
    assert md.neighbours((2, 1), "up") == {(1, 1)}
    (html,) = html_tables(TABLE_HTML)
    assert html.text[(0, 1)] == "Sales"
    assert html.text[(3, 1)] == "7\n(est.)"
    assert html.neighbours((0, 1), "down") == {(1, 1), (1, 2)}  # a colspan of 2 has two cells below
    assert html.neighbours((2, 0), "up") == {(0, 0)}  # the rowspan of 2 covers row 1
    assert html.heading((3, 2), "up") == {(1, 2), (0, 1)}


def test_table(tmp_path: Path) -> None:
    tests = [
        {
            "type": "table",
            "cell": "3.1",
            "up": "2.9",
            "left": "2022",
            "right": "1.2",
            "top_heading": "Revenue",
        },
        {"type": "table", "cell": "2.9", "down": "3.1", "left_heading": "2021"},
        {"type": "table", "cell": "3.1", "up": "1.0"},  # 1.0 is up and to the right
        {"type": "table", "cell": "3.1", "top_heading": "Cost"},
        {"type": "table", "cell": "4.7"},
        {"type": "table", "cell": "3.1", "ignore_markdown_tables": True},  # only HTML tables then
        {"type": "table", "cell": "Revenu", "max_diffs": 1, "down": "2.9"},
    ]
    assert _verdicts(tmp_path, tests, TABLE_MD) == [True, True, False, False, False, False, True]
    html_tests = [
        {"type": "table", "cell": "12", "top_heading": "2023", "left_heading": "North"},
        {"type": "table", "cell": "12", "top_heading": "Sales"},  # headings all the way up count
        {"type": "table", "cell": "7 (est.)", "up": "10", "right": "9"},
        {"type": "table", "cell": "12", "left": "North"},  # 10 sits between them
        {"type": "table", "cell": "9", "ignore_markdown_tables": True, "left": "7 (est.)"},
    ]
    assert _verdicts(tmp_path / "html", html_tests, TABLE_HTML) == [True, True, True, False, True]
    assert _verdicts(tmp_path / "none", [{"type": "table", "cell": "3.1"}], "3.1 in prose only") == [False]


def test_math(tmp_path: Path) -> None:
    page = r"The energy \(E = mc^2\) and $$\frac{a}{b}$$ and \[ \sum_{i=1}^{n} i \] and $x_1$."
    tests = [
        {"type": "math", "math": "E = mc^2"},  # the same LaTeX
        {"type": "math", "math": r"\sum_{i=1}^{n} i"},
        {"type": "math", "math": r"\frac{a}{c}"},
        {"type": "math", "math": "x_1"},
        {"type": "math", "math": "x_1", "ignore_dollar_delimited": True},
    ]
    assert _verdicts(tmp_path, tests, page) == [True, True, False, True, False]


@pytest.mark.skipif(not KatexRenderer.available(), reason="KaTeX (libjs-katex) or Chromium not installed")
def test_math_compares_what_katex_renders(tmp_path: Path) -> None:
    page = r"Written differently: \(E=mc^{2}\), \(\frac a b\), \(x_{1}^{2}\), \(\left(z\right)\) and \(y^2\)."
    tests = [
        {"type": "math", "math": "E = mc^2"},
        {"type": "math", "math": r"\frac{a}{b}"},
        {"type": "math", "math": "x^2_1"},
        {"type": "math", "math": "(z)"},  # other MathML (\\left( is a fence), the same glyphs in place
        {"type": "math", "math": "E=m"},  # a part of an equation: its glyphs are there, in place
        {"type": "math", "math": "y^3"},
        {"type": "math", "math": r"\frac{a}{"},  # not LaTeX KaTeX renders: never passes
    ]
    renderer = KatexRenderer()
    try:
        facts = _facts(tmp_path, tests)
        assert [check_fact(f, page, renderer) for f in facts] == [True, True, True, True, True, False, False]
    finally:
        renderer.close()


def test_glyphs_match_by_their_neighbours() -> None:
    """The benchmark's second comparison, on glyphs placed by hand: each reference glyph needs a candidate
    glyph of the same character with the same characters up, down, left and right of it."""
    x, two, y = Glyph("x", 0, 20), Glyph("2", 14, 8), Glyph("y", 30, 20)
    assert glyphs_match((x, y), (x, y, Glyph("z", 60, 20)))  # more in the candidate is fine
    assert not glyphs_match((x, y), (Glyph("y", 0, 20), Glyph("x", 30, 20)))  # x's right is not y
    assert not glyphs_match((x, y), (x, Glyph("y", 30, 40)))  # y below the line: not right of x
    assert glyphs_match((x, Glyph("2", 0, 0)), (x, Glyph("2", 2, 0)))  # 2 straight above x (within 5 px)
    assert not glyphs_match((x, Glyph("2", 0, 0)), (x, two))  # 2 up and right: not above
    assert not glyphs_match((x,), ())


def test_normalised_latex_is_the_stand_in_without_katex() -> None:
    assert normalise_latex(r"\left( \dfrac{1}{x} \right) \, + {y}") == r"(\frac1x)+y"
    stand_in = NormalisedLatex()
    assert stand_in.same("E = mc^2", "E=mc^{2}")
    assert not stand_in.same("E = mc^2", "E = mc^3")
    page = r"\(E=mc^{2}\)"
    assert check_fact(Fact("math", math="E = mc^2"), page, stand_in)
    assert not check_fact(Fact("math", math="E = mc^3"), page, stand_in)


def test_baseline(tmp_path: Path) -> None:
    assert trailing_repeats("xx abcabcabc", 3) == 3
    assert trailing_repeats("a   b", 1) == 1  # whitespace runs are one space first
    prose = "A page of ordinary text, with numbers 1 2 3."
    tests = [{"type": "baseline"}]
    assert _verdicts(tmp_path / "a", tests, prose) == [True]
    assert _verdicts(tmp_path / "b", tests, "  \n -- ") == [False]  # nothing alphanumeric
    assert _verdicts(tmp_path / "c", tests, prose + " abc" * 31) == [False]  # " abc" 31 times in a row
    assert _verdicts(tmp_path / "d", tests, prose + " abc" * 30) == [True]  # 30 is allowed
    assert _verdicts(tmp_path / "e", tests, prose + " \u4e2d\u6587") == [False]  # CJK
    assert _verdicts(tmp_path / "f", tests, prose + " \U0001f600") == [False]  # an emoji
    lenient: list[dict[str, Any]] = [
        {"type": "baseline", "check_disallowed_characters": False, "max_repeats": 40}
    ]
    assert _verdicts(tmp_path / "g", lenient, prose + " \u4e2d" + " abc" * 31) == [True]
    blank: list[dict[str, Any]] = [
        {"type": "baseline", "max_length": 10},
        {"type": "baseline", "max_length": 10, "max_length_skips_image_alt_tags": True},
    ]
    assert _verdicts(tmp_path / "h", blank, "") == [True, True]
    assert _verdicts(tmp_path / "i", blank, "![a long description of a photo](img.png)") == [False, True]
    assert _verdicts(tmp_path / "j", blank, "Twelve letters") == [False, False]


def test_report_gives_pass_rates_per_type_and_category_and_the_leaderboards_overall(tmp_path: Path) -> None:
    facts = [
        Fact("present", text="alpha", category="cat_a"),
        Fact("absent", text="omega", category="cat_a"),
        Fact("order", before="alpha", after="beta", category="cat_a"),
        Fact("table", cell="3.1", category="cat_b"),
        Fact("math", math="x^2", category="cat_b"),
        Fact("baseline", category="baseline"),
    ]
    from docvl.eval.manifest import Item
    from docvl.tasks import TaskKind

    item = Item("p1", "doc.pdf", TaskKind.OCR, facts=tuple(facts))
    missing = Item(
        "p2", "doc.pdf", TaskKind.OCR, page=2, facts=(Fact("present", text="z", category="cat_b"),)
    )
    page = PageResult(page=1, task=TaskKind.OCR, text="alpha then beta, $x^2$", valid=True)
    outcomes = [Outcome(item, job_id="j1", page=page), Outcome(missing, job_id="j2")]  # p2: no output
    now = datetime.now(UTC)
    built, _ = report.build(report.Run(tmp_path, "http://x", now, now, outcomes))
    summary = built["olmocr"]
    assert {k: (v["passed"], v["tests"]) for k, v in summary["by_type"].items()} == {
        "present": (1, 2),
        "absent": (1, 1),
        "order": (1, 1),
        "table": (0, 1),
        "math": (1, 1),
        "baseline": (1, 1),
    }
    rates = {k: v["pass_rate"] for k, v in summary["by_category"].items()}
    assert rates == {"baseline": 1.0, "cat_a": 1.0, "cat_b": 1 / 3}
    assert summary["overall"] == pytest.approx((1.0 + 1.0 + 1 / 3) / 3)  # the mean of the categories
    assert summary["all_tests"] == {"passed": 5, "tests": 7, "pass_rate": 5 / 7}
    first = built["results"][0]
    assert [f["passed"] for f in first["facts"]] == [True, True, True, False, True, True]
    text = report.markdown(built, [])
    assert "## olmOCR-Bench tests" in text
    assert "**Overall 77.8**" in text
    assert "| table | 0 | 1 | 0.0 |" in text
    assert "| cat_b | 1 | 3 | 33.3 |" in text

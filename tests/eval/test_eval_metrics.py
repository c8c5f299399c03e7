"""The metrics of `docvl eval` on textbook examples (no platform, no model)."""

from __future__ import annotations

import random

import pytest

from docvl.eval.distance import find_approximate, levenshtein, levenshtein_dp
from docvl.eval.metrics import (
    Fact,
    anls,
    cer,
    check_fact,
    data_value_recall,
    edit_distance,
    html_text_similarity,
    page_cer,
    page_edit_distance,
    relaxed_accuracy,
    relaxed_match,
)
from docvl.eval.text import (
    as_number,
    html_to_text,
    markdown_to_text,
    normalize_answer,
    normalize_page,
    numbers_in,
)


@pytest.mark.parametrize(
    ("a", "b", "distance"),
    [
        ("kitten", "sitting", 3),
        ("flaw", "lawn", 2),
        ("intention", "execution", 5),
        ("saturday", "sunday", 3),
        ("", "abc", 3),
        ("abc", "", 3),
        ("", "", 0),
        ("same", "same", 0),
    ],
)
def test_levenshtein_textbook_pairs(a: str, b: str, distance: int) -> None:
    assert levenshtein(a, b) == distance
    assert levenshtein(b, a) == distance
    assert levenshtein_dp(a, b) == distance


def test_bit_parallel_levenshtein_equals_the_table_on_random_strings() -> None:
    rng = random.Random(12)
    for _ in range(300):
        a = "".join(rng.choice("abcd ") for _ in range(rng.randint(0, 150)))
        b = "".join(rng.choice("abcde") for _ in range(rng.randint(0, 150)))
        assert levenshtein(a, b) == levenshtein_dp(a, b), (a, b)


def test_approximate_search_finds_the_first_end_within_the_edits() -> None:
    assert find_approximate("survey", "the surgery was done", 2) == len("the surge")  # survey -> surge
    assert find_approximate("survey", "the surgery was done", 1) is None
    assert find_approximate("done", "the surgery was done", 0) == len("the surgery was done")
    assert find_approximate("", "anything", 0) == 0
    rng = random.Random(3)
    for _ in range(200):
        hay = "".join(rng.choice("abc") for _ in range(rng.randint(0, 40)))
        needle = "".join(rng.choice("abc") for _ in range(rng.randint(1, 6)))
        k = rng.randint(0, 2)
        best = [
            min((levenshtein_dp(needle, hay[i:end]) for i in range(end + 1)), default=len(needle))
            for end in range(len(hay) + 1)
        ]
        expected = next((end for end, d in enumerate(best) if d <= k), None)
        assert find_approximate(needle, hay, k) == expected, (needle, hay, k)


def test_cer_and_normalised_edit_distance() -> None:
    assert cer("sitting", "kitten") == pytest.approx(3 / 6)  # 2 substitutions and 1 insertion
    assert cer("kitten", "kitten") == 0.0
    assert cer("", "abcd") == 1.0  # everything deleted
    assert cer("abcdefgh", "ab") == 3.0  # insertions push CER past 1
    assert edit_distance("abcdefgh", "ab") == pytest.approx(6 / 8)
    assert edit_distance("", "") == 0.0
    assert cer("", "") == 0.0
    assert cer("x", "") == 1.0


def test_markdown_is_stripped_to_plain_text_before_comparing() -> None:
    markdown = (
        "<!-- page 1 -->\n# The Title\n\nSome **bold** and _italic_ text with [a link](http://x) and "
        "`code`.\n\n- first\n- second\n\n| a | b |\n|---|---|\n| 1 | 2 |\n\n> quoted\n"
    )
    assert normalize_page(markdown) == (
        "The Title Some bold and italic text with a link and code. first second a b 1 2 quoted"
    )
    assert (
        page_cer(
            markdown, "The Title Some bold and italic text with a link and code. first second a b 1 2 quoted"
        )
        == 0
    )
    assert markdown_to_text("![a chart](c.png)") == "a chart"
    assert normalize_page("  many\n\n spaces\tand\u00a0tabs ") == "many spaces and tabs"
    assert normalize_page("\u201cquoted\u201d \u2014 dash") == '"quoted" - dash'
    assert page_edit_distance("# Hello", "hello") == pytest.approx(1 / 5)  # case is kept


@pytest.mark.parametrize(
    ("answer", "references", "score"),
    [
        ("Tokyo", ["tokyo"], 1.0),  # case and spaces do not count
        ("  tokyo ", ["Tokyo"], 1.0),
        ("Tokio", ["Tokyo"], 0.8),  # one edit in five: NLS 0.8
        ("abc", ["xyz"], 0.0),  # too far: 0, not 0 similarity credit
        ("ab", ["ac"], 0.0),  # distance exactly 0.5 is not under the threshold
        ("abcd", ["abce"], 0.75),
        ("Tokio", ["Kyoto", "Tokyo"], 0.8),  # the best reference counts
        ("", ["anything"], 0.0),
    ],
)
def test_anls_of_known_pairs(answer: str, references: list[str], score: float) -> None:
    assert anls(answer, references) == pytest.approx(score)


@pytest.mark.parametrize(
    ("answer", "reference", "correct"),
    [
        ("10.4", "10", True),  # 4 % off
        ("9.5", "10", True),  # exactly 5 %
        ("10.6", "10", False),  # 6 % off
        ("45%", "45", True),
        ("1,000", "1000", True),
        ("0", "0", True),
        ("0.01", "0", False),  # relative: only 0 matches 0
        ("Yes", "yes", True),
        ("Yes.", "yes", False),  # a text answer must match exactly after normalisation
        ("ten", "10", False),
        ("-3.1", "-3", True),
    ],
)
def test_relaxed_accuracy_of_known_pairs(answer: str, reference: str, correct: bool) -> None:
    assert relaxed_match(answer, reference) is correct


def test_relaxed_accuracy_takes_any_reference() -> None:
    assert relaxed_accuracy("12", ["twelve", "12.2"]) == 1.0
    assert relaxed_accuracy("13", ["twelve", "12.2"]) == 0.0


def test_numbers_and_answers() -> None:
    assert numbers_in("plt.bar(['a', 'b'], [3, -4.5]); ax2.set(alpha=.5, y=1e3) # C0") == [3, -4.5, 0.5, 1000]
    assert as_number("$3.5") == 3.5
    assert as_number("3.") == 3.0
    assert as_number("3 apples") is None
    assert normalize_answer("  The  ANSWER ") == "the answer"


def test_data_value_recall() -> None:
    reference = "plt.bar(['a', 'b', 'c'], [3, 4.5, 120])"
    assert data_value_recall("ax.bar(x, [3.01, 7, 120])", reference) == pytest.approx(2 / 3)
    assert data_value_recall(reference, reference) == 1.0
    assert data_value_recall("", reference) == 0.0
    assert data_value_recall("anything", "plt.show()") is None
    assert data_value_recall("[1]", "[1, 1]") == 0.5  # each generated number counts once


def test_facts_present_absent_and_order() -> None:
    page = "# Report\n\nThe **quarterly** revenue rose.\n\nPage 3 of 9"
    assert check_fact(Fact("present", text="The quarterly revenue rose."), page)
    assert not check_fact(Fact("present", text="The quarterly revenue fell."), page)
    assert check_fact(Fact("present", text="The quarterly revenue fell.", max_diffs=4), page)
    assert check_fact(Fact("absent", text="Confidential"), page)
    assert not check_fact(Fact("absent", text="Page 3 of 9"), page)
    assert check_fact(Fact("order", before="Report", after="revenue"), page)
    assert not check_fact(Fact("order", before="revenue", after="Report"), page)
    assert not check_fact(Fact("order", before="Report", after="missing"), page)


def test_html_visible_text_and_its_similarity() -> None:
    page = (
        "<!DOCTYPE html><html><head><title>T</title><style>h1{color:red}</style></head>"
        "<body><h1>Shop &amp; Caf&eacute;</h1><script>var x = 1;</script><p>Open\n  daily</p></body></html>"
    )
    assert html_to_text(page) == "Shop & Café Open daily"
    assert html_text_similarity(page, "<p>Shop &amp; Café</p><div>Open daily</div>") == 1.0
    assert html_text_similarity("<p>abcd</p>", "<p>abce</p>") == pytest.approx(0.75)
    assert html_text_similarity("", "<p>text</p>") == 0.0

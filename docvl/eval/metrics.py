"""The metrics of `docvl eval`, each from its textbook definition.

- `cer`: character error rate, edit distance / reference length (can exceed 1 when the output is longer).
- `edit_distance`: normalised edit distance, edit distance / the longer length (0 = same, 1 = nothing in
  common), the figure OCR benchmarks such as Nougat and OmniDocBench report.
- `anls`: DocVQA's Average Normalized Levenshtein Similarity of one answer against its references.
- `relaxed_accuracy`: ChartQA's relaxed accuracy (numbers within 5 %, other answers exact).
- `html_text_similarity`: 1 - normalised edit distance of two HTML documents' visible text.
- `data_value_recall`: the share of the reference code's numbers found in the generated code.
- `check_fact`: olmOCR-Bench's tests of a page (present, absent, order, table, math, baseline).
"""

from __future__ import annotations

from collections.abc import Sequence

from docvl.eval import olmocr
from docvl.eval.distance import levenshtein
from docvl.eval.olmocr import Fact as Fact  # re-exported: the facts the metrics check
from docvl.eval.olmocr import MathRenderer
from docvl.eval.text import as_number, html_to_text, normalize_answer, normalize_page, numbers_in

ANLS_THRESHOLD = 0.5
RELAXED_TOLERANCE = 0.05
VALUE_TOLERANCE = 0.01


def cer(output: str, reference: str) -> float:
    """Character error rate of `output` against `reference`, both compared as given (normalise first)."""
    if not reference:
        return 0.0 if not output else 1.0
    return levenshtein(output, reference) / len(reference)


def edit_distance(output: str, reference: str) -> float:
    """Edit distance divided by the longer string's length, in [0, 1]; 0 for two empty strings."""
    longest = max(len(output), len(reference))
    return levenshtein(output, reference) / longest if longest else 0.0


def page_cer(output_markdown: str, reference: str) -> float:
    """CER of an OCR page: both sides normalised by `normalize_page` first."""
    return cer(normalize_page(output_markdown), normalize_page(reference))


def page_edit_distance(output_markdown: str, reference: str) -> float:
    return edit_distance(normalize_page(output_markdown), normalize_page(reference))


def html_text_similarity(output_html: str, reference_html: str) -> float:
    """How alike the visible text of two HTML documents is: 1 - their normalised edit distance."""
    return 1.0 - edit_distance(html_to_text(output_html), html_to_text(reference_html))


def nls(answer: str, reference: str) -> float:
    """Normalised Levenshtein similarity of one normalised pair: 1 - distance / longer length."""
    return 1.0 - edit_distance(normalize_answer(answer), normalize_answer(reference))


def anls(answer: str, references: Sequence[str], threshold: float = ANLS_THRESHOLD) -> float:
    """ANLS of one question (DocVQA): the best similarity over the references, 0 where the normalised
    distance is `threshold` or more. The set's ANLS is the mean of this over its questions."""
    best = 0.0
    for reference in references:
        similarity = nls(answer, reference)
        if 1.0 - similarity < threshold:
            best = max(best, similarity)
    return best


def relaxed_match(answer: str, reference: str, tolerance: float = RELAXED_TOLERANCE) -> bool:
    """ChartQA's relaxed correctness: when the reference is a number, the answer must be a number within
    `tolerance` of it (relative; an exact match for 0); otherwise the normalised strings must be equal."""
    target = as_number(reference)
    if target is not None:
        value = as_number(answer)
        return value is not None and abs(value - target) <= tolerance * abs(target)
    return normalize_answer(answer) == normalize_answer(reference)


def relaxed_accuracy(answer: str, references: Sequence[str], tolerance: float = RELAXED_TOLERANCE) -> float:
    """1.0 when the answer relaxed-matches any reference, else 0.0."""
    return 1.0 if any(relaxed_match(answer, r, tolerance) for r in references) else 0.0


def data_value_recall(
    generated_code: str, reference_code: str, tolerance: float = VALUE_TOLERANCE
) -> float | None:
    """The share of the numeric literals of `reference_code` matched by distinct literals of
    `generated_code` within `tolerance` (relative; absolute 1e-9 around 0); None when the reference has
    no numbers. Every literal counts, styling ones (figure size, font size) included."""
    wanted = sorted(numbers_in(reference_code))
    if not wanted:
        return None
    available = sorted(numbers_in(generated_code))
    used = [False] * len(available)
    found = 0
    for value in wanted:
        slack = max(tolerance * abs(value), 1e-9)
        best: int | None = None
        for index, candidate in enumerate(available):
            close = not used[index] and abs(candidate - value) <= slack
            if close and (best is None or abs(candidate - value) < abs(available[best] - value)):
                best = index
        if best is not None:
            used[best] = True
            found += 1
    return found / len(wanted)


def check_fact(fact: Fact, output_markdown: str, renderer: MathRenderer | None = None) -> bool:
    """Whether the page's output passes the olmOCR-Bench test (docvl.eval.olmocr has the rules)."""
    return olmocr.check(fact, output_markdown, renderer)

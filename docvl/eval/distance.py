"""Unit-cost edit distance (Levenshtein) and approximate substring search, bit-parallel.

Both follow Myers' bit-vector algorithm ("A fast bit-vector algorithm for approximate string matching
based on dynamic programming", J. ACM 1999) in Hyyrö's formulation: one column of the dynamic-programming
matrix is held as two bit vectors (vertical +1 and -1 deltas), so each character of the text costs a
handful of integer operations on Python's arbitrary-length integers whatever the pattern's length.
`levenshtein_dp` is the textbook table, kept as the reference the fast one is tested against.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator, Sequence


def levenshtein_dp(a: Sequence[str], b: Sequence[str]) -> int:
    """The textbook O(len(a) * len(b)) dynamic programme (two rows)."""
    previous = list(range(len(b) + 1))
    for i, x in enumerate(a, 1):
        current = [i]
        for j, y in enumerate(b, 1):
            current.append(min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (x != y)))
        previous = current
    return previous[-1]


def _peq(pattern: Sequence[str]) -> dict[str, int]:
    """For each symbol, the bit mask of the pattern positions holding it."""
    masks: dict[str, int] = {}
    for i, symbol in enumerate(pattern):
        masks[symbol] = masks.get(symbol, 0) | (1 << i)
    return masks


def _scores(pattern: Sequence[str], text: Sequence[str], *, anchored: bool) -> Iterator[int]:
    """After each symbol of `text`, the edit distance of `pattern` (non-empty) to the text read so far:
    to all of it when `anchored`, else to its best-matching suffix (a match may start anywhere)."""
    m = len(pattern)
    peq = _peq(pattern)
    full = (1 << m) - 1
    top = 1 << (m - 1)
    pv, mv, score = full, 0, m
    for symbol in text:
        eq = peq.get(symbol, 0)
        xv = eq | mv
        xh = (((eq & pv) + pv) ^ pv) | eq
        ph = mv | ~(xh | pv)
        mh = pv & xh
        if ph & top:
            score += 1
        elif mh & top:
            score -= 1
        yield score
        # anchored: row 0 of the table grows by one per text symbol; unanchored: it stays 0
        ph = (ph << 1) | int(anchored)
        mh <<= 1
        pv = (mh | ~(xv | ph)) & full
        mv = ph & xv & full


def levenshtein(a: Sequence[str], b: Sequence[str]) -> int:
    """The least number of single-symbol insertions, deletions and substitutions turning `a` into `b`."""
    pattern, text = (a, b) if len(a) <= len(b) else (b, a)
    if not pattern:
        return len(text)
    # the score after the text's last symbol; with no text, every pattern symbol is deleted
    return functools.reduce(lambda _, score: score, _scores(pattern, text, anchored=True), len(pattern))


def find_approximate(needle: Sequence[str], haystack: Sequence[str], max_edits: int) -> int | None:
    """The end (exclusive index into `haystack`) of the first substring of `haystack` within `max_edits`
    edits of `needle`, or None. An empty needle matches at 0."""
    if max_edits >= len(needle):
        return 0
    for j, score in enumerate(_scores(needle, haystack, anchored=False)):
        if score <= max_edits:
            return j + 1
    return None


def approximate_ends(needle: Sequence[str], haystack: Sequence[str], max_edits: int) -> list[int]:
    """The end (exclusive index into `haystack`) of every substring of `haystack` within `max_edits`
    edits of `needle`, in order. An empty needle (or one short enough to be edited away) ends anywhere."""
    if max_edits >= len(needle):
        return list(range(len(haystack) + 1))
    return [j + 1 for j, score in enumerate(_scores(needle, haystack, anchored=False)) if score <= max_edits]

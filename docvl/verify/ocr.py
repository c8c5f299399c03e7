"""OCR: the Markdown's plain text against the PDF's own text layer (CER, word F1), and repetition."""

from __future__ import annotations

import re
from collections import Counter
from typing import Any

from rapidfuzz.distance import Levenshtein

_MAX_N = 12  # longest n-gram (in tokens) looked at for repeated runs
_MIN_COPIES = 3  # a run is the same n-gram three times or more in a row
_FENCE = re.compile(r"^```.*$", re.MULTILINE)
_IMAGE = re.compile(r"!\[([^\[\]]*)\]\([^()]*\)")  # linear: stops at the next [ (model output)
_LINK = re.compile(r"\[([^\[\]]*)\]\([^()]*\)")
_TAG = re.compile(r"<[^<>]+>")
_MARKUP = re.compile(r"^\s{0,3}(#{1,6}\s+|>\s?|[-*+]\s+|\d+[.)]\s+)|[*_`~]+|^\s*\|?[\s:|-]+\|?\s*$|\|", re.M)
_SPACE = re.compile(r"\s+")
_WORD = re.compile(r"\w+", re.UNICODE)


def plain_text(markdown: str) -> str:
    """The text a reader sees: no fences, emphasis, heading marks, table pipes, tags or link targets."""
    text = _FENCE.sub(" ", markdown)
    text = _IMAGE.sub(r"\1", text)
    text = _LINK.sub(r"\1", text)
    text = _TAG.sub(" ", text)
    text = _MARKUP.sub(" ", text)
    return normalise(text)


def normalise(text: str) -> str:
    return _SPACE.sub(" ", text).strip()


def words(text: str) -> list[str]:
    return [w.lower() for w in _WORD.findall(text)]


def cer(hypothesis: str, reference: str) -> float:
    """Character error rate: edits to turn the hypothesis into the reference, per reference character
    (can exceed 1 for an output much longer than the reference)."""
    reference, hypothesis = normalise(reference), normalise(hypothesis)
    if not reference:
        return 0.0 if not hypothesis else 1.0
    return round(Levenshtein.distance(hypothesis, reference) / len(reference), 4)


def word_f1(hypothesis: str, reference: str) -> float:
    """F1 of the bags of words (case-insensitive): order-free, so columns read in another order still
    count."""
    hyp, ref = Counter(words(hypothesis)), Counter(words(reference))
    if not hyp or not ref:
        return 1.0 if not hyp and not ref else 0.0
    common = sum((hyp & ref).values())
    if common == 0:
        return 0.0
    precision, recall = common / sum(hyp.values()), common / sum(ref.values())
    return round(2 * precision * recall / (precision + recall), 4)


def recall(found_in: str, reference: str) -> float:
    """The share of the reference's words found in `found_in` (with their multiplicity)."""
    ref, have = Counter(words(reference)), Counter(words(found_in))
    total = sum(ref.values())
    return round(sum((ref & have).values()) / total, 4) if total else 1.0


def repetition(text: str) -> float:
    """The share of the text's tokens inside runs of one n-gram repeated three times or more in a row
    (a generation loop); tokens are words, or characters for text without spaces (e.g. CJK)."""
    tokens: list[str] = text.split()
    if len(tokens) < 0.1 * len(text.strip()) or len(tokens) < 2:  # little whitespace: characters
        tokens = [c for c in text if not c.isspace()]
    count = len(tokens)
    if count < _MIN_COPIES:
        return 0.0
    covered = bytearray(count)
    for n in range(1, min(_MAX_N, count // _MIN_COPIES) + 1):
        start = 0
        while start + 2 * n <= count:
            copies = 1
            while tokens[start + copies * n : start + (copies + 1) * n] == tokens[start : start + n]:
                copies += 1
            if copies >= _MIN_COPIES:
                covered[start : start + copies * n] = b"\x01" * (copies * n)
                start += copies * n
            else:
                start += 1
    return round(sum(covered) / count, 4)


def verify(markdown: str, text_layer: str | None) -> dict[str, Any]:
    """{repetition, text_layer_cer, text_layer_f1}: the text-layer fields are None when the page
    had none (an image, or a scanned PDF page)."""
    verdict: dict[str, Any] = {"repetition": repetition(markdown)}
    if text_layer and normalise(text_layer):
        text = plain_text(markdown)
        verdict |= {"text_layer_cer": cer(text, text_layer), "text_layer_f1": word_f1(text, text_layer)}
    else:
        verdict |= {"text_layer_cer": None, "text_layer_f1": None}
    return verdict

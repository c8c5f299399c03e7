"""Text normalisation shared by the metrics: Markdown to plain text, answers, numbers."""

from __future__ import annotations

import html
import re
import unicodedata
from html.parser import HTMLParser

_FENCE = re.compile(r"^[ \t]*(```|~~~).*$", re.MULTILINE)
_IMAGE = re.compile(r"!\[([^\[\]]*)\]\([^()]*\)")
_LINK = re.compile(r"\[([^\[\]]*)\]\([^()]*\)")
_TAG = re.compile(r"</?[A-Za-z][A-Za-z0-9-]*(?:\s[^<>]*)?/?>")
_HEADING = re.compile(r"^\s{0,3}#{1,6}\s+", re.MULTILINE)
_QUOTE = re.compile(r"^[ \t]*>[ \t]?", re.MULTILINE)
_BULLET = re.compile(r"^[ \t]*(?:[-*+]|\d{1,9}[.)])\s+", re.MULTILINE)
_RULE = re.compile(r"^[ \t]*(?:[-*_][ \t]*){3,}$", re.MULTILINE)
_TABLE_RULE = re.compile(
    r"^[ \t]*(?:\|[ \t]*)?:?-{2,}:?[ \t]*(?:\|[ \t]*:?-{2,}:?[ \t]*)*(?:\|[ \t]*)?$", re.MULTILINE
)
# Emphasis holds no character of its own delimiter, so each try stops at the next one.
_EMPHASIS = re.compile(
    r"(\*{1,3})(?=\S)([^*]+?)(?<=\S)\1|(_{1,3})(?=\S)([^_]+?)(?<=\S)\3|~~(?=\S)([^~]+?)(?<=\S)~~"
)
_CODE = re.compile(r"`+([^`]*)`+")
_ESCAPE = re.compile(r"\\([\\`*_{}\[\]()#+\-.!|>])")
_SPACE = re.compile(r"\s+")

_DASHES = dict.fromkeys(map(ord, "\u2010\u2011\u2012\u2013\u2014\u2015\u2212"), "-")
_QUOTES = {
    **dict.fromkeys(map(ord, "\u201c\u201d\u201e\u201f\u00ab\u00bb"), '"'),
    **dict.fromkeys(map(ord, "\u2018\u2019\u201a\u201b\u2032"), "'"),
}


def collapse_whitespace(text: str) -> str:
    return _SPACE.sub(" ", text).strip()


# Every pattern here runs on model output, so each is linear in its input: line-anchored ones match spaces
# and tabs, never newlines (`^\s*` would rescan every following blank line from each line start), and
# bracketed ones stop at the next opening bracket (an unclosed `[` or `<` never scans to the end from each
# of its copies). tests/eval/test_eval_text.py runs each on its worst case.


def _without_comments(text: str) -> str:
    """HTML comments replaced by a space, found with str.find (a lazy regex rescans to the end of the text
    from every unclosed `<!--`); an unclosed one is kept as text."""
    pieces, start = [], 0
    while (opened := text.find("<!--", start)) != -1 and (closed := text.find("-->", opened + 4)) != -1:
        pieces += [text[start:opened], " "]
        start = closed + 3
    return "".join(pieces) + text[start:]


def _emphasised(match: re.Match[str]) -> str:
    return match.group(2) or match.group(4) or match.group(5) or ""


def markdown_to_text(markdown: str) -> str:
    """The plain text of a Markdown page: comments, fences, headings, emphasis, links, images (their alt
    text stays), HTML tags, list and quote markers and table rules removed, table pipes made spaces."""
    text = _without_comments(markdown)
    text = _FENCE.sub("", text)
    text = _IMAGE.sub(r"\1", text)
    text = _LINK.sub(r"\1", text)
    text = _TAG.sub(" ", text)
    text = _TABLE_RULE.sub("", text)
    text = _RULE.sub("", text)
    text = _HEADING.sub("", text)
    text = _QUOTE.sub("", text)
    text = _BULLET.sub("", text)
    for _ in range(3):  # nested emphasis (***a*** or **_a_**)
        text = _EMPHASIS.sub(_emphasised, text)
    text = _CODE.sub(r"\1", text)
    text = _ESCAPE.sub(r"\1", text)
    return text.replace("|", " ")


def normalize_page(text: str) -> str:
    """What OCR output and reference text are compared as: Markdown stripped to plain text, Unicode NFC,
    dashes and curly quotes made ASCII, whitespace collapsed to single spaces."""
    plain = unicodedata.normalize("NFC", markdown_to_text(text))
    return collapse_whitespace(plain.translate(_DASHES).translate(_QUOTES))


def normalize_answer(text: str) -> str:
    """A QA answer as DocVQA's evaluation compares it: lower case, whitespace collapsed and trimmed."""
    return collapse_whitespace(unicodedata.normalize("NFKC", text).lower())


_NUMBER = re.compile(r"(?<![\w.])[-+]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d+)?(?![\w.])")
_ANSWER_NUMBER = re.compile(r"^[-+]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d+)?$")


def numbers_in(text: str) -> list[float]:
    """Every numeric literal in `text` (code or prose), in order: 3, -2.5, 1e3, .5; digits inside names
    (`ax2`, `C0`) are not numbers."""
    return [float(match) for match in _NUMBER.findall(text)]


def as_number(answer: str) -> float | None:
    """The answer as a number when it is one, allowing a trailing %, thousands commas and a currency
    sign or a final full stop: "1,234" -> 1234.0, "45%" -> 45.0, "$3.5" -> 3.5; else None."""
    text = answer.strip().rstrip(".").removesuffix("%").strip().lstrip("$€£").replace(",", "")
    return float(text) if _ANSWER_NUMBER.match(text) else None


class _VisibleText(HTMLParser):
    """The text a browser would show: character data outside script, style, template, head and title."""

    HIDDEN = frozenset({"script", "style", "template", "head", "title", "noscript"})

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self.hidden = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in self.HIDDEN:
            self.hidden += 1

    def handle_endtag(self, tag: str) -> None:
        if tag in self.HIDDEN and self.hidden:
            self.hidden -= 1

    def handle_data(self, data: str) -> None:
        if not self.hidden:
            self.parts.append(data)


def html_to_text(document: str) -> str:
    """The visible text of an HTML document, whitespace collapsed (entities decoded)."""
    parser = _VisibleText()
    parser.feed(document)
    parser.close()
    return collapse_whitespace(html.unescape(" ".join(parser.parts)))

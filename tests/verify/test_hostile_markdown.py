"""Model output is untrusted: the Markdown and fence parsing that runs on it (verification's plain text,
eval's page normalisation, the chart/HTML fence finder) must stay linear in it. Each input below is the
worst case of a pattern those modules used to have (an unclosed `[`, `<`, `<!--` or emphasis repeated,
runs of blank lines or backticks): 200,000 characters that took from tens of seconds to hours before (a
table-rule pattern took 415 s on 4,000 newlines). No timing is asserted; a regression shows as this test
running into pytest's timeout. The results are checked too, so a fix that dropped text would fail."""

from __future__ import annotations

import pytest

from docvl.eval.text import markdown_to_text, normalize_page
from docvl.postprocess import fenced_block
from docvl.verify.ocr import plain_text

N = 200_000
HOSTILE = {
    "blank lines": "\n" * N,
    "dash lines": "-\n" * (N // 2),
    "spaces after a pipe": "|" + " " * N,
    "unclosed brackets": "[" * N,
    "unclosed images": "![" * (N // 2),
    "empty links never closed": "[](" * (N // 3),
    "unclosed tags": "<" * N,
    "unclosed comments": "<!--" * (N // 4),
    "unclosed emphasis": "*a " * (N // 3),
    "unclosed strong emphasis": "**a " * (N // 4),
    "unclosed underscores": "_a " * (N // 3),
    "unclosed strikethrough": "~~a " * (N // 4),
    "backticks": "`" * N,
}


@pytest.mark.parametrize("name", list(HOSTILE))
def test_markdown_parsing_stays_linear_on_hostile_output(name: str) -> None:
    text = HOSTILE[name]
    words = "".join(ch for ch in text if ch.isalnum())
    for plain in (plain_text(text), normalize_page(text)):
        assert "".join(ch for ch in plain if ch.isalnum()) == words, "no letter of the output is lost"
    assert fenced_block(text, ("python",)) in (None, "")


def test_the_linear_patterns_still_read_markdown() -> None:
    page = (
        "<!-- a note -->\n# Title\n\n> quoted\n- item *one*\n1. item __two__\n\n| a | b |\n| --- | :--: |\n"
        "| 1 | 2 |\n\n---\n![chart](c.png) see [the site](https://x.org) and ~~old~~ `code` <b>bold</b>"
    )
    expected = "Title quoted item one item two a b 1 2 chart see the site and old code bold"
    assert normalize_page(page) == expected
    assert plain_text("# Title\n[the site](https://x.org) ![alt](a.png) <i>x</i>") == "Title the site alt x"
    assert fenced_block("text\n```python\nprint(1)\n```\n", ("python",)) == "print(1)"
    assert markdown_to_text("an unclosed <!-- comment stays") == "an unclosed <!-- comment stays"

"""Model output made safe to show in the console, on the server: Markdown rendered with raw HTML off and
sanitised to an allow-list (nh3), code highlighted by Pygments (escaped), and a web2html page cut down to
inert structure for a sandboxed iframe. Nothing that comes out of here can run script or load anything."""

from __future__ import annotations

import re
from collections.abc import Callable
from functools import cache

import nh3
from markdown_it import MarkdownIt
from pygments import highlight
from pygments.formatters import HtmlFormatter
from pygments.lexers import PythonLexer

CODE_CSS_SCOPE = ".code"
LINK_SCHEMES = {"http", "https", "mailto"}
LINK_REL = "noopener noreferrer nofollow"

# What rendered Markdown may hold: text structure, links and tables; no images (they would load from
# anywhere), no style attributes, nothing interactive.
_TEXT_TAGS = {
    "a", "abbr", "b", "blockquote", "br", "code", "del", "em", "h1", "h2", "h3", "h4", "h5", "h6", "hr",
    "i", "li", "ol", "p", "pre", "s", "strong", "sub", "sup", "table", "tbody", "td", "th", "thead", "tr",
    "ul",
}  # fmt: skip
_TEXT_ATTRIBUTES = {
    "a": {"href", "title"},
    "ol": {"start"},
    "td": {"colspan", "rowspan"},
    "th": {"colspan", "rowspan"},
}
# A webpage's structure on top: sections, lists, forms as inert controls (the iframe allows no forms).
_PAGE_TAGS = _TEXT_TAGS | {
    "article", "aside", "button", "caption", "dd", "div", "dl", "dt", "fieldset", "figcaption", "figure",
    "footer", "header", "input", "label", "legend", "main", "mark", "nav", "option", "section", "select",
    "small", "span", "tfoot", "textarea", "u",
}  # fmt: skip
_PAGE_ATTRIBUTES = {
    **_TEXT_ATTRIBUTES,
    "input": {"type", "value", "placeholder", "checked", "disabled"},
    "option": {"value", "selected"},
    "textarea": {"placeholder"},
    "*": {"title", "lang", "dir"},
}
_DROPPED_WITH_CONTENT = {
    "script", "style", "title", "noscript", "template", "object", "iframe", "svg", "math",
}  # fmt: skip
# The styled preview (previews.py) keeps the page's CSS, which loads nothing under the preview's policy.
_STYLED_TAGS = _PAGE_TAGS | {"style"}
_STYLED_ATTRIBUTES = {**_PAGE_ATTRIBUTES, "*": _PAGE_ATTRIBUTES["*"] | {"style", "class", "id"}}
# What the preview is served with: a sandbox (no scripts, an opaque origin), nothing loads but inline CSS
# and data: images, and only the console may frame it.
PREVIEW_CSP = (
    "sandbox; default-src 'none'; style-src 'unsafe-inline'; img-src data:; font-src data:; "
    "base-uri 'none'; form-action 'none'; frame-ancestors 'self'"
)
# The web2html frame's own policy, on top of the console's (which it inherits): nothing loads at all.
FRAME_CSP = "default-src 'none'; img-src data:; form-action 'none'; base-uri 'none'"


@cache
def _markdown() -> MarkdownIt:
    return MarkdownIt("commonmark", {"html": False}).enable(["table", "strikethrough"])


@cache
def _text_cleaner() -> nh3.Cleaner:
    return _cleaner(_TEXT_TAGS, _TEXT_ATTRIBUTES)


@cache
def _page_cleaner() -> nh3.Cleaner:
    return _cleaner(_PAGE_TAGS, _PAGE_ATTRIBUTES)


@cache
def _styled_cleaner() -> nh3.Cleaner:
    return _cleaner(_STYLED_TAGS, _STYLED_ATTRIBUTES, _inert_style_attribute)


# CSS that could load something (url(), @import, image-set(), fonts...), or hide such a thing behind an
# escape: dropped whole, before the preview's policy would have to block it.
_CSS_LOADS = re.compile(
    r"\\|url\s*\(|@import|@font-face|image-set|image\s*\(|cross-fade|element\s*\(|src\s*\(|expression",
    re.IGNORECASE,
)
_STYLE_BLOCK = re.compile(r"<style>(.*?)</style>", re.DOTALL)


def _inert_style_attribute(_tag: str, name: str, value: str) -> str | None:
    return None if name == "style" and _CSS_LOADS.search(value) else value


def _inert_style_blocks(html: str) -> str:
    return _STYLE_BLOCK.sub(lambda m: "" if _CSS_LOADS.search(m.group(1)) else m.group(0), html)


def _cleaner(
    tags: set[str],
    attributes: dict[str, set[str]],
    attribute_filter: Callable[[str, str, str], str | None] | None = None,
) -> nh3.Cleaner:
    return nh3.Cleaner(
        attribute_filter=attribute_filter,
        tags=tags,
        clean_content_tags=_DROPPED_WITH_CONTENT - tags,
        attributes=attributes,
        url_schemes=LINK_SCHEMES,
        link_rel=LINK_REL,
        url_relative="deny",  # relative links would point into the console or the API
        strip_comments=True,
    )


def markdown_html(text: str) -> str:
    """OCR Markdown (or a QA answer) as sanitised HTML."""
    return _text_cleaner().clean(_markdown().render(text))


def code_html(code: str) -> str:
    """Python source highlighted: escaped text in `<span class=...>`, to go inside `<pre class="code">`."""
    rendered: str = highlight(code, PythonLexer(), HtmlFormatter(nowrap=True))
    return rendered


@cache
def code_css() -> str:
    """The stylesheet for `code_html`'s classes."""
    css: str = HtmlFormatter(style="default").get_style_defs(CODE_CSS_SCOPE)
    return css


def page_document(html: str) -> str:
    """A web2html page as an inert document for an iframe's `srcdoc`: its structure sanitised, its own
    head (scripts, styles, meta refreshes, base) replaced by one with a policy that loads nothing."""
    body = _page_cleaner().clean(html)
    return (
        '<!doctype html><html><head><meta charset="utf-8">'
        f'<meta http-equiv="Content-Security-Policy" content="{FRAME_CSP}">'
        f"</head><body>{body}</body></html>"
    )


def styled_page_document(html: str) -> str:
    """A web2html page with its CSS, for the preview route (served under PREVIEW_CSP): the same structure
    as `page_document`, plus `<style>` and style, class and id attributes, but no CSS that loads."""
    body = _inert_style_blocks(_styled_cleaner().clean(html))
    return f'<!doctype html><html><head><meta charset="utf-8"></head><body>{body}</body></html>'

"""Turning a model's raw text into the task's artifact, and checking it.

chart2code: the Python code block, which must parse. web2html: the HTML document, which must parse into a
document with an <html> or <body>. ocr and qa: the text itself. A check that fails does not lose the
output: the result keeps it, marked invalid with the reason.
"""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass
from html.parser import HTMLParser

from docvl.tasks import TaskKind

# The info string stops at a backtick: a run of backticks with no newline is not rescanned from each one.
_FENCE = re.compile(r"```[ \t]*([\w+-]*)[^\n`]*\n(.*?)(?:```|\Z)", re.DOTALL)


@dataclass(frozen=True)
class Artifact:
    text: str
    valid: bool
    problem: str | None = None


def fenced_block(text: str, languages: tuple[str, ...]) -> str | None:
    """The first fenced block in one of `languages` (or with no language), without its fences."""
    blocks: list[tuple[str, str]] = [(str(lang).lower(), str(body)) for lang, body in _FENCE.findall(text)]
    for lang, body in blocks:
        if lang in languages:
            return body.strip("\n")
    for lang, body in blocks:
        if not lang:
            return body.strip("\n")
    return None


def python_artifact(text: str) -> Artifact:
    code = fenced_block(text, ("python", "py", "python3"))
    code = code if code is not None else text.strip()
    try:
        ast.parse(code)
    except SyntaxError as exc:
        return Artifact(code, False, f"the Python does not parse: {exc.msg} (line {exc.lineno})")
    except ValueError as exc:  # e.g. null bytes
        return Artifact(code, False, f"the Python does not parse: {exc}")
    return Artifact(code, True)


class _Tags(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)


def html_artifact(text: str) -> Artifact:
    html = fenced_block(text, ("html", "htm"))
    if html is None:
        start = re.search(r"<!doctype html|<html", text, re.IGNORECASE)
        end = text.lower().rfind("</html>")
        html = text[start.start() : end + len("</html>") if end != -1 else None] if start else text.strip()
    parser = _Tags()
    try:
        parser.feed(html)
        parser.close()
    except Exception as exc:  # html.parser raises little, but what it raises is a verdict, not a crash
        return Artifact(html, False, f"the HTML does not parse: {exc}")
    if not {"html", "body"} & set(parser.tags):
        return Artifact(html, False, "the HTML is not a document: it has no <html> or <body> element")
    return Artifact(html, True)


def artifact(task: TaskKind, text: str) -> Artifact:
    if task is TaskKind.CHART2CODE:
        return python_artifact(text)
    if task is TaskKind.WEB2HTML:
        return html_artifact(text)
    if task is TaskKind.OCR:
        block = fenced_block(text, ("markdown", "md"))
        return Artifact(
            (block if block is not None and text.strip().startswith("```") else text).strip(), True
        )
    return Artifact(text.strip(), True)

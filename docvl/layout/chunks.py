"""RAG chunks of a document: pieces of its Markdown that respect blocks, headings and a size limit, each
anchored to the pages and boxes it came from.

The rules, in reading order over the document's blocks (each written as in markdown.py, but a figure
with no stored crop only by its text; page furniture and blocks with nothing to show left out, as in
the document's Markdown):

- A chunk is at most `max_chars` characters (its `text`, blocks joined by a blank line).
- A block is never split between chunks, unless it alone is longer than `max_chars`: then it is split
  at paragraphs, else lines, else sentences, else words, else (a run of that many characters without a
  space) anywhere; each piece is a chunk of its own. A table is split between rows, each piece repeating
  its header (a Markdown table's header and separator rows; an HTML table's first row, in its own
  `<table>`), so that every piece reads as a table.
- Every heading (`title`, `section_header`) starts a new chunk, so a chunk never runs across a heading
  boundary; except that a heading right below another one (nothing between them) joins its chunk and
  nests below it, at its level or a lower one: a title, then its first section's header; or `2 Methods`
  then `2.1 Data`, which DeepSeek labels alike (`sub_title`), having no more levels.
- `heading_path` is the chunk's enclosing headings, highest first, its own included. A heading ends
  every open heading at its level or below (but those it nests below, as just said).
- Chunks may run across pages: `pages` lists every page a chunk's blocks are on, and `boxes` each block's
  box (its union box; `box_pt` null for an image page); blocks without a box have none there.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from docvl.layout.document import Block, Document, Rect
from docvl.layout.labels import FURNITURE, HEADINGS, Label
from docvl.layout.markdown import FigureLink, block_markdown

DEFAULT_MAX_CHARS = 1500
MIN_MAX_CHARS = 50  # a smaller limit cannot hold a sentence or a table's header
JOIN = "\n\n"
_SPLITTERS = (  # from the largest unit to the smallest, and how its pieces are joined again
    (re.compile(r"\n[ \t]*\n\s*"), "\n\n"),
    (re.compile(r"\n"), "\n"),
    (re.compile(r"(?<=[.!?。！？;])\s+"), " "),
    (re.compile(r"\s+"), " "),
)
_ROW_START = re.compile(r"<tr(?=[\s>/])", re.IGNORECASE)
_ROW_END = re.compile(r"</tr\s*>", re.IGNORECASE)
_TAGS = re.compile(r"<[^<>]*>")  # [^<>]: a `<` never closed costs no scan to the end


@dataclass(frozen=True)
class ChunkBox:
    """Where on which page one of a chunk's blocks is."""

    page: int
    block_id: str
    box_px: Rect
    box_pt: Rect | None

    def to_json(self) -> dict[str, Any]:
        return {
            "page": self.page,
            "block_id": self.block_id,
            "box_px": list(self.box_px),
            "box_pt": None if self.box_pt is None else list(self.box_pt),
        }


@dataclass(frozen=True)
class Chunk:
    """One chunk: its Markdown, where it sits in the document's headings, and where it came from."""

    id: str  # "c<n>", 1-based in document order; unique with the job id
    job_id: str | None
    text: str
    heading_path: tuple[str, ...]
    pages: tuple[int, ...]
    boxes: tuple[ChunkBox, ...]
    block_ids: tuple[str, ...]

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "job_id": self.job_id,
            "text": self.text,
            "heading_path": list(self.heading_path),
            "pages": list(self.pages),
            "boxes": [b.to_json() for b in self.boxes],
            "block_ids": list(self.block_ids),
        }


@dataclass
class _Open:
    """The chunk being filled."""

    path: tuple[str, ...]
    parts: list[tuple[Block, str]] = field(default_factory=list)
    length: int = 0
    heading_levels: list[int] = field(default_factory=list)  # of its leading headings

    @property
    def only_headings(self) -> bool:
        return bool(self.parts) and len(self.heading_levels) == len(self.parts)

    def fits(self, text: str, max_chars: int) -> bool:
        return self.length + (len(JOIN) if self.parts else 0) + len(text) <= max_chars

    def add(self, block: Block, text: str, level: int | None) -> None:
        if level is not None and len(self.heading_levels) == len(self.parts):
            self.heading_levels.append(level)
        self.length += (len(JOIN) if self.parts else 0) + len(text)
        self.parts.append((block, text))


class _Chunker:
    """Blocks in, chunks' parts out, following the module's rules."""

    def __init__(self, max_chars: int) -> None:
        self.max_chars = max_chars
        self.done: list[tuple[tuple[str, ...], list[tuple[Block, str]]]] = []
        self.headings: list[tuple[int, str]] = []  # (level, text), highest first
        self.current = _Open(())

    def path(self) -> tuple[str, ...]:
        return tuple(text for _, text in self.headings)

    def heading(self, block: Block, text: str, level: int) -> None:
        if self.current.only_headings and level >= self.current.heading_levels[-1]:
            self.headings.append((level, _heading_text(text)))  # right below a heading: nests below it
        else:
            self.flush()
            self.headings = [h for h in self.headings if h[0] < level] + [(level, _heading_text(text))]
        self.current.path = self.path()
        self.add(block, text, level)

    def add(self, block: Block, text: str, level: int | None = None) -> None:
        if not self.current.fits(text, self.max_chars):
            self.flush()
        if self.current.fits(text, self.max_chars):
            self.current.add(block, text, level)
        else:  # longer than a chunk on its own
            for piece in split_block(text, self.max_chars, table=block.label is Label.TABLE):
                self.done.append((self.path(), [(block, piece)]))

    def flush(self) -> None:
        if self.current.parts:
            self.done.append((self.current.path, self.current.parts))
        self.current = _Open(self.path())


def chunk_document(
    document: Document,
    *,
    max_chars: int = DEFAULT_MAX_CHARS,
    include_furniture: bool = False,
    figure_link: FigureLink | None = None,
) -> list[Chunk]:
    """The document's chunks in reading order (see the module's rules). ValueError when `max_chars` is
    under `MIN_MAX_CHARS`."""
    if max_chars < MIN_MAX_CHARS:
        raise ValueError(f"max_chars must be at least {MIN_MAX_CHARS}, not {max_chars}")
    chunker = _Chunker(max_chars)
    for block in document.blocks():
        if block.label in FURNITURE and not include_furniture:
            continue
        text = chunk_text(block, figure_link=figure_link)
        if not text:
            continue
        level = HEADINGS.get(block.label)
        if level is None:
            chunker.add(block, text)
        else:
            chunker.heading(block, text, level)
    chunker.flush()
    return [
        _chunk(index, document.job_id, path, parts) for index, (path, parts) in enumerate(chunker.done, 1)
    ]


def chunk_text(block: Block, *, figure_link: FigureLink | None = None) -> str:
    """A block as chunks hold it: its Markdown (markdown.py), but a figure with no stored crop is only its
    text (a placeholder comment means nothing to a retriever)."""
    if block.label is Label.FIGURE and not block.figure_key:
        return block.text.strip()
    return block_markdown(block, figure_link=figure_link).strip()


def _heading_text(markdown: str) -> str:
    return markdown.lstrip("#").strip()


def _chunk(index: int, job_id: str | None, path: tuple[str, ...], parts: list[tuple[Block, str]]) -> Chunk:
    blocks = list({block.id: block for block, _ in parts}.values())  # once each, in order
    return Chunk(
        id=f"c{index}",
        job_id=job_id,
        text=JOIN.join(text for _, text in parts),
        heading_path=path,
        pages=tuple(sorted({b.page for b in blocks})),
        boxes=tuple(ChunkBox(b.page, b.id, b.box_px, b.box_pt) for b in blocks if b.box_px is not None),
        block_ids=tuple(b.id for b in blocks),
    )


def split_block(text: str, max_chars: int, *, table: bool = False) -> list[str]:
    """A block's Markdown in pieces of at most `max_chars` characters (see the module's rules); tables
    (when `table`) between rows, repeating their header."""
    if len(text) <= max_chars:
        return [text]
    if table:
        pieces = _split_markdown_table(text, max_chars) or _split_html_table(text, max_chars)
        if pieces:
            return pieces
    return _split(text, max_chars, 0)


def _split(text: str, max_chars: int, level: int) -> list[str]:
    """`text` in pieces of at most `max_chars`, cut at the largest unit that gets there; every piece
    stripped, none empty, their non-space characters those of `text` in order."""
    text = text.strip()
    if len(text) <= max_chars:
        return [text] if text else []
    if level == len(_SPLITTERS):  # no whitespace left to cut at
        return [text[i : i + max_chars] for i in range(0, len(text), max_chars)]
    splitter, joiner = _SPLITTERS[level]
    return _pack(
        (
            piece
            for part in splitter.split(text)
            if part.strip()
            for piece in _split(part, max_chars, level + 1)
        ),
        joiner,
        max_chars,
    )


def _pack(parts: Iterator[str], joiner: str, max_chars: int) -> list[str]:
    """Consecutive parts joined into pieces as long as they fit."""
    pieces: list[str] = []
    current = ""
    for part in parts:
        if current and len(current) + len(joiner) + len(part) <= max_chars:
            current += joiner + part
        else:
            if current:
                pieces.append(current)
            current = part
    if current:
        pieces.append(current)
    return pieces


def _split_markdown_table(text: str, max_chars: int) -> list[str] | None:
    """A Markdown table (a header row, its separator, the rows) in pieces that each start with the header;
    None when `text` is not one or its header leaves no room for a row."""
    lines = text.strip().splitlines()
    if len(lines) < 3 or not lines[0].lstrip().startswith("|") or not _is_separator(lines[1]):
        return None
    header = lines[0] + "\n" + lines[1]
    room = max_chars - len(header) - 1
    if room < max_chars // 4:
        return None
    return [header + "\n" + rows for rows in _pack(_rows(lines[2:], room), "\n", room)]


def _is_separator(line: str) -> bool:
    """A Markdown table's separator row: `|---|:--:|`, only pipes, dashes, colons and spaces."""
    return "-" in line and "|" in line and set(line.strip()) <= set("|:- \t")


def _split_html_table(text: str, max_chars: int) -> list[str] | None:
    """An HTML table in pieces `<table>` + its first row + more rows + `</table>`; None when `text` is not
    one table with all its text in rows, or its first row leaves no room."""
    stripped = text.strip()
    if not stripped.lower().startswith("<table"):
        return None
    rows, outside = _html_rows(stripped)
    if len(rows) < 2 or _TAGS.sub("", outside).strip():  # text outside the rows (a caption): keep it all
        return None
    opening, closing = "<table>", "</table>"
    room = max_chars - len(opening) - len(rows[0]) - len(closing)
    if room < max_chars // 4:
        return None
    return [opening + rows[0] + packed + closing for packed in _pack(_rows(rows[1:], room), "", room)]


def _html_rows(html: str) -> tuple[list[str], str]:
    """The `<tr ...>...</tr>` elements of `html` in order, and what is outside them. Searched for one at a
    time (a single lazy `<tr.*?</tr>` would rescan the rest of a hostile output for every `<tr` never
    closed)."""
    rows: list[str] = []
    outside: list[str] = []
    position = 0
    while True:
        start = _ROW_START.search(html, position)
        end = _ROW_END.search(html, start.end()) if start else None
        if start is None or end is None:
            outside.append(html[position:])
            return rows, "".join(outside)
        outside.append(html[position : start.start()])
        rows.append(html[start.start() : end.end()])
        position = end.end()


def _rows(rows: list[str], room: int) -> Iterator[str]:
    """The rows, each stripped; a row longer than `room` in pieces (it will not read as a row, but
    nothing is lost)."""
    for row in rows:
        yield from _split(row, room, 0)


def to_jsonl(chunks: list[Chunk]) -> str:
    """chunks.jsonl: one chunk's JSON per line (UTF-8 text, non-ASCII kept as is)."""
    return "".join(json.dumps(c.to_json(), ensure_ascii=False) + "\n" for c in chunks)

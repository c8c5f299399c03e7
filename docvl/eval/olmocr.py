"""olmOCR-Bench's six test types, written here from the benchmark's published rules (its paper and the
rules its `bench/tests.py` states); docs/eval.md lists where docvl departs from them.

Every test ("fact") is a claim about one page's Markdown:

- `present` / `absent`: the text occurs / does not occur. Both sides are normalised (`normalise`); the
  best fuzzy substring score (rapidfuzz's `partial_ratio`, 0-1) is compared with
  `1 - max_diffs / len(text)`: present when it reaches it, absent when it stays below. `case_sensitive`
  false lowers both; `first_n` / `last_n` look only at the first / last characters of the page (both:
  the two ends joined).
- `order`: some match of `before` (within `max_diffs` edits) starts before some match of `after`.
- `table`: some table on the page (Markdown or HTML) has a cell like `cell` whose neighbours up, down,
  left and right, and its headings at the top and left, are like the ones the test names (rapidfuzz's
  `ratio` ≥ max(0.5, 1 - max_diffs / length)).
- `math`: some equation on the page (`\\(...\\)`, `\\[...\\]`, `$$...$$`, `$...$`) is the test's LaTeX, or
  renders like it (KaTeX's MathML of the reference inside the equation's, or the reference's glyphs
  found among the equation's with the same neighbours; see docvl/eval/katex.py).
- `baseline`: the page is not blank, does not end in a long loop (the last 1- to 5-character group
  repeated more than `max_repeats` times in a row), and has no character of scripts or emoji the pages
  cannot contain; or, with `max_length`, has at most that many letters and digits (a blank page).
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, fields
from html.parser import HTMLParser
from typing import Any, Literal

from rapidfuzz import fuzz

from docvl.eval.distance import approximate_ends

FactKind = Literal["present", "absent", "order", "table", "math", "baseline"]
KINDS: tuple[FactKind, ...] = ("present", "absent", "order", "table", "math", "baseline")
MAX_NGRAM = 5  # baseline: groups of 1 to 5 characters are looked at for a loop at the page's end


@dataclass(frozen=True)
class Fact:
    """One olmOCR-Bench test of a page. Which fields count depends on `kind` (see the module); the
    others keep their defaults. `id` and `category` (the benchmark's JSONL file: arxiv_math,
    table_tests, ...) name it in the reports."""

    kind: FactKind
    text: str = ""
    before: str = ""
    after: str = ""
    max_diffs: int = 0
    case_sensitive: bool = True
    first_n: int | None = None
    last_n: int | None = None
    cell: str = ""
    up: str = ""
    down: str = ""
    left: str = ""
    right: str = ""
    top_heading: str = ""
    left_heading: str = ""
    ignore_markdown_tables: bool = False
    math: str = ""
    ignore_dollar_delimited: bool = False
    max_length: int | None = None
    max_length_skips_image_alt_tags: bool = False
    max_repeats: int = 30
    check_disallowed_characters: bool = True
    id: str | None = None
    category: str | None = None

    def record(self) -> dict[str, Any]:
        """The fact as a manifest entry: its type and every field not at its default."""
        record: dict[str, Any] = {"type": self.kind}
        for spec in fields(self)[1:]:
            value = getattr(self, spec.name)
            if value != spec.default:
                record[spec.name] = value
        return record


FIELD_TYPES: dict[str, str] = {spec.name: str(spec.type) for spec in fields(Fact)[1:]}
"""Each field of a fact (beside `type`) and its type as written above: str, int, bool, int | None, ..."""
REQUIRED: dict[str, tuple[str, ...]] = {
    "present": ("text",),
    "absent": ("text",),
    "order": ("before", "after"),
    "table": ("cell",),
    "math": ("math",),
    "baseline": (),
}


def field_problem(name: str, value: Any) -> str | None:
    """What is wrong with `value` for the fact field `name` (None: nothing)."""
    declared = FIELD_TYPES[name]
    if declared == "bool":
        return None if isinstance(value, bool) else "must be true or false"
    whole = isinstance(value, int) and not isinstance(value, bool)
    if declared == "int":
        return None if whole and value >= 0 else "must be a whole number from 0"
    if declared == "int | None":
        return None if value is None or (whole and value >= 0) else "must be a whole number from 0 or null"
    if declared == "str | None":
        return None if value is None or isinstance(value, str) else "must be a string or null"
    return None if isinstance(value, str) else "must be a string"


def fact_problems(kind: str, values: dict[str, Any]) -> list[tuple[str, str]]:
    """(field, what is wrong) for a fact of `kind` with these field values; [] when it is a valid test
    (the benchmark's own checks included: an order test's max_diffs at most half of each text)."""
    problems = [(key, what) for key, value in values.items() if (what := field_problem(key, value))]
    for key in REQUIRED[kind]:
        value = values.get(key)
        if not isinstance(value, str) or not normalise(value).strip():
            problems.append((key, f"a {kind} fact needs it: a non-empty string"))
    if not problems and kind == "order" and not order_is_valid(Fact("order", **values)):
        problems.append(("max_diffs", "must be at most half the length of before and of after"))
    return problems


# -- normalisation -----------------------------------------------------------------------------------

_BREAK = re.compile(r"<br/?>")
_BOLD = re.compile(r"(\*\*|__)(.*?)\1")
_B_I_TAG = re.compile(r"</?[bi]>")
_EMPHASIS = re.compile(r"(\*|_)(.*?)\1")
_SPACES = re.compile(r"\s+")
_ASCII = str.maketrans(
    {
        "\u2018": "'",
        "\u2019": "'",
        "\u201a": "'",
        "\u201c": '"',
        "\u201d": '"',
        "\u201e": '"',
        "\uff3f": "_",
        "\u2013": "-",
        "\u2014": "-",
        "\u2011": "-",
        "\u2012": "-",
        "\u2212": "-",
        "\u00b5": "\u03bc",
    }
)


def normalise(text: str) -> str:
    """olmOCR-Bench's text normalisation: `<br>` a space, bold and italic markers (`**`, `__`, `*`, `_`,
    `<b>`, `<i>`) removed around what they mark, whitespace runs one space, Unicode NFC, curly quotes,
    dashes and the micro sign made plain. Case and the rest of the Markdown are kept."""
    text = _BREAK.sub(" ", text)
    text = _BOLD.sub(r"\2", text)
    text = _B_I_TAG.sub("", text)
    text = _BOLD.sub(r"\2", text)
    text = _EMPHASIS.sub(r"\2", text)
    text = _SPACES.sub(" ", text)
    return unicodedata.normalize("NFC", text).translate(_ASCII)


def _threshold(max_diffs: int, text: str) -> float:
    return 1.0 - max_diffs / (len(text) or 1)


# -- present, absent, order --------------------------------------------------------------------------


def check_presence(fact: Fact, page: str) -> bool:
    query, content = normalise(fact.text), normalise(page)
    if not fact.case_sensitive:
        query, content = query.lower(), content.lower()
    if fact.first_n and fact.last_n:
        content = content[: fact.first_n] + content[-fact.last_n :]
    elif fact.first_n:
        content = content[: fact.first_n]
    elif fact.last_n:
        content = content[-fact.last_n :]
    found = fuzz.partial_ratio(query, content) / 100.0 >= _threshold(fact.max_diffs, query)
    return found if fact.kind == "present" else not found


def _starts(needle: str, text: str, max_diffs: int) -> list[int]:
    """Where the matches of `needle` within `max_diffs` edits start, in order: the ends of the reversed
    needle's matches in the reversed text, counted from the other end."""
    return sorted(len(text) - end for end in approximate_ends(needle[::-1], text[::-1], max_diffs))


def check_order(fact: Fact, page: str) -> bool:
    content = normalise(page)
    before = _starts(normalise(fact.before), content, fact.max_diffs)
    after = _starts(normalise(fact.after), content, fact.max_diffs)
    return bool(before and after) and before[0] < after[-1]


def order_is_valid(fact: Fact) -> bool:
    """The benchmark refuses an order test allowing more edits than half of either text."""
    before, after = normalise(fact.before), normalise(fact.after)
    return fact.max_diffs <= len(before) // 2 and fact.max_diffs <= len(after) // 2


# -- tables -----------------------------------------------------------------------------------------

Cell = tuple[int, int]


@dataclass
class Table:
    """A table as a grid: each cell at its top-left (row, column) with its text; `grid` says which cell
    covers each position (row and column spans), None for a hole."""

    text: dict[Cell, str]
    headings: set[Cell]
    grid: list[list[Cell | None]]
    positions: dict[Cell, list[Cell]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for r, row in enumerate(self.grid):
            for c, owner in enumerate(row):
                if owner is not None:
                    self.positions.setdefault(owner, []).append((r, c))

    def _walk(self, cell: Cell, step: Callable[[int, int], Iterable[tuple[int, int]]]) -> set[Cell]:
        """The nearest other cell in each row (or column) the cell spans, walking by `step`."""
        found: set[Cell] = set()
        for row, col in self.positions[cell]:
            for r, c in step(row, col):
                other = self.grid[r][c]
                if other is not None and other != cell:
                    found.add(other)
                    break
        return found

    def neighbours(self, cell: Cell, direction: str) -> set[Cell]:
        rows, cols = len(self.grid), len(self.grid[0]) if self.grid else 0
        positions = self.positions[cell]
        top = min(r for r, _ in positions)
        bottom = max(r for r, _ in positions)
        first = min(c for _, c in positions)
        last = max(c for _, c in positions)
        steps: dict[str, Callable[[int, int], Iterable[tuple[int, int]]]] = {
            "up": lambda r, c: ((x, c) for x in range(top - 1, -1, -1)),
            "down": lambda r, c: ((x, c) for x in range(bottom + 1, rows)),
            "left": lambda r, c: ((r, x) for x in range(first - 1, -1, -1)),
            "right": lambda r, c: ((r, x) for x in range(last + 1, cols)),
        }
        return self._walk(cell, steps[direction])

    def heading(self, cell: Cell, direction: str) -> set[Cell]:
        """The headings all the way up (or left) of the cell; where none is marked as a heading, the
        cells at the far end of the walk."""
        seen, todo, headings, ends = {cell}, [cell], set(), set()
        while todo:
            current = todo.pop()
            if current in self.headings and current != cell:
                headings.add(current)
            nxt = self.neighbours(current, direction)
            if not nxt and current != cell:
                ends.add(current)
            for other in nxt - seen:
                seen.add(other)
                todo.append(other)
        return headings or ends


def _build(rows: list[list[tuple[str, int, int, bool]]]) -> Table | None:
    """A table from rows of (text, rowspan, colspan, is heading), spans placed as HTML places them."""
    text: dict[Cell, str] = {}
    headings: set[Cell] = set()
    grid: list[list[Cell | None]] = []
    pending: dict[int, tuple[Cell, int]] = {}  # column -> (cell, rows still to cover)
    r = 0
    for r, cells in enumerate(rows):
        line: list[Cell | None] = []
        queue = list(cells)
        c = 0
        while queue or any(col >= c for col in pending):
            if c in pending:
                owner, left = pending.pop(c)
                line.append(owner)
                if left > 1:
                    pending[c] = (owner, left - 1)
                c += 1
                continue
            if not queue:
                line.append(None)
                c += 1
                continue
            content, rowspan, colspan, heading = queue.pop(0)
            cell = (r, c)
            text[cell] = content
            if heading:
                headings.add(cell)
            for offset in range(colspan):
                line.append(cell)
                if rowspan > 1:
                    pending[c + offset] = (cell, rowspan - 1)
            c += colspan
        grid.append(line)
    while pending:  # row spans reaching past the last row
        r += 1
        width = max(pending) + 1
        line = [None] * width
        for col, (owner, left) in list(pending.items()):
            line[col] = owner
            if left > 1:
                pending[col] = (owner, left - 1)
            else:
                del pending[col]
        grid.append(line)
    if not text:
        return None
    width = max((c + 1 for row in grid for c, v in enumerate(row) if v is not None), default=0)
    grid = [(row + [None] * width)[:width] for row in grid]
    return Table(text, headings, grid)


def markdown_tables(content: str) -> list[Table]:
    """Each run of two or more consecutive lines holding a `|` is a table: its separator row (dashes,
    colons) and lines of nothing but `-:| ` dropped, cells split at `|` (the empty ones before the first
    and after the last pipe dropped); the first row and the first column are headings."""
    tables: list[Table] = []
    run: list[str] = []
    for line in [*content.strip().split("\n"), ""]:
        if "|" in line:
            run.append(line)
            continue
        if len(run) >= 2:
            rows = _markdown_rows(run)
            built = _build(
                [[(cell, 1, 1, i == 0 or j == 0) for j, cell in enumerate(row)] for i, row in enumerate(rows)]
            )
            if built is not None:
                tables.append(built)
        run = []
    return tables


def _markdown_rows(lines: list[str]) -> list[list[str]]:
    separator = next(
        (i for i, ln in enumerate(lines) if (s := ln.replace("|", "").strip()) and set(s) <= set("- :")),
        None,
    )
    rows = []
    for i, line in enumerate(lines):
        if i == separator or (line.strip() and set(line) <= set("- :|")):
            continue
        cells = [cell.strip() for cell in line.split("|")]
        if cells and cells[0] == "":
            cells = cells[1:]
        if cells and cells[-1] == "":
            cells = cells[:-1]
        if cells:
            rows.append(cells)
    return rows


def _span(value: str | None, rows_left: int) -> int:
    if value is not None and value.strip() == "0":
        return max(1, rows_left)
    try:
        return max(1, int(value or 1))
    except ValueError:
        return 1


class _HtmlTables(HTMLParser):
    """Every <table> (nested ones too): its rows' <th>/<td> cells with their text (<br> a line break),
    spans, and whether each is a heading (<th>, or in <thead>)."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.done: list[list[list[tuple[str, str | None, str | None, bool]]]] = []
        self.stack: list[dict[str, Any]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "table":
            self.stack.append({"rows": [], "row": None, "cell": None, "thead": False})
            return
        if not self.stack:
            return
        table = self.stack[-1]
        if tag == "thead":
            table["thead"] = True
        elif tag == "tr":
            table["row"] = []
            table["rows"].append((table["row"], table["thead"]))
        elif tag in ("td", "th") and table["row"] is not None:
            named = dict(attrs)
            table["cell"] = {"parts": [], "rowspan": named.get("rowspan"), "colspan": named.get("colspan")}
            table["row"].append((table["cell"], tag == "th"))
        elif tag == "br" and table["cell"] is not None:
            table["cell"]["parts"].append("\n")

    def handle_endtag(self, tag: str) -> None:
        if not self.stack:
            return
        table = self.stack[-1]
        if tag == "table":
            self.stack.pop()
            self.done.append(
                [
                    [
                        ("".join(c["parts"]).strip(), c["rowspan"], c["colspan"], th or in_head)
                        for c, th in row
                    ]
                    for row, in_head in table["rows"]
                ]
            )
        elif tag == "thead":
            table["thead"] = False
        elif tag in ("td", "th"):
            table["cell"] = None
        elif tag == "tr":
            table["row"] = None

    def handle_data(self, data: str) -> None:
        if self.stack and self.stack[-1]["cell"] is not None:
            self.stack[-1]["cell"]["parts"].append(data)


def html_tables(content: str) -> list[Table]:
    parser = _HtmlTables()
    parser.feed(content)
    parser.close()
    tables = []
    for rows in parser.done:
        if not rows:
            continue
        specs = [
            [(text, _span(rs, len(rows) - i), _span(cs, 1), heading) for text, rs, cs, heading in row]
            for i, row in enumerate(rows)
        ]
        built = _build(specs)
        if built is not None:
            tables.append(built)
    return tables


def check_table(fact: Fact, page: str) -> bool:
    tables = ([] if fact.ignore_markdown_tables else markdown_tables(page)) + html_tables(page)
    wanted = normalise(fact.cell)
    floor = max(0.5, _threshold(fact.max_diffs, wanted))
    relations = {
        "up": fact.up,
        "down": fact.down,
        "left": fact.left,
        "right": fact.right,
        "top_heading": fact.top_heading,
        "left_heading": fact.left_heading,
    }
    expected = {name: normalise(value) for name, value in relations.items() if value}

    def like(target: str, text: str) -> bool:
        return fuzz.ratio(target, normalise(text)) / 100.0 >= max(0.5, _threshold(fact.max_diffs, target))

    for table in tables:
        for cell, text in table.text.items():
            if fuzz.ratio(wanted, normalise(text)) / 100.0 < floor:
                continue
            if all(
                any(like(target, table.text[other]) for other in _related(table, cell, name))
                for name, target in expected.items()
            ):
                return True
    return False


def _related(table: Table, cell: Cell, name: str) -> set[Cell]:
    if name == "top_heading":
        return table.heading(cell, "up")
    if name == "left_heading":
        return table.heading(cell, "left")
    return table.neighbours(cell, name)


# -- math -------------------------------------------------------------------------------------------

_DELIMITERS = [
    re.compile(r"\\\((.+?)\\\)", re.DOTALL),
    re.compile(r"\\\[(.+?)\\\]", re.DOTALL),
]
_DOLLARS = [re.compile(r"\$\$(.+?)\$\$", re.DOTALL), re.compile(r"\$(.+?)\$", re.DOTALL)]


def equations(page: str, ignore_dollar_delimited: bool = False) -> list[str]:
    """The page's equations: `\\(...\\)`, then `\\[...\\]`, then (unless ignored) `$$...$$` and `$...$`,
    each kind taken out of the page before the next is looked for."""
    found: list[str] = []
    rest = page
    for pattern in _DELIMITERS + ([] if ignore_dollar_delimited else _DOLLARS):
        found += [match.strip() for match in pattern.findall(rest)]
        rest = pattern.sub("", rest)
    return found


class MathRenderer:
    """Renders LaTeX the way the benchmark compares it: `same(reference, candidate)`."""

    name = "abstract"

    def same(self, reference: str, candidate: str) -> bool:
        raise NotImplementedError


def check_math(fact: Fact, page: str, renderer: MathRenderer) -> bool:
    candidates = equations(page, fact.ignore_dollar_delimited)
    if any(candidate == fact.math for candidate in candidates):
        return True
    candidates.sort(key=lambda candidate: -fuzz.ratio(candidate, fact.math))
    return any(renderer.same(fact.math, candidate) for candidate in candidates)


# -- baseline ---------------------------------------------------------------------------------------

_IMAGE = re.compile(r"!\[.*?\]\(.*?\)")
_NOT_ALLOWED = re.compile(
    "["
    "\u4e00-\u9fff"  # CJK unified ideographs
    "\u3040-\u309f"  # Hiragana
    "\u30a0-\u30ff"  # Katakana
    "\U0001f600-\U0001f64f"  # emoticons
    "\U0001f300-\U0001f5ff"  # symbols and pictographs
    "\U0001f680-\U0001f6ff"  # transport and map symbols
    "\U0001f1e0-\U0001f1ff"  # regional indicators (flags)
    "]"
)


def _alphanumerics(text: str) -> int:
    return sum(character.isalnum() for character in text)


def trailing_repeats(text: str, size: int) -> int:
    """How many times in a row the text's last `size` characters occur, counting back from its end
    (whitespace runs as one space first)."""
    text = _SPACES.sub(" ", text)
    if len(text) < size:
        return 0
    tail = text[-size:]
    count, position = 0, len(text) - size
    while position >= 0 and text[position : position + size] == tail:
        count += 1
        position -= size
    return count


def check_baseline(fact: Fact, page: str) -> bool:
    if fact.max_length is not None:
        counted = _IMAGE.sub("", page) if fact.max_length_skips_image_alt_tags else page
        return _alphanumerics(counted) <= fact.max_length
    if _alphanumerics(page) == 0:
        return False
    if any(trailing_repeats(page, size) > fact.max_repeats for size in range(1, MAX_NGRAM + 1)):
        return False
    return not (fact.check_disallowed_characters and _NOT_ALLOWED.search(page))


def check(fact: Fact, page: str, renderer: MathRenderer | None = None) -> bool:
    """Whether the page's Markdown passes the test. `renderer` compares equations (math tests); without
    one, docvl.eval.katex's default (KaTeX in Chromium, else normalised LaTeX) is used."""
    if fact.kind in ("present", "absent"):
        return check_presence(fact, page)
    if fact.kind == "order":
        return check_order(fact, page)
    if fact.kind == "table":
        return check_table(fact, page)
    if fact.kind == "math":
        if renderer is None:
            from docvl.eval.katex import default_renderer

            renderer = default_renderer()
        return check_math(fact, page, renderer)
    return check_baseline(fact, page)

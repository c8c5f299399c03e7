"""The labelled set format: DIR/manifest.jsonl, one item a line (see docs/eval.md).

    {"id": "p1", "file": "pages/a.pdf", "page": 2, "task": "ocr", "reference": "the page's text"}
    {"id": "q1", "file": "charts/b.png", "task": "qa", "question": "Max?", "reference": ["12", "12.0"]}

`load_set` checks every line and reports every problem at once, each naming its line and field.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from docvl.errors import InvalidInput
from docvl.eval.layout import LayoutReference, read_reference
from docvl.eval.olmocr import FIELD_TYPES, KINDS, Fact, fact_problems
from docvl.tasks import TaskKind

MANIFEST = "manifest.jsonl"
FIELDS = {"id", "file", "page", "task", "question", "reference", "facts", "meta"}
FACT_FIELDS = {"type", *FIELD_TYPES}
MAX_PROBLEMS = 50


class ManifestError(InvalidInput):
    """The set cannot be used as it is; `problems` lists every one found ("line N: field: what")."""

    def __init__(self, manifest: Path, problems: list[str]) -> None:
        shown = problems[:MAX_PROBLEMS]
        more = f"\n  ... and {len(problems) - len(shown)} more" if len(problems) > len(shown) else ""
        super().__init__(f"{manifest}: {len(problems)} problem(s)\n  " + "\n  ".join(shown) + more)
        self.problems = problems


@dataclass(frozen=True)
class Item:
    """One labelled page. `reference` is the text (ocr), code (chart2code), HTML (web2html) or the layout
    reference's file (layout, read into `layout`); `answers` the accepted answers (qa); `facts`
    olmOCR-Bench tests (ocr)."""

    id: str
    file: str
    task: TaskKind
    page: int = 1
    question: str | None = None
    reference: str | None = None
    answers: tuple[str, ...] = ()
    facts: tuple[Fact, ...] = ()
    meta: dict[str, Any] = field(default_factory=dict, compare=False)
    layout: LayoutReference | None = field(default=None, compare=False)  # read from `reference` (layout)

    def record(self) -> dict[str, Any]:
        """The item as a manifest line."""
        line: dict[str, Any] = {"id": self.id, "file": self.file, "task": str(self.task)}
        if self.page != 1:
            line["page"] = self.page
        if self.question is not None:
            line["question"] = self.question
        if self.task is TaskKind.QA:
            line["reference"] = list(self.answers)
        elif self.reference is not None:
            line["reference"] = self.reference
        if self.facts:
            line["facts"] = [fact.record() for fact in self.facts]
        if self.meta:
            line["meta"] = self.meta
        return line


@dataclass(frozen=True)
class LabelledSet:
    root: Path
    items: tuple[Item, ...]

    def path(self, item: Item) -> Path:
        return self.root / item.file


def write_manifest(directory: Path, items: Iterable[Item]) -> Path:
    """Write DIR/manifest.jsonl (one JSON object a line, UTF-8); returns its path."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / MANIFEST
    with path.open("w", encoding="utf-8") as out:
        for item in items:
            out.write(json.dumps(item.record(), ensure_ascii=False) + "\n")
    return path


def load_set(directory: Path) -> LabelledSet:
    """Read and check DIR/manifest.jsonl; raises ManifestError listing every problem."""
    manifest = directory / MANIFEST
    if not directory.is_dir():
        raise ManifestError(manifest, [f"{directory} is not a directory"])
    if not manifest.is_file():
        raise ManifestError(manifest, [f"no {MANIFEST} in {directory}: see docs/eval.md for the format"])
    items: list[Item] = []
    problems: list[str] = []
    first_line: dict[str, int] = {}
    root = directory.resolve()
    for number, raw in _lines(manifest, problems):
        checker = _Line(number, root, problems)
        item = checker.item(raw)
        if item is None:
            continue
        if item.id in first_line:
            problems.append(f"line {number}: id: {item.id!r} is already the id of line {first_line[item.id]}")
            continue
        first_line[item.id] = number
        items.append(item)
    if not items and not problems:
        problems.append(f"{MANIFEST} has no items")
    if problems:
        raise ManifestError(manifest, problems)
    return LabelledSet(directory, tuple(items))


def _lines(manifest: Path, problems: list[str]) -> Iterator[tuple[int, dict[str, Any]]]:
    try:
        text = manifest.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        problems.append(f"cannot read it: {exc}")
        return
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            value = json.loads(line)
        except json.JSONDecodeError as exc:
            problems.append(f"line {number}: not JSON ({exc.msg} at column {exc.colno})")
            continue
        if not isinstance(value, dict):
            problems.append(f"line {number}: not a JSON object")
            continue
        yield number, value


class _Line:
    """The checks of one manifest line; each problem is appended as `line N: field: what`."""

    def __init__(self, number: int, root: Path, problems: list[str]) -> None:
        self.number = number
        self.root = root
        self.problems = problems
        self.ok = True
        self.layout: LayoutReference | None = None

    def problem(self, name: str, what: str) -> None:
        self.problems.append(f"line {self.number}: {name}: {what}")
        self.ok = False

    def text(self, raw: dict[str, Any], name: str, *, required: bool) -> str | None:
        value = raw.get(name)
        if value is None:
            if required:
                self.problem(name, "missing")
            return None
        if not isinstance(value, str) or not value.strip():
            self.problem(name, f"must be a non-empty string, not {json.dumps(value)[:60]}")
            return None
        return value

    def item(self, raw: dict[str, Any]) -> Item | None:
        for name in sorted(set(raw) - FIELDS):
            self.problem(name, f"unknown field (the fields are {', '.join(sorted(FIELDS))})")
        item_id = self.text(raw, "id", required=True)
        task = self.task(raw)
        file = self.file(raw)
        page = self.page(raw, file)
        question = self.text(raw, "question", required=task is TaskKind.QA)
        if question is not None and task is not None and task is not TaskKind.QA:
            self.problem("question", f"only qa items have a question (this one is {task})")
        facts = self.facts(raw, task)
        reference, answers = self.reference(raw, task, "facts" in raw)
        meta = raw.get("meta", {})
        if not isinstance(meta, dict):
            self.problem("meta", "must be an object")
        if not self.ok or item_id is None or task is None or file is None:
            return None
        return Item(item_id, file, task, page, question, reference, answers, facts, meta, self.layout)

    def task(self, raw: dict[str, Any]) -> TaskKind | None:
        value = self.text(raw, "task", required=True)
        if value is None:
            return None
        try:
            return TaskKind(value)
        except ValueError:
            self.problem("task", f"unknown task {value!r} (use one of {', '.join(TaskKind)})")
            return None

    def file(self, raw: dict[str, Any]) -> str | None:
        value = self.text(raw, "file", required=True)
        if value is None:
            return None
        relative = Path(value)
        if relative.is_absolute():
            self.problem("file", f"{value!r} must be relative to the set's directory")
            return None
        path = (self.root / relative).resolve()
        if not path.is_relative_to(self.root):
            self.problem("file", f"{value!r} is outside the set's directory")
            return None
        if not path.is_file():
            self.problem("file", f"{value!r} does not exist in {self.root}")
            return None
        return value

    def page(self, raw: dict[str, Any], file: str | None) -> int:
        value = raw.get("page", 1)
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            self.problem("page", f"must be a whole number from 1, not {json.dumps(value)[:40]}")
            return 1
        if value > 1 and file is not None and not is_pdf(self.root / file):
            self.problem("page", f"{file!r} is not a PDF, so it has only page 1 (not {value})")
        return value

    def reference(
        self, raw: dict[str, Any], task: TaskKind | None, has_facts: bool
    ) -> tuple[str | None, tuple[str, ...]]:
        value = raw.get("reference")
        if task is TaskKind.QA:
            answers = [value] if isinstance(value, str) else value
            if (
                not isinstance(answers, list)
                or not answers
                or not all(isinstance(a, str) and a.strip() for a in answers)
            ):
                self.problem("reference", "a qa item needs its answer: a string or a list of strings")
                return None, ()
            return None, tuple(answers)
        if task is TaskKind.LAYOUT:
            return self.layout_reference(value), ()
        if value is None:
            if task is TaskKind.OCR and not has_facts:
                self.problem("reference", "an ocr item needs its reference text (or facts)")
            return None, ()
        if not isinstance(value, str):
            self.problem("reference", f"must be a string for {task} items")
            return None, ()
        return value, ()

    def layout_reference(self, value: Any) -> str | None:
        """A layout item's reference: the file of its layout reference (docvl.eval.layout), read here."""
        if not isinstance(value, str) or not value.strip():
            self.problem("reference", "a layout item needs its layout reference: a JSON file in the set")
            return None
        path = (self.root / value).resolve()
        if Path(value).is_absolute() or not path.is_relative_to(self.root):
            self.problem("reference", f"{value!r} must be inside the set's directory")
            return None
        if not path.is_file():
            self.problem("reference", f"{value!r} does not exist in {self.root}")
            return None
        self.layout, problems = read_reference(path)
        for problem in problems:
            self.problem("reference", f"{value}: {problem}")
        return value

    def facts(self, raw: dict[str, Any], task: TaskKind | None) -> tuple[Fact, ...]:
        value = raw.get("facts")
        if value is None:
            return ()
        if task is not TaskKind.OCR:
            self.problem("facts", "only ocr items have facts")
            return ()
        if not isinstance(value, list) or not value:
            self.problem("facts", "must be a non-empty list")
            return ()
        facts = [self.fact(f"facts[{i}]", entry) for i, entry in enumerate(value)]
        return tuple(f for f in facts if f is not None)

    def fact(self, name: str, entry: Any) -> Fact | None:
        if not isinstance(entry, dict):
            self.problem(name, "must be an object")
            return None
        ok = True
        for key in sorted(set(entry) - FACT_FIELDS):
            self.problem(f"{name}.{key}", "unknown field")
            ok = False
        kind = entry.get("type")
        if kind not in KINDS:
            self.problem(f"{name}.type", f"must be one of {', '.join(KINDS)}, not {json.dumps(kind)[:40]}")
            return None
        values = {key: value for key, value in entry.items() if key in FIELD_TYPES}
        for key, what in fact_problems(kind, values):
            self.problem(f"{name}.{key}", what)
            ok = False
        return Fact(kind, **values) if ok else None


def is_pdf(path: Path) -> bool:
    try:
        with path.open("rb") as fh:
            return fh.read(1024).lstrip().startswith(b"%PDF-")
    except OSError:
        return False

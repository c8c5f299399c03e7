"""Sets made from public benchmarks' local copies (nothing is downloaded). Each converter reads the
layout its benchmark ships (docs/eval.md says which details are assumed), copies (or hard-links) the
input files into DIR and writes DIR/manifest.jsonl."""

from __future__ import annotations

import json
import os
import re
import shutil
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from docvl.errors import InvalidInput
from docvl.eval.manifest import Item, write_manifest
from docvl.eval.olmocr import FIELD_TYPES, KINDS, Fact, fact_problems
from docvl.tasks import TaskKind


class ConversionError(InvalidInput):
    """The source is not in the layout the converter reads; the message says what was looked for."""


@dataclass
class Conversion:
    manifest: Path
    items: int
    notes: list[str] = field(default_factory=list)


def _place(source: Path, dest_root: Path, relative: str) -> str:
    """Put `source` at DEST/relative (a hard link where possible, else a copy); returns `relative`."""
    target = dest_root / relative
    if not target.exists():
        target.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.link(source, target)
        except OSError:
            shutil.copy2(source, target)
    return relative


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("_") or "item"


def _first_dir(candidates: Iterable[Path], wanted: Callable[[Path], bool], what: str) -> Path:
    tried = []
    for candidate in candidates:
        tried.append(str(candidate))
        if candidate.is_dir() and wanted(candidate):
            return candidate
    raise ConversionError(f"no {what} found; looked in: {', '.join(tried)}")


def _finish(dest: Path, items: list[Item], notes: list[str]) -> Conversion:
    if not items:
        raise ConversionError("nothing to convert: " + ("; ".join(notes) or "no items found"))
    return Conversion(write_manifest(dest, items), len(items), notes)


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ConversionError(f"cannot read {path}: {exc}") from exc


# -- image + source pairs: ChartMimic, Design2Code ------------------------------------------------------


def _pairs(
    directory: Path, suffix: str, task: TaskKind, prefix: str, dest: Path, folder: str
) -> tuple[list[Item], list[str]]:
    items, unpaired = [], 0
    for image in sorted(directory.glob("*.png")):
        source = image.with_suffix(suffix)
        if not source.is_file():
            unpaired += 1
            continue
        file = _place(image, dest, f"{folder}/{image.name}")
        reference = source.read_text(encoding="utf-8", errors="replace")
        items.append(Item(f"{prefix}-{_safe(image.stem)}", file, task, reference=reference))
    notes = [f"{unpaired} .png without a {suffix} beside it skipped"] if unpaired else []
    return items, notes


def _has_pairs(suffix: str) -> Callable[[Path], bool]:
    return lambda d: any(p.with_suffix(suffix).is_file() for p in d.glob("*.png"))


def chartmimic(src: Path, dest: Path) -> Conversion:
    """ChartMimic's Direct Mimic data: `direct_600/` (or v1's `ori_500/`) of `<name>.png` + `<name>.py`."""
    names = ("direct_600", "ori_500")
    candidates = [src / n for n in names] + [src / "dataset" / n for n in names] + [src]
    directory = _first_dir(candidates, _has_pairs(".py"), "ChartMimic .png + .py pairs")
    items, notes = _pairs(directory, ".py", TaskKind.CHART2CODE, "chartmimic", dest, "charts")
    return _finish(dest, items, notes)


def design2code(src: Path, dest: Path) -> Conversion:
    """Design2Code's test set: `testset_final/` of `<n>.png` screenshots + `<n>.html` sources."""
    candidates = [src / "testset_final", src]
    directory = _first_dir(candidates, _has_pairs(".html"), "Design2Code .png + .html pairs")
    items, notes = _pairs(directory, ".html", TaskKind.WEB2HTML, "design2code", dest, "pages")
    return _finish(dest, items, notes)


# -- question answering: DocVQA, ChartQA -----------------------------------------------------------------


def _docvqa_annotations(src: Path) -> Path:
    for name in ("val_v1.0.json", "val_v1.0_withQT.json"):
        for directory in (src, src / "val"):
            if (directory / name).is_file():
                return directory / name
    found = sorted(src.glob("*_v1.0*.json")) + sorted(src.glob("*/*_v1.0*.json"))
    if len(found) == 1:
        return found[0]
    if found:
        raise ConversionError(f"several DocVQA annotation files in {src}: {', '.join(map(str, found))}")
    raise ConversionError(f"no DocVQA annotations (val_v1.0.json) in {src} or {src / 'val'}")


def docvqa(src: Path, dest: Path) -> Conversion:
    """DocVQA (single page): `val_v1.0.json` ({"data": [{questionId, question, image, answers}]}) with
    the images it names (`documents/<name>.png`) beside it."""
    annotations = _docvqa_annotations(src)
    data = _read_json(annotations)
    entries = data.get("data") if isinstance(data, dict) else None
    if not isinstance(entries, list):
        raise ConversionError(f'{annotations} has no "data" list of questions')
    items: list[Item] = []
    missing, unanswered = 0, 0
    for entry in entries:
        answers = [str(a) for a in entry.get("answers") or [] if str(a).strip()]
        if not answers or not str(entry.get("question", "")).strip():
            unanswered += 1
            continue
        name = str(entry.get("image", ""))
        candidates = [
            annotations.parent / name,
            src / name,
            annotations.parent / "documents" / Path(name).name,
        ]
        image = next((c for c in candidates if name and c.is_file()), None)
        if image is None:
            missing += 1
            continue
        file = _place(image, dest, f"images/{image.name}")
        question_id = entry.get("questionId", len(items))
        meta = {"question_id": question_id, "doc_id": entry.get("docId")}
        items.append(
            Item(
                f"docvqa-{question_id}",
                file,
                TaskKind.QA,
                question=str(entry.get("question", "")),
                answers=tuple(answers),
                meta=meta,
            )
        )
    notes = []
    if unanswered:
        notes.append(
            f"{unanswered} questions without a question or answers skipped (the test split has no answers)"
        )
    if missing:
        notes.append(f"{missing} questions whose image was not found skipped")
    return _finish(dest, items, notes)


def chartqa(src: Path, dest: Path) -> Conversion:
    """ChartQA's test split: `test/test_human.json` and `test/test_augmented.json` (lists of {imgname,
    query, label}) with the charts in `test/png/`."""

    def has_json(d: Path) -> bool:
        return any(d.glob("*_human.json")) or any(d.glob("*_augmented.json"))

    candidates = [src / "test", src / "ChartQA Dataset" / "test", src]
    split = _first_dir(candidates, has_json, "ChartQA *_human.json / *_augmented.json")
    items: list[Item] = []
    missing = incomplete = 0
    for subset in ("human", "augmented"):
        for questions in sorted(split.glob(f"*_{subset}.json")):
            entries = _read_json(questions)
            if not isinstance(entries, list):
                raise ConversionError(f"{questions} is not a list of questions")
            for index, entry in enumerate(entries):
                image = split / "png" / str(entry.get("imgname", ""))
                if not str(entry.get("query", "")).strip() or not str(entry.get("label", "")).strip():
                    incomplete += 1
                    continue
                if not image.is_file():
                    missing += 1
                    continue
                file = _place(image, dest, f"images/{image.name}")
                items.append(
                    Item(
                        f"chartqa-{subset}-{index}",
                        file,
                        TaskKind.QA,
                        question=str(entry.get("query", "")),
                        answers=(str(entry.get("label", "")),),
                        meta={"subset": subset},
                    )
                )
    notes = [f"{missing} questions whose chart was not found in {split / 'png'} skipped"] if missing else []
    if incomplete:
        notes.append(f"{incomplete} entries without a query or a label skipped")
    return _finish(dest, items, notes)


# -- OCR facts: olmOCR-Bench -----------------------------------------------------------------------------


def _olmocr_fact(test: dict[str, Any], category: str) -> Fact | str:
    """The test as a fact, or why it cannot be one (its type's name when docvl does not check it)."""
    kind = test.get("type")
    if kind not in KINDS:
        return str(kind)
    values = {key: value for key, value in test.items() if key in FIELD_TYPES and key != "category"}
    values["id"] = str(test.get("id") or "") or None
    problems = fact_problems(kind, values)
    if problems:
        return "invalid: " + "; ".join(f"{key} {what}" for key, what in problems)
    return Fact(kind, **values, category=category)


def olmocr_bench(src: Path, dest: Path) -> Conversion:
    """olmOCR-Bench: `bench_data/*.jsonl` tests ({pdf, page, id, type, ...} of the six types present,
    absent, order, table, math, baseline) and `bench_data/pdfs/` (or the same at SRC's top). One ocr
    item per (pdf, page) with its tests as facts, each in the category of its JSONL file; as the
    benchmark does, a PDF without a baseline test gets one on its first page (category `baseline`)."""
    base = _first_dir([src / "bench_data", src], lambda d: any(d.glob("*.jsonl")), "olmOCR-Bench *.jsonl")
    pdfs = base / "pdfs"
    groups: dict[tuple[str, int], list[Fact]] = {}
    where: dict[str, Path] = {}
    kinds: Counter[str] = Counter()
    skipped: Counter[str] = Counter()
    invalid: list[str] = []
    missing: set[str] = set()
    for tests in sorted(base.glob("*.jsonl")):
        for number, line in enumerate(tests.read_text(encoding="utf-8").splitlines(), 1):
            if not line.strip():
                continue
            try:
                test = json.loads(line)
            except json.JSONDecodeError as exc:
                raise ConversionError(f"{tests}: line {number} is not JSON ({exc.msg})") from exc
            if not isinstance(test, dict):
                raise ConversionError(f"{tests}: line {number} is not a JSON object")
            name, page = str(test.get("pdf", "")), test.get("page", 1)
            fact = _olmocr_fact(test, tests.stem)
            if isinstance(fact, str):
                if fact.startswith("invalid: "):
                    invalid.append(f"{tests.name} line {number}: {fact.removeprefix('invalid: ')}")
                else:
                    skipped[fact] += 1
                continue
            pdf = next((p for p in (pdfs / name, pdfs / tests.stem / name) if name and p.is_file()), None)
            if pdf is None or isinstance(page, bool) or not isinstance(page, int) or page < 1:
                missing.add(name)
                continue
            relative = str(pdf.relative_to(pdfs))
            groups.setdefault((relative, page), []).append(fact)
            where[relative] = pdf
            kinds[fact.kind] += 1
    added = 0
    for relative in sorted(where):
        if not any(f.kind == "baseline" for (r, _), facts in groups.items() if r == relative for f in facts):
            baseline = Fact("baseline", id=f"{relative}_baseline", category="baseline")
            groups.setdefault((relative, 1), []).append(baseline)
            kinds["baseline"] += 1
            added += 1
    items = []
    for (relative, page), facts in sorted(groups.items()):
        file = _place(where[relative], dest, f"pdfs/{relative}")
        item_id = f"olmocr-{_safe(str(Path(relative).with_suffix('')))}-p{page}"
        items.append(Item(item_id, file, TaskKind.OCR, page=page, facts=tuple(facts)))
    notes = []
    if kinds:
        converted = ", ".join(f"{kinds[kind]} {kind}" for kind in KINDS if kinds[kind])
        notes.append(f"tests converted: {converted}")
    if added:
        notes.append(f"a baseline test added to page 1 of {added} PDFs that had none, as the benchmark does")
    if skipped:
        notes.append(
            "tests of types docvl does not check skipped: "
            + ", ".join(f"{n} {kind}" for kind, n in sorted(skipped.items()))
        )
    if invalid:
        notes.append(
            f"{len(invalid)} tests the benchmark itself would refuse skipped: " + "; ".join(invalid[:5])
        )
    if missing:
        notes.append(f"{len(missing)} PDFs named by tests not found under {pdfs}")
    return _finish(dest, items, notes)


CONVERTERS: dict[str, Callable[[Path, Path], Conversion]] = {
    "chartmimic": chartmimic,
    "design2code": design2code,
    "docvqa": docvqa,
    "chartqa": chartqa,
    "olmocr-bench": olmocr_bench,
}

"""One page's grounded output into raw blocks: label, boxes (normalised 0–999) and text.

DeepSeek-OCR-2, asked `<image>\\n<|grounding|>Convert the document to markdown.`, writes every block as

    <|ref|>LABEL<|/ref|><|det|>[[x1, y1, x2, y2], ...]<|/det|>
    CONTENT (Markdown; tables as HTML or Markdown)

with integer coordinates normalised per axis to 0–999 (x / 999 × width gives pixels). A block's content
runs up to the next `<|ref|>` or the end of the output.

A model's output is not trusted: it may be cut off by the token limit (mid-label, mid-`<|det|>`), loop,
forget a closing tag or write nonsense. `parse_grounded` never raises; it keeps what it can and says what
it dropped and why, in `notes` (human-readable, at most `MAX_NOTES`). Its rules:

- Text before the first `<|ref|>` is kept, as a block with no label (`source_label` None) and no box, so
  that no text is lost (an output with no grounding at all is one such block), and noted.
- A label never closed by `<|/ref|>`: when a `<|det|>` follows, the label ends there; else the block was
  cut off inside its label and is dropped, unless it carries text over several lines (then that is kept
  as an unlabelled, unlocated block). Labels longer than 64 characters are cut, whitespace collapsed.
- A block without `<|det|>`, or whose boxes were all dropped, is kept without a box; with no text
  either, it is dropped.
- A `<|det|>` never closed ends at its first `]]` (the model forgot `<|/det|>`: the text after it is
  kept), or, with no `]]`, at the end of the output (cut off: the complete boxes in it are kept).
- Boxes: the innermost `[...]` groups (so `[[...]]` and `[[[...]]]` both read). A box must have four
  numbers (integers, or decimals rounded); one with another count or a non-number is dropped. Coordinates
  outside 0–999 are clamped into it (a model overshooting by a little still says where the block is); a
  box that lies wholly outside (nothing left once clamped) is dropped. x1 > x2 or y1 > y2 are swapped.
  Zero-width or zero-height boxes the model wrote are kept: the checks (checks.py) flag them.
  At most `MAX_BOXES` boxes per block are kept.
- Stray grounding tags inside a block's text (`<|/ref|>`, a second `<|det|>...<|/det|>`, `<|grounding|>`)
  are removed and noted; the end-of-sentence token is removed silently. Any other text, HTML or script
  included, is kept as it came: escaping is the job of whoever displays it.
- NUL characters and unpaired surrogates (which no UTF-8 store or JSON consumer accepts) are removed.
- Outputs over `MAX_INPUT_CHARS` are cut there (a real page's output is a few ten thousand characters).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

REF, REF_END, DET, DET_END = "<|ref|>", "<|/ref|>", "<|det|>", "<|/det|>"
NORMALISED_MAX = 999  # the largest normalised coordinate: 999 is the right or bottom edge
MAX_INPUT_CHARS = 1_000_000
MAX_BOXES = 64
MAX_LABEL_CHARS = 64
MAX_NOTES = 50
_MAX_NUMBER_CHARS = 16  # longer digit runs are not coordinates (and int() of them would be slow)
_EOS = ("<｜end▁of▁sentence｜>", "<|end▁of▁sentence|>", "<|end_of_sentence|>")
_NUMBER = re.compile(r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)")
_INNERMOST = re.compile(r"\[([^\[\]]*)\]")
_STRAY_DET = re.compile(r"<\|det\|>.*?(?:<\|/det\|>|\Z)", re.DOTALL)
_STRAY_TAGS = re.compile(r"<\|/ref\|>|<\|/det\|>|<\|grounding\|>")
_SPACE = re.compile(r"\s+")
_SURROGATES = re.compile("[\ud800-\udfff]")

Box = tuple[int, int, int, int]
"""(x1, y1, x2, y2), normalised 0–999 per axis, x1 <= x2 and y1 <= y2."""


@dataclass(frozen=True)
class RawBlock:
    """One block as the model wrote it, once cleaned: its label (None for text outside any block), its
    boxes (normalised 0–999, maybe none) and its content."""

    source_label: str | None
    boxes: tuple[Box, ...]
    text: str


@dataclass(frozen=True)
class ParsedPage:
    """What `parse_grounded` kept, in output order, and what it dropped or changed, said for people."""

    blocks: tuple[RawBlock, ...]
    notes: tuple[str, ...]


@dataclass
class _Notes:
    """Notes, capped: a looping output could otherwise make one per block."""

    items: list[str] = field(default_factory=list)
    more: int = 0

    def add(self, note: str) -> None:
        if len(self.items) < MAX_NOTES:
            self.items.append(note)
        else:
            self.more += 1

    def done(self) -> tuple[str, ...]:
        return (*self.items, f"and {self.more} more notes") if self.more else tuple(self.items)


def parse_grounded(output: str) -> ParsedPage:
    """The blocks of one page's grounded output, in output order. Never raises (see the module's rules)."""
    notes = _Notes()
    if not isinstance(output, str):
        notes.add(f"the output is a {type(output).__name__}, not text: nothing kept")
        return ParsedPage((), notes.done())
    text = _sanitise(output, notes)
    pieces = text.split(REF)
    blocks: list[RawBlock] = []
    preamble = _clean_text(pieces[0], "the text before the first block", notes)
    if preamble:
        blocks.append(RawBlock(None, (), preamble))
        if len(pieces) > 1:
            notes.add(f"{len(preamble)} characters before the first block kept as text without a box")
        else:
            notes.add("the output has no grounded block: kept whole as text without a box")
    for number, piece in enumerate(pieces[1:], start=1):
        block = _block(piece, number, notes)
        if block is not None:
            blocks.append(block)
    return ParsedPage(tuple(blocks), notes.done())


def _sanitise(output: str, notes: _Notes) -> str:
    if len(output) > MAX_INPUT_CHARS:
        notes.add(f"the output is {len(output)} characters long: only the first {MAX_INPUT_CHARS} were read")
        output = output[:MAX_INPUT_CHARS]
    for eos in _EOS:
        output = output.replace(eos, "")
    if "\x00" in output:
        notes.add("NUL characters removed")
        output = output.replace("\x00", "")
    if _SURROGATES.search(output):
        notes.add("unpaired surrogate characters removed")
        output = _SURROGATES.sub("", output)
    return output


def _block(piece: str, number: int, notes: _Notes) -> RawBlock | None:
    """One block from what follows its `<|ref|>`; None when nothing of it can be kept."""
    label_end, det_at = piece.find(REF_END), piece.find(DET)
    if label_end != -1 and (det_at == -1 or label_end < det_at):
        label, rest = piece[:label_end], piece[label_end + len(REF_END) :]
    elif det_at != -1:
        label, rest = piece[:det_at], piece[det_at:]
        notes.add(f"block {number}: its label is not closed by <|/ref|>; it is taken to end at <|det|>")
    elif "\n" in piece.strip():
        text = _clean_text(piece, f"block {number}", notes)
        notes.add(
            f"block {number}: its label is never closed (no <|/ref|> nor <|det|>); "
            f"its {len(text)} characters are kept as text without a label or box"
        )
        return RawBlock(None, (), text) if text else None
    else:
        notes.add(f"block {number}: the output ends inside its label ({piece.strip()[:40]!r}); dropped")
        return None
    label = _label(label, number, notes)
    where = f"block {number} ({label})"
    boxes: tuple[Box, ...] = ()
    stripped = rest.lstrip()
    has_det = stripped.startswith(DET)
    if has_det:
        body, text = _det(stripped[len(DET) :], where, notes)
        boxes = _boxes(body, where, notes)
    else:
        text = rest
    text = _clean_text(text, where, notes)
    if not boxes and not text:
        notes.add(f"{where}: neither a usable box nor text; dropped")
        return None
    if not boxes:
        notes.add(f"{where}: {'no usable box' if has_det else 'no <|det|> box'}; kept without a box")
    return RawBlock(label, boxes, text)


def _label(label: str, number: int, notes: _Notes) -> str:
    cleaned = _SPACE.sub(" ", label).strip()
    if len(cleaned) > MAX_LABEL_CHARS:
        notes.add(f"block {number}: its label is {len(cleaned)} characters long; cut to {MAX_LABEL_CHARS}")
        cleaned = cleaned[:MAX_LABEL_CHARS]
    return cleaned


def _det(after: str, where: str, notes: _Notes) -> tuple[str, str]:
    """(the box list, the block's text) from what follows `<|det|>`."""
    end = after.find(DET_END)
    if end != -1:
        return after[:end], after[end + len(DET_END) :]
    close = after.find("]]")
    if close != -1:
        close += 2
        while close < len(after) and after[close] == "]":
            close += 1
        notes.add(f"{where}: <|det|> is not closed by <|/det|>; its boxes are taken to end at ']]'")
        return after[:close], after[close:]
    notes.add(f"{where}: the output ends inside <|det|>; its complete boxes are kept, it has no text")
    return after, ""


def _boxes(body: str, where: str, notes: _Notes) -> tuple[Box, ...]:
    groups: list[str] = _INNERMOST.findall(body)
    if not groups and "[" not in body and body.strip():
        groups = [body.strip()]  # numbers without brackets
    if len(groups) > MAX_BOXES:
        notes.add(f"{where}: {len(groups)} boxes; only the first {MAX_BOXES} were read")
        groups = groups[:MAX_BOXES]
    boxes: list[Box] = []
    for index, group in enumerate(groups, start=1):
        if group.strip():
            box = _box(group, f"{where}, box {index}", notes)
            if box is not None:
                boxes.append(box)
    return tuple(boxes)


def _box(group: str, where: str, notes: _Notes) -> Box | None:
    parts = [part.strip() for part in group.split(",")]
    if len(parts) != 4:
        notes.add(f"{where}: {len(parts)} values, not 4; dropped")
        return None
    values: list[int] = []
    for part in parts:
        if len(part) > _MAX_NUMBER_CHARS or not _NUMBER.fullmatch(part):
            notes.add(f"{where}: {part[:20]!r} is not a number; dropped")
            return None
        values.append(round(float(part)))
    x1, y1, x2, y2 = values
    if x1 > x2 or y1 > y2:
        notes.add(f"{where}: corners in the wrong order; swapped")
        x1, x2, y1, y2 = min(x1, x2), max(x1, x2), min(y1, y2), max(y1, y2)
    clamped = [min(max(v, 0), NORMALISED_MAX) for v in (x1, y1, x2, y2)]
    if clamped != [x1, y1, x2, y2]:
        cx1, cy1, cx2, cy2 = clamped
        if (cx1 == cx2 and x1 != x2) or (cy1 == cy2 and y1 != y2):
            notes.add(f"{where}: [{x1}, {y1}, {x2}, {y2}] lies outside 0–{NORMALISED_MAX}; dropped")
            return None
        notes.add(f"{where}: [{x1}, {y1}, {x2}, {y2}] reaches outside 0–{NORMALISED_MAX}; clamped")
    return clamped[0], clamped[1], clamped[2], clamped[3]


def _clean_text(text: str, where: str, notes: _Notes) -> str:
    """The block's content without stray grounding tags, stripped of surrounding whitespace."""
    cleaned, dets = _STRAY_DET.subn("", text)
    cleaned, tags = _STRAY_TAGS.subn("", cleaned)
    if dets or tags:
        notes.add(f"{where}: {dets + tags} stray grounding tags removed from its text")
    return cleaned.strip()

"""The prompt of each task, per model family, and the versions that every result records.

Change a family's instructions, change its version: results made with different prompts must be told apart.
The families render these (model_worker/families.py): DeepSeek-VL through the checkpoint's chat template,
DeepSeek-OCR-2 as the plain `<image>\\n{instruction}` its model card documents.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from docvl.errors import InvalidInput
from docvl.tasks import TaskKind

# DeepSeek-VL and DeepSeek-VL hybrid: instructions written for a chat model.
VL_PROMPT_VERSION = "2026-11-23.1"
VL_INSTRUCTIONS: dict[TaskKind, str] = {
    TaskKind.OCR: (
        "Convert the document page in the image to Markdown. Keep the reading order, write headings as "
        "Markdown headings and tables as Markdown tables, and output only the Markdown."
    ),
    TaskKind.CHART2CODE: (
        "Write Python code with matplotlib that redraws the chart in the image: the same chart type, data, "
        "labels, title and legend. Output only the code, in one ```python block."
    ),
    TaskKind.WEB2HTML: (
        "Write one self-contained HTML document (inline CSS, no external resources) that reproduces the "
        "webpage in the screenshot. Output only the HTML, in one ```html block."
    ),
    TaskKind.QA: "Answer the question about the image.\n{question}",
}

# DeepSeek-OCR-2: the two prompts of its model card, word for word (it was trained on them). Grounding
# (`<|grounding|>`) makes it write each block as <|ref|>label<|/ref|><|det|>[[x1, y1, x2, y2]]<|/det|> then
# its Markdown, boxes in 0..999 per axis.
OCR2_PROMPT_VERSION = "ocr2-2026-12-07.1"
OCR2_INSTRUCTIONS: dict[TaskKind, str] = {
    TaskKind.OCR: "Free OCR.",
    TaskKind.LAYOUT: "<|grounding|>Convert the document to markdown.",
}


@dataclass(frozen=True)
class Instruction:
    """A request's instruction text and the prompt version it is recorded with."""

    text: str
    version: str


def instruction(
    instructions: dict[TaskKind, str],
    version: str,
    task: TaskKind,
    question: str | None,
    override: str | None,
) -> Instruction:
    """The task's instruction from `instructions`, or the caller's override (recorded as its own version).
    For QA, `{question}` in the instruction is replaced by the question, or the question is appended."""
    question = (question or "").strip()
    if task is TaskKind.QA and not question:
        raise InvalidInput("task qa needs a question: set `question`")
    override = (override or "").strip()
    template = override or instructions[task]
    if task is TaskKind.QA:
        text = (
            template.replace("{question}", question)
            if "{question}" in template
            else f"{template}\n{question}"
        )
    else:
        text = template
    if override:
        version = "override-" + hashlib.sha256(override.encode()).hexdigest()[:12]
    return Instruction(text, version)

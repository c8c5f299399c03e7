"""The prompt of each task, and the version that every result records.

Change a template, change PROMPT_TEMPLATE_VERSION: results made with different prompts must be told apart.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

from docvl.errors import InvalidInput
from docvl.tasks import TaskKind

PROMPT_TEMPLATE_VERSION = "2026-11-23.1"

_INSTRUCTIONS: dict[TaskKind, str] = {
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


@dataclass(frozen=True)
class Prompt:
    messages: list[dict[str, Any]]
    version: str


def build_prompt(task: TaskKind, n_images: int, question: str | None, override: str | None) -> Prompt:
    """The chat messages for a task; the checkpoint's chat template renders them."""
    question = (question or "").strip()
    if task is TaskKind.QA and not question:
        raise InvalidInput("task qa needs a question: set `question`")
    override = (override or "").strip()
    template = override or _INSTRUCTIONS[task]
    if task is TaskKind.QA:
        text = (
            template.replace("{question}", question)
            if "{question}" in template
            else f"{template}\n{question}"
        )
    else:
        text = template
    version = PROMPT_TEMPLATE_VERSION
    if override:
        version = "override-" + hashlib.sha256(override.encode()).hexdigest()[:12]
    content: list[dict[str, Any]] = [{"type": "image"} for _ in range(n_images)]
    content.append({"type": "text", "text": text})
    return Prompt(messages=[{"role": "user", "content": content}], version=version)

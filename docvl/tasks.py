"""The things docvl does with a document page.

Which of them a model worker serves depends on its model family (model_worker/families.py); the worker
reports its tasks in GetModelInfo.
"""

from __future__ import annotations

from enum import StrEnum


class TaskKind(StrEnum):
    OCR = "ocr"
    CHART2CODE = "chart2code"
    WEB2HTML = "web2html"
    QA = "qa"
    LAYOUT = "layout"  # grounded parsing: blocks with labels and boxes (DeepSeek-OCR-2)

    @classmethod
    def parse(cls, value: str) -> TaskKind:
        """The task named `value`; an InvalidInput that lists the known tasks otherwise."""
        from docvl.errors import InvalidInput

        try:
            return cls(value.strip().lower())
        except ValueError:
            known = ", ".join(t.value for t in cls)
            raise InvalidInput(f"unknown task {value!r}: use one of {known}") from None

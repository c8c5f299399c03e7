"""The four things docvl does with a document page."""

from __future__ import annotations

from enum import StrEnum


class TaskKind(StrEnum):
    OCR = "ocr"
    CHART2CODE = "chart2code"
    WEB2HTML = "web2html"
    QA = "qa"

    @classmethod
    def parse(cls, value: str) -> TaskKind:
        """The task named `value`; an InvalidInput that lists the known tasks otherwise."""
        from docvl.errors import InvalidInput

        try:
            return cls(value.strip().lower())
        except ValueError:
            known = ", ".join(t.value for t in cls)
            raise InvalidInput(f"unknown task {value!r}: use one of {known}") from None

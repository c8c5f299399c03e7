"""Checking one page's output against its input, per task; which verdict passes and which scores better.

chart2code: executed in the sandbox, its figure compared with the chart (chart.py). web2html: rendered in
Chromium, compared with the screenshot (web.py). ocr: repetition, and CER / word F1 against the PDF's
text layer (ocr.py). qa: not checked. The heavy parts (the sandbox's probe, the browser) start on first use.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from functools import cached_property
from typing import Any

from docvl.postprocess import Artifact
from docvl.tasks import TaskKind
from docvl.verify import ocr
from docvl.verify.chart import ChartVerifier
from docvl.verify.sandbox import Limits, Sandbox
from docvl.verify.settings import VerifySettings
from docvl.verify.web import WebVerifier

log = logging.getLogger(__name__)
Verdict = dict[str, Any]
CHECKED = frozenset({TaskKind.OCR, TaskKind.CHART2CODE, TaskKind.WEB2HTML})


@dataclass(frozen=True)
class PageInput:
    image: bytes  # the page image the model saw
    text_layer: str | None  # the PDF page's own text, when it had any


class Verifier:
    """One per worker process."""

    def __init__(self, settings: VerifySettings | None = None) -> None:
        self.settings = settings or VerifySettings()

    @property
    def enabled(self) -> bool:
        return self.settings.verify

    @cached_property
    def sandbox(self) -> Sandbox:
        limits = Limits(wall_s=self.settings.verify_chart_timeout_s)
        return Sandbox(limits, bwrap=self.settings.verify_bwrap)

    @cached_property
    def charts(self) -> ChartVerifier:
        return ChartVerifier(self.sandbox)

    @cached_property
    def web(self) -> WebVerifier:
        return WebVerifier(self.settings.verify_chromium, self.settings.verify_render_timeout_s)

    def check(self, task: TaskKind, made: Artifact, page: PageInput) -> Verdict | None:
        """The verdict on this output (with `passed`), or None when the task is not checked. A check that
        breaks (an unreadable image, a full disk) is said in the verdict: it never fails the page."""
        if task not in CHECKED:
            return None
        try:
            return self._check(task, made, page)
        except Exception as exc:
            log.exception("the %s check failed", task.value)
            return {"passed": None, "reason": f"the check itself failed: {type(exc).__name__}: {exc}"[:500]}

    def _check(self, task: TaskKind, made: Artifact, page: PageInput) -> Verdict:
        if task is TaskKind.OCR:
            verdict: Verdict = ocr.verify(made.text, page.text_layer)
        elif task is TaskKind.CHART2CODE:
            verdict = (
                self.charts.verify(made.text, page.image)
                if made.valid
                else {"executed": False, "similarity": 0.0, "error": made.problem}
            )
        else:
            verdict = self.web.verify(made.text, page.image, page.text_layer)
            if not made.valid and verdict.get("rendered"):  # Chromium renders anything: not a document
                verdict["error"] = made.problem
        return {"passed": self.passed(task, verdict)} | verdict

    def passed(self, task: TaskKind, verdict: Verdict) -> bool | None:
        """None: could not be checked here (the sandbox or the browser refused)."""
        if task is TaskKind.OCR:
            return bool(verdict["repetition"] <= self.settings.verify_repetition_threshold)
        outcome = verdict.get("executed" if task is TaskKind.CHART2CODE else "rendered")
        return None if outcome is None else bool(outcome) and not verdict.get("error")

    @staticmethod
    def score(verdict: Verdict) -> tuple[float, ...]:
        """Larger is better: passing first, then similarity (images) or less repetition and a closer text
        layer (OCR)."""
        passed = 1.0 if verdict.get("passed") else 0.0
        if "repetition" in verdict:
            f1 = verdict.get("text_layer_f1")
            return passed, -float(verdict["repetition"]), float(f1) if f1 is not None else 0.0
        similarity = verdict.get("similarity")
        return passed, float(similarity) if similarity is not None else 0.0

    def close(self) -> None:
        if "web" in self.__dict__:
            self.web.close()

"""How olmOCR-Bench's math tests compare equations: rendered by KaTeX, as the benchmark renders them.

`KatexRenderer` runs Debian's KaTeX (the `libjs-katex` package, /usr/share/javascript/katex) in headless
Chromium (nothing fetched) and turns each equation into KaTeX's MathML: two equations are the same when
the reference's MathML, whitespace removed and the LaTeX source annotation left out, is found inside the
candidate's. Where Chromium or KaTeX is not installed, `NormalisedLatex` compares the LaTeX itself,
normalised (spacing, `\\left`/`\\right`, `\\displaystyle`, braces around one symbol): a documented
stand-in, stricter than rendering (docs/eval.md). `default_renderer()` picks one for the process.
"""

from __future__ import annotations

import atexit
import contextlib
import re
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from docvl.eval.olmocr import MathRenderer
from docvl.verify.web import CHROMIUM

KATEX_JS = Path("/usr/share/javascript/katex/katex.min.js")
_INVISIBLE = re.compile(r"[\s\u200a-\u200d\u2060\ufeff]+")
_SEMANTICS = re.compile(r"<semantics>(.*?)<annotation", re.DOTALL)
_RENDER = """(equations) => equations.map((tex) => {
  try {
    return katex.renderToString(tex, {displayMode: true, throwOnError: true, output: "mathml"});
  } catch (error) {
    return null;
  }
})"""


def mathml_core(mathml: str) -> str:
    """KaTeX's MathML without its LaTeX annotation and without any whitespace."""
    match = _SEMANTICS.search(mathml)
    return _INVISIBLE.sub("", match.group(1) if match else mathml)


class KatexRenderer(MathRenderer):
    """KaTeX in one long-lived Chromium page (JavaScript on for KaTeX alone, every request aborted), driven
    from a thread of its own (Playwright's sync objects belong to the thread that made them, and refuse a
    thread running an asyncio loop), so any thread may call it; each equation is rendered once (cached)."""

    def __init__(self, executable: str = CHROMIUM, katex_js: Path = KATEX_JS) -> None:
        self.executable = executable
        self.katex_js = katex_js
        self.name = f"KaTeX ({katex_js}) in Chromium: MathML compared"
        self._cache: dict[str, str | None] = {}
        self._thread = ThreadPoolExecutor(1, thread_name_prefix="docvl-katex")
        self._lock = threading.Lock()
        self._playwright: Any = None
        self._browser: Any = None
        self._page: Any = None

    @staticmethod
    def available(executable: str = CHROMIUM, katex_js: Path = KATEX_JS) -> bool:
        return Path(executable).is_file() and katex_js.is_file()

    def _page_now(self) -> Any:  # on self._thread only
        if self._page is not None:
            return self._page
        from playwright.sync_api import sync_playwright

        self._playwright = sync_playwright().start()
        self._browser = self._playwright.chromium.launch(
            executable_path=self.executable,
            args=["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"],
            headless=True,
        )
        context = self._browser.new_context(offline=True, service_workers="block")
        context.route("**/*", lambda route: route.abort())
        page = context.new_page()
        page.set_content("<!DOCTYPE html><html><body></body></html>")
        page.add_script_tag(content=self.katex_js.read_text(encoding="utf-8"))
        self._page = page
        return page

    def _evaluate(self, equations: list[str]) -> list[str | None]:  # on self._thread only
        rendered: list[str | None] = self._page_now().evaluate(_RENDER, equations)
        return rendered

    def render(self, equations: list[str]) -> list[str | None]:
        """Each equation's MathML core (`mathml_core`), None where KaTeX cannot render it."""
        with self._lock:
            todo = [tex for tex in dict.fromkeys(equations) if tex not in self._cache]
            if todo:
                rendered = self._thread.submit(self._evaluate, todo).result()
                for tex, mathml in zip(todo, rendered, strict=True):
                    self._cache[tex] = None if mathml is None else mathml_core(mathml)
            return [self._cache[tex] for tex in equations]

    def same(self, reference: str, candidate: str) -> bool:
        wanted, got = self.render([reference, candidate])
        return wanted is not None and got is not None and wanted in got

    def _stop(self) -> None:  # on self._thread only
        if self._browser is not None:
            self._browser.close()
        if self._playwright is not None:
            self._playwright.stop()
        self._page = self._browser = self._playwright = None

    def close(self) -> None:
        with self._lock:
            self._thread.submit(self._stop).result()
            self._thread.shutdown()


_SPACING = re.compile(r"\\(?:left|right|displaystyle|textstyle|quad|qquad|[,;:! ])(?![A-Za-z])")
_ONE_SYMBOL = re.compile(r"\{(\\?[A-Za-z0-9])\}")
_FRACTIONS = re.compile(r"\\[dt]frac(?![A-Za-z])")


def normalise_latex(tex: str) -> str:
    """LaTeX with what does not change the symbols removed: spacing commands, `\\left`/`\\right`,
    `\\displaystyle`, whitespace, braces around a single symbol; `\\dfrac`/`\\tfrac` as `\\frac`."""
    text = _FRACTIONS.sub(r"\\frac", tex)
    text = _SPACING.sub("", text)
    text = _INVISIBLE.sub("", text)
    previous = None
    while previous != text:
        previous, text = text, _ONE_SYMBOL.sub(r"\1", text)
    return text


class NormalisedLatex(MathRenderer):
    name = "normalised LaTeX (KaTeX or Chromium not installed): the reference inside the candidate"

    def same(self, reference: str, candidate: str) -> bool:
        wanted = normalise_latex(reference)
        return bool(wanted) and wanted in normalise_latex(candidate)


_default: list[MathRenderer] = []
_default_lock = threading.Lock()


def default_renderer() -> MathRenderer:
    """The process's renderer: KaTeX in Chromium where both are installed, else normalised LaTeX. Its
    browser is closed when the process exits."""
    with _default_lock:
        if not _default:
            _default.append(KatexRenderer() if KatexRenderer.available() else NormalisedLatex())
        return _default[0]


@atexit.register
def _close_default() -> None:
    with _default_lock:
        for renderer in _default:
            if isinstance(renderer, KatexRenderer):
                with contextlib.suppress(Exception):  # the process is ending: a browser gone is fine
                    renderer.close()
        _default.clear()

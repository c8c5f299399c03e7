"""How olmOCR-Bench's math tests compare equations: rendered by KaTeX, as the benchmark renders them.

`KatexRenderer` runs Debian's KaTeX (the `libjs-katex` package, /usr/share/javascript/katex) in headless
Chromium (nothing fetched) and turns each equation into KaTeX's MathML: two equations are the same when
the reference's MathML, whitespace removed and the LaTeX source annotation left out, is found inside the
candidate's, or when every glyph KaTeX drew for the reference can be found among the candidate's with the
same glyphs straight above, below, left and right of it (as the benchmark compares the rendered
equations' innermost spans). Where Chromium or KaTeX is not installed, `NormalisedLatex` compares the
LaTeX itself, normalised (spacing, `\\left`/`\\right`, `\\displaystyle`, braces around one symbol): a
documented stand-in, stricter than rendering (docs/eval.md). `default_renderer()` picks one for the process.
"""

from __future__ import annotations

import atexit
import contextlib
import re
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from docvl.eval.olmocr import MathRenderer
from docvl.verify.web import CHROMIUM

KATEX_JS = Path("/usr/share/javascript/katex/katex.min.js")
_INVISIBLE = re.compile(r"[\s\u200a-\u200d\u2060\ufeff]+")
_SEMANTICS = re.compile(r"<semantics>(.*?)<annotation", re.DOTALL)
FONT_PX = 24  # the size equations are laid out at (the glyph tolerance below is in these pixels)
GLYPH_TOLERANCE_PX = 5.0  # a glyph is above, below, left or right of another when their centres align so
MAX_STEPS = 200_000  # of the glyph matching's search, past which the two are taken as different
_PAGE = f"""<!DOCTYPE html><html><body style="margin:0">
<div id="equation" style="font-size:{FONT_PX}px;padding:16px"></div></body></html>"""
_RENDER = """(equations) => equations.map((tex) => {
  const box = document.getElementById("equation");
  try {
    const mathml = katex.renderToString(tex, {displayMode: true, throwOnError: true, output: "mathml"});
    katex.render(tex, box, {displayMode: true, throwOnError: true});
    const glyphs = [];
    for (const span of box.querySelectorAll("span")) {
      if (span.children.length === 0 && /\\S/.test(span.textContent)) {
        const r = span.getBoundingClientRect();
        glyphs.push([span.textContent, r.x, r.y, r.width, r.height]);
      }
    }
    return {mathml: mathml, glyphs: glyphs};
  } catch (error) {
    return null;
  }
})"""


@dataclass(frozen=True)
class Glyph:
    """One character KaTeX drew and the centre of its share of its span's box (CSS pixels)."""

    text: str
    x: float
    y: float


@dataclass(frozen=True)
class Rendered:
    mathml: str  # mathml_core of KaTeX's MathML
    glyphs: tuple[Glyph, ...]


def glyphs_of(spans: list[list[Any]]) -> tuple[Glyph, ...]:
    """The innermost spans KaTeX drew with text, whitespace removed, each split into its characters
    across its width."""
    glyphs = []
    for text, x, y, width, height in spans:
        characters = _INVISIBLE.sub("", str(text))
        for index, character in enumerate(characters):
            step = width / len(characters)
            glyphs.append(Glyph(character, x + step * index + step / 2, y + height / 2))
    return tuple(glyphs)


def _neighbours(glyphs: tuple[Glyph, ...]) -> list[dict[str, int | None]]:
    """For each glyph, the nearest glyph straight up, down, left and right of it (centres within the
    tolerance across), or None."""
    found: list[dict[str, int | None]] = []
    for i, glyph in enumerate(glyphs):
        best: dict[str, tuple[float, int] | None] = dict.fromkeys(("up", "down", "left", "right"))
        for j, other in enumerate(glyphs):
            if i == j:
                continue
            dx, dy = other.x - glyph.x, other.y - glyph.y
            candidates = []
            if abs(dx) <= GLYPH_TOLERANCE_PX:
                candidates.append(("up", -dy) if dy < 0 else ("down", dy) if dy > 0 else None)
            if abs(dy) <= GLYPH_TOLERANCE_PX:
                candidates.append(("left", -dx) if dx < 0 else ("right", dx) if dx > 0 else None)
            for candidate in candidates:
                if candidate is None:
                    continue
                direction, distance = candidate
                current = best[direction]
                if current is None or distance < current[0]:
                    best[direction] = (distance, j)
        found.append({d: None if v is None else v[1] for d, v in best.items()})
    return found


def glyphs_match(reference: tuple[Glyph, ...], candidate: tuple[Glyph, ...]) -> bool:
    """Whether every glyph of the reference can be given a distinct candidate glyph of the same
    character such that what lies next to it (up, down, left, right) in the reference lies next to its
    counterpart alike: the same character where not yet placed, its counterpart where it is. A search
    that runs past MAX_STEPS answers no."""
    options = [[j for j, c in enumerate(candidate) if c.text == r.text] for r in reference]
    if not reference or any(not found for found in options):
        return False
    near_r, near_c = _neighbours(reference), _neighbours(candidate)
    placed: dict[int, int] = {}
    used: set[int] = set()
    steps = 0

    def fits(i: int, j: int) -> bool:
        for direction, k in near_r[i].items():
            if k is None:
                continue
            counterpart = near_c[j][direction]
            if counterpart is None:
                return False
            if k in placed:
                if placed[k] != counterpart:
                    return False
            elif candidate[counterpart].text != reference[k].text:
                return False
        return True

    def place(i: int) -> bool:
        nonlocal steps
        if i == len(reference):
            return True
        for j in options[i]:
            steps += 1
            if steps > MAX_STEPS:
                return False
            if j in used or not fits(i, j):
                continue
            placed[i] = j
            used.add(j)
            if place(i + 1):
                return True
            del placed[i]
            used.discard(j)
        return False

    return place(0)


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
        self._cache: dict[str, Rendered | None] = {}
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
        page.set_content(_PAGE)
        css = self.katex_js.with_name("katex.min.css")
        if css.is_file():  # its fonts are not loaded (nothing is fetched): KaTeX's layout, fallback faces
            page.add_style_tag(content=css.read_text(encoding="utf-8"))
        page.add_script_tag(content=self.katex_js.read_text(encoding="utf-8"))
        self._page = page
        return page

    def _evaluate(self, equations: list[str]) -> list[dict[str, Any] | None]:  # on self._thread only
        rendered: list[dict[str, Any] | None] = self._page_now().evaluate(_RENDER, equations)
        return rendered

    def render(self, equations: list[str]) -> list[Rendered | None]:
        """Each equation's MathML core (`mathml_core`) and glyphs, None where KaTeX cannot render it."""
        with self._lock:
            todo = [tex for tex in dict.fromkeys(equations) if tex not in self._cache]
            if todo:
                rendered = self._thread.submit(self._evaluate, todo).result()
                for tex, out in zip(todo, rendered, strict=True):
                    self._cache[tex] = (
                        None
                        if out is None
                        else Rendered(mathml_core(out["mathml"]), glyphs_of(out["glyphs"]))
                    )
            return [self._cache[tex] for tex in equations]

    def same(self, reference: str, candidate: str) -> bool:
        """The benchmark's comparison: the reference's MathML inside the candidate's, else every glyph of
        the reference drawn by the candidate with the same glyphs around it."""
        wanted, got = self.render([reference, candidate])
        if wanted is None or got is None:
            return False
        return wanted.mathml in got.mathml or glyphs_match(wanted.glyphs, got.glyphs)

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

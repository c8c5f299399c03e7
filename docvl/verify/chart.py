"""chart2code: run the code in the sandbox, render its figure at the input chart's size, compare (SSIM)."""

from __future__ import annotations

import contextlib
import signal
import tempfile
from functools import cached_property
from pathlib import Path
from typing import Any

from PIL import UnidentifiedImageError

from docvl.verify import images
from docvl.verify.sandbox import Sandbox

_RUNNER = Path(__file__).with_name("chart_runner.py")
_MAX_SIDE = 4000  # a figure larger than this is not rendered: the comparison is at the input's size anyway


class ChartVerifier:
    def __init__(self, sandbox: Sandbox) -> None:
        self.sandbox = sandbox

    @cached_property
    def _font_cache(self) -> tuple[str, bytes]:
        """matplotlib's font list, made once here so that each sandbox need not scan the fonts again."""
        from matplotlib import font_manager

        name = f"fontlist-v{font_manager.FontManager.__version__}.json"
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / name
            font_manager.json_dump(font_manager.fontManager, path)
            return name, path.read_bytes()

    def verify(self, code: str, chart_png: bytes) -> dict[str, Any]:
        """{executed, similarity, error, seconds}; executed None (with `reason`) where code cannot be
        contained here."""
        if self.sandbox.refusal is not None:
            return {"executed": None, "similarity": None, "reason": self.sandbox.refusal}
        width, height = images.size_of(chart_png)
        width, height = min(width, _MAX_SIDE), min(height, _MAX_SIDE)
        font_name, font_cache = self._font_cache
        done = self.sandbox.run(
            [self.sandbox.python, "-I", "/input/runner.py", str(width), str(height)],
            {"runner.py": _RUNNER.read_bytes(), "chart.py": code.encode(), font_name: font_cache},
        )
        verdict: dict[str, Any] = {"seconds": round(done.seconds, 3)}
        if done.killed is not None:
            return verdict | {"executed": False, "similarity": 0.0, "error": f"killed: {done.killed}"}
        if done.returncode != 0 or not done.stdout:
            error = _last_error(done.returncode, done.stderr)
            return verdict | {"executed": False, "similarity": 0.0, "error": error}
        try:
            score = images.similarity(chart_png, done.stdout)
        except (UnidentifiedImageError, OSError, ValueError) as exc:
            return verdict | {"executed": False, "similarity": 0.0, "error": f"no figure: {exc}"}
        return verdict | {"executed": True, "similarity": score, "error": None}


def _last_error(returncode: int | None, stderr: str) -> str:
    if returncode is not None and returncode > 128:  # bwrap's status for a process killed by a signal
        with contextlib.suppress(ValueError):
            return f"killed by {signal.Signals(returncode - 128).name} (a sandbox limit)"
    lines = [line for line in stderr.strip().splitlines() if line.strip() and "Fontconfig" not in line]
    if not lines:
        return "the code exited without a figure"
    return lines[-1].strip()[:500]

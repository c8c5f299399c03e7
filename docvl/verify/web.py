"""web2html: render the HTML in headless Chromium (JavaScript off, every request but the document itself
aborted) at the screenshot's viewport, and compare the rendering with the screenshot."""

from __future__ import annotations

import logging
import re
import threading
import time
from pathlib import Path
from typing import Any

from docvl.verify import images, ocr

log = logging.getLogger(__name__)
CHROMIUM = "/usr/lib/chromium/chromium"
_MAX_SIDE = 4000
# A refresh would navigate away from the document (to a request that is aborted): not part of its layout.
_REFRESH = re.compile(r"<meta[^>]*http-equiv\s*=\s*[\"']?refresh[^>]*>", re.IGNORECASE)


class WebVerifier:
    """One long-lived browser per process, started on first use (and again after it died); a fresh
    context per render."""

    def __init__(self, executable: str = CHROMIUM, timeout_s: float = 15.0) -> None:
        self.executable = executable
        self.timeout_ms = timeout_s * 1000
        self._playwright: Any = None
        self._browser: Any = None
        self._lock = threading.Lock()

    @property
    def refusal(self) -> str | None:
        if not Path(self.executable).is_file():
            return f"Chromium ({self.executable}) is not installed: the HTML is not rendered"
        return None

    def _browser_now(self) -> Any:
        if self._browser is not None and self._browser.is_connected():
            return self._browser
        from playwright.sync_api import sync_playwright

        if self._playwright is None:
            self._playwright = sync_playwright().start()
        self._browser = self._playwright.chromium.launch(
            executable_path=self.executable,
            args=["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"],
            headless=True,
        )
        return self._browser

    def render(self, html: str, width: int, height: int) -> tuple[bytes, str]:
        """The screenshot of the page at this viewport and its visible text."""
        context = self._browser_now().new_context(
            java_script_enabled=False,
            viewport={"width": width, "height": height},
            service_workers="block",
            offline=True,
        )
        try:
            context.route("**/*", lambda route: route.abort())
            page = context.new_page()
            page.set_content(_REFRESH.sub("", html), timeout=self.timeout_ms, wait_until="load")
            png = page.screenshot(type="png", timeout=self.timeout_ms, animations="disabled")
            text = page.inner_text("body", timeout=self.timeout_ms) if page.query_selector("body") else ""
            return png, text
        finally:
            context.close()

    def verify(self, html: str, screenshot: bytes, text_layer: str | None) -> dict[str, Any]:
        """{rendered, similarity, text_layer_recall, error, seconds}."""
        if self.refusal is not None:
            return {"rendered": None, "similarity": None, "reason": self.refusal}
        width, height = images.size_of(screenshot)
        started = time.monotonic()
        with self._lock:  # Playwright's sync API is one thread's
            try:
                png, text = self.render(html, min(width, _MAX_SIDE), min(height, _MAX_SIDE))
            except Exception as exc:  # a timeout, a crashed browser: a verdict, not a failed page
                log.warning("web2html render failed: %s", exc)
                self._forget_if_dead()
                return {
                    "rendered": False,
                    "similarity": 0.0,
                    "text_layer_recall": None,
                    "error": str(exc).splitlines()[0][:500],
                    "seconds": round(time.monotonic() - started, 3),
                }
        verdict: dict[str, Any] = {
            "rendered": True,
            "similarity": images.similarity(screenshot, png),
            "text_layer_recall": ocr.recall(text, text_layer) if text_layer and text_layer.strip() else None,
            "error": None,
        }
        return verdict | {"seconds": round(time.monotonic() - started, 3)}

    def _forget_if_dead(self) -> None:
        if self._browser is not None and not self._browser.is_connected():
            self._browser = None

    def close(self) -> None:
        with self._lock:
            if self._browser is not None:
                try:
                    self._browser.close()
                except Exception as exc:  # already gone
                    log.debug("closing the browser: %s", exc)
                self._browser = None
            if self._playwright is not None:
                self._playwright.stop()
                self._playwright = None

"""The web console in a real headless Chromium (Debian's, driven by Playwright) against a real API process in
front of the running platform (tests/support/platform.py): sign in, submit a PDF through the form by keyboard,
watch it finish, look at every task's view; hostile model output that must not run or reach anywhere;
accessible names, landmarks, and a phone-sized viewport. With DOCVL_CONSOLE_SCREENSHOTS=DIR, the tests also
save the screenshots the README shows (`make console-screenshots`)."""

from __future__ import annotations

import base64
import os
import re
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Browser, Dialog, Locator, Page, expect, sync_playwright

from docvl.db import jobs, page_results
from docvl.job_status import JobStatus
from docvl.tasks import TaskKind
from tests.support.console_jobs import (
    DEMO_ANSWER,
    DEMO_CODE,
    DEMO_MARKDOWN,
    DEMO_PAGE,
    HOSTILE,
    stored_job,
)
from tests.support.helpers import ROOT, stop_process, wait_for
from tests.support.platform import FrontDoorPlatform
from tests.support.services import free_port

pytestmark = pytest.mark.slow
CHROMIUM = "/usr/lib/chromium/chromium"  # the real binary (/usr/bin/chromium is a wrapper script)
SAMPLES = ROOT / "docvl" / "samples"
SCREENSHOTS = os.environ.get("DOCVL_CONSOLE_SCREENSHOTS")
DESKTOP = {"width": 1280, "height": 900}
PHONE = {"width": 390, "height": 844}
expect.set_options(timeout=15_000)  # a loaded CI machine (the default is 5 s); every wait is a poll
# What no rendered result may hold: the console's own markup (page image, one sandboxed frame) aside.
UNSAFE = (
    "script, link, base, object, embed, svg, form, meta[http-equiv=refresh], [onerror], "
    "[onload], [onclick], a[href^='javascript'], a[href^='data'], a[href^='/']"
)
FORBIDDEN = f"{UNSAFE}, style, [style], meta"  # and no CSS from a result in the console itself


@pytest.fixture(scope="module")
def console_url(frontdoor: FrontDoorPlatform, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """`docvl api` as its own process on a free loopback port, configured like the platform."""
    port = free_port()
    log = tmp_path_factory.mktemp("console") / "api.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "docvl", "api", "--port", str(port), "--log-level", "warning"],
            cwd=ROOT,
            env={**os.environ, **frontdoor.env},
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    url = f"http://127.0.0.1:{port}"

    def ready() -> bool:
        if process.poll() is not None:
            raise AssertionError(f"the API exited:\n{log.read_text()[-4000:]}")
        try:
            return httpx.get(f"{url}/readyz", timeout=2).status_code == 200
        except httpx.TransportError:
            return False

    try:
        wait_for(ready, 90, "the API process")
        yield url
    finally:
        stop_process(process)


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(
            executable_path=CHROMIUM, args=["--no-sandbox"] if os.geteuid() == 0 else [], headless=True
        )
        yield chromium
        chromium.close()


@dataclass
class Console:
    """A browser tab on the console, with everything it asked of other origins and every dialog."""

    page: Page
    origin: str
    foreign_requests: list[str] = field(default_factory=list)
    dialogs: list[str] = field(default_factory=list)

    def dismiss(self, dialog: Dialog) -> None:
        self.dialogs.append(dialog.message)
        dialog.dismiss()

    def watch(self, url: str) -> None:
        own = url.startswith(f"{self.origin}/") or url.startswith(f"blob:{self.origin}/")
        if not (own or url.startswith("data:") or url.startswith("about:")):
            self.foreign_requests.append(url)


def console_tab(browser: Browser, origin: str, viewport: dict[str, int]) -> Iterator[Console]:
    context = browser.new_context(base_url=origin, viewport=viewport)  # type: ignore[arg-type]
    page = context.new_page()
    console = Console(page, origin)
    page.on("request", lambda request: console.watch(request.url))
    page.on("dialog", console.dismiss)
    try:
        yield console
    finally:
        context.close()


@pytest.fixture
def desktop(browser: Browser, console_url: str) -> Iterator[Console]:
    yield from console_tab(browser, console_url, DESKTOP)


@pytest.fixture
def phone(browser: Browser, console_url: str) -> Iterator[Console]:
    yield from console_tab(browser, console_url, PHONE)


def screenshot(target: Page | Locator, name: str) -> None:
    if SCREENSHOTS:
        path = Path(SCREENSHOTS) / f"{name}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(target, Page):
            target.screenshot(path=path, full_page=True)
        else:
            target.screenshot(path=path)


def sign_in(page: Page, key: str) -> None:
    """By keyboard: the key field has the focus, Enter submits."""
    page.goto("/")
    expect(page.get_by_role("heading", name="Sign in", level=1)).to_be_visible()
    expect(page.get_by_label("API key")).to_be_focused()
    page.keyboard.type(key)
    page.keyboard.press("Enter")
    expect(page.get_by_role("heading", name="Jobs", level=1)).to_be_visible()


def every_control_is_named(page: Page) -> int:
    """Every visible form control, button, frame and focusable code block has an accessible name (as
    the browser's accessibility tree computes it)."""
    controls = page.locator("input, select, textarea, button, progress, iframe, [tabindex='0']")
    checked = 0
    for control in controls.all():
        if control.is_visible():
            expect(control).to_have_accessible_name(re.compile(r"\S"))
            checked += 1
    return checked


def landmarks(page: Page) -> None:
    expect(page.get_by_role("banner")).to_have_count(1)
    expect(page.get_by_role("navigation")).to_have_count(1)
    expect(page.get_by_role("main")).to_have_count(1)
    expect(page.get_by_role("heading", level=1)).to_have_count(1)


def no_horizontal_scroll(page: Page) -> None:
    overflow = page.evaluate("document.documentElement.scrollWidth - document.documentElement.clientWidth")
    assert overflow <= 0, f"the page scrolls sideways by {overflow} px"


def page_image_loaded(page: Page) -> None:
    page.wait_for_function("() => document.querySelector('.page-image img')?.naturalWidth > 0")


def nothing_ran(console: Console) -> None:
    console.page.wait_for_load_state("networkidle")
    assert console.page.evaluate("window.__pwned") is None
    assert console.dialogs == []
    assert console.foreign_requests == []


def test_sign_in_submit_by_keyboard_watch_and_open_every_view(
    desktop: Console, frontdoor: FrontDoorPlatform
) -> None:
    page, owner = desktop.page, f"console-{uuid.uuid4().hex[:8]}"
    page.goto("/")
    expect(page.get_by_label("API key")).to_be_focused()
    screenshot(page, "sign-in")
    page.keyboard.type("dvl_not-a-key")
    page.keyboard.press("Enter")
    expect(page.get_by_role("alert")).to_contain_text("not accepted")
    landmarks(page)
    assert every_control_is_named(page) >= 2
    page.get_by_label("API key").fill("")

    sign_in(page, frontdoor.key(owner))
    landmarks(page)
    assert every_control_is_named(page) >= 8
    # The form by keyboard: Tab from the top of the content through every field, Space ticks, Enter submits.
    page.locator("#main").focus()
    page.keyboard.press("Tab")
    expect(page.get_by_label("Documents: PDF, PNG, JPEG, TIFF or WebP")).to_be_focused()
    page.get_by_label("Documents: PDF, PNG, JPEG, TIFF or WebP").set_input_files(SAMPLES / "page.pdf")
    page.keyboard.press("Tab")
    expect(page.get_by_label("OCR to Markdown")).to_be_focused()
    expect(page.get_by_label("OCR to Markdown")).to_be_checked()
    for task in ("Chart to code", "Webpage to HTML", "Question answering"):
        checkbox = page.get_by_role("checkbox", name=task)
        page.keyboard.press("Tab")
        expect(checkbox).to_be_focused()
        page.keyboard.press("Space")
        expect(checkbox).to_be_checked()
    page.keyboard.press("Tab")
    expect(page.get_by_label("Question (for question answering)")).to_be_focused()
    page.keyboard.type("What is the title?")
    page.keyboard.press("Tab")
    expect(page.get_by_label("Priority (0 to 9)")).to_be_focused()
    page.keyboard.press("ArrowUp")
    expect(page.get_by_label("Priority (0 to 9)")).to_have_value("6")
    page.keyboard.press("Tab")
    expect(page.get_by_role("button", name="Submit")).to_be_focused()
    page.keyboard.press("Enter")

    # The job page follows the job live (its event stream): nothing reloads it.
    expect(page).to_have_url(re.compile(r"#/jobs/[0-9a-f-]{36}$"))
    expect(page.locator("#main")).to_be_focused()  # the keyboard continues at the job page's top
    job_id = uuid.UUID(page.url.rsplit("/", 1)[-1])
    assert frontdoor.wait_finished(job_id, 180) is JobStatus.SUCCEEDED  # the platform did its part
    expect(page.locator("#job-status")).to_have_text("succeeded")  # and the page saw it, by its stream
    expect(page.locator("#job-progress-text")).to_have_text("1 of 1 done")
    expect(page.get_by_role("button", name="Cancel job")).to_be_disabled()
    with frontdoor.db.transaction() as s:
        job = jobs.get_job(s, job_id)
        assert job.owner == owner
        assert job.priority == 6
        assert job.options["question"] == "What is the title?"
        results = {TaskKind(r.task): r for r in page_results.results(s, job_id)}
    assert set(results) == set(TaskKind) - {TaskKind.LAYOUT}  # the form's four tasks, all ticked

    page_one = page.get_by_role("region", name="Page 1")
    expect(page_one.get_by_role("img", name="Page 1 of the document")).to_be_visible()
    page_image_loaded(page)
    for task, article in (
        (TaskKind.OCR, page_one.locator(".result-ocr")),
        (TaskKind.CHART2CODE, page_one.locator(".result-chart2code")),
        (TaskKind.WEB2HTML, page_one.locator(".result-web2html")),
        (TaskKind.QA, page_one.locator(".result-qa")),
    ):
        expect(article).to_be_visible()
        meta = article.locator(".meta")
        for fact in (
            results[task].model_id,
            results[task].model_revision,
            results[task].prompt_template_version,
        ):
            assert fact
            expect(meta).to_contain_text(fact)
    expect(page_one.locator(".result-ocr .markdown")).to_be_visible()
    expect(page_one.locator(".result-chart2code pre.code code")).to_have_text(
        (results[TaskKind.CHART2CODE].output_text or "").strip("\n")
    )
    frame = page_one.locator(".result-web2html iframe")
    expect(frame).to_have_attribute("sandbox", "")
    expect(page_one.locator(".result-qa .question")).to_have_text("Q: What is the title?")
    every_control_is_named(page)

    downloads = page.get_by_role("region", name="Downloads")
    for name in ("document.md", "answers.json", "page-0001.py", "page-0001.html"):
        expect(downloads.get_by_role("button", name=re.compile(re.escape(name)))).to_be_visible()
    with page.expect_download() as download:
        downloads.get_by_role("button", name=re.compile("document.md")).click()
    with frontdoor.db.transaction() as s:
        markdown_key = jobs.get_job(s, job_id).outputs["ocr"]
    assert Path(download.value.path()).read_bytes() == frontdoor.store.get(markdown_key)

    page.get_by_role("link", name="Jobs").click()
    first = page.locator("#jobs-list li").first
    expect(first.get_by_role("link")).to_have_text(str(job_id)[:8])
    expect(first.locator(".status")).to_have_text("succeeded")
    nothing_ran(desktop)


def test_hostile_results_run_nothing_and_load_nothing(desktop: Console, frontdoor: FrontDoorPlatform) -> None:
    owner = f"console-{uuid.uuid4().hex[:8]}"
    question = "<img src=x onerror=\"window.__pwned = 'question'\"> <script>window.__pwned = 1</script>"
    job_id = stored_job(frontdoor, owner, SAMPLES / "page.png", HOSTILE, question=question)
    page = desktop.page
    sign_in(page, frontdoor.key(owner))
    page.goto(f"/#/jobs/{job_id}")

    results = page.get_by_role("region", name="Page 1")
    expect(results.locator(".result-ocr .markdown h1")).to_have_text("Hostile heading")
    expect(results.locator(".result-qa .markdown h1")).to_have_text("Hostile heading")
    expect(results.locator(".result-qa .question")).to_have_text(f"Q: {question}")  # as text
    expect(results.locator(".result-ocr .markdown")).to_contain_text(
        '<script>window.__pwned = "script"</script>'
    )
    code = results.locator(".result-chart2code pre.code code")
    expect(code).to_contain_text('</code></pre><script>window.__pwned = "code"</script>')
    frame = page.frame_locator(".result-web2html iframe")
    expect(frame.locator("h1")).to_have_text("Hostile page")
    expect(frame.locator("body")).to_contain_text("Text that stays.")
    page_image_loaded(page)
    frame.get_by_text("raw link").first.click()  # an anchor without its javascript: href

    nothing_ran(desktop)
    assert page.locator(f"#pages :is({FORBIDDEN})").count() == 0
    assert page.locator("#pages img").evaluate_all("images => images.map(i => i.src.split(':')[0])") == [
        "blob"
    ]
    assert page.locator("#pages iframe").count() == 1
    expect(page.locator("#pages iframe")).to_have_attribute("sandbox", "")
    links = page.locator("#pages .markdown a[href]")
    assert (
        links.evaluate_all("links => links.map(a => [a.href, a.rel])")
        == [["https://example.org/", "noopener noreferrer nofollow"]] * 2
    )
    assert frame.locator(f":is({UNSAFE}, img, iframe)").count() == 0  # CSS stays, if it loads nothing

    # The frame's link: signed for this page of this job, sandboxed by its own policy.
    preview = page.locator("#pages iframe").get_attribute("src")
    assert preview is not None
    assert re.fullmatch(rf"/console/previews/{job_id}/1/[0-9a-f]{{32}}\.[0-9]+\.[\w-]+", preview)
    served = httpx.get(f"{desktop.origin}{preview}")
    assert served.status_code == 200
    policy = served.headers["content-security-policy"]
    assert policy.startswith("sandbox; default-src 'none'; style-src 'unsafe-inline'; img-src data:")
    assert "frame-ancestors 'self'" in policy
    token = preview.rsplit("/", 1)[1]
    for forged in (
        f"/console/previews/{job_id}/2/{token}",
        f"/console/previews/{uuid.uuid4()}/1/{token}",
        f"/console/previews/{job_id}/1/{token[:-2]}xx",
        f"/console/previews/{job_id}/1/{token.split('.')[0]}.9999999999.{token.split('.')[2]}",
    ):
        refused = httpx.get(f"{desktop.origin}{forged}")
        assert refused.status_code == 401, forged
        assert refused.json()["error"]["code"] == "unauthenticated"
    background = page.evaluate("getComputedStyle(document.body).backgroundImage")
    assert background == "none"


def demo_jobs(frontdoor: FrontDoorPlatform, owner: str) -> dict[str, uuid.UUID]:
    """Three finished jobs with the outputs a full-size model gives for the samples."""
    question = "Which region had the most revenue?"
    return {
        "web2html": stored_job(frontdoor, owner, SAMPLES / "webpage.png", {TaskKind.WEB2HTML: DEMO_PAGE}),
        "chart2code": stored_job(frontdoor, owner, SAMPLES / "chart.png", {TaskKind.CHART2CODE: DEMO_CODE}),
        "ocr": stored_job(
            frontdoor,
            owner,
            SAMPLES / "page.png",
            {TaskKind.OCR: DEMO_MARKDOWN, TaskKind.QA: DEMO_ANSWER},
            question=question,
        ),
    }


def test_each_page_image_beside_its_results(desktop: Console, frontdoor: FrontDoorPlatform) -> None:
    owner = f"console-{uuid.uuid4().hex[:8]}"
    demos = demo_jobs(frontdoor, owner)
    page = desktop.page
    sign_in(page, frontdoor.key(owner))
    listed = page.locator("#jobs-list li .job-link")
    expect(listed).to_have_text([str(demos[task])[:8] for task in ("ocr", "chart2code", "web2html")])
    screenshot(page, "jobs")

    views = {
        "ocr": (page.locator(".result-ocr .markdown table td").first, "North"),
        "chart2code": (page.locator(".result-chart2code pre.code .kn").first, "import"),
        "web2html": (page.frame_locator("iframe").locator("h1"), "Turn documents into data"),
    }
    for task, (shown, text) in views.items():
        page.goto(f"/#/jobs/{demos[task]}")
        expect(shown).to_have_text(text)
        expect(page.locator("#job-status")).to_have_text("succeeded")
        page_image_loaded(page)
        image = page.locator(".page-image img").bounding_box()
        results = page.locator(".results").bounding_box()
        assert image is not None
        assert results is not None
        assert image["x"] + image["width"] <= results["x"], "the image is beside its results"
        assert abs(image["y"] - results["y"]) < 40
        every_control_is_named(page)
        screenshot(page, f"job-{task}")
    expect(page.locator(".result-qa .markdown strong")).to_have_count(0)  # the last job has no qa
    page.goto(f"/#/jobs/{demos['ocr']}")
    expect(page.locator(".result-qa .markdown strong")).to_have_text("1,200")
    nothing_ran(desktop)


def test_phone_sized_viewport_has_no_sideways_scroll(phone: Console, frontdoor: FrontDoorPlatform) -> None:
    owner = f"console-{uuid.uuid4().hex[:8]}"
    demos = demo_jobs(frontdoor, owner)
    page = phone.page
    page.goto("/")
    no_horizontal_scroll(page)
    sign_in(page, frontdoor.key(owner))
    landmarks(page)
    every_control_is_named(page)
    no_horizontal_scroll(page)

    # Documents dropped on the form land in its file field.
    pdf = base64.b64encode((SAMPLES / "page.pdf").read_bytes()).decode()
    dropped = page.evaluate_handle(
        """(data) => {
            const bytes = Uint8Array.from(atob(data), (c) => c.charCodeAt(0));
            const transfer = new DataTransfer();
            transfer.items.add(new File([bytes], "page.pdf", { type: "application/pdf" }));
            return transfer;
        }""",
        pdf,
    )
    page.locator("#drop-zone").dispatch_event("drop", {"dataTransfer": dropped})
    names = page.get_by_label("Documents: PDF, PNG, JPEG, TIFF or WebP").evaluate(
        "input => Array.from(input.files).map((file) => file.name)"
    )
    assert names == ["page.pdf"]

    for task in ("ocr", "chart2code", "web2html"):
        page.goto(f"/#/jobs/{demos[task]}")
        expect(page.locator("#job-status")).to_have_text("succeeded")
        expect(page.locator(f".result-{task}")).to_be_visible()
        page_image_loaded(page)
        no_horizontal_scroll(page)
        if task == "ocr":
            screenshot(page, "phone")
    nothing_ran(phone)


def test_running_job_updates_live_and_cancels(desktop: Console, frontdoor: FrontDoorPlatform) -> None:
    """A running job (written to the record, its second page still to come): the list follows it live,
    and the job page's Cancel job button cancels it."""
    owner = f"console-{uuid.uuid4().hex[:8]}"
    key = frontdoor.key(owner)
    listed = stored_job(frontdoor, owner, SAMPLES / "page.png", {TaskKind.OCR: DEMO_MARKDOWN}, running=True)
    page = desktop.page
    sign_in(page, key)
    item = page.locator(f"#job-{listed}")
    expect(item.locator(".status")).to_have_text("running")
    expect(item.locator(".progress-text")).to_have_text("1 of 2 done")
    cancelled = httpx.post(
        f"{desktop.origin}/v1/jobs/{listed}/cancel", headers={"Authorization": f"Bearer {key}"}
    )
    assert cancelled.json()["status"] == "cancelled"
    expect(item.locator(".status")).to_have_text("cancelled")  # by the list's event stream

    job_id = stored_job(frontdoor, owner, SAMPLES / "page.png", {TaskKind.OCR: DEMO_MARKDOWN}, running=True)
    page.goto(f"/#/jobs/{job_id}")
    expect(page.locator("#job-status")).to_have_text("running")
    expect(page.get_by_role("region", name="Page 2")).to_contain_text("No results for this page yet.")
    cancel = page.get_by_role("button", name="Cancel job")
    cancel.focus()
    page.keyboard.press("Space")
    expect(page.locator("#job-status")).to_have_text("cancelled")
    expect(cancel).to_be_disabled()
    assert frontdoor.status(job_id) is JobStatus.CANCELLED
    nothing_ran(desktop)


def test_the_console_reads_answer_only_the_owner(console_url: str, frontdoor: FrontDoorPlatform) -> None:
    owner = f"console-{uuid.uuid4().hex[:8]}"
    job_id = stored_job(frontdoor, owner, SAMPLES / "chart.png", {TaskKind.CHART2CODE: DEMO_CODE})
    mine = {"Authorization": f"Bearer {frontdoor.key(owner)}"}
    theirs = {"Authorization": f"Bearer {frontdoor.key(f'{owner}-other')}"}
    with httpx.Client(base_url=console_url) as api:
        view = api.get(f"/v1/jobs/{job_id}/pages", headers=mine)
        assert view.status_code == 200
        (shown,) = view.json()["pages"]
        assert shown["results"][0]["html"].startswith('<span class="kn">import</span>')
        image = api.get(shown["image"], headers=mine)
        assert image.headers["content-type"] == "image/png"
        assert image.content == (SAMPLES / "chart.png").read_bytes()
        for path, headers, status, code in (
            (f"/v1/jobs/{job_id}/pages", theirs, 404, "not_found"),
            (shown["image"], theirs, 404, "not_found"),
            (shown["image"], {}, 401, "unauthenticated"),
            (f"/v1/jobs/{job_id}/pages", {}, 401, "unauthenticated"),
            (f"/v1/jobs/{job_id}/pages/2/image", mine, 404, "not_found"),
            (f"/v1/jobs/{job_id}/pages/0/image", mine, 422, "invalid_input"),
        ):
            refused = api.get(path, headers=headers)
            assert refused.status_code == status, path
            assert refused.json()["error"]["code"] == code, path


def test_older_jobs_come_fifty_at_a_time(desktop: Console, frontdoor: FrontDoorPlatform) -> None:
    owner = f"console-{uuid.uuid4().hex[:8]}"
    made = [stored_job(frontdoor, owner, SAMPLES / "chart.png", {TaskKind.OCR: "# x"}) for _ in range(51)]
    page = desktop.page
    sign_in(page, frontdoor.key(owner))
    links = page.locator("#jobs-list .job-link")
    expect(links).to_have_count(50)
    expect(links.first).to_have_text(str(made[-1])[:8])  # newest first
    older = page.get_by_role("button", name="Older jobs")
    older.focus()
    page.keyboard.press("Enter")
    expect(links).to_have_count(51)
    expect(links.last).to_have_text(str(made[0])[:8])
    expect(older).to_be_hidden()

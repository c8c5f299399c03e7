"""The web console's layout view in a real headless Chromium (Debian's, driven by Playwright): the blocks'
boxes drawn over the page image, labelled, linked both ways with the blocks' text by pointer and by
keyboard, at desktop and phone width; a block whose text is hostile markup shown as text. The layout jobs
are written into the record as the layout pipeline leaves them (tests/front_doors/layout_jobs.py), the
API serves them in a thread. Each test saves its screenshots under its tmp path (and, with
DOCVL_CONSOLE_SCREENSHOTS=DIR, the one docs/usage.md shows, as DIR/job-layout.png)."""

from __future__ import annotations

import os
import re
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Locator, Page, expect, sync_playwright

from docvl.db import api_keys
from docvl.db.database import Database
from docvl.jobs.service import JobService
from docvl.layout import Document
from tests.front_doors.layout_jobs import HOSTILE, HOSTILE_TEXT, layout_service, stored_layout_job
from tests.front_doors.test_console import (
    CHROMIUM,
    DESKTOP,
    PHONE,
    Console,
    console_tab,
    every_control_is_named,
    no_horizontal_scroll,
    nothing_ran,
    page_image_loaded,
    sign_in,
)
from tests.support.platform import api_in_thread

pytestmark = pytest.mark.slow
SCREENSHOTS = os.environ.get("DOCVL_CONSOLE_SCREENSHOTS")
TOLERANCE_PX = 2.5  # a box's edges against where its pixel box falls on the displayed image
LABELS = ["title", "text", "table"]


@pytest.fixture(scope="module")
def svc(migrated_database: Database, tmp_path_factory: pytest.TempPathFactory) -> JobService:
    return layout_service(migrated_database, tmp_path_factory.mktemp("console-layout-store"))


@pytest.fixture(scope="module")
def console_url(svc: JobService) -> Iterator[str]:
    with api_in_thread(svc) as url:
        yield url


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(
            executable_path=CHROMIUM, args=["--no-sandbox"] if os.geteuid() == 0 else [], headless=True
        )
        yield chromium
        chromium.close()


@pytest.fixture
def desktop(browser: Browser, console_url: str) -> Iterator[Console]:
    yield from console_tab(browser, console_url, DESKTOP)


@pytest.fixture
def phone(browser: Browser, console_url: str) -> Iterator[Console]:
    yield from console_tab(browser, console_url, PHONE)


def screenshot(page: Page, directory: Path, name: str) -> Path:
    path = directory / f"{name}.png"
    page.screenshot(path=path, full_page=True)
    assert path.stat().st_size > 0
    return path


def open_layout_job(
    console: Console, svc: JobService, grounded: str | None = None
) -> tuple[uuid.UUID, Document]:
    """A finished layout job of a new owner, signed in as that owner and opened, its page image loaded."""
    owner = f"console-layout-{uuid.uuid4().hex[:8]}"
    job_id, document = stored_layout_job(svc, owner, *([grounded] if grounded else []))
    with svc.db.transaction() as s:
        secret = api_keys.create_key(s, owner).secret
    sign_in(console.page, secret)
    console.page.goto(f"/#/jobs/{job_id}")
    expect(console.page.locator("#job-status")).to_have_text("succeeded")
    page_image_loaded(console.page)
    return job_id, document


def boxes(page: Page) -> Locator:
    return page.locator(".layout-boxes button.layout-box")


def items(page: Page) -> Locator:
    return page.locator("ol.layout-blocks > li")


def boxes_sit_on_their_blocks(page: Page, document: Document) -> None:
    """Each drawn box covers its block's pixel box on the image as displayed (scaled with it)."""
    (shown,) = document.pages
    image = page.locator(".page-image img").bounding_box()
    assert image is not None
    scale_x, scale_y = image["width"] / shown.width_px, image["height"] / shown.height_px
    drawn = boxes(page)
    expect(drawn).to_have_count(len(shown.blocks))
    for index, block in enumerate(shown.blocks):
        assert block.box_px is not None
        x0, y0, x1, y1 = block.box_px
        found = drawn.nth(index).bounding_box()
        assert found is not None
        expected = (
            image["x"] + x0 * scale_x,
            image["y"] + y0 * scale_y,
            (x1 - x0) * scale_x,
            (y1 - y0) * scale_y,
        )
        actual = (found["x"], found["y"], found["width"], found["height"])
        assert actual == pytest.approx(expected, abs=TOLERANCE_PX), block.id


def highlighted(page: Page) -> list[str]:
    """The block ids of the highlighted boxes and list items, as ['box p1-b2', 'item p1-b2', ...]."""
    found: list[str] = page.evaluate(
        """() => [...document.querySelectorAll('.layout-box.active, .layout-block.active')].map(
            (node) => `${node.tagName === 'LI' ? 'item' : 'box'} ${node.dataset.block}`).sort()"""
    )
    return found


def test_the_blocks_boxes_are_drawn_over_the_page_image_labelled(
    desktop: Console, svc: JobService, tmp_path: Path
) -> None:
    page = desktop.page
    _, document = open_layout_job(desktop, svc)
    boxes_sit_on_their_blocks(page, document)
    expect(page.locator(".layout-box-label")).to_have_text(LABELS)
    for index, label in enumerate(LABELS):
        expect(boxes(page).nth(index)).to_have_accessible_name(f"Block {index + 1}: {label}")
        expect(boxes(page).nth(index)).to_have_class(re.compile(rf"\blabel-{label}\b"))
    colours = boxes(page).evaluate_all("boxes => boxes.map((b) => getComputedStyle(b).borderTopColor)")
    assert len(set(colours)) == len(LABELS), colours  # one colour per label
    expect(items(page)).to_have_count(3)
    expect(items(page).nth(0)).to_have_accessible_name("1. title")
    expect(items(page).nth(0).locator(".layout-block-text")).to_have_text("# Quarterly Report")
    expect(items(page).nth(2)).to_contain_text("| North  | 1,200   |")
    expect(page.locator(".result-layout .meta")).to_contain_text("deepseek-ai/DeepSeek-OCR-2")
    image = page.locator(".page-image img").bounding_box()
    listed = page.locator(".layout-blocks").bounding_box()
    assert image is not None
    assert listed is not None
    assert image["x"] + image["width"] <= listed["x"], "the text is beside the image"
    every_control_is_named(page)
    screenshot(page, tmp_path, "layout-desktop")
    nothing_ran(desktop)


def test_pointing_at_a_box_or_a_text_highlights_both(
    desktop: Console, svc: JobService, tmp_path: Path
) -> None:
    page = desktop.page
    open_layout_job(desktop, svc)
    assert highlighted(page) == []
    boxes(page).nth(1).hover()
    assert highlighted(page) == ["box p1-b2", "item p1-b2"]
    screenshot(page, tmp_path, "layout-box-hovered")
    items(page).nth(2).hover()
    assert highlighted(page) == ["box p1-b3", "item p1-b3"]
    page.mouse.move(1, 1)
    assert highlighted(page) == []
    boxes(page).nth(0).click()  # a click (a tap) takes the focus to the block's text, highlighted
    expect(items(page).nth(0)).to_be_focused()
    page.mouse.move(1, 1)
    assert highlighted(page) == ["box p1-b1", "item p1-b1"]
    screenshot(page, tmp_path, "layout-box-clicked")


def test_by_keyboard_tab_reaches_the_boxes_and_enter_goes_between_box_and_text(
    desktop: Console, svc: JobService, tmp_path: Path
) -> None:
    page = desktop.page
    open_layout_job(desktop, svc)
    page.mouse.move(1, 1)
    page.get_by_role("button", name="Cancel job").focus()  # disabled (the job has finished): Tab goes on
    first = boxes(page).nth(0)
    for _ in range(12):  # past the downloads, to the first box
        page.keyboard.press("Tab")
        if first.evaluate("box => box === document.activeElement"):
            break
    expect(first).to_be_focused()
    assert highlighted(page) == ["box p1-b1", "item p1-b1"]
    outline = first.evaluate("box => getComputedStyle(box).outlineStyle")
    assert outline == "solid", "the focused box shows its focus"
    page.keyboard.press("Tab")
    expect(boxes(page).nth(1)).to_be_focused()
    assert highlighted(page) == ["box p1-b2", "item p1-b2"]
    screenshot(page, tmp_path, "layout-box-focused")
    if SCREENSHOTS:
        screenshot(page, Path(SCREENSHOTS), "job-layout")
    page.keyboard.press("Enter")
    expect(items(page).nth(1)).to_be_focused()
    assert highlighted(page) == ["box p1-b2", "item p1-b2"]
    page.keyboard.press("Tab")
    expect(items(page).nth(2)).to_be_focused()
    assert highlighted(page) == ["box p1-b3", "item p1-b3"]
    page.keyboard.press("Enter")
    expect(boxes(page).nth(2)).to_be_focused()
    screenshot(page, tmp_path, "layout-text-focused")


def test_at_phone_width_the_text_goes_under_the_image_and_nothing_scrolls_sideways(
    phone: Console, svc: JobService, tmp_path: Path
) -> None:
    page = phone.page
    _, document = open_layout_job(phone, svc)
    no_horizontal_scroll(page)
    boxes_sit_on_their_blocks(page, document)
    image = page.locator(".page-image img").bounding_box()
    listed = page.locator(".layout-blocks").bounding_box()
    assert image is not None
    assert listed is not None
    assert listed["y"] >= image["y"] + image["height"], "the text is under the image"
    assert image["x"] + image["width"] <= PHONE["width"]
    boxes(page).nth(2).click()  # a tap: its text, under the image, comes into view
    expect(items(page).nth(2)).to_be_in_viewport()
    no_horizontal_scroll(page)
    screenshot(page, tmp_path, "layout-phone")
    nothing_ran(phone)


def test_hostile_block_text_is_shown_as_text_and_runs_nothing(
    desktop: Console, svc: JobService, tmp_path: Path
) -> None:
    page = desktop.page
    open_layout_job(desktop, svc, HOSTILE)
    expect(boxes(page)).to_have_count(4)
    hostile = items(page).nth(3).locator(".layout-block-text")
    expect(hostile).to_have_text(HOSTILE_TEXT)
    boxes(page).nth(3).hover()
    assert highlighted(page) == ["box p1-b4", "item p1-b4"]
    nothing_ran(desktop)
    assert page.locator("#pages :is(script, img[onerror], [onerror], iframe, object, svg)").count() == 0
    assert page.locator("#pages img").count() == 1  # the page image alone
    screenshot(page, tmp_path, "layout-hostile")

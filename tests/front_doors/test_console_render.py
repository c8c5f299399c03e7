"""The console's server-side rendering of model output (services/api/console/render.py) and its signed
preview links (previews.py): what survives sanitising, and which links are refused."""

from __future__ import annotations

import hashlib
import uuid
from html.parser import HTMLParser
from typing import Any, cast

import pytest
from fastapi.testclient import TestClient

from docvl.db import api_keys, jobs
from docvl.db.api_keys import Caller
from docvl.db.database import Database
from docvl.errors import NotFound, Unauthenticated
from docvl.jobs.service import JobService
from docvl.tasks import TaskKind
from services.api.app import create_app
from services.api.console import previews, render
from services.api.settings import ApiSettings
from tests.support.console_jobs import HOSTILE_MARKDOWN, HOSTILE_PAGE, MARKUP


class _Markup(HTMLParser):
    """The elements, attribute names and URLs of a piece of HTML, as a browser's parser sees them."""

    def __init__(self, html: str) -> None:
        super().__init__()
        self.tags: set[str] = set()
        self.attributes: set[str] = set()
        self.urls: list[str] = []
        self.feed(html)
        self.close()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.add(tag)
        for name, value in attrs:
            self.attributes.add(name)
            if name in {"href", "src", "action", "data", "formaction"}:
                self.urls.append(value or "")


ACTIVE_TAGS = {"script", "img", "svg", "iframe", "object", "embed", "link", "base", "meta", "form", "style"}


def test_markdown_keeps_structure_and_drops_everything_active() -> None:
    html = render.markdown_html(HOSTILE_MARKDOWN + "\n| a | b |\n|:-|-:|\n| 1 | 2 |\n\n**bold** `code`\n")
    markup = _Markup(html)
    assert {"h1", "p", "a", "table", "td", "strong", "code"} <= markup.tags
    assert not markup.tags & ACTIVE_TAGS
    assert markup.attributes <= {"href", "rel"}
    assert markup.urls == ["https://example.org/"]  # not javascript:, data:, relative, or an image
    assert 'rel="noopener noreferrer nofollow"' in html
    assert "&lt;script&gt;window.__pwned" in html  # raw HTML is shown as text


def test_code_is_escaped_inside_highlighting_spans() -> None:
    html = render.code_html('x = "</code></pre><script>alert(1)</script>"\n')
    assert "<script>" not in html
    assert "&lt;/code&gt;&lt;/pre&gt;&lt;script&gt;" in html
    assert '<span class="n">x</span>' in html
    assert f"{render.CODE_CSS_SCOPE} .kn " in render.code_css()  # a class the spans use


@pytest.mark.parametrize("styled", [False, True])
def test_a_webpage_keeps_its_structure_and_loses_what_runs_or_loads(styled: bool) -> None:
    html = (render.styled_page_document if styled else render.page_document)(HOSTILE_PAGE)
    markup = _Markup(html)
    assert html.startswith("<!doctype html>")
    assert {"html", "head", "body", "h1", "p", "div", "a", "button"} <= markup.tags
    assert not markup.tags & ACTIVE_TAGS - {"meta"}
    assert not {name for name in markup.attributes if name.startswith("on")}
    assert markup.urls == []  # the one link was javascript:
    assert "Text that stays." in html
    assert "evil.invalid" not in html  # no URL to another origin survives, in markup or in CSS
    if not styled:  # the srcdoc document carries its own policy
        assert 'http-equiv="Content-Security-Policy"' in html


def test_the_styled_preview_keeps_css_that_loads_nothing() -> None:
    html = render.styled_page_document(
        "<style>h1 { color: red }</style><style>p { background: u\\72l(http://evil.invalid/) }</style>"
        '<h1 class="title" style="font-size: 3em">T</h1><p style="background: URL(x)">p</p>'
    )
    assert "<style>h1 { color: red }</style>" in html
    assert '<h1 class="title" style="font-size: 3em">T</h1>' in html
    assert "<p>p</p>" in html
    assert "evil" not in html
    assert "style=" not in render.page_document(MARKUP + '<p style="color: red">x</p>')


def _service(db: Database) -> JobService:
    """A job service for reads of the job record only: no storage, limits or dispatch behind it."""
    unused = cast(Any, None)
    return JobService(db, unused, unused, unused, source_store=unused)


def _job(db: Database, owner: str) -> uuid.UUID:
    with db.transaction() as s:
        document = jobs.get_or_create_document(
            s,
            sha256=hashlib.sha256(owner.encode()).hexdigest(),
            size_bytes=1,
            media_type="image/png",
            object_key="inputs/x",
        )
        new = jobs.NewJob(owner=owner, document_id=document.id, tasks=[TaskKind.WEB2HTML])
        job, _ = jobs.create_job(s, new)
        return job.id


def test_preview_links_are_bound_to_the_page_the_key_and_the_time(db: Database) -> None:
    with db.transaction() as s:
        created = api_keys.create_key(s, "alice")
        caller = Caller("alice", created.key.id)
        other = api_keys.create_key(s, "bob").key.id
    job_id = _job(db, "alice")
    svc = _service(db)
    path = previews.link(previews.signing_key(svc, caller), caller, job_id, 1, now=1000)
    assert path.startswith(f"/console/previews/{job_id}/1/{caller.key_id.hex}.")
    token = path.rsplit("/", 1)[1]
    assert previews.check(svc, job_id, 1, token, now=1000 + previews.PREVIEW_TTL_S) == caller
    for job, page, forged, at in (
        (job_id, 1, token, 1001 + previews.PREVIEW_TTL_S),  # expired
        (job_id, 2, token, 1000),  # another page
        (uuid.uuid4(), 1, token, 1000),  # another job
        (job_id, 1, token.replace(caller.key_id.hex, other.hex), 1000),  # another key
        (job_id, 1, token[:-1] + ("A" if token[-1] != "A" else "B"), 1000),  # a changed signature
        (job_id, 1, "not-a-token", 1000),
    ):
        with pytest.raises(Unauthenticated):
            previews.check(svc, job, page, forged, now=at)
    with db.transaction() as s:
        api_keys.revoke(s, caller.key_id)
    with pytest.raises(Unauthenticated):
        previews.check(svc, job_id, 1, token, now=1000)
    with pytest.raises(Unauthenticated):  # and a revoked key makes no new links
        previews.signing_key(svc, caller)


def test_a_preview_link_ends_when_the_job_is_not_the_owners(db: Database) -> None:
    with db.transaction() as s:
        caller = Caller("carol", api_keys.create_key(s, "carol").key.id)
    job_id = _job(db, "dave")
    svc = _service(db)
    token = previews.link(previews.signing_key(svc, caller), caller, job_id, 1).rsplit("/", 1)[1]
    with pytest.raises(NotFound):
        previews.check(svc, job_id, 1, token)


def test_the_console_is_served_with_its_policy_and_hides_no_other_route() -> None:
    app = create_app(ApiSettings(), service=cast(JobService, object()))  # these routes need no service
    with TestClient(app) as client:
        page = client.get("/")
        assert page.status_code == 200
        assert page.headers["content-type"].startswith("text/html")
        policy = page.headers["content-security-policy"]
        for directive in (
            "default-src 'none'",
            "script-src 'self'",
            "style-src 'self'",
            "connect-src 'self'",
            "base-uri 'none'",
            "frame-ancestors 'none'",
        ):
            assert directive in policy
        assert "<script>" not in page.text  # no inline script: only <script src>
        assert "http://" not in page.text
        assert "https://" not in page.text
        for asset, kind in (("console.js", "javascript"), ("console.css", "css"), ("code.css", "css")):
            served = client.get(f"/console/{asset}")
            assert served.status_code == 200
            assert kind in served.headers["content-type"]
            assert "//cdn" not in served.text
        missing = client.get("/console/secrets.txt")
        assert missing.status_code == 404
        assert missing.json()["error"]["code"] == "not_found"
        assert client.get("/healthz").json() == {"status": "ok"}
        assert "swagger-ui" in client.get("/docs").text
        assert "/v1/jobs/{job_id}/pages" in client.get("/openapi.json").json()["paths"]

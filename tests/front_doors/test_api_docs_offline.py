"""The REST API's documentation pages (/docs, Swagger UI; /redoc, ReDoc) load every script, stylesheet
and icon from the API itself (the installed fastapi-offline package), never from a CDN: air-gapped, too."""

from __future__ import annotations

from collections.abc import Iterator
from html.parser import HTMLParser
from typing import cast
from urllib.parse import urljoin, urlsplit

import pytest
from fastapi.testclient import TestClient

from docvl.jobs.service import JobService
from services.api.app import create_app
from services.api.settings import ApiSettings

BASE = "http://testserver"


class _Assets(HTMLParser):
    """The URLs a page loads: every `<script src>` and `<link href>`."""

    def __init__(self) -> None:
        super().__init__()
        self.scripts: list[str] = []
        self.links: list[tuple[str, str]] = []  # (rel, href)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = {name: value or "" for name, value in attrs}
        if tag == "script" and "src" in values:
            self.scripts.append(values["src"])
        if tag == "link" and "href" in values:
            self.links.append((values.get("rel", ""), values["href"]))


def _assets(html: str) -> _Assets:
    parser = _Assets()
    parser.feed(html)
    parser.close()
    return parser


@pytest.fixture(scope="module")
def client() -> Iterator[TestClient]:
    """The app without the platform: the docs pages never touch the job service, so a stand-in will do."""
    with TestClient(create_app(ApiSettings(), service=cast(JobService, object())), base_url=BASE) as client:
        yield client


def _same_origin(url: str) -> None:
    assert "http://" not in url, url
    assert "https://" not in url, url
    assert not url.startswith("//"), url
    assert urlsplit(urljoin(BASE + "/docs", url)).netloc == urlsplit(BASE).netloc, url


def _fetch(client: TestClient, url: str, kind: str, min_bytes: int) -> None:
    response = client.get(url)
    assert response.status_code == 200, url
    assert kind in response.headers["content-type"], (url, response.headers["content-type"])
    assert len(response.content) >= min_bytes, (url, len(response.content))


def test_swagger_ui_is_served_from_the_package(client: TestClient) -> None:
    page = client.get("/docs")
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    assert "SwaggerUIBundle(" in page.text
    assert "cdn.jsdelivr.net" not in page.text
    assert "unpkg.com" not in page.text
    assets = _assets(page.text)
    assert assets.scripts, "no <script src> on /docs"
    assert any(rel == "stylesheet" for rel, _ in assets.links), "no stylesheet on /docs"
    for src in assets.scripts:
        _same_origin(src)
        _fetch(client, src, "javascript", 100_000)
    for rel, href in assets.links:
        _same_origin(href)
        if rel == "stylesheet":
            _fetch(client, href, "text/css", 10_000)
        else:
            _fetch(client, href, "image/", 100)
    redirect = client.get("/docs/oauth2-redirect")
    assert redirect.status_code == 200
    assert "https://" not in redirect.text


def test_redoc_is_served_from_the_package(client: TestClient) -> None:
    page = client.get("/redoc")
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    assert "<redoc" in page.text
    assert "cdn.jsdelivr.net" not in page.text
    assert "fonts.googleapis.com" not in page.text
    assets = _assets(page.text)
    assert assets.scripts, "no <script src> on /redoc"
    for src in assets.scripts:
        _same_origin(src)
        _fetch(client, src, "javascript", 100_000)
    for _rel, href in assets.links:
        _same_origin(href)
        _fetch(client, href, "image/", 100)


def test_openapi_schema_is_still_served(client: TestClient) -> None:
    response = client.get("/openapi.json")
    assert response.status_code == 200
    schema = response.json()
    assert schema["info"]["title"] == "docvl"
    assert "/v1/jobs" in schema["paths"]
    assert not any(path.startswith(("/docs", "/redoc", "/static")) for path in schema["paths"])

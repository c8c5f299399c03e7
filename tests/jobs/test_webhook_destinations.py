"""Webhook receivers must be public unless private ones are allowed: checked at submission for literal
addresses and again at delivery, after resolving the name (no network needed: literals and localhost)."""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, HTTPServer

import httpx
import pytest

from docvl.errors import InvalidInput
from docvl.jobs import webhooks
from docvl.jobs.intake import Limits, parse_request
from docvl.jobs.options import SubmitOptions

PRIVATE = [
    "http://127.0.0.1:8080/hook",
    "http://localhost/hook",
    "http://10.1.2.3/hook",
    "http://192.168.0.5/hook",
    "http://169.254.169.254/latest/meta-data",  # a cloud metadata service
    "http://[::1]/hook",
    "http://0.0.0.0/hook",
]


def limits(allow_private: bool) -> Limits:
    return Limits(1024, 10, 4, 100, 10, 5, webhook_allow_private=allow_private)


def checked(allow_private: bool, url: str) -> str | None:
    """The webhook address of an OCR submission, as intake takes it."""
    return parse_request(
        limits(allow_private), SubmitOptions(tasks=["ocr"], webhook_url=url)
    ).given.webhook_url


@pytest.mark.parametrize("url", PRIVATE)
def test_private_receivers_are_refused_unless_allowed(url: str) -> None:
    with pytest.raises(InvalidInput, match="non-public"):
        checked(False, url)
    with pytest.raises(InvalidInput, match="DOCVL_WEBHOOK_ALLOW_PRIVATE"):
        webhooks.check_destination(url, allow_private=False)
    assert checked(True, url) == url
    webhooks.check_destination(url, allow_private=True)


def test_public_receivers_pass() -> None:
    url = "https://93.184.215.14/hook"
    assert checked(False, url) == url
    webhooks.check_destination(url, allow_private=False)
    # A name is accepted at submission and resolved only when the webhook is delivered.
    assert checked(False, "https://hooks.example.com/x")


@pytest.mark.parametrize("url", ["http://host:port/x", "http://[::1/x", "http:///x"])
def test_malformed_urls_are_refused(url: str) -> None:
    with pytest.raises(InvalidInput, match="not usable"):
        checked(True, url)


def test_a_delivery_connects_to_the_address_that_was_checked() -> None:
    url, host, extensions = webhooks.pinned("https://hooks.example.com:8443/in?x=1", "93.184.215.14")
    assert url == "https://93.184.215.14:8443/in?x=1"
    assert host == {"Host": "hooks.example.com:8443"}
    assert extensions == {"sni_hostname": "hooks.example.com"}  # the certificate is checked for the name
    assert webhooks.pinned("http://h.example.com/x", "2606:2800::1")[0] == "http://[2606:2800::1]/x"


def test_a_name_resolving_to_loopback_is_refused_at_delivery() -> None:
    delivery = webhooks.Delivery("http://localhost:9/hook", b"{}", "sha256=0")
    with pytest.raises(InvalidInput, match="non-public"):
        webhooks.deliver(delivery, 1.0)


def test_a_pinned_request_reaches_the_address_with_the_receivers_host_name() -> None:
    seen: list[str] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            seen.append(self.headers["Host"])
            self.send_response(204)
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = HTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        port = server.server_address[1]
        url, host, _ = webhooks.pinned(f"http://receiver.example.com:{port}/hook", "127.0.0.1")
        assert httpx.post(url, content=b"{}", headers=host, timeout=5).status_code == 204
    finally:
        server.shutdown()
        server.server_close()
        thread.join()
    assert seen == [f"receiver.example.com:{port}"]

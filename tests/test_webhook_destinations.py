"""Webhook receivers must be public unless private ones are allowed: checked at submission for literal
addresses and again at delivery, after resolving the name (no network needed: literals and localhost)."""

from __future__ import annotations

import pytest

from docvl import webhooks
from docvl.errors import InvalidInput
from docvl.intake import Limits, parse_request

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


@pytest.mark.parametrize("url", PRIVATE)
def test_private_receivers_are_refused_unless_allowed(url: str) -> None:
    with pytest.raises(InvalidInput, match="non-public"):
        parse_request(limits(False), tasks=["ocr"], webhook_url=url)
    with pytest.raises(InvalidInput, match="DOCVL_WEBHOOK_ALLOW_PRIVATE"):
        webhooks.check_destination(url, allow_private=False)
    assert parse_request(limits(True), tasks=["ocr"], webhook_url=url).webhook_url == url
    webhooks.check_destination(url, allow_private=True)


def test_public_receivers_pass() -> None:
    url = "https://93.184.215.14/hook"
    assert parse_request(limits(False), tasks=["ocr"], webhook_url=url).webhook_url == url
    webhooks.check_destination(url, allow_private=False)
    # A name is accepted at submission and resolved only when the webhook is delivered.
    assert parse_request(limits(False), tasks=["ocr"], webhook_url="https://hooks.example.com/x").webhook_url


@pytest.mark.parametrize("url", ["http://host:port/x", "http://[::1/x", "http:///x"])
def test_malformed_urls_are_refused(url: str) -> None:
    with pytest.raises(InvalidInput, match="not usable"):
        parse_request(limits(True), tasks=["ocr"], webhook_url=url)

"""Webhooks: when a job ends, a signed POST of the job to the URL given at submission.

The body is the job as JSON (the same shape as GET /v1/jobs/{id}) with an event id; the header
`X-Docvl-Signature: sha256=<hex>` is the HMAC-SHA256 of the exact body bytes with the owner's webhook
secret. Receivers recompute it and compare in constant time (`verify`).
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import json
import socket
import uuid
from dataclasses import dataclass
from urllib.parse import urlsplit

import httpx

from docvl.db import api_keys, jobs
from docvl.db.database import Database
from docvl.errors import InvalidInput, Unavailable
from docvl.jobs.views import JobView

SIGNATURE_HEADER = "X-Docvl-Signature"
EVENT_HEADER = "X-Docvl-Event"


def sign(secret: str, body: bytes) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def verify(secret: str, body: bytes, signature: str) -> bool:
    return hmac.compare_digest(sign(secret, body), signature)


@dataclass(frozen=True)
class Delivery:
    url: str
    body: bytes
    signature: str


def prepare(db: Database, job_id: uuid.UUID) -> Delivery | None:
    """The delivery for the job's end, or None: no webhook asked for, job not ended, or already delivered."""
    with db.transaction() as s:
        job = jobs.get_job(s, job_id)
        url = job.options.get("webhook_url")
        view = JobView.of(job)
        if not url or not view.status.finished:
            return None
        if any(e.kind == "webhook" and e.data.get("delivered") for e in jobs.events(s, job_id)):
            return None
        secret = api_keys.webhook_secret(s, job.owner)
    body = json.dumps({"event": "job.finished", "job": view.model_dump(mode="json")}).encode()
    return Delivery(url, body, sign(secret, body))


def check_destination(url: str, *, allow_private: bool) -> str | None:
    """Refuse a receiver on a loopback, private, link-local or otherwise non-public address (the cloud
    metadata service, the platform's own database...) unless private receivers are allowed. The name is
    resolved now, at delivery, since what it points to can change after submission. Returns the checked
    address to connect to (None when private receivers are allowed: nothing was checked)."""
    if allow_private:
        return None
    host = urlsplit(url).hostname or ""
    try:
        addresses = [str(info[4][0]) for info in socket.getaddrinfo(host, None)]
    except socket.gaierror as exc:
        raise Unavailable(f"the webhook host {host!r} does not resolve: {exc}") from exc
    private = sorted({a for a in addresses if not ipaddress.ip_address(a.split("%")[0]).is_global})
    if private or not addresses:
        raise InvalidInput(
            f"the webhook host {host!r} is at a non-public address ({', '.join(private)}): webhooks go to "
            "public receivers unless DOCVL_WEBHOOK_ALLOW_PRIVATE=true"
        )
    return addresses[0]


def pinned(url: str, address: str) -> tuple[str, dict[str, str], dict[str, str]]:
    """(URL naming the address, Host header, TLS server name): the connection goes to the address that
    was checked, so a name that resolves differently a moment later (DNS rebinding) cannot redirect it,
    while the receiver still sees its own host name and its certificate is checked against it."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    literal = f"[{address}]" if ":" in address else address
    netloc = f"{literal}:{parts.port}" if parts.port else literal
    host_header = parts.netloc.rsplit("@", 1)[-1]
    return parts._replace(netloc=netloc).geturl(), {"Host": host_header}, {"sni_hostname": host}


def deliver(delivery: Delivery, timeout_s: float, *, allow_private: bool = False) -> int:
    """POST it; the receiver's status code. 2xx is delivered; 5xx, 429 and network errors are Unavailable
    (retry later); other codes, and a receiver at a refused address, are InvalidInput (retrying will not
    help)."""
    address = check_destination(delivery.url, allow_private=allow_private)
    url, host_header, extensions = delivery.url, dict[str, str](), dict[str, str]()
    if address is not None:
        url, host_header, extensions = pinned(delivery.url, address)
    try:
        with httpx.Client(timeout=timeout_s, follow_redirects=False) as client:
            request = client.build_request(
                "POST",
                url,
                content=delivery.body,
                headers={
                    "Content-Type": "application/json",
                    SIGNATURE_HEADER: delivery.signature,
                    EVENT_HEADER: "job.finished",
                    "User-Agent": "docvl-webhooks",
                    **host_header,
                },
                extensions=extensions,
            )
            response = client.send(request)
    except httpx.HTTPError as exc:
        raise Unavailable(f"the webhook receiver did not answer: {type(exc).__name__}: {exc}") from exc
    if response.status_code >= 500 or response.status_code == 429:
        raise Unavailable(f"the webhook receiver answered {response.status_code}")
    if response.status_code >= 300:
        raise InvalidInput(f"the webhook receiver refused with {response.status_code}")
    return response.status_code


def record(
    db: Database, job_id: uuid.UUID, attempt: int, *, status_code: int | None, error: str | None
) -> None:
    """Note the attempt in the job's events."""
    data = {"attempt": attempt, "status_code": status_code, "delivered": error is None, "error": error}
    with db.transaction() as s:
        jobs.add_event(s, job_id, "webhook", data)

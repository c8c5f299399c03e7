"""Checking a submission before anything is stored: its fields, then its document, spooled and inspected.

Every refusal is an InvalidInput (or a DocumentError) whose message says what to fix.
"""

from __future__ import annotations

import hashlib
import ipaddress
import json
import re
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO
from urllib.parse import urlsplit

from docvl.documents import PDF, UnsupportedDocument, decrypt_pdf, open_document, sniff_media_type
from docvl.errors import InvalidInput
from docvl.office import is_office_head, office_type
from docvl.page_ranges import PageRanges
from docvl.storage.base import INTERNAL_PREFIXES, HashingReader
from docvl.tasks import TaskKind

IDEMPOTENCY_KEY = re.compile(r"[A-Za-z0-9._:\-]{1,255}")
MAX_URL_CHARS = 2048
MAX_PASSWORD_CHARS = 1024


@dataclass(frozen=True)
class Limits:
    max_upload_bytes: int
    max_pages: int
    max_tasks: int
    max_question_chars: int
    max_in_flight: int
    retry_after_s: int
    webhook_allow_private: bool = False
    source_buckets: tuple[str, ...] = ()
    office_off: str | None = "Office input is not configured"  # why Office documents are refused; None: taken
    max_unpacked_bytes: int = 512 * 1024 * 1024


@dataclass(frozen=True)
class JobRequest:
    """A checked submission, without its document."""

    tasks: list[TaskKind]
    question: str | None = None
    priority: int = 5
    webhook_url: str | None = None
    idempotency_key: str | None = None
    pages: PageRanges | None = None
    # A PDF's password opens it once, at intake: the document is stored decrypted and the password is
    # never stored, logged, returned, or part of the fingerprint below.
    password: str | None = field(default=None, repr=False)

    def options(self) -> dict[str, str]:
        given = {
            "question": self.question,
            "webhook_url": self.webhook_url,
            "pages": None if self.pages is None else str(self.pages),
        }
        return {key: value for key, value in given.items() if value is not None}

    def fingerprint(self, sha256: str) -> str:
        """Same fields and same document content (as uploaded): the same request (for idempotency keys)."""
        fields = {
            "tasks": sorted(t.value for t in self.tasks),
            "question": self.question,
            "priority": self.priority,
            "webhook_url": self.webhook_url,
            "document": sha256,
        } | ({} if self.pages is None else {"pages": str(self.pages)})
        return hashlib.sha256(json.dumps(fields, sort_keys=True).encode()).hexdigest()


def parse_request(
    limits: Limits,
    *,
    tasks: Sequence[str],
    question: str | None = None,
    priority: int | None = None,
    webhook_url: str | None = None,
    idempotency_key: str | None = None,
    pages: str | None = None,
    password: str | None = None,
) -> JobRequest:
    if not tasks:
        raise InvalidInput(f"name at least one task: {', '.join(t.value for t in TaskKind)}")
    kinds = list(dict.fromkeys(TaskKind.parse(t) for t in tasks))
    if len(kinds) > limits.max_tasks:
        raise InvalidInput(f"{len(kinds)} tasks requested; at most {limits.max_tasks} per job")
    question = question.strip() if question is not None and question.strip() else None
    if TaskKind.QA in kinds and question is None:
        raise InvalidInput("the qa task needs a question: pass `question`")
    if question is not None and TaskKind.QA not in kinds:
        raise InvalidInput("a question is only used by the qa task: add qa to the tasks or drop it")
    if question is not None and len(question) > limits.max_question_chars:
        raise InvalidInput(
            f"the question is {len(question)} characters, over the limit of {limits.max_question_chars}"
        )
    priority = 5 if priority is None else priority
    if not 0 <= priority <= 9:
        raise InvalidInput(f"priority {priority} is out of range: use 0 (lowest) to 9 (highest)")
    return JobRequest(
        tasks=kinds,
        question=question,
        priority=priority,
        webhook_url=_checked_url(webhook_url, limits.webhook_allow_private),
        idempotency_key=_checked_key(idempotency_key),
        pages=PageRanges.parse(pages) if pages is not None and pages.strip() else None,
        password=_checked_password(password),
    )


def _checked_password(password: str | None) -> str | None:
    if password is None or password == "":
        return None
    if len(password) > MAX_PASSWORD_CHARS or "\0" in password:
        raise InvalidInput(f"the password must be at most {MAX_PASSWORD_CHARS} characters, without NUL")
    return password


def _checked_url(url: str | None, allow_private: bool) -> str | None:
    if url is None or not url.strip():
        return None
    url = url.strip()
    try:
        parts = urlsplit(url)
        host, scheme = parts.hostname, parts.scheme
        parts.port  # noqa: B018  # raises ValueError for a port that is not a number
    except ValueError:  # a malformed address or port
        host, scheme = None, ""
    if scheme not in ("http", "https") or not host or len(url) > MAX_URL_CHARS:
        raise InvalidInput(
            f"webhook_url {url[:100]!r} is not usable: give an http:// or https:// URL with a host, "
            f"at most {MAX_URL_CHARS} characters"
        )
    if not allow_private and _non_public(host):
        raise InvalidInput(
            f"webhook_url {url[:100]!r} points at a non-public address: webhooks go to public receivers "
            "(an operator can allow private ones with DOCVL_WEBHOOK_ALLOW_PRIVATE=true)"
        )
    return url


def _non_public(host: str) -> bool:
    """A literal address that is not global, or localhost; names are checked again when delivering."""
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return not ipaddress.ip_address(host).is_global
    except ValueError:
        return False


def _checked_key(key: str | None) -> str | None:
    if key is None:
        return None
    if not IDEMPOTENCY_KEY.fullmatch(key):
        raise InvalidInput(
            "the Idempotency-Key must be 1 to 255 characters of letters, digits and . _ : - "
            "(a UUID works well)"
        )
    return key


def parse_source(uri: str, limits: Limits) -> tuple[str, str]:
    """(bucket, key) of an `s3://bucket/key` URI in a bucket callers may name (DOCVL_SOURCE_BUCKETS), outside
    the platform's own objects (other callers' inputs, pages and outputs)."""
    malformed = InvalidInput(f"source {uri[:200]!r} is not a storage URI: write it as s3://bucket/key")
    try:
        parts = urlsplit(uri.strip())
    except ValueError as exc:
        raise malformed from exc
    bucket, key = parts.netloc, parts.path.lstrip("/")
    if parts.scheme != "s3" or not bucket or not key or parts.query or parts.fragment:
        raise malformed
    if bucket not in limits.source_buckets:
        allowed = ", ".join(limits.source_buckets)
        raise InvalidInput(
            f"documents may be named in storage only in the bucket(s) {allowed}: upload this one instead"
            if allowed
            else "naming a document in storage is not enabled here (DOCVL_SOURCE_BUCKETS): upload it instead"
        )
    if key.startswith(INTERNAL_PREFIXES) or ".." in key.split("/"):
        raise InvalidInput(f"{uri[:200]} is in the platform's own storage, not a document you put there")
    return bucket, key


@dataclass(frozen=True)
class Spooled:
    """A document copied to a local file, hashed and inspected."""

    path: Path  # what is stored: the upload, or an encrypted PDF's decrypted copy
    sha256: str  # of the upload as sent
    size: int
    media_type: str
    page_count: int  # the document's; 0 for an Office document (known once it is converted)
    chosen_pages: int  # the pages that will be processed (likewise)


@contextmanager
def spooled(
    stream: BinaryIO, limits: Limits, directory: Path | None = None, request: JobRequest | None = None
) -> Iterator[Spooled]:
    """Copy the stream to a temporary file, cut off past the upload limit (TooLarge), then check that it is
    a document this platform can process within the page limit, with the request's page range (a
    DocumentError names the cause). An encrypted PDF is decrypted with the request's password, and the
    decrypted copy is what is stored. The files are removed afterwards."""
    password = request.password if request is not None else None
    pages = request.pages if request is not None else None
    with tempfile.TemporaryDirectory(prefix="docvl-intake-", dir=directory) as tmp:
        path = Path(tmp) / "document"
        reader = HashingReader(stream, max_bytes=limits.max_upload_bytes)
        with path.open("wb") as out:
            while chunk := reader.read():
                out.write(chunk)
        with path.open("rb") as fh:
            head = fh.read(1024)
        if is_office_head(head):  # converted to PDF by the job runner; checked here as far as it can be
            media_type = office_type(path, max_unpacked_bytes=limits.max_unpacked_bytes)
            if limits.office_off is not None:
                raise UnsupportedDocument(f"this is an Office document, not taken here: {limits.office_off}")
            yield Spooled(path, reader.hexdigest(), reader.size, media_type, 0, 0)
            return
        media_type = sniff_media_type(head)
        decrypted = Path(tmp) / "decrypted"
        if media_type == PDF and password is not None and decrypt_pdf(path, password, decrypted):
            path = decrypted
        with open_document(path, max_pages=limits.max_pages, pages=pages) as opened:
            page_count, chosen = opened.page_count, len(opened.chosen)
        yield Spooled(path, reader.hexdigest(), reader.size, media_type, page_count, chosen)

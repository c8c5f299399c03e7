"""Checking a submission before anything is stored: its fields, then its document, spooled and inspected.

Every refusal is an InvalidInput (or a DocumentError) whose message says what to fix.
"""

from __future__ import annotations

import hashlib
import ipaddress
import json
import re
import tempfile
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO
from urllib.parse import urlsplit

from pydantic import SecretStr

from docvl.documents import PDF, UnsupportedDocument, decrypt_pdf, open_document, sniff_media_type
from docvl.errors import InvalidInput
from docvl.jobs.options import SubmitOptions, control_character
from docvl.office import is_office_head, office_type
from docvl.page_ranges import PageRanges
from docvl.storage.base import INTERNAL_PREFIXES, HashingReader
from docvl.tasks import TaskKind

IDEMPOTENCY_KEY = re.compile(r"[A-Za-z0-9._:\-]{1,255}")
MAX_URL_CHARS = 2048
MAX_PASSWORD_CHARS = 1024
DEFAULT_PRIORITY = 5


def _every_task(tasks: Sequence[TaskKind]) -> None:
    """Takes every task: where no fleet of model workers is known."""


@dataclass(frozen=True)
class Limits:
    max_upload_bytes: int
    max_pages: int
    # The front doors set all of these (FrontDoorSettings); the sweep needs none of the last four.
    max_tasks: int = len(TaskKind)
    max_question_chars: int = 2000
    max_in_flight: int = 64
    retry_after_s: int = 10
    webhook_allow_private: bool = False
    source_buckets: tuple[str, ...] = ()
    office_off: str | None = "Office input is not configured"  # why Office documents are refused; None: taken
    max_unpacked_bytes: int = 512 * 1024 * 1024
    # InvalidInput for a task no model worker serves (the front doors' fleet, docvl.inference.routing);
    # by default every task is taken.
    served: Callable[[Sequence[TaskKind]], None] = _every_task


@dataclass(frozen=True)
class JobRequest:
    """A checked submission, without its document: its options as intake left them (blank ones dropped,
    text trimmed, the default priority filled in) and what intake read from them."""

    given: SubmitOptions
    tasks: list[TaskKind]
    priority: int
    pages: PageRanges | None

    @property
    def idempotency_key(self) -> str | None:
        return self.given.idempotency_key

    @property
    def dry_run(self) -> bool:
        """A quote is asked for: the request is checked, then priced, and nothing is stored."""
        return self.given.dry_run is True

    @property
    def password(self) -> str | None:
        """A PDF's password opens it once, at intake: the document is stored decrypted and the password is
        never stored, logged, returned, or part of the fingerprint below."""
        return None if self.given.password is None else self.given.password.get_secret_value()

    def options(self) -> dict[str, str]:
        """What the job record keeps of the options."""
        given = {
            "question": self.given.question,
            "webhook_url": self.given.webhook_url,
            "pages": None if self.pages is None else str(self.pages),
            "reuse": "false" if self.given.reuse is False else None,
        }
        return {key: value for key, value in given.items() if value is not None}

    def fingerprint(self, sha256: str) -> str:
        """Same fields and same document content (as uploaded): the same request (for idempotency keys)."""
        fields = {
            "tasks": sorted(t.value for t in self.tasks),
            "question": self.given.question,
            "priority": self.priority,
            "webhook_url": self.given.webhook_url,
            "document": sha256,
        } | ({} if self.pages is None else {"pages": str(self.pages)})
        fields |= {"reuse": False} if self.given.reuse is False else {}
        return hashlib.sha256(json.dumps(fields, sort_keys=True).encode()).hexdigest()


def parse_request(limits: Limits, options: SubmitOptions) -> JobRequest:
    """The submission checked against the limits; InvalidInput says what to fix."""
    if not options.tasks:
        raise InvalidInput(f"name at least one task: {', '.join(t.value for t in TaskKind)}")
    kinds = list(dict.fromkeys(TaskKind.parse(t) for t in options.tasks))
    limits.served(kinds)
    if len(kinds) > limits.max_tasks:
        raise InvalidInput(f"{len(kinds)} tasks requested; at most {limits.max_tasks} per job")
    question = options.question
    question = question.strip() if question is not None and question.strip() else None
    if TaskKind.QA in kinds and question is None:
        raise InvalidInput("the qa task needs a question: pass `question`")
    if question is not None and TaskKind.QA not in kinds:
        raise InvalidInput("a question is only used by the qa task: add qa to the tasks or drop it")
    if question is not None and len(question) > limits.max_question_chars:
        raise InvalidInput(
            f"the question is {len(question)} characters, over the limit of {limits.max_question_chars}"
        )
    priority = DEFAULT_PRIORITY if options.priority is None else options.priority
    if not 0 <= priority <= 9:
        raise InvalidInput(f"priority {priority} is out of range: use 0 (lowest) to 9 (highest)")
    pages = options.pages
    password = None if options.password is None else options.password.get_secret_value()
    checked = {
        "question": question,
        "priority": priority,
        "webhook_url": _checked_url(options.webhook_url, limits.webhook_allow_private),
        "idempotency_key": _checked_key(options.idempotency_key),
        "pages": pages if pages is not None and pages.strip() else None,
        "password": _checked_password(password),
    }
    given = options.model_copy(update={"tasks": [t.value for t in kinds], **checked})
    ranges = PageRanges.parse(given.pages) if given.pages is not None else None
    return JobRequest(given=given, tasks=kinds, priority=priority, pages=ranges)


def _checked_password(password: str | None) -> SecretStr | None:
    if password is None or password == "":
        return None
    if len(password) > MAX_PASSWORD_CHARS:
        raise InvalidInput(f"the password must be at most {MAX_PASSWORD_CHARS} characters")
    return SecretStr(password)


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
    found = control_character(uri)
    if found is not None:
        raise InvalidInput(f"`source` holds {found}: it may hold none")
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
class Copied:
    """A document copied to a local file and hashed, not yet inspected."""

    path: Path
    sha256: str
    size: int


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
    """The stream copied (`copied`) and inspected (`inspected`): what every submission goes through before
    anything is stored. The files are removed afterwards."""
    with copied(stream, limits, directory) as copy:
        yield inspected(copy, limits, request)


@contextmanager
def copied(stream: BinaryIO, limits: Limits, directory: Path | None = None) -> Iterator[Copied]:
    """Copy the stream to a temporary file, cut off past the upload limit (TooLarge), hashing it as it
    goes. The files are removed afterwards."""
    with tempfile.TemporaryDirectory(prefix="docvl-intake-", dir=directory) as tmp:
        path = Path(tmp) / "document"
        reader = HashingReader(stream, max_bytes=limits.max_upload_bytes)
        with path.open("wb") as out:
            while chunk := reader.read():
                out.write(chunk)
        yield Copied(path, reader.hexdigest(), reader.size)


def inspected(copy: Copied, limits: Limits, request: JobRequest | None = None) -> Spooled:
    """Check that the copy is a document this platform can process within the page limit, with the
    request's page range (a DocumentError names the cause). An encrypted PDF is decrypted with the
    request's password, beside the copy, and the decrypted copy is what is stored."""
    password = request.password if request is not None else None
    pages = request.pages if request is not None else None
    path = copy.path
    with path.open("rb") as fh:
        head = fh.read(1024)
    if is_office_head(head):  # converted to PDF by the job runner; checked here as far as it can be
        media_type = office_type(path, max_unpacked_bytes=limits.max_unpacked_bytes)
        if limits.office_off is not None:
            raise UnsupportedDocument(f"this is an Office document, not taken here: {limits.office_off}")
        return Spooled(path, copy.sha256, copy.size, media_type, 0, 0)
    media_type = sniff_media_type(head)
    decrypted = path.with_name(path.name + ".decrypted")
    if media_type == PDF and password is not None and decrypt_pdf(path, password, decrypted):
        path = decrypted
    with open_document(path, max_pages=limits.max_pages, pages=pages) as opened:
        page_count, chosen = opened.page_count, len(opened.chosen)
    return Spooled(path, copy.sha256, copy.size, media_type, page_count, chosen)

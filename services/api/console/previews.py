"""Links to a web2html page's styled preview, for the console's iframe (a frame cannot send the API key,
and the key never goes into a URL). A link names one job's page, expires after PREVIEW_TTL_S, and is
signed with the stored hash of the API key that asked for it: revoking the key ends its links, and nothing
but the server, which keeps the hash, can make one."""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
import uuid

from docvl.db.api_keys import Caller
from docvl.errors import Unauthenticated
from docvl.jobs.service import JobService

PREVIEW_TTL_S = 600


def signing_key(svc: JobService, caller: Caller) -> str:
    """The secret that signs this caller's links (its key's stored hash)."""
    found = svc.signing_key(caller.key_id)
    if found is None:
        raise Unauthenticated("unknown or revoked API key: ask for a new one (docvl keys create)")
    return found[1]


def link(key: str, caller: Caller, job_id: uuid.UUID, page: int, now: float | None = None) -> str:
    """The path of the page's preview, for this caller (`key`: its signing_key), valid for PREVIEW_TTL_S."""
    expires = int(now if now is not None else time.time()) + PREVIEW_TTL_S
    token = f"{caller.key_id.hex}.{expires}.{_signature(key, job_id, page, expires)}"
    return f"/console/previews/{job_id}/{page}/{token}"


def check(svc: JobService, job_id: uuid.UUID, page: int, token: str, now: float | None = None) -> Caller:
    """The caller the link was made for, if `token` is a live link to this job's page; Unauthenticated
    otherwise (the message never says which part failed). The job must still be that owner's (NotFound)."""
    refused = Unauthenticated("this preview link is not valid (or has expired): reload the job's page")
    try:
        key_id, expires_text, signature = token.split(".")
        found = svc.signing_key(uuid.UUID(hex=key_id))
        expires = int(expires_text)
    except ValueError:
        raise refused from None
    if found is None or expires < (now if now is not None else time.time()):
        raise refused
    caller, key = found
    if not hmac.compare_digest(signature, _signature(key, job_id, page, expires)):
        raise refused
    svc.get(caller, job_id)  # NotFound once it is not theirs
    return caller


def _signature(key: str, job_id: uuid.UUID, page: int, expires: int) -> str:
    message = f"docvl web2html preview|{job_id}|{page}|{expires}".encode()
    digest = hmac.new(key.encode(), message, hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).decode().rstrip("=")

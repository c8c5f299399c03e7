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

from sqlalchemy.orm import Session

from docvl.db import jobs
from docvl.db.api_keys import Caller
from docvl.db.models import ApiKey
from docvl.errors import Unauthenticated

PREVIEW_TTL_S = 600


def link(session: Session, caller: Caller, job_id: uuid.UUID, page: int, now: float | None = None) -> str:
    """The path of the page's preview, for this caller, valid for PREVIEW_TTL_S."""
    key = session.get(ApiKey, caller.key_id)
    if key is None:
        raise Unauthenticated("unknown or revoked API key: ask for a new one (docvl keys create)")
    expires = int(now if now is not None else time.time()) + PREVIEW_TTL_S
    token = f"{caller.key_id.hex}.{expires}.{_signature(key.key_hash, job_id, page, expires)}"
    return f"/console/previews/{job_id}/{page}/{token}"


def check(session: Session, job_id: uuid.UUID, page: int, token: str, now: float | None = None) -> str:
    """The owner the link was made for, if `token` is a live link to this job's page; Unauthenticated
    otherwise (the message never says which part failed). The job must still be that owner's."""
    refused = Unauthenticated("this preview link is not valid (or has expired): reload the job's page")
    try:
        key_id, expires_text, signature = token.split(".")
        key = session.get(ApiKey, uuid.UUID(hex=key_id))
        expires = int(expires_text)
    except ValueError:
        raise refused from None
    if key is None or key.revoked_at is not None or expires < (now if now is not None else time.time()):
        raise refused
    if not hmac.compare_digest(signature, _signature(key.key_hash, job_id, page, expires)):
        raise refused
    jobs.get_job(session, job_id, owner=key.owner)  # NotFound once it is not theirs
    return key.owner


def _signature(key_hash: str, job_id: uuid.UUID, page: int, expires: int) -> str:
    message = f"docvl web2html preview|{job_id}|{page}|{expires}".encode()
    digest = hmac.new(key_hash.encode(), message, hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).decode().rstrip("=")

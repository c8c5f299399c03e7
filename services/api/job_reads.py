"""`GET /v1/jobs/{id}` for pollers: an `ETag` of the job's state, `If-None-Match` answered 304 without a
body while nothing changed, and `Retry-After` on an unfinished job saying how often to ask."""

from __future__ import annotations

import hashlib

from fastapi import Response

from docvl.jobs.views import JobView

NOT_MODIFIED_DOC = (
    "The job is unchanged since the response whose `ETag` was sent as `If-None-Match` (no body; the same "
    "`ETag` and, while unfinished, `Retry-After`)."
)


def etag_of(body: bytes) -> str:
    """A strong entity tag of the body: the same job state, the same bytes, the same tag."""
    return '"' + hashlib.sha256(body).hexdigest()[:32] + '"'


def matches(if_none_match: str | None, etag: str) -> bool:
    """Whether `If-None-Match` (a list of tags, weak ones among them, or `*`) names `etag`."""
    if not if_none_match:
        return False
    tags = [tag.strip() for tag in if_none_match.split(",")]
    return "*" in tags or etag in {tag.removeprefix("W/") for tag in tags}


def job_response(view: JobView, if_none_match: str | None, poll_after_s: int) -> Response:
    """The job as JSON with its `ETag`, or 304 when the caller holds it already; an unfinished job says in
    `Retry-After` how many seconds to wait before asking again (its event stream tells at once)."""
    body = view.model_dump_json().encode()
    headers = {"ETag": etag_of(body), "Cache-Control": "no-cache"}
    if not view.status.finished:
        headers["Retry-After"] = str(poll_after_s)
    if matches(if_none_match, headers["ETag"]):
        return Response(status_code=304, headers=headers)
    return Response(body, media_type="application/json", headers=headers)

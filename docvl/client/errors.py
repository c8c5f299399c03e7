"""The client's errors: ApiError (every failure) and WaitTimeout, and how an answer becomes one."""

from __future__ import annotations

import json

import httpx

from docvl.errors import DocvlError


class ApiError(DocvlError):
    """An error answer of the API, or no answer at all.

    `status` is the HTTP status (0 when no answer came: the server could not be reached or the
    connection broke), `code` the API's stable error code, `retry_after` the seconds from a
    `Retry-After` header (429, 503), if any."""

    def __init__(self, status: int, code: str, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.retry_after = retry_after

    def __str__(self) -> str:
        return (
            f"{self.code}: {self.message}"
            if self.status == 0
            else f"{self.status} {self.code}: {self.message}"
        )


class WaitTimeout(ApiError):
    """`Client.wait` gave up before the job finished (the job goes on)."""

    def __init__(self, message: str) -> None:
        super().__init__(0, "timeout", message)


def api_error(response: httpx.Response) -> ApiError:
    """The error an error answer carries (`{"error": {"code", "message"}}`), or its status and text."""
    code, message = f"http_{response.status_code}", response.text[:500] or response.reason_phrase
    try:
        body = json.loads(response.content)
        error = body["error"]
        code, message = str(error["code"]), str(error["message"])
    except (ValueError, KeyError, TypeError):
        pass
    return ApiError(response.status_code, code, message, _retry_after(response.headers.get("Retry-After")))


def _retry_after(value: str | None) -> float | None:
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        return None


def unreachable(base_url: str, exc: httpx.TransportError) -> ApiError:
    reason = str(exc) or type(exc).__name__
    return ApiError(0, "unavailable", f"cannot reach the docvl API at {base_url}: {reason}")


def broken(what: str, base_url: str, exc: httpx.TransportError) -> ApiError:
    """A stream (`what`: the event stream, the download) that broke half-way."""
    return ApiError(0, "unavailable", f"the {what} from {base_url} broke: {str(exc) or type(exc).__name__}")

"""The upload size limit at the ASGI level: a body over the limit is cut off as it streams (or refused
up front from its Content-Length), never read whole."""

from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from docvl.errors import TooLarge
from services.api.errors import error_response

FORM_OVERHEAD = 1024 * 1024  # multipart boundaries and the other form fields


class UploadLimit:
    def __init__(self, app: ASGIApp, *, path: str, max_bytes: int) -> None:
        self.app = app
        self.path = path
        self.max_bytes = max_bytes + FORM_OVERHEAD
        self.file_limit = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "POST" or scope["path"] != self.path:
            await self.app(scope, receive, send)
            return
        length = dict(scope["headers"]).get(b"content-length")
        if length is not None and length.isdigit() and int(length) > self.max_bytes:
            response = error_response(413, TooLarge.code, self._message())
            await response(scope, receive, send)
            return
        received = 0

        async def limited() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    raise TooLarge(self._message())  # answered 413 by the domain error handler
            return message

        await self.app(scope, limited, send)

    def _message(self) -> str:
        return f"the upload is over the limit of {self.file_limit} bytes: send a smaller file"

"""The REST API's metrics, recorded by an ASGI middleware: requests by route template (never the raw
path) and status, latency, uploads in flight and bytes received."""

from __future__ import annotations

import time

from prometheus_client import Counter, Gauge, Histogram
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from docvl.observability.metrics import NAMESPACE, SECONDS_BUCKETS

UNMATCHED = "<unmatched>"  # every path no route takes shares this label: the label set stays bounded
BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})  # any other: "other"

requests = Counter(
    "api_requests", "HTTP requests answered, by route template, method and status.",
    ["route", "method", "status"], namespace=NAMESPACE,
)  # fmt: skip
latency = Histogram(
    "api_request_duration_seconds", "Time from a request's arrival to the end of its response (event "
    "streams: until they close).", ["route", "method"], namespace=NAMESPACE, buckets=SECONDS_BUCKETS,
)  # fmt: skip
uploads_in_flight = Gauge(
    "api_uploads_in_flight", "Requests with a body (submissions) being received or checked now.",
    namespace=NAMESPACE,
)  # fmt: skip
received_bytes = Counter("api_received_bytes", "Request body bytes received.", namespace=NAMESPACE)


def route_of(scope: Scope) -> str:
    """The template of the route that took the request (`/v1/jobs/{job_id}`), set by the router."""
    route = scope.get("route")
    path = getattr(route, "path", None)
    return path if isinstance(path, str) else UNMATCHED


class RequestMetrics:
    """Pure ASGI middleware (no per-request objects beyond two closures): counts and times every HTTP
    request and the body bytes it brought."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        method: str = scope["method"] if scope["method"] in METHODS else "other"
        status = 500  # what the server answers when the app raises before responding

        async def counted_receive() -> Message:
            message = await receive()
            body = message.get("body")
            if body:
                received_bytes.inc(len(body))
            return message

        async def status_send(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        upload = method in BODY_METHODS
        if upload:
            uploads_in_flight.inc()
        try:
            await self.app(scope, counted_receive, status_send)
        finally:
            if upload:
                uploads_in_flight.dec()
            route = route_of(scope)
            requests.labels(route, method, str(status)).inc()
            latency.labels(route, method).observe(time.perf_counter() - started)

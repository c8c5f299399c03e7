"""The gRPC gateway's metrics, recorded by a server interceptor: calls by method and status code, their
latency (a stream's: until it ends) and the response streams (WatchJob) open now."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any, TypeAlias

import grpc
from prometheus_client import Counter, Gauge, Histogram

from docvl.observability.metrics import NAMESPACE, SECONDS_BUCKETS

calls = Counter(
    "gateway_calls", "gRPC calls ended, by method and status code.", ["method", "code"], namespace=NAMESPACE
)
latency = Histogram(
    "gateway_call_duration_seconds", "Time from a call's start to its end (streams: until they close).",
    ["method"], namespace=NAMESPACE, buckets=SECONDS_BUCKETS,
)  # fmt: skip
open_streams = Gauge(
    "gateway_open_streams", "Response streams open now (WatchJob, health Watch), by method.", ["method"],
    namespace=NAMESPACE,
)  # fmt: skip

Behavior = Callable[[Any, grpc.ServicerContext], Any]
Handler: TypeAlias = "grpc.RpcMethodHandler[Any, Any]"


def _code(context: grpc.ServicerContext, failed: bool) -> str:
    """The status the call ended with: the code the servicer set (abort sets one), else OK, or UNKNOWN
    for an exception that set none; CANCELLED when the client went away."""
    code = context.code()  # type: ignore[attr-defined]  # grpc >= 1.38
    if isinstance(code, grpc.StatusCode):
        return str(code.name)
    if not context.is_active():
        return "CANCELLED"
    return "UNKNOWN" if failed else "OK"


def _unary(method: str, behavior: Behavior) -> Behavior:
    def call(request: Any, context: grpc.ServicerContext) -> Any:
        started, failed = time.perf_counter(), True
        try:
            response = behavior(request, context)
            failed = False
            return response
        finally:
            calls.labels(method, _code(context, failed)).inc()
            latency.labels(method).observe(time.perf_counter() - started)

    return call


def _streaming(method: str, behavior: Behavior) -> Behavior:
    def call(request: Any, context: grpc.ServicerContext) -> Iterator[Any]:
        started, failed = time.perf_counter(), True
        gauge = open_streams.labels(method)
        gauge.inc()
        try:
            yield from behavior(request, context)
            failed = False
        finally:
            gauge.dec()
            calls.labels(method, _code(context, failed)).inc()
            latency.labels(method).observe(time.perf_counter() - started)

    return call


class CallMetrics(grpc.ServerInterceptor):  # type: ignore[misc,type-arg]
    """Wraps each registered method's handler once (cached by method); an unknown method is left to gRPC
    (UNIMPLEMENTED) and not counted, so a caller cannot add label values."""

    def __init__(self) -> None:
        self._wrapped: dict[str, tuple[Handler, Handler]] = {}

    def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Handler | None],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> Handler | None:
        handler = continuation(handler_call_details)
        if handler is None:
            return None
        full_name: str = handler_call_details.method
        cached = self._wrapped.get(full_name)
        if cached is not None and cached[0] is handler:
            return cached[1]
        wrapped = _wrap(full_name.lstrip("/"), handler)
        self._wrapped[full_name] = (handler, wrapped)
        return wrapped


def _wrap(method: str, handler: Handler) -> Handler:
    codec = {
        "request_deserializer": handler.request_deserializer,
        "response_serializer": handler.response_serializer,
    }
    if handler.unary_unary:
        return grpc.unary_unary_rpc_method_handler(_unary(method, handler.unary_unary), **codec)
    if handler.unary_stream:
        return grpc.unary_stream_rpc_method_handler(_streaming(method, handler.unary_stream), **codec)
    if handler.stream_unary:
        return grpc.stream_unary_rpc_method_handler(_unary(method, handler.stream_unary), **codec)
    assert handler.stream_stream is not None
    return grpc.stream_stream_rpc_method_handler(_streaming(method, handler.stream_stream), **codec)

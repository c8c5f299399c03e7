"""OpenTelemetry traces: one trace per job, across the front door, the job runner, the Celery page tasks and
the model worker. Off (no SDK provider, every helper here a no-op) unless OTEL_EXPORTER_OTLP_ENDPOINT (or
OTEL_EXPORTER_OTLP_TRACES_ENDPOINT) is set; then spans go over OTLP/HTTP through a BatchSpanProcessor, and
the standard OTEL_* variables apply (OTEL_SERVICE_NAME, OTEL_RESOURCE_ATTRIBUTES, OTEL_BSP_*, headers).

A job starts asynchronously (a runner claims it later), so its submission's context is kept on the job row
(`traceparent`) and the runner, the reconciler and finalisation open their spans under it (`job_span`);
Celery headers and gRPC metadata carry it the rest of the way (the maintained instrumentations)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.propagate import extract, inject
from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

if TYPE_CHECKING:
    from fastapi import FastAPI
    from opentelemetry.context import Context
    from sqlalchemy import Engine

TRACER = "docvl"
NOT_TRACED_URLS = "healthz,readyz,metrics"


class TracingSettings(BaseSettings):
    """The standard OpenTelemetry variables docvl reads itself (the SDK reads the rest)."""

    model_config = SettingsConfigDict(extra="ignore")

    endpoint: str | None = Field(None, validation_alias="OTEL_EXPORTER_OTLP_ENDPOINT")
    traces_endpoint: str | None = Field(None, validation_alias="OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
    service_name: str | None = Field(None, validation_alias="OTEL_SERVICE_NAME")
    sdk_disabled: bool = Field(False, validation_alias="OTEL_SDK_DISABLED")
    sql: bool = Field(True, validation_alias="DOCVL_TRACE_SQL", description="A span per SQL statement.")


_enabled = False
_sql = False


def enabled() -> bool:
    return _enabled


def setup_tracing(default_service: str) -> bool:
    """Install the SDK's provider (OTLP/HTTP exporter, batch processor) and the client-side instrumentations
    (gRPC client, Celery, SQLAlchemy, Redis, httpx) when an OTLP endpoint is configured; returns whether
    tracing is on. Call once per process, before its engines, channels and servers are made."""
    global _enabled, _sql
    settings = TracingSettings()
    if _enabled or not (settings.endpoint or settings.traces_endpoint) or settings.sdk_disabled:
        return _enabled
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.resources import SERVICE_NAME, Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor
    from opentelemetry.sdk.trace.sampling import ParentBased

    from docvl.observability.sampling import NoUnparentedClients

    resource = Resource.create({SERVICE_NAME: settings.service_name or default_service})
    provider = TracerProvider(resource=resource, sampler=ParentBased(root=NoUnparentedClients()))
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    trace.set_tracer_provider(provider)
    _instrument_clients()
    _enabled, _sql = True, settings.sql
    return True


def _instrument_clients() -> None:
    from opentelemetry.instrumentation.celery import CeleryInstrumentor
    from opentelemetry.instrumentation.grpc import GrpcInstrumentorClient
    from opentelemetry.instrumentation.httpx import HTTPXClientInstrumentor
    from opentelemetry.instrumentation.redis import RedisInstrumentor

    GrpcInstrumentorClient(filter_=_not_health()).instrument()  # type: ignore[no-untyped-call]
    CeleryInstrumentor().instrument()  # type: ignore[no-untyped-call]
    RedisInstrumentor().instrument()
    HTTPXClientInstrumentor().instrument()


def _not_health() -> Any:
    from opentelemetry.instrumentation.grpc import filters

    return filters.negate(filters.any_of(filters.health_check(), filters.service_prefix("grpc.reflection")))


def instrument_engine(engine: Engine) -> None:
    """A span per SQL statement on this engine (SQLAlchemy's instrumentation, without a span per
    connection checkout)."""
    if not _sql:
        return
    from opentelemetry.instrumentation.sqlalchemy.engine import EngineTracer
    from opentelemetry.metrics import get_meter

    usage = get_meter(TRACER).create_up_down_counter("db.client.connections.usage")
    EngineTracer(tracer(), engine, usage)  # type: ignore[no-untyped-call]


def instrument_grpc_server(*, aio: bool) -> None:
    """Server spans for the gRPC servers made from now on (health and reflection calls excepted)."""
    if not _enabled:
        return
    from opentelemetry.instrumentation.grpc import GrpcAioInstrumentorServer, GrpcInstrumentorServer

    (GrpcAioInstrumentorServer if aio else GrpcInstrumentorServer)(filter_=_not_health()).instrument()


def instrument_fastapi(app: FastAPI) -> None:
    """Server spans for the app's requests (not its probes), without a span per ASGI message."""
    if not _enabled:
        return
    from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor

    FastAPIInstrumentor.instrument_app(app, excluded_urls=NOT_TRACED_URLS, exclude_spans=["receive", "send"])


def tracer() -> trace.Tracer:
    return trace.get_tracer(TRACER)


def attributes(
    job_id: uuid.UUID | str | None = None, page: int | None = None, task: str | None = None
) -> dict[str, str | int]:
    """docvl's span attributes for a job, page and task."""
    found: dict[str, str | int] = {}
    if job_id is not None:
        found["docvl.job_id"] = str(job_id)
    if page is not None:
        found["docvl.page"] = page
    if task is not None:
        found["docvl.task"] = task
    return found


@contextmanager
def span(name: str, **attrs: Any) -> Iterator[trace.Span | None]:
    """A child of the current span (None, and nothing recorded, when tracing is off)."""
    if not _enabled:
        yield None
        return
    with tracer().start_as_current_span(name, attributes=attributes(**attrs)) as current:
        yield current


@contextmanager
def job_span(name: str, traceparent: str | None, **attrs: Any) -> Iterator[None]:
    """A span of the job's own trace, under the submission kept on its row, whatever trace is current (the
    current span, e.g. the flow run's task run, is linked)."""
    if not _enabled:
        yield
        return
    here = trace.get_current_span().get_span_context()
    links = [trace.Link(here)] if here.is_valid else []
    parent = extract({"traceparent": traceparent}) if traceparent else otel_context.Context()
    with tracer().start_as_current_span(name, context=parent, links=links, attributes=attributes(**attrs)):
        yield


def annotate(**attrs: Any) -> None:
    """Set docvl's attributes (job, page, task) on the current span, e.g. a Celery task's."""
    if _enabled:
        trace.get_current_span().set_attributes(attributes(**attrs))


def current_ids() -> tuple[str, str] | None:
    """(trace id, W3C traceparent) of the current span, to keep on a job; None when not tracing."""
    if not _enabled:
        return None
    here = trace.get_current_span().get_span_context()
    if not here.is_valid:
        return None
    carrier: dict[str, str] = {}
    inject(carrier)
    return format(here.trace_id, "032x"), carrier["traceparent"]


@contextmanager
def detached() -> Iterator[None]:
    """No current trace inside: what starts there is a trace of its own (a flow run for a batch of jobs)."""
    if not _enabled:
        yield
        return
    token = otel_context.attach(otel_context.Context())
    try:
        yield
    finally:
        otel_context.detach(token)


def captured() -> Context | None:
    """The current context, to parent spans recorded later from elsewhere (the batcher); None when off."""
    return otel_context.get_current() if _enabled else None


def record(
    name: str, parent: Context | None, start_ns: int, end_ns: int, attrs: dict[str, Any] | None = None
) -> None:
    """A span that happened between two instants, under `parent` (see `captured`)."""
    if parent is None:
        return
    done = tracer().start_span(name, context=parent, start_time=start_ns, attributes=attrs)
    done.end(end_time=end_ns)


def flush(timeout_ms: int = 5000) -> None:
    """Export what is buffered (before a process exits on its own)."""
    provider = trace.get_tracer_provider()
    force_flush = getattr(provider, "force_flush", None)
    if _enabled and force_flush is not None:
        force_flush(timeout_ms)

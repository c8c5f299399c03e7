"""One logging setup for every docvl process: JSON lines when stderr is not a terminal, text on a terminal
(DOCVL_LOG_FORMAT=auto|json|text), at DOCVL_LOG_LEVEL. Every line emitted in a job's work carries `job_id`
(and `page` / `task` where there is one), set with `job_context` around that work, and `trace_id` /
`span_id` when tracing is on. Celery's and Prefect's loggers go through the same handler."""

from __future__ import annotations

import json
import logging
import re
import sys
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Literal

from opentelemetry import trace
from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class LogSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="DOCVL_LOG_", extra="ignore")

    format: Literal["auto", "json", "text"] = "auto"
    level: str | None = None  # default: the command's --log-level, else INFO
    service_name: str | None = Field(None, validation_alias="OTEL_SERVICE_NAME")


JobFields = tuple[str, int | None, str | None]  # job id, page index, task kind
_job: ContextVar[JobFields | None] = ContextVar("docvl_job", default=None)
# A page task's id (job:page:task), as Celery's own lines about a task name it.
_TASK_ID = re.compile(r"^([0-9a-f-]{36}):(\d+):([a-z0-9]+)$")
_JOB_PATH = re.compile(r"/v1/jobs/([0-9a-f-]{36})")  # a REST call on one job, in uvicorn's access lines
CONTEXT_FIELDS = ("job_id", "page", "task", "trace_id", "span_id")


@contextmanager
def job_context(job_id: uuid.UUID | str, page: int | None = None, task: str | None = None) -> Iterator[None]:
    """Every line logged inside carries the job's id (and the page and task)."""
    token = _job.set((str(job_id), page, task))
    try:
        yield
    finally:
        _job.reset(token)


def task_fields(request_id: str) -> JobFields | None:
    """(job id, page, task) of a page task's id (job:page:task), e.g. a model worker request's."""
    found = _TASK_ID.match(request_id)
    return None if found is None else (found.group(1), int(found.group(2)), found.group(3))


@contextmanager
def request_context(request_id: str) -> Iterator[None]:
    """A model worker request's job, page and task, read from its id when it is a page task's."""
    fields = task_fields(request_id)
    if fields is None:
        yield
        return
    with job_context(*fields):
        yield


class ContextFilter(logging.Filter):
    """Adds the job's fields and the current span's ids to every record it sees."""

    def filter(self, record: logging.LogRecord) -> bool:
        fields = _job.get() or _celery_task(record) or _job_route(record)
        if fields is not None:
            record.job_id, record.page, record.task = fields
        span = trace.get_current_span().get_span_context()
        if span.is_valid:
            record.trace_id = format(span.trace_id, "032x")
            record.span_id = format(span.span_id, "016x")
        return True


def _celery_task(record: logging.LogRecord) -> JobFields | None:
    """Celery's lines about a page task ("Task docvl.page[<job>:<page>:<task>] received") pass its id in
    their arguments."""
    args = record.args
    if isinstance(args, dict) and isinstance(args.get("id"), str):
        return task_fields(args["id"])
    return None


def _job_route(record: logging.LogRecord) -> JobFields | None:
    args = record.args
    if record.name == "uvicorn.access" and isinstance(args, tuple) and len(args) > 2:
        found = _JOB_PATH.search(str(args[2]))
        if found is not None:
            return found.group(1), None, None
    return None


class JsonFormatter(logging.Formatter):
    def __init__(self, service: str) -> None:
        super().__init__()
        self.service = service

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, object] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "service": self.service,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for name in (*CONTEXT_FIELDS, "flow_run_id", "task_run_id"):
            value = getattr(record, name, None)
            if value is not None:
                line[name] = str(value) if name.endswith("_run_id") else value
        if record.exc_info:
            line["exc"] = self.formatException(record.exc_info)
        return json.dumps(line, ensure_ascii=False, default=str)


class TextFormatter(logging.Formatter):
    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        extra = " ".join(f"{n}={getattr(record, n)}" for n in CONTEXT_FIELDS if hasattr(record, n))
        return f"{text} [{extra}]" if extra else text


# Clients that log every request at INFO (Prefect's API calls, webhooks): their warnings only.
QUIET = ("httpx", "httpcore")
_handler: logging.Handler | None = None
_level = logging.INFO


def setup_logging(service: str, level: str | int | None = None) -> None:
    """Send every logger's records through one stderr handler (again, when called again)."""
    global _handler, _level
    settings = LogSettings()
    chosen = settings.level or level or "INFO"
    _level = chosen if isinstance(chosen, int) else logging.getLevelName(chosen.upper())
    json_lines = settings.format == "json" or (settings.format == "auto" and not sys.stderr.isatty())
    handler = logging.StreamHandler(sys.stderr)
    name = settings.service_name or service
    handler.setFormatter(JsonFormatter(name) if json_lines else TextFormatter())
    handler.addFilter(ContextFilter())
    _handler = handler
    reclaim()


def reclaim() -> None:
    """Put the handler back on the root logger, as the only one, after a library configured logging its
    own way (Prefect does at import: its console handler on the root and on some loggers)."""
    if _handler is None:
        return
    root = logging.getLogger()
    for existing in list(root.handlers):
        root.removeHandler(existing)
    root.addHandler(_handler)
    root.setLevel(_level)
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access", "fastapi", "prefect._internal"):
        logger = logging.getLogger(name)
        logger.handlers.clear()
        logger.propagate = True
    for name in QUIET:
        logging.getLogger(name).setLevel(max(_level, logging.WARNING))
    logging.captureWarnings(True)  # Python's warnings as log lines too

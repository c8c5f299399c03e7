"""The logging setup's lines and the tracing switch, without the platform: formatters and filter on a logger
of their own, and the process-wide setup in fresh interpreters (it takes over the root logger)."""

from __future__ import annotations

import io
import json
import logging
import os
import subprocess
import sys
import uuid

from docvl.observability.logs import ContextFilter, JsonFormatter, TextFormatter, job_context, request_context
from tests.support.helpers import ROOT


def _logger(formatter: logging.Formatter) -> tuple[logging.Logger, io.StringIO]:
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.setFormatter(formatter)
    handler.addFilter(ContextFilter())
    logger = logging.getLogger(f"test.{uuid.uuid4().hex}")
    logger.propagate = False
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    return logger, out


def _records(out: io.StringIO) -> list[dict[str, object]]:
    return [json.loads(line) for line in out.getvalue().splitlines()]


def test_lines_in_a_jobs_work_carry_its_id_page_and_task() -> None:
    logger, out = _logger(JsonFormatter("docvl-test"))
    job = uuid.uuid4()
    logger.info("outside")
    with job_context(job):
        logger.info("the job")
        with job_context(job, 2, "ocr"):
            logger.info("a page")
        logger.info("the job again")
    with request_context(f"{job}:3:qa"):
        logger.info("a model worker request")
    with request_context("someone-else's-request"):
        logger.info("not a page task")
    first, *rest, last = _records(out)
    assert "job_id" not in first
    assert "job_id" not in last
    assert first["service"] == "docvl-test"
    assert [(r["message"], r["job_id"], r.get("page"), r.get("task")) for r in rest] == [
        ("the job", str(job), None, None),
        ("a page", str(job), 2, "ocr"),
        ("the job again", str(job), None, None),
        ("a model worker request", str(job), 3, "qa"),
    ]


def test_celerys_and_uvicorns_lines_about_a_job_carry_its_id() -> None:
    logger, out = _logger(JsonFormatter("docvl-test"))
    job = uuid.uuid4()
    logger.info("Task %(name)s[%(id)s] received", {"name": "docvl.page", "id": f"{job}:0:ocr"})
    access = logging.getLogger("uvicorn.access")
    record = access.makeRecord(
        "uvicorn.access", logging.INFO, __file__, 1, '%s - "%s %s HTTP/%s" %d',
        ("127.0.0.1:1", "GET", f"/v1/jobs/{job}/events", "1.1", 200), None,
    )  # fmt: skip
    logger.handle(record)
    received, served = _records(out)
    assert (received["job_id"], received["page"], received["task"]) == (str(job), 0, "ocr")
    assert received["message"] == f"Task docvl.page[{job}:0:ocr] received"
    assert served["job_id"] == str(job)


def test_text_lines_name_the_job_too() -> None:
    logger, out = _logger(TextFormatter())
    with job_context("j-1", 0, "qa"):
        logger.warning("slow")
    assert out.getvalue().rstrip().endswith("WARNING " + logger.name + ": slow [job_id=j-1 page=0 task=qa]")


def _run(code: str, **env: str) -> str:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "DOCVL_LOG_"))}
    done = subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        env={**clean, **env},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout + done.stderr


SETUP = "import logging; from docvl.observability import logs; logs.setup_logging('docvl-x', 'info'); "


def test_the_format_is_json_off_a_terminal_unless_set_otherwise() -> None:
    line = _run(SETUP + "logging.getLogger('a').info('hello')").strip()
    assert json.loads(line)["message"] == "hello"
    text = _run(SETUP + "logging.getLogger('a').info('hello')", DOCVL_LOG_FORMAT="text").strip()
    assert text.endswith("INFO a: hello")
    quiet = _run(SETUP + "logging.getLogger('a').info('hello')", DOCVL_LOG_LEVEL="WARNING")
    assert quiet == ""


def test_tracing_is_off_without_an_endpoint_and_loads_no_sdk() -> None:
    code = (
        "import sys; from docvl.observability import tracing; "
        "print(tracing.setup_tracing('docvl-x'), tracing.current_ids(), 'opentelemetry.sdk' in sys.modules)"
    )
    assert _run(code).split() == ["False", "None", "False"]
    on = _run(code, OTEL_EXPORTER_OTLP_ENDPOINT="http://127.0.0.1:9", OTEL_BSP_SCHEDULE_DELAY="60000")
    assert on.split()[:3] == ["True", "None", "True"]  # on, with no span current

"""What every Celery worker process of docvl does around its tasks: docvl's logging, its pool processes'
metrics summed on one port, tracing per pool process, and the last spans flushed before a pool process
exits."""

from __future__ import annotations

import os
from typing import Any

from celery.signals import setup_logging, worker_init, worker_process_init, worker_process_shutdown

from docvl.observability import logs, tracing
from docvl.observability.metrics import worker as worker_metrics
from docvl.settings import CeleryWorkerSettings


def observe(service: str, settings: CeleryWorkerSettings) -> None:
    """Connect the handlers (once per process, when the tasks module is imported)."""

    def use_docvl_logging(loglevel: int | str | None = None, **_: Any) -> None:
        """docvl's logging instead of Celery's (in the main process and in each pool process)."""
        logs.setup_logging(service, loglevel)

    def serve_metrics(**_: Any) -> None:
        """In the worker's main process, before the pool forks (multiprocess mode)."""
        worker_metrics.prepare(
            settings.worker_metrics_port, settings.metrics_host, settings.worker_metrics_dir
        )

    def trace(**_: Any) -> None:
        tracing.setup_tracing(service)  # per pool process, before its connections are made

    def exited(pid: int | None = None, **_: Any) -> None:
        """A pool process exits without running atexit hooks: its live gauges go, its last spans are
        exported first."""
        worker_metrics.process_exited(pid or os.getpid())
        tracing.flush()

    setup_logging.connect(use_docvl_logging, weak=False)
    worker_init.connect(serve_metrics, weak=False)
    worker_process_init.connect(trace, weak=False)
    worker_process_shutdown.connect(exited, weak=False)

"""The Celery workers' metrics, multiprocess-safe: the prefork pool's processes each write their own
files (prometheus_client's multiprocess mode) in a directory of the worker's, emptied when it starts, and
the worker's main process serves their sum on one port.

`prepare` runs in the main process before the pool forks (Celery's worker_init). Every family here has a
label, so its series are made in the pool process that first uses them, after the fork: they are
multiprocess values even though this module was imported before multiprocess mode was switched on."""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from prometheus_client import CollectorRegistry, Counter, Histogram, multiprocess, values

from docvl.observability.metrics import NAMESPACE, SECONDS_BUCKETS, MetricsServer, serve

log = logging.getLogger(__name__)
MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"

page_tasks = Counter(
    "worker_page_tasks", "Page tasks ended, by task kind and outcome: succeeded, failed (its error "
    "recorded), skipped (job finished or cancelled, or result already written), retried.",
    ["task", "outcome"], namespace=NAMESPACE,
)  # fmt: skip
page_task_duration = Histogram(
    "worker_page_task_duration_seconds", "Time one page task attempt took, by task kind.", ["task"],
    namespace=NAMESPACE, buckets=SECONDS_BUCKETS,
)  # fmt: skip
foreign_tasks = Counter(
    "foreign_tasks", "Page tasks dropped because their job is not in this stack's database (sent by another "
    "stack that shares the namespace, or for a job that is gone), by task kind and the namespace that sent "
    "them (`unknown` when it did not say).",
    ["task", "origin"], namespace=NAMESPACE,
)  # fmt: skip
webhooks = Counter(
    "worker_webhooks", "Webhook delivery attempts, by outcome: delivered, retried, failed (given up or "
    "refused).", ["outcome"], namespace=NAMESPACE,
)  # fmt: skip


@contextmanager
def timed(task: str) -> Iterator[None]:
    """Observe how long one page task attempt takes, whatever its end."""
    started = time.perf_counter()
    try:
        yield
    finally:
        page_task_duration.labels(task).observe(time.perf_counter() - started)


def metrics_dir(port: int, configured: Path | None) -> Path:
    return configured or Path(tempfile.gettempdir()) / f"docvl-worker-metrics-{port}"


def prepare(port: int, host: str, configured_dir: Path | None) -> MetricsServer | None:
    """In the worker's main process, before the pool starts: empty this worker's metrics directory,
    switch multiprocess mode on for the pool processes, and serve their sum; None when `port` is 0."""
    if port == 0:
        return None
    directory = metrics_dir(port, configured_dir)
    shutil.rmtree(directory, ignore_errors=True)  # an earlier run's files would be summed in
    directory.mkdir(parents=True)
    os.environ[MULTIPROC_ENV] = str(directory)
    values.ValueClass = values.get_value_class()  # type: ignore[no-untyped-call]  # series made from now on (after the fork) use files
    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry, path=str(directory))  # type: ignore[no-untyped-call]
    return serve(port, host, registry)


def process_exited(pid: int) -> None:
    """A pool process is ending: drop its live gauges (counters and histograms stay in the sum)."""
    directory = os.environ.get(MULTIPROC_ENV)
    if directory:
        multiprocess.mark_process_dead(pid, directory)  # type: ignore[no-untyped-call]

"""The job runner: a Celery worker on the `jobs` queue. A start request claims the jobs waiting to start
and starts them as Prefect flow runs in this long-lived process (workflows.flows.run_claimed): no job costs
a process.

Run it with:  celery -A workflows.runner worker -Q jobs   (`docvl worker --queue jobs` does)."""

from __future__ import annotations

import sys

from celery import Celery
from celery.signals import worker_process_shutdown

from docvl.broker import signals, stack
from docvl.broker.celery_app import START_TASK, make_celery
from workflows.settings import FlowSettings


def start_jobs() -> int:
    """A start request: claim the jobs waiting to start and start them (Prefect flow runs, in this
    process). Acknowledged on receipt: a request lost with a dying runner is asked again by the reconciler."""
    from workflows.flows import run_claimed  # Prefect is imported when the first request comes

    return int(run_claimed())


def register(celery: Celery) -> None:
    """Give `celery` the start task (a worker serving the page queues and `jobs` together has both)."""
    celery.task(name=START_TASK, acks_late=False)(start_jobs)


def send_run_logs(**_: object) -> None:
    """On a pool process's graceful stop, send the lines of the flow runs' Prefect logs not sent yet (they
    go in batches every 2 s; each names a job the run started)."""
    if "prefect.logging.handlers" in sys.modules:  # no start request came: nothing to send
        from prefect.logging.handlers import APILogWorker

        APILogWorker.drain_all(timeout=5)


settings = FlowSettings()
app = make_celery(
    settings.redis_url,
    settings.namespace,
    visibility_timeout_s=settings.visibility_timeout_s,
    time_limit_s=settings.task_time_limit_s,
)
register(app)
worker_process_shutdown.connect(send_run_logs, weak=False)
signals.observe("docvl-job-runner", settings)
stack.guard(app, settings)

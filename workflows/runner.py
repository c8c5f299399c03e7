"""The job runner: a Celery worker on the `jobs` queue. A start request claims the jobs waiting to start
and starts them as Prefect flow runs in this long-lived process (workflows.flows.run_claimed): no job costs
a process.

Run it with:  celery -A workflows.runner worker -Q jobs   (`docvl worker --queue jobs` does)."""

from __future__ import annotations

from celery import Celery

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


settings = FlowSettings()
app = make_celery(
    settings.redis_url,
    settings.namespace,
    visibility_timeout_s=settings.visibility_timeout_s,
    time_limit_s=settings.task_time_limit_s,
)
register(app)
signals.observe("docvl-job-runner", settings)
stack.guard(app, settings)

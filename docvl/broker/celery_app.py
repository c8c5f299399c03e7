"""The Celery app every deployable makes: Redis broker, one queue per task kind, priorities, late
acknowledgement; the task and queue names (stable strings: work already queued survives a deploy). Every
Redis key of the app (queues, unacknowledged messages, bindings, the control channel) starts with the
stack's namespace (kombu's global_keyprefix): stacks sharing one Redis never take each other's tasks."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import kombu.exceptions
import redis
from celery import Celery
from kombu import Queue

from docvl.errors import BrokerUnavailable
from docvl.namespace import redis_prefix
from docvl.tasks import TaskKind

PAGE_TASK = "docvl.page"
REUSE_TASK = "docvl.reuse_pages"  # a job's page results reused together, on a page queue
WEBHOOK_TASK = "docvl.webhook"
WEBHOOK_QUEUE = "webhooks"
START_TASK = "docvl.start_jobs"
JOBS_QUEUE = "jobs"  # start requests, taken by the job runners
QUEUES = [task.value for task in TaskKind]  # the page queues
ALL_QUEUES = [*QUEUES, WEBHOOK_QUEUE, JOBS_QUEUE]


def make_celery(
    redis_url: str, namespace: str, *, visibility_timeout_s: int = 3600, time_limit_s: int = 1800
) -> Celery:
    """The app of the stack named `namespace` (see docvl.namespace)."""
    app = Celery("docvl", broker=redis_url)
    app.conf.update(
        docvl_namespace=namespace,  # read back by namespace_of
        task_queues=[Queue(name) for name in ALL_QUEUES],
        task_default_queue=TaskKind.OCR.value,
        task_acks_late=True,  # a task is acknowledged when done: a worker that dies loses nothing
        task_reject_on_worker_lost=True,
        task_ignore_result=True,  # results go to Postgres, not to a result backend
        task_time_limit=time_limit_s,
        task_soft_time_limit=max(time_limit_s - 30, 5),
        worker_prefetch_multiplier=1,  # long tasks: take one at a time
        worker_hijack_root_logger=False,
        broker_connection_retry_on_startup=True,
        broker_transport_options={
            "visibility_timeout": visibility_timeout_s,
            "priority_steps": list(range(10)),
            "sep": ":",
            # A job's priority first (every queue's higher priority steps are read before any lower one),
            # then the page queues in turn: a question never waits for a document's OCR pages of the same
            # priority to drain ("priority" would read them in a fixed order: ocr always first).
            "queue_order_strategy": "round_robin",
            "global_keyprefix": redis_prefix(namespace),
        },
        task_serializer="json",
        accept_content=["json"],
    )
    return app


def namespace_of(app: Celery) -> str:
    """The namespace `app` was made for."""
    return str(app.conf.docvl_namespace)


@contextmanager
def broker_errors() -> Iterator[None]:
    """The broker's client errors as BrokerUnavailable: an outage, retried or left to the reconciler, never a
    job's failure."""
    try:
        yield
    except (kombu.exceptions.OperationalError, redis.RedisError, ConnectionError) as exc:
        raise BrokerUnavailable(f"the broker (Redis) did not answer: {exc}") from exc


def celery_priority(job_priority: int) -> int:
    """Job priority 0..9, higher first; Redis serves lower numbers first."""
    return 9 - max(0, min(9, job_priority))

"""The dispatch port on Celery: every deployable that hands work to the queue uses this one class."""

from __future__ import annotations

import logging
import uuid
from functools import cached_property

import redis
from celery import Celery
from redis.commands.core import Script

from docvl.broker.celery_app import (
    JOBS_QUEUE,
    PAGE_TASK,
    REUSE_TASK,
    START_TASK,
    WEBHOOK_QUEUE,
    WEBHOOK_TASK,
    broker_errors,
    celery_priority,
    make_celery,
    namespace_of,
)
from docvl.jobs.context import PageWork
from docvl.namespace import redis_prefix
from docvl.tasks import TaskKind

log = logging.getLogger(__name__)
WAKE_TTL_MS = 2000  # how long a wake-up for a looking runner waits to be taken


class CeleryDispatch:
    """Sends by task name only: the sender imports no task code. Everything it sends stays in its app's
    namespace; page tasks also say which namespace sent them (their `namespace` argument)."""

    def __init__(self, app: Celery) -> None:
        self.app = app
        self.namespace = namespace_of(app)

    @classmethod
    def connect(cls, redis_url: str, namespace: str) -> CeleryDispatch:
        return cls(make_celery(redis_url, namespace))

    def start_jobs(self, count: int = 1) -> None:
        """The message names no job: whichever runner takes it claims what is waiting (FOR UPDATE SKIP
        LOCKED), so a lost or doubled request costs nothing but a delay (the reconciler asks again) or a
        query. Fails fast when the broker is down."""
        with broker_errors():
            for _ in range(count):
                self.app.send_task(
                    START_TASK,
                    queue=JOBS_QUEUE,
                    priority=0,
                    retry=True,
                    retry_policy={"max_retries": 1, "interval_start": 0, "interval_step": 0.2},
                )

    def start_new_job(self) -> None:
        """Ask for a job just committed to be started. While a job runner says it is looking for jobs to
        start (`looking`), it is woken instead (`wait_for_new_job`) and claims this one; otherwise a start
        request is sent (`start_jobs`). Under load most start requests found their job claimed already by
        a flow run that was looking, and each cost a runner ~2 ms of CPU."""
        try:
            if self._wake_looking(
                keys=[self._key("runner-looking"), self._key("runner-wake")], args=[WAKE_TTL_MS]
            ):
                return
        except (redis.RedisError, OSError):
            pass  # the request below says whether the broker is away
        self.start_jobs()

    def looking(self, ttl_s: float) -> None:
        """Say, for `ttl_s` seconds at most, that a job runner is looking for jobs to start: new jobs then
        wake it rather than send start requests. Best effort: when it cannot be said, they send them."""
        try:
            self._redis.set(self._key("runner-looking"), "1", px=max(1, int(ttl_s * 1000)))
        except (redis.RedisError, OSError) as exc:
            log.debug("could not say a runner is looking: %s", exc)

    def wait_for_new_job(self, timeout_s: float) -> bool:
        """Whether a new job woke this runner within `timeout_s` (False too when the broker is away)."""
        try:
            # never 0 (Redis's "for ever"), nor what Redis rounds down to 0 ms
            timeout = max(timeout_s, 0.01)
            return self._redis.blpop([self._key("runner-wake")], timeout=timeout) is not None
        except (redis.RedisError, OSError) as exc:
            log.debug("could not wait to be woken: %s", exc)
            return False

    def stopped_looking(self) -> None:
        """Withdraw `looking`. The caller then claims once more: a job committed while it looked sent no
        start request (a runner that dies looking leaves that to the reconciler, once the mark expires)."""
        try:
            self._redis.delete(self._key("runner-looking"))
        except (redis.RedisError, OSError) as exc:
            log.debug("could not withdraw that a runner is looking: %s", exc)

    def _key(self, name: str) -> str:
        return f"{redis_prefix(self.namespace)}{name}"

    @cached_property
    def _redis(self) -> redis.Redis:
        return redis.Redis.from_url(self.app.conf.broker_url, socket_timeout=5, socket_connect_timeout=5)

    @cached_property
    def _wake_looking(self) -> Script:
        """Atomically: when a runner is looking (KEYS[1]), push a wake-up for it (KEYS[2], expiring after
        ARGV[1] ms: a wake-up nobody takes must not wake a later runner for nothing for long) and say so."""
        return self._redis.register_script(
            "if redis.call('EXISTS', KEYS[1]) == 1 then "
            "redis.call('RPUSH', KEYS[2], '1'); redis.call('PEXPIRE', KEYS[2], ARGV[1]); return 1 "
            "end return 0"
        )

    def send_pages(self, work: list[PageWork]) -> None:
        with broker_errors():
            for item in work:
                self.app.send_task(
                    PAGE_TASK,
                    args=[str(item.job_id), item.page_index, item.task.value, item.priority],
                    kwargs={"namespace": self.namespace},
                    queue=item.task.value,
                    priority=celery_priority(item.priority),
                    task_id=item.id,
                )

    def reuse_pages(self, job_id: uuid.UUID, queue: TaskKind, priority: int) -> None:
        with broker_errors():
            self.app.send_task(
                REUSE_TASK,
                args=[str(job_id)],
                kwargs={"namespace": self.namespace},
                queue=queue.value,
                priority=celery_priority(priority),
                task_id=f"{job_id}:reuse",
            )

    def revoke(self, ids: list[str]) -> None:
        with broker_errors():
            self.app.control.revoke(ids)

    def queue_webhook(self, job_id: uuid.UUID) -> None:
        """The webhook task itself finds out whether one is wanted; its id makes a second queueing
        harmless."""
        with broker_errors():
            self.app.send_task(
                WEBHOOK_TASK, args=[str(job_id)], queue=WEBHOOK_QUEUE, task_id=f"webhook:{job_id}"
            )

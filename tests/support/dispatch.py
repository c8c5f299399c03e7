"""A dispatch port that records what it is asked to send instead of sending it (no broker); and the real
one of a stack the tests started."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Mapping
from typing import TYPE_CHECKING

from docvl.jobs.context import PageWork
from docvl.namespace import derive
from docvl.tasks import TaskKind

if TYPE_CHECKING:
    from docvl.broker.dispatch import CeleryDispatch


def celery_dispatch(env: Mapping[str, str]) -> CeleryDispatch:
    """The Celery dispatch of the stack whose processes run with `env`: its Redis, its namespace."""
    from docvl.broker.dispatch import CeleryDispatch  # Celery only where a test sends for real

    namespace = env.get("DOCVL_NAMESPACE") or derive(env["DOCVL_DATABASE_URL"])
    return CeleryDispatch.connect(env["DOCVL_REDIS_URL"], namespace)


class RecordingDispatch:
    def __init__(self) -> None:
        self.starts: list[int] = []
        self.sent: list[PageWork] = []
        self.revoked: list[str] = []
        self.reusing: list[tuple[uuid.UUID, TaskKind, int]] = []
        self.notified: list[uuid.UUID] = []
        self.lock = threading.Lock()

    def start_jobs(self, count: int = 1) -> None:
        with self.lock:
            self.starts.append(count)

    def start_new_job(self) -> None:
        self.start_jobs()

    def send_pages(self, work: list[PageWork]) -> None:
        with self.lock:
            self.sent.extend(work)

    def reuse_pages(self, job_id: uuid.UUID, queue: TaskKind, priority: int) -> None:
        with self.lock:
            self.reusing.append((job_id, queue, priority))

    def revoke(self, ids: list[str]) -> None:
        with self.lock:
            self.revoked.extend(ids)

    def queue_webhook(self, job_id: uuid.UUID) -> None:
        with self.lock:
            self.notified.append(job_id)

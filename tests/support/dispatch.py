"""A dispatch port that records what it is asked to send instead of sending it (no broker)."""

from __future__ import annotations

import threading
import uuid

from docvl.jobs.context import PageWork


class RecordingDispatch:
    def __init__(self) -> None:
        self.starts: list[int] = []
        self.sent: list[PageWork] = []
        self.revoked: list[str] = []
        self.notified: list[uuid.UUID] = []
        self.lock = threading.Lock()

    def start_jobs(self, count: int = 1) -> None:
        with self.lock:
            self.starts.append(count)

    def send_pages(self, work: list[PageWork]) -> None:
        with self.lock:
            self.sent.extend(work)

    def revoke(self, ids: list[str]) -> None:
        with self.lock:
            self.revoked.extend(ids)

    def queue_webhook(self, job_id: uuid.UUID) -> None:
        with self.lock:
            self.notified.append(job_id)

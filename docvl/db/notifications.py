"""Job events as they are committed: every job event also sends a Postgres NOTIFY on CHANNEL with its job
id (delivered when its transaction commits, never for a rolled-back one). A front door keeps one listening
connection (EventNotifier) and wakes the streams that follow that job, so SSE and WatchJob answer at once
instead of at their next poll. Polling stays as the fallback: a stream still looks every `poll_s` while the
listening connection is down, and a notification only says "look now"."""

from __future__ import annotations

import logging
import threading
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import psycopg
from sqlalchemy import text
from sqlalchemy.orm import Session

CHANNEL = "docvl_job_events"
RECONNECT_S = 1.0
log = logging.getLogger(__name__)


def notify(session: Session, job_id: uuid.UUID) -> None:
    """Queue the job's notification in the caller's transaction."""
    session.execute(text("SELECT pg_notify(:channel, :id)"), {"channel": CHANNEL, "id": str(job_id)})


class EventNotifier:
    """One LISTEN connection, in a daemon thread, calling each job's subscribers when its events commit."""

    def __init__(self, database_url: str) -> None:
        self._dsn = database_url.replace("postgresql+psycopg://", "postgresql://", 1)
        self._subscribers: dict[str, list[Callable[[], None]]] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="event-notifier", daemon=True)
        self.connected = threading.Event()

    def start(self) -> EventNotifier:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)

    @contextmanager
    def subscribed(self, job_id: uuid.UUID, wake: Callable[[], None]) -> Iterator[None]:
        """`wake()` is called (from the listening thread) whenever the job's events change, until the
        block ends. Keep it quick: set an event."""
        key = str(job_id)
        with self._lock:
            self._subscribers.setdefault(key, []).append(wake)
        try:
            yield
        finally:
            with self._lock:
                waiting = self._subscribers.get(key, [])
                if wake in waiting:
                    waiting.remove(wake)
                if not waiting:
                    self._subscribers.pop(key, None)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                with psycopg.connect(self._dsn, autocommit=True, connect_timeout=5) as conn:
                    conn.execute(f"LISTEN {CHANNEL}")
                    self.connected.set()
                    self._wake_all()  # events may have been missed while disconnected
                    while not self._stop.is_set():
                        for note in conn.notifies(timeout=1.0):
                            self._wake(note.payload)
            except psycopg.Error as exc:
                if self.connected.is_set():
                    log.warning("job event notifications lost their connection (%s); streams poll", exc)
                self.connected.clear()
                self._stop.wait(RECONNECT_S)

    def _wake(self, key: str) -> None:
        with self._lock:
            waiting = list(self._subscribers.get(key, []))
        for wake in waiting:
            wake()

    def _wake_all(self) -> None:
        with self._lock:
            waiting = [wake for group in self._subscribers.values() for wake in group]
        for wake in waiting:
            wake()

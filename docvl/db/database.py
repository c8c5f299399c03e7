"""Connections and transactions, with database outages turned into DatabaseUnavailable."""

from __future__ import annotations

import logging
import select
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import Engine, create_engine, event, text
from sqlalchemy.exc import DBAPIError, DisconnectionError, InterfaceError, OperationalError
from sqlalchemy.orm import Session, sessionmaker

from docvl.errors import DatabaseUnavailable
from docvl.observability import tracing

log = logging.getLogger(__name__)


def is_connection_error(exc: BaseException) -> bool:
    if isinstance(exc, OperationalError | InterfaceError):
        return True
    return isinstance(exc, DBAPIError) and exc.connection_invalidated


def _closed_by_the_server_are_replaced(dbapi_connection: Any, *_: object) -> None:
    """On checkout from the pool: a connection the server closed while it sat idle (a restart, an admin's
    pg_terminate_backend) is replaced, not used. The server says so on the socket (an error message, then
    the end of the stream), so an idle connection with anything to read is taken for closed: one poll of
    the socket, ~5 µs, where SQLAlchemy's pre-ping sent a query to the server each time (about 2 ms of CPU
    per small job across the processes and Postgres). A peer that vanished without a word is found by the
    first statement, as a ping would have been."""
    if dbapi_connection.closed:
        raise DisconnectionError("the connection was closed")
    poller = select.poll()
    poller.register(dbapi_connection.fileno(), select.POLLIN)
    if poller.poll(0):
        raise DisconnectionError("the server closed the connection while it was idle")


class Database:
    """One engine per process; `transaction()` is the unit of work of every repository call."""

    def __init__(self, url: str, *, pool_size: int = 5, connect_timeout_s: int = 5) -> None:
        self.url = url
        self.engine: Engine = create_engine(
            url, pool_size=pool_size, connect_args={"connect_timeout": connect_timeout_s}
        )
        event.listen(self.engine, "checkout", _closed_by_the_server_are_replaced)
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)
        tracing.instrument_engine(self.engine)  # when tracing is on

    @contextmanager
    def transaction(self) -> Iterator[Session]:
        """A session in one transaction: committed on success, rolled back on any error.

        A lost connection (before or during commit) raises DatabaseUnavailable; the repositories' writes are
        idempotent, so the caller may simply retry the same call.
        """
        session = self._sessions()
        try:
            with session.begin():
                yield session
        except DBAPIError as exc:
            if is_connection_error(exc):
                raise DatabaseUnavailable(f"the database is unreachable: {exc.orig or exc}") from exc
            raise
        finally:
            session.close()

    def ping(self) -> None:
        try:
            with self.engine.connect() as connection:
                connection.execute(text("SELECT 1"))
        except DBAPIError as exc:
            raise DatabaseUnavailable(f"the database is unreachable: {exc.orig or exc}") from exc

    def wait_until_reachable(self, timeout_s: float) -> None:
        """Retry `ping` with backoff until it answers or `timeout_s` has passed (service start-up)."""
        deadline = time.monotonic() + timeout_s
        delay = 0.2
        while True:
            try:
                self.ping()
                return
            except DatabaseUnavailable:
                if time.monotonic() + delay > deadline:
                    raise
                log.info(
                    "waiting for the database at %s", self.engine.url.render_as_string(hide_password=True)
                )
                time.sleep(delay)
                delay = min(delay * 2, 5.0)

    def dispose(self) -> None:
        self.engine.dispose()

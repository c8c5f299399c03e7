"""Connections and transactions, with database outages turned into DatabaseUnavailable."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy import Engine, create_engine, text
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError
from sqlalchemy.orm import Session, sessionmaker

from docvl.errors import DatabaseUnavailable
from docvl.observability import tracing

log = logging.getLogger(__name__)


def is_connection_error(exc: BaseException) -> bool:
    if isinstance(exc, OperationalError | InterfaceError):
        return True
    return isinstance(exc, DBAPIError) and exc.connection_invalidated


class Database:
    """One engine per process; `transaction()` is the unit of work of every repository call."""

    def __init__(self, url: str, *, pool_size: int = 5, connect_timeout_s: int = 5) -> None:
        self.url = url
        self.engine: Engine = create_engine(
            url,
            pool_size=pool_size,
            pool_pre_ping=True,  # a connection that died while the server was away is replaced, not used
            connect_args={"connect_timeout": connect_timeout_s},
        )
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

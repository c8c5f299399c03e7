"""One namespace, one stack: every long-lived process of a stack marks its namespace in Redis as its
database's, and a stack whose namespace another database holds there refuses to start, saying which.

The marker is a Redis key in the namespace (`NAMESPACE:docvl-stack`) naming the database by what its
server says it is (docvl.db.identity), so processes that reach one database under different host names
agree. It lapses TTL_S after the last refresh: the Celery workers and the flow runner refresh it every
REFRESH_S while they run, so a stack that is gone frees its namespace by itself."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from typing import Any, ClassVar
from urllib.parse import urlsplit

import redis
from celery import Celery, bootsteps

from docvl.broker.celery_app import broker_errors
from docvl.db.database import Database
from docvl.db.identity import DatabaseIdentity, identity_of
from docvl.errors import BrokerUnavailable, NamespaceTaken
from docvl.namespace import database_name, redis_prefix
from docvl.settings import CoreSettings

log = logging.getLogger(__name__)
MARKER = "docvl-stack"
TTL_S = 600
REFRESH_S = 60


def where(url: str) -> str:
    """host:port/database of a Postgres or Redis URL, without its credentials."""
    parts = urlsplit(url)
    default_port = 6379 if parts.scheme.startswith("redis") else 5432
    path = parts.path.lstrip("/") or ("0" if default_port == 6379 else database_name(url))
    return f"{parts.hostname}:{parts.port or default_port}/{path}"


@dataclass
class StackMarker:
    """The namespace's marker on one Redis, for one database."""

    redis_url: str
    namespace: str
    database: DatabaseIdentity
    database_where: str  # how this stack's settings name its database (for the messages)

    @property
    def key(self) -> str:
        return redis_prefix(self.namespace) + MARKER

    def claim(self) -> None:
        """Mark the namespace as this database's, or keep it marked. NamespaceTaken when another database
        holds it; BrokerUnavailable when Redis does not answer."""
        mine = {"database": self.database.key, "where": self.database_where}
        client = redis.Redis.from_url(self.redis_url, socket_timeout=5, socket_connect_timeout=5)
        try:
            with broker_errors():
                if client.set(self.key, json.dumps(mine), nx=True, ex=TTL_S):
                    return
                held = client.get(self.key)
                holder: dict[str, Any] = json.loads(held) if held else mine  # lapsed meanwhile: ours next
                if holder.get("database") != self.database.key:
                    raise NamespaceTaken(self._taken_message(holder))
                client.expire(self.key, TTL_S)
        finally:
            client.close()

    def refresh(self) -> None:
        """claim, for a process that runs: a lost claim or an outage is logged, the process goes on."""
        try:
            self.claim()
        except NamespaceTaken as exc:
            log.error("%s", exc.message)
        except BrokerUnavailable as exc:
            log.warning("could not refresh the namespace's marker: %s", exc.message)

    def _taken_message(self, holder: dict[str, Any]) -> str:
        return (
            f"namespace {self.namespace!r} on the Redis at {where(self.redis_url)} is taken by another docvl "
            f"stack, whose database is {holder.get('where', '?')}; this stack's database is "
            f"{self.database_where}. Two stacks on one Redis need a namespace each: set DOCVL_NAMESPACE to a "
            "name of this stack's own, the same on every one of its processes. If that other stack is gone "
            f"for good, its claim lapses {TTL_S} s after its last process stopped (or delete the Redis key "
            f"{self.key!r})."
        )


def marker_for(settings: CoreSettings) -> StackMarker:
    """The stack's marker: waits for the database (DOCVL_DATABASE_WAIT_S) to ask it who it is."""
    database = Database(settings.database_url, pool_size=1)
    try:
        database.wait_until_reachable(settings.database_wait_s)
        identity = identity_of(database)
    finally:
        database.dispose()  # nothing of it is left to a forked child
    return StackMarker(settings.redis_url, settings.namespace, identity, where(settings.database_url))


def stake(settings: CoreSettings) -> StackMarker:
    """At a service's start: claim the stack's namespace. NamespaceTaken refuses the start; a Redis that
    does not answer now is only logged (a process that refreshes the marker claims it later)."""
    marker = marker_for(settings)
    try:
        marker.claim()
    except BrokerUnavailable as exc:
        log.warning("could not check the namespace %r now: %s", settings.namespace, exc.message)
    else:
        log.info("namespace %r is this stack's (database %s)", settings.namespace, marker.database_where)
    return marker


def guard(app: Celery, settings: CoreSettings) -> None:
    """Give `app`'s worker the marker: claimed before it consumes anything (a worker whose namespace another
    stack holds stops at once, saying so), then refreshed every REFRESH_S on the worker's timer."""

    class StackGuard(bootsteps.StartStopStep):  # type: ignore[misc]
        requires: ClassVar[set[str]] = {"celery.worker.components:Timer"}

        def start(self, worker: Any) -> None:
            marker = stake(settings)
            worker.timer.call_repeatedly(REFRESH_S, marker.refresh, priority=10)

    app.steps["worker"].add(StackGuard)

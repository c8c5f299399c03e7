"""Prometheus metrics of every deployable (prometheus_client, text format).

Each process serves its own `/metrics` on a port of its own (a setting per deployable; 0: off) with
`serve`. The metric families live in the modules beside this one, one per deployable; none has a label
whose values are unbounded (no job ids, no raw paths).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from threading import Thread
from wsgiref.simple_server import WSGIServer

from prometheus_client import REGISTRY, CollectorRegistry, start_http_server

log = logging.getLogger(__name__)
NAMESPACE = "docvl"
# Latencies from a millisecond to ten minutes (a page can take that long on a real model).
SECONDS_BUCKETS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600)


@dataclass
class MetricsServer:
    """A started `/metrics` endpoint (a daemon thread); `close` stops it."""

    server: WSGIServer
    thread: Thread
    host: str
    port: int

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}/metrics"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(5)


def serve(port: int, host: str = "127.0.0.1", registry: CollectorRegistry = REGISTRY) -> MetricsServer | None:
    """Serve the registry's metrics at http://host:port/metrics in a daemon thread; None when `port` is 0.
    A port that cannot be bound is logged and the process goes on without metrics: its own work matters
    more than its metrics."""
    if port == 0:
        return None
    try:
        server, thread = start_http_server(port, addr=host, registry=registry)
    except OSError as exc:
        log.error("metrics are off: cannot listen on %s:%d for /metrics: %s", host, port, exc)
        return None
    bound = int(server.server_address[1])
    log.info("metrics at http://%s:%d/metrics", host, bound)
    return MetricsServer(server, thread, host, bound)

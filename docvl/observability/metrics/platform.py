"""Platform gauges, read at scrape time from Postgres and the broker: jobs by status, the oldest queued
job's age, the messages waiting on each queue, and the sweeps' totals per bucket (counters kept in
Postgres, since each scheduled sweep runs in a process of its own). One process exports them (`docvl
flows serve`), so that they are not summed over replicas. Each source has a short timeout: a scrape
while the database or Redis is away answers at once, with `docvl_platform_up{source=...} 0`, instead of
hanging."""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Iterable, Sequence

import psycopg
import redis
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import REGISTRY, Collector, CollectorRegistry

from docvl.job_status import JobStatus
from docvl.observability.metrics import NAMESPACE

log = logging.getLogger(__name__)
PRIORITY_STEPS = 10  # kombu's Redis transport keeps a list per priority: `ocr`, `ocr:1` ... `ocr:9`
SEPARATOR = ":"
COUNTS = "SELECT status, count(*) FROM jobs GROUP BY status"
OLDEST = "SELECT EXTRACT(EPOCH FROM now() - min(created_at)) FROM jobs WHERE status = %(queued)s"
SWEEPS = "SELECT bucket, sweeps, objects_listed, objects_read, bytes_read FROM sweep_totals ORDER BY bucket"


def queue_keys(queue: str) -> list[str]:
    """The Redis lists that hold a queue's messages, one per priority step."""
    return [queue, *(f"{queue}{SEPARATOR}{step}" for step in range(1, PRIORITY_STEPS))]


class PlatformCollector(Collector):
    def __init__(
        self,
        database_url: str,
        redis_url: str,
        queues: Sequence[str],
        timeout_s: float,
        key_prefix: str = "",
    ) -> None:
        self.conninfo = database_url.replace("postgresql+psycopg://", "postgresql://", 1)
        self.queues = list(queues)
        self.key_prefix = key_prefix  # the stack's namespace in Redis (docvl.namespace.redis_prefix)
        self.timeout_s = timeout_s
        self.redis = redis.Redis.from_url(
            redis_url, socket_timeout=timeout_s, socket_connect_timeout=timeout_s
        )

    def describe(self) -> Iterable[Metric]:
        """The families, without reading anything (registration must not touch the database)."""
        return self._families()

    def _families(self) -> tuple[GaugeMetricFamily, ...]:
        """The gauges (the sweep counters are `_sweep_families`, left empty when the database is away)."""
        return (
            GaugeMetricFamily(f"{NAMESPACE}_platform_jobs", "Jobs by status.", labels=["status"]),
            GaugeMetricFamily(
                f"{NAMESPACE}_platform_oldest_queued_job_age_seconds",
                "Age of the oldest job not started yet (0: none waits).",
            ),
            GaugeMetricFamily(
                f"{NAMESPACE}_platform_queue_length",
                "Messages waiting on each broker queue (page tasks per task kind, webhooks, start requests), "
                "every priority together.",
                labels=["queue"],
            ),
            GaugeMetricFamily(
                f"{NAMESPACE}_platform_up",
                "1 when the source answered this scrape, 0 when it did not.",
                labels=["source"],
            ),
        )

    def collect(self) -> Iterable[Metric]:
        jobs, oldest, queues, up = self._families()
        sweeps = _sweep_families()
        up.add_metric(["database"], float(self._read_database(jobs, oldest, sweeps)))
        up.add_metric(["broker"], float(self._read_broker(queues)))
        return jobs, oldest, queues, up, *sweeps

    def _read_database(
        self, jobs: GaugeMetricFamily, oldest: GaugeMetricFamily, sweeps: Sequence[CounterMetricFamily]
    ) -> bool:
        started = time.monotonic()
        try:
            with psycopg.connect(
                self.conninfo,
                connect_timeout=max(2, math.ceil(self.timeout_s)),  # libpq's least
                options=f"-c statement_timeout={int(self.timeout_s * 1000)}",
                autocommit=True,
            ) as conn:
                counts: dict[str, int] = dict(conn.execute(COUNTS).fetchall())
                row = conn.execute(OLDEST, {"queued": JobStatus.QUEUED.value}).fetchone()
                swept = conn.execute(SWEEPS).fetchall()
        except (psycopg.Error, OSError) as exc:
            log.warning(
                "platform metrics: the database did not answer in %.1f s: %s", time.monotonic() - started, exc
            )
            return False
        for status in JobStatus:
            jobs.add_metric([status.value], float(counts.get(status.value, 0)))
        oldest.add_metric([], float(row[0]) if row is not None and row[0] is not None else 0.0)
        for bucket, *totals in swept:
            for family, total in zip(sweeps, totals, strict=True):
                family.add_metric([bucket], float(total))
        return True

    def _read_broker(self, queues: GaugeMetricFamily) -> bool:
        try:
            with self.redis.pipeline(transaction=False) as pipe:
                for queue in self.queues:
                    for key in queue_keys(queue):
                        pipe.llen(self.key_prefix + key)
                lengths = pipe.execute()
        except (redis.RedisError, OSError) as exc:
            log.warning("platform metrics: the broker did not answer: %s", exc)
            return False
        for index, queue in enumerate(self.queues):
            queues.add_metric(
                [queue], float(sum(lengths[index * PRIORITY_STEPS : (index + 1) * PRIORITY_STEPS]))
            )
        return True


def _sweep_families() -> tuple[CounterMetricFamily, ...]:
    """What the sweeps did, per bucket (docvl.jobs.sweep), in the order of SWEEPS' counts."""
    return (
        CounterMetricFamily(
            f"{NAMESPACE}_sweeps", "Sweeps of the bucket that ran to their end.", labels=["bucket"]
        ),
        CounterMetricFamily(
            f"{NAMESPACE}_sweep_objects_listed", "Objects the sweeps listed in the bucket.", labels=["bucket"]
        ),
        CounterMetricFamily(
            f"{NAMESPACE}_sweep_objects_read",
            "Objects whose bodies the sweeps read (new or changed since a sweep read them, or their job "
            "gone).",
            labels=["bucket"],
        ),
        CounterMetricFamily(
            f"{NAMESPACE}_sweep_bytes_read", "Bytes of object bodies the sweeps read.", labels=["bucket"]
        ),
    )


def register(
    database_url: str,
    redis_url: str,
    queues: Sequence[str],
    timeout_s: float,
    registry: CollectorRegistry = REGISTRY,
    key_prefix: str = "",
) -> PlatformCollector:
    collector = PlatformCollector(database_url, redis_url, queues, timeout_s, key_prefix)
    registry.register(collector)
    return collector

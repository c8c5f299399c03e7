"""The bucket sweep, first sweep against the next ones: 1,000 small objects (16x12 noise PNGs) in a bucket
of moto's S3 server, swept by docvl.jobs.sweep.sweep (what the sweep flow runs, without Prefect's task run
per object read) into a scratch Postgres database. Measures, per sweep: objects listed, bodies read (GET
requests), HEAD requests, bytes read, jobs made, wall seconds and this process's CPU seconds, for
  - the first sweep (every object new: read, stored, a job each),
  - the next sweep over the unchanged bucket (median of 3),
  - a sweep with read_all (every object read again, as every sweep did before the sweep remembered what it
    read; its jobs are found, none made; median of 3),
  - a sweep after 10 objects changed.
Writes the "Bucket sweep" section of docs/benchmarks.md.

    .venv/bin/python bench/sweep.py [--objects 1000]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
import uuid
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.model_worker import machine, write_section  # noqa: E402
from docvl.db import migrate  # noqa: E402
from docvl.db.database import Database  # noqa: E402
from docvl.jobs import sweep  # noqa: E402
from docvl.jobs.context import Context  # noqa: E402
from docvl.storage import OpenedObject, StoredObject  # noqa: E402
from docvl.storage.s3 import S3ObjectStore  # noqa: E402
from tests.support.helpers import png  # noqa: E402
from tests.support.services import moto_s3_server, scratch_database  # noqa: E402
from tests.support.sweeper import sweep_request  # noqa: E402

HEADING = "### Bucket sweep"
PREFIX = "incoming/"


class CountingStore(S3ObjectStore):
    """The S3 store, counting the requests a sweep makes per object: bodies read (GET) and HEADs."""

    def __init__(self, endpoint: str, bucket: str) -> None:
        super().__init__(endpoint, "testing", "testing", bucket)
        self.gets = 0
        self.heads = 0

    def open_version(self, key: str) -> AbstractContextManager[OpenedObject]:
        self.gets += 1
        return super().open_version(key)

    def stat(self, key: str) -> StoredObject | None:
        self.heads += 1
        return super().stat(key)


@dataclass
class Measured:
    listed: int
    gets: int
    heads: int
    bytes_read: int
    made: int
    seconds: float
    cpu_s: float


def swept(ctx: Context, source: CountingStore, read_all: bool = False) -> Measured:
    source.gets = source.heads = 0
    wall, cpu = time.perf_counter(), time.process_time()
    result = sweep.sweep(ctx, source, source.bucket, PREFIX, sweep_request(), read_all=read_all)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    return Measured(result.listed, source.gets, source.heads, result.bytes_read, result.made, wall, cpu)


def median(runs: list[Measured]) -> Measured:
    """The run of median wall time (its counts are those of every run)."""
    return sorted(runs, key=lambda m: m.seconds)[len(runs) // 2]


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--objects", type=int, default=1000)
    args = parser.parse_args()
    load = os.getloadavg()[0]
    with (
        tempfile.TemporaryDirectory(prefix="docvl-bench-sweep-") as tmp,
        moto_s3_server(Path(tmp) / "moto.log") as endpoint,
        scratch_database("bench_sweep") as url,
    ):
        db = Database(url)
        migrate.upgrade(db)
        store = S3ObjectStore(endpoint, "testing", "testing", f"docvl-{uuid.uuid4().hex[:8]}")
        store.ensure_ready()
        source = CountingStore(endpoint, f"incoming-{uuid.uuid4().hex[:8]}")
        source.ensure_ready()
        objects = [png(seed, (16, 12)) for seed in range(args.objects)]
        for index, data in enumerate(objects):
            source.put(f"{PREFIX}{index:05d}.png", data)
        ctx = Context(db, store)
        first = swept(ctx, source)
        unchanged = median([swept(ctx, source) for _ in range(3)])
        read_all = median([swept(ctx, source, read_all=True) for _ in range(3)])
        for index in range(10):
            source.put(f"{PREFIX}{index:05d}.png", png(args.objects + index, (16, 12)))
        changed = swept(ctx, source)
        db.dispose()
    total = sum(len(data) for data in objects)
    rows = [
        ("first sweep (every object new)", first),
        ("next sweep, bucket unchanged (median of 3)", unchanged),
        ("sweep with read_all, bucket unchanged: what every sweep cost before (median of 3)", read_all),
        ("sweep after 10 objects changed", changed),
    ]
    table = "\n".join(
        f"| {what} | {m.listed} | {m.gets} | {m.heads} | {m.bytes_read:,} | {m.made} | {m.seconds:.2f} | "
        f"{m.cpu_s:.2f} |"
        for what, m in rows
    )
    section = (
        f"{HEADING}\n\n"
        f"Measured {time.strftime('%Y-%m-%d')} by `bench/sweep.py` in one run on: {machine()}.\n\n"
        f"{args.objects:,} small objects ({total:,} bytes: 16x12 noise PNGs) in a bucket of moto's S3 server "
        "(a Python process on the same cores; MinIO or S3 in production), swept by `docvl.jobs.sweep.sweep` "
        "(what the sweep flow runs, without Prefect's task run per object read) into Postgres on this "
        "machine. GETs and HEADs are counted in the sweeping process's store; CPU is the sweeping "
        f"process's. The machine was shared with other work (load average {load:.1f} at the start). Before "
        "the sweep remembered what it read, every sweep read every object as the read_all row does, and "
        "made a HEAD request per object besides.\n\n"
        "| sweep | listed | bodies read (GET) | HEAD | bytes read | jobs made | seconds | CPU s |\n"
        "|---|---|---|---|---|---|---|---|\n"
        f"{table}\n\n"
        f"The next sweep over the unchanged bucket took **{unchanged.seconds / first.seconds:.3f}** of the "
        f"first sweep's time and **{unchanged.seconds / read_all.seconds:.3f}** of a sweep that reads every "
        f"object, reading {unchanged.bytes_read} bytes against {read_all.bytes_read:,}.\n"
    )
    write_section(ROOT / "docs" / "benchmarks.md", HEADING, section)
    print(section)


if __name__ == "__main__":
    main()

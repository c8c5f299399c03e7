"""A burst of submissions from one API key: `docvl up` as the README starts it (tiny model, its key's limit
of jobs in flight at 64), then 1,000 single-image QA submissions sent at once over REST.

1. The burst: every submission opens its own connection and sends at the same instant (an asyncio client
   writing the multipart request itself, so that the client's own CPU stays small beside the server's on
   this machine). Measured from that instant to each answer: p50/p99 of the refusals (429) and of the
   acceptances (202), the last answer, the API's CPU seconds; counted: statuses (no 5xx, no connection
   error), Retry-After on every 429, accepted against the limit (and the accepted jobs that had already
   ended when the burst was answered: each made room for one more); then every accepted job is followed
   to its end. The floor, just before on the same machine: the same burst against a bare ASGI app that
   answers 429 at once, under uvicorn as `docvl api` runs it (what the connections alone cost).
2. The exact check at insert, two ways on a scratch database, in one run: the per-key advisory lock and a
   count of the key's jobs in flight (what docvl does), against a per-key counter row updated atomically
   (and decremented as each job ends). Threads submit and finish jobs of one key; transactions/s, submit
   p50/p99.

    .venv/bin/python bench/bursts.py [--requests 1000] [--limit 64]

Writes the "Bursts" section of docs/benchmarks.md. Uses Postgres and Redis where they answer on the
configured URLs (as `docvl up` does), with a scratch database of its own.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import psycopg

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.model_worker import machine, write_section  # noqa: E402
from bench.up_platform import Platform, cpu_seconds  # noqa: E402
from docvl.client import Client  # noqa: E402
from docvl.job_status import JobStatus  # noqa: E402
from tests.support.helpers import stop_process, wait_for  # noqa: E402
from tests.support.services import free_port, scratch_database  # noqa: E402

IMAGE = ROOT / "docvl" / "samples" / "page.png"
QUESTION = "What is the title of this page?"
REPORT = ROOT / "docs" / "benchmarks.md"
HEADING = "### Bursts"


# -- 1. the burst --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Answer:
    status: int  # 0: no HTTP answer (the connection failed)
    seconds: float  # from the burst's start to the end of the answer
    retry_after: str | None
    body: bytes


def submission(image: bytes, key: str, host: str) -> bytes:
    """One multipart submission (a QA task on the image) as the bytes sent, its connection closed after."""
    boundary = uuid.uuid4().hex
    body = b"".join(
        [
            f'--{boundary}\r\nContent-Disposition: form-data; name="tasks"\r\n\r\nqa\r\n'.encode(),
            f'--{boundary}\r\nContent-Disposition: form-data; name="question"\r\n\r\n{QUESTION}\r\n'.encode(),
            f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="page.png"\r\n'
            "Content-Type: image/png\r\n\r\n".encode(),
            image,
            f"\r\n--{boundary}--\r\n".encode(),
        ]
    )
    head = (
        f"POST /v1/jobs HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {key}\r\n"
        f"Content-Type: multipart/form-data; boundary={boundary}\r\nContent-Length: {len(body)}\r\n"
        "Connection: close\r\n\r\n"
    )
    return head.encode() + body


async def send(host: str, port: int, request: bytes, go: asyncio.Event, started: list[float]) -> Answer:
    await go.wait()
    try:
        reader, writer = await asyncio.open_connection(host, port)
        writer.write(request)
        with contextlib.suppress(ConnectionError):  # answered and closed before the body was all sent
            await writer.drain()
        status = int((await reader.readline()).split()[1])
        length, retry_after = 0, None
        while (line := await reader.readline()) not in (b"\r\n", b""):
            name, _, value = line.decode("latin-1").partition(":")
            if name.lower() == "content-length":
                length = int(value)
            elif name.lower() == "retry-after":
                retry_after = value.strip()
        body = await reader.readexactly(length)
        writer.close()
    except (OSError, ValueError, IndexError, asyncio.IncompleteReadError):
        return Answer(0, time.perf_counter() - started[0], None, b"")
    return Answer(status, time.perf_counter() - started[0], retry_after, body)


async def burst_of(host: str, port: int, key: str, image: bytes, count: int) -> list[Answer]:
    """`count` submissions released at the same instant, each on its own connection."""
    request = submission(image, key, f"{host}:{port}")
    go, started = asyncio.Event(), [0.0]
    tasks = [asyncio.create_task(send(host, port, request, go, started)) for _ in range(count)]
    await asyncio.sleep(0.2)  # every task is waiting for the signal
    started[0] = time.perf_counter()
    go.set()
    return await asyncio.gather(*tasks)


FLOOR_SERVER = """
import sys, uvicorn

async def refuse(scope, receive, send):
    if scope["type"] == "http":
        await send({"type": "http.response.start", "status": 429, "headers": [(b"retry-after", b"10")]})
        await send({"type": "http.response.body", "body": b'{"error": {"code": "too_many_submissions"}}'})

uvicorn.run(refuse, host="127.0.0.1", port=int(sys.argv[1]), log_level="warning", http=sys.argv[2])
"""


def floor(image: bytes, count: int, http: str = "auto") -> list[Answer]:
    """The burst against a bare ASGI app under uvicorn (its defaults, as `docvl api`: `auto` picks httptools),
    refusing at once; `http="h11"`: with uvicorn's pure-Python HTTP parser instead."""
    port = free_port()
    server = subprocess.Popen([sys.executable, "-c", FLOOR_SERVER, str(port), http])
    try:
        wait_for(lambda: listening(port), 30, "the floor server")
        return asyncio.run(burst_of("127.0.0.1", port, "dvl_floor", image, count))
    finally:
        stop_process(server)


def listening(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


def ended(platform: Platform, job_ids: list[str]) -> int:
    """How many of the jobs have ended."""
    url = platform.database_url.replace("postgresql+psycopg://", "postgresql://")
    with psycopg.connect(url) as conn:
        row = conn.execute(
            "SELECT count(*) FROM jobs WHERE id = ANY(%s::uuid[]) AND finished_at IS NOT NULL", [job_ids]
        ).fetchone()
    return int(row[0]) if row else 0


def run_burst(requests: int, limit: int) -> dict[str, float | str]:
    image = IMAGE.read_bytes()
    with (
        scratch_database("bench_bursts") as database_url,
        tempfile.TemporaryDirectory(prefix="docvl-bursts-") as tmp,
    ):
        platform = Platform(
            Path(tmp) / "var",
            {"DOCVL_DATABASE_URL": database_url, "DOCVL_MAX_IN_FLIGHT_PER_KEY": str(limit)},
        )
        try:
            with Client(platform.url, platform.key, timeout=120) as client:
                for _ in range(3):  # warm: the pool processes make their connections on their first jobs
                    warm = client.submit(image, ["qa"], question=QUESTION, filename="page.png")
                    client.wait(warm.id, timeout_s=300)
                load = os.getloadavg()[0]
                floor_answers = floor(image, requests)
                h11_answers = floor(image, requests, http="h11")
                before = cpu_seconds(platform.process.pid)
                answers = asyncio.run(burst_of("127.0.0.1", platform.api_port, platform.key, image, requests))
                after = cpu_seconds(platform.process.pid)
                accepted = [json.loads(a.body)["id"] for a in answers if a.status == 202]
                ended_in_burst = ended(platform, accepted)
                outcomes = [client.wait(job_id, timeout_s=900).status for job_id in accepted]
        finally:
            platform.stop()
    refusals = [a.seconds for a in answers if a.status == 429]
    floor_p99 = percentile([a.seconds for a in floor_answers], 0.99)
    acceptances = [a.seconds for a in answers if a.status == 202]
    others: dict[int, int] = {}
    for answer in answers:
        if answer.status not in (202, 429):
            others[answer.status] = others.get(answer.status, 0) + 1
    return {
        "requests": requests,
        "accepted": len(accepted),
        "refused": len(refusals),
        "refused without Retry-After": sum(1 for a in answers if a.status == 429 and not a.retry_after),
        "other answers": ", ".join(f"{n} × {'no answer' if s == 0 else s}" for s, n in others.items())
        or "none",
        "ended during the burst": ended_in_burst,
        "succeeded": sum(1 for status in outcomes if status is JobStatus.SUCCEEDED),
        "refusal p50 s": statistics.median(refusals) if refusals else float("nan"),
        "refusal p99 s": percentile(refusals, 0.99),
        "acceptance p50 s": statistics.median(acceptances) if acceptances else float("nan"),
        "acceptance p99 s": percentile(acceptances, 0.99),
        "last answer s": max(a.seconds for a in answers),
        "floor p50 s": statistics.median(a.seconds for a in floor_answers),
        "floor p99 s": floor_p99,
        "floor failures": sum(1 for a in floor_answers if a.status != 429),
        "h11 floor p50 s": statistics.median(a.seconds for a in h11_answers),
        "h11 floor p99 s": percentile([a.seconds for a in h11_answers], 0.99),
        "refusal / floor p99": percentile(refusals, 0.99) / floor_p99,
        "api cpu s": after.get("api", 0.0) - before.get("api", 0.0),
        "load": load,
    }


# -- 2. the exact check at insert, two ways ------------------------------------------------------------

SCHEMA = """
CREATE TABLE jobs (id bigserial PRIMARY KEY, api_key int NOT NULL, status text NOT NULL,
                   payload text NOT NULL);
CREATE INDEX ON jobs (api_key, status);
CREATE TABLE key_counters (api_key int PRIMARY KEY, in_flight int NOT NULL);
"""
UNFINISHED = "('queued', 'running')"


def advisory_submit(conn: psycopg.Connection, limit: int) -> int | None:
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(hashtext('submit:1'))")
        row = conn.execute(
            f"SELECT count(*) FROM jobs WHERE api_key = 1 AND status IN {UNFINISHED}"
        ).fetchone()
        if row is None or row[0] >= limit:
            return None
        inserted = conn.execute(
            "INSERT INTO jobs (api_key, status, payload) VALUES (1, 'queued', 'x') RETURNING id"
        ).fetchone()
    return int(inserted[0]) if inserted else None


def advisory_finish(conn: psycopg.Connection, job_id: int) -> None:
    with conn.transaction():
        conn.execute("UPDATE jobs SET status = 'succeeded' WHERE id = %s", [job_id])


def counter_submit(conn: psycopg.Connection, limit: int) -> int | None:
    with conn.transaction():
        taken = conn.execute(
            "UPDATE key_counters SET in_flight = in_flight + 1 WHERE api_key = 1 AND in_flight < %s "
            "RETURNING in_flight",
            [limit],
        ).fetchone()
        if taken is None:
            return None
        inserted = conn.execute(
            "INSERT INTO jobs (api_key, status, payload) VALUES (1, 'queued', 'x') RETURNING id"
        ).fetchone()
    return int(inserted[0]) if inserted else None


def counter_finish(conn: psycopg.Connection, job_id: int) -> None:
    with conn.transaction():
        conn.execute("UPDATE jobs SET status = 'succeeded' WHERE id = %s", [job_id])
        conn.execute("UPDATE key_counters SET in_flight = in_flight - 1 WHERE api_key = 1")


def exact_check(
    url: str,
    submit: Callable[[psycopg.Connection, int], int | None],
    finish: Callable[[psycopg.Connection, int], None],
    threads: int,
    per_thread: int,
    limit: int,
) -> dict[str, float]:
    """`threads` clients of one key, each submitting a job and finishing it, `per_thread` times, on a key
    with 20,000 ended jobs and 32 in flight already."""
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("DROP TABLE IF EXISTS jobs, key_counters")
        conn.execute(SCHEMA)
        for status, count in (("succeeded", 20_000), ("queued", 32)):
            conn.execute(
                "INSERT INTO jobs (api_key, status, payload) SELECT 1, %s, 'x' FROM generate_series(1, %s)",
                [status, count],
            )
        conn.execute("INSERT INTO key_counters VALUES (1, 32)")
        conn.execute("ANALYZE jobs")
    latencies: list[float] = []
    lock = threading.Lock()
    start = threading.Barrier(threads + 1)

    def client() -> None:
        with psycopg.connect(url, autocommit=True) as conn:
            start.wait()
            mine = []
            for _ in range(per_thread):
                began = time.perf_counter()
                job_id = submit(conn, limit)
                mine.append(time.perf_counter() - began)
                if job_id is None:
                    raise SystemExit("the exact check refused a submission under the limit")
                finish(conn, job_id)
        with lock:
            latencies.extend(mine)

    workers = [threading.Thread(target=client) for _ in range(threads)]
    for worker in workers:
        worker.start()
    start.wait()
    began = time.perf_counter()
    for worker in workers:
        worker.join()
    wall = time.perf_counter() - began
    return {
        "submits/s": len(latencies) / wall,
        "submit p50 ms": statistics.median(latencies) * 1000,
        "submit p99 ms": percentile(latencies, 0.99) * 1000,
    }


EXACT_CHECKS = {
    "advisory lock + count (docvl)": (advisory_submit, advisory_finish),
    "counter row": (counter_submit, counter_finish),
}


def run_exact_checks(threads: int = 8, per_thread: int = 300, rounds: int = 3) -> dict[str, dict[str, float]]:
    """Each way `rounds` times, taking turns; the median round of each (by submits/s)."""
    runs: dict[str, list[dict[str, float]]] = {name: [] for name in EXACT_CHECKS}
    with scratch_database("bench_exact_check") as database_url:
        url = database_url.replace("postgresql+psycopg://", "postgresql://")
        for _ in range(rounds):
            for name, (submit, finish) in EXACT_CHECKS.items():
                runs[name].append(exact_check(url, submit, finish, threads, per_thread, limit=10_000))
    return {
        name: sorted(found, key=lambda r: r["submits/s"])[len(found) // 2] for name, found in runs.items()
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--requests", type=int, default=1000)
    parser.add_argument("--limit", type=int, default=64, help="DOCVL_MAX_IN_FLIGHT_PER_KEY (its default).")
    args = parser.parse_args()
    checks = run_exact_checks()
    burst = run_burst(args.requests, args.limit)
    rows = [
        f"| {burst['requests']} submissions at once, one key, limit {args.limit} | {burst['accepted']} "
        f"accepted ({burst['ended during the burst']} of them had ended when the last answer came), "
        f"{burst['refused']} refused (429), other answers: {burst['other answers']}; refusals without "
        f"Retry-After: {burst['refused without Retry-After']} |",
        f"| refusals (429), from the burst's start | p50 {burst['refusal p50 s']:.3f} s, "
        f"**p99 {burst['refusal p99 s']:.3f} s** |",
        f"| the floor: the same burst against a bare ASGI app answering 429 at once (uvicorn as `docvl api` "
        f"runs it, with httptools; just before, `docvl up` idle) | p50 {burst['floor p50 s']:.3f} s, p99 "
        f"{burst['floor p99 s']:.3f} s ({burst['floor failures']} not answered 429); refusals' p99 / the "
        f"floor's: **{burst['refusal / floor p99']:.2f}** |",
        f"| the same floor with uvicorn's pure-Python parser (h11, what `docvl api` ran before httptools) | "
        f"p50 {burst['h11 floor p50 s']:.3f} s, p99 {burst['h11 floor p99 s']:.3f} s |",
        f"| acceptances (202), from the burst's start | p50 {burst['acceptance p50 s']:.3f} s, "
        f"p99 {burst['acceptance p99 s']:.3f} s |",
        f"| last answer | {burst['last answer s']:.2f} s; API CPU during the burst "
        f"{burst['api cpu s']:.2f} s |",
        f"| accepted jobs followed to their end | {burst['succeeded']} of {burst['accepted']} succeeded |",
    ]
    check_rows = [
        f"| {name} | {r['submits/s']:.0f} | {r['submit p50 ms']:.1f} | {r['submit p99 ms']:.1f} |"
        for name, r in checks.items()
    ]
    section = (
        f"{HEADING}\n\n`bench/bursts.py` on `docvl up` (tiny model, the sample page.png, a QA task each; "
        "each submission on its own connection, all sent at the same instant by an asyncio client), "
        f"{machine()}; the machine's load average (1 min) as the bursts began: {burst['load']:.1f}.\n\n"
        "| what | measured |\n|---|---|\n" + "\n".join(rows) + "\n\n"
        "The exact check as a job is inserted, two ways, on a scratch database in the same run: 8 threads "
        "submit and then finish jobs of one key (20,000 ended jobs and 32 in flight before), 300 each, "
        "median of 3 rounds taken in turns.\n\n| exact check | submit + finish /s | submit p50 ms | "
        "submit p99 ms |\n|---|---|---|---|\n" + "\n".join(check_rows) + "\n"
    )
    write_section(REPORT, HEADING, section)
    print(section)


if __name__ == "__main__":
    main()

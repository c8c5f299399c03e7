"""What a Prefect flow run costs, for choosing how job runners start jobs: a flow run per job or per batch,
a task run per job or none. Against `prefect server start` on Postgres (this machine), flow heartbeat off.

    .venv/bin/python bench/orchestration.py

Writes the "Orchestration" section of docs/benchmarks.md.
"""

from __future__ import annotations

import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.model_worker import machine, write_section  # noqa: E402
from bench.up_platform import descendants  # noqa: E402
from tests.support.services import prefect_server, scratch_database  # noqa: E402

HEADING = "### Orchestration"


def main() -> None:
    with (
        tempfile.TemporaryDirectory(prefix="docvl-orchestration-") as tmp,
        scratch_database("orchestration") as url,
        prefect_server(url, Path(tmp)) as api,
    ):
        os.environ["PREFECT_API_URL"] = api
        os.environ["PREFECT_LOGGING_LEVEL"] = "WARNING"
        rows = measure(server_pid(api))
    section = (
        f"{HEADING}\n\n`bench/orchestration.py`: Prefect 3.8 flow runs against `prefect server start` on "
        f"Postgres, flow heartbeat off, {machine()}.\n\n| what | measured |\n|---|---|\n"
        + "\n".join(f"| {what} | {value} |" for what, value in rows)
        + "\n"
    )
    write_section(ROOT / "docs" / "benchmarks.md", HEADING, section)
    print(section)


def server_pid(api: str) -> int:
    port = api.split(":")[2].split("/")[0]
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                command = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
            except OSError:
                continue
            if "prefect server start" in command and f"--port {port}" in command:
                return int(entry.name)
    raise LookupError("no Prefect server")


def measure(server: int) -> list[tuple[str, str]]:
    from prefect import flow, task
    from prefect.settings import temporary_settings

    @task
    def one(i: int) -> int:
        return i

    @flow(persist_result=False)
    def bare(n: int) -> int:
        return n

    @flow(persist_result=False)
    def tasks(n: int) -> list[int]:
        return [one.with_options(task_run_name=f"job-{i}")(i) for i in range(n)]

    def median_s(call: Callable[[], Any], runs: int = 10) -> float:
        call()
        times = []
        for _ in range(runs):
            started = time.perf_counter()
            call()
            times.append(time.perf_counter() - started)
        return statistics.median(times)

    def server_cpu() -> float:
        ticks = os.sysconf("SC_CLK_TCK")
        total = 0
        for pid in [server, *descendants(server)]:
            try:
                fields = (Path("/proc") / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            total += int(fields[11]) + int(fields[12])
        return total / ticks

    def cpu_of(call: Callable[[], Any]) -> tuple[float, float]:
        """(this process's, the server's) CPU seconds for the call, the server's events drained after."""
        time.sleep(2)
        server_before, client_before = server_cpu(), time.process_time()
        call()
        client = time.process_time() - client_before
        time.sleep(3)  # the server persists the runs' events after the calls return
        return client, server_cpu() - server_before

    rows = []
    with temporary_settings(updates={"flows.heartbeat_frequency": None}):
        rows.append(
            ("a flow run with no task run (wall, median of 10)", f"{median_s(lambda: bare(1)) * 1000:.0f} ms")
        )
        rows.append(("a flow run with one task run", f"{median_s(lambda: tasks(1)) * 1000:.0f} ms"))
        rows.append(
            (
                "a flow run with 8 task runs (a batch of 8 jobs)",
                f"{median_s(lambda: tasks(8), 5) * 1000:.0f} ms",
            )
        )
        with ThreadPoolExecutor(8) as pool:
            started = time.perf_counter()
            list(pool.map(lambda i: tasks(1), range(48)))
            rate = 48 / (time.perf_counter() - started)
        rows.append(
            ("48 flow runs of one task run each, from 8 threads of one process", f"{rate:.1f} flow runs/s")
        )
        client, served = cpu_of(lambda: [bare(8) for _ in range(10)])
        rows.append(
            (
                "CPU per flow run (no task runs): client, server",
                f"{client * 100:.0f} ms, {served * 100:.0f} ms",
            )
        )
        client_t, served_t = cpu_of(lambda: [tasks(8) for _ in range(10)])
        rows.append(
            (
                "CPU per task run (the difference, 80 task runs): client, server",
                f"{(client_t - client) / 80 * 1000:.1f} ms, {(served_t - served) / 80 * 1000:.1f} ms",
            )
        )
    return rows


if __name__ == "__main__":
    main()

"""Two stacks on one machine: two `docvl up` with different databases and ports on this machine's Postgres
server and Redis (the same Redis database), then single-image QA jobs to both at once over REST.

Counts, per stack: jobs succeeded, page tasks of the other stack seen by its page worker (its log's
`not_found`, `has no page` and `dropped` lines, and docvl_foreign_tasks_total), and what its Prefect holds
(deployments, flow runs, runs tagged with the other namespace, jobs started by its runs that are not its
own). Writes the "Two stacks on one machine" section of docs/benchmarks.md.

    .venv/bin/python bench/two_stacks.py [--jobs 48] [--clients 16]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import httpx  # noqa: E402
import psycopg  # noqa: E402
import redis  # noqa: E402
from prometheus_client.parser import text_string_to_metric_families  # noqa: E402

from bench.model_worker import machine, write_section  # noqa: E402
from bench.up_platform import Platform  # noqa: E402
from docvl.client import Client  # noqa: E402
from docvl.job_status import JobStatus  # noqa: E402
from docvl.namespace import derive, redis_prefix  # noqa: E402
from tests.support.services import free_port  # noqa: E402

IMAGE = ROOT / "docvl" / "samples" / "page.png"
QUESTION = "What is the title of this page?"
REPORT = ROOT / "docs" / "benchmarks.md"
HEADING = "### Two stacks on one machine"
SERVER = "postgresql+psycopg://postgres@127.0.0.1:5432"
ADMIN = "postgresql://postgres@127.0.0.1:5432/postgres"
REDIS = "redis://127.0.0.1:6379/0"
CROSS_SIGNS = ("not_found", "has no page", "dropped")
METRICS = ("API", "GATEWAY", "MODEL_WORKER", "WORKER", "JOB_RUNNER", "FLOWS")


class Stack:
    """One `docvl up` on its own database, ports and data directory, on the shared servers."""

    def __init__(self, name: str, data: Path) -> None:
        self.database = f"docvl_{name}"
        self.namespace = derive(f"{SERVER}/{self.database}")
        self.metrics_port = free_port()
        env = {
            "DOCVL_DATABASE_URL": f"{SERVER}/{self.database}",
            "DOCVL_REDIS_URL": REDIS,
            "DOCVL_MAX_IN_FLIGHT_PER_KEY": "1000",
            **{f"DOCVL_{process}_METRICS_PORT": "0" for process in METRICS},
            "DOCVL_WORKER_METRICS_PORT": str(self.metrics_port),
        }
        self.data = data
        self.started_s = 0.0
        self.env = env
        self.platform: Platform | None = None

    def start(self) -> None:
        began = time.perf_counter()
        self.platform = Platform(self.data, self.env)
        self.started_s = time.perf_counter() - began

    @property
    def up(self) -> Platform:
        assert self.platform is not None
        return self.platform

    def prefect(self, kind: str) -> list[dict[str, Any]]:
        """Every deployment or flow run its Prefect holds."""
        api = f"http://127.0.0.1:{self.up.env['DOCVL_PREFECT_PORT']}/api/{kind}/filter"
        found: list[dict[str, Any]] = []
        while True:
            page = httpx.post(api, json={"limit": 200, "offset": len(found)}, timeout=30).json()
            found += page
            if len(page) < 200:
                return found

    def job_ids(self) -> set[str]:
        with psycopg.connect(f"postgresql://postgres@127.0.0.1:5432/{self.database}") as conn:
            return {str(row[0]) for row in conn.execute("SELECT id FROM jobs")}

    def cross_stack_lines(self) -> int:
        log = (self.data / "logs" / "celery-worker.log").read_text(errors="replace")
        return sum(1 for line in log.splitlines() if any(sign in line for sign in CROSS_SIGNS))

    def foreign_tasks(self) -> float:
        text = httpx.get(f"http://127.0.0.1:{self.metrics_port}/metrics", timeout=10).text
        return sum(
            sample.value
            for family in text_string_to_metric_families(text)
            for sample in family.samples
            if sample.name == "docvl_foreign_tasks_total"
        )


def load(stacks: list[Stack], jobs: int, clients: int) -> tuple[dict[str, list[str]], float]:
    """`jobs` QA jobs to each stack at once, `clients` REST clients each; (job ids by namespace, wall s)."""
    image = IMAGE.read_bytes()
    ended: dict[str, list[str]] = {stack.namespace: [] for stack in stacks}
    lock = threading.Lock()
    pools = {s.namespace: [Client(s.up.url, s.up.key, timeout=120) for _ in range(clients)] for s in stacks}

    def one(stack: Stack, index: int) -> None:
        client = pools[stack.namespace][index % clients]
        job = client.submit(image, ["qa"], question=QUESTION, filename=f"page-{index}.png")
        final = client.wait(job, timeout_s=600)
        if final.status is not JobStatus.SUCCEEDED:
            raise SystemExit(f"{stack.namespace}: job {job.id} ended {final.status}")
        with lock:
            ended[stack.namespace].append(str(job.id))

    started = time.perf_counter()
    with ThreadPoolExecutor(clients * len(stacks)) as executor:
        futures = [executor.submit(one, stack, i) for i in range(jobs) for stack in stacks]
        for future in futures:
            future.result()
    wall = time.perf_counter() - started
    for pool in pools.values():
        for client in pool:
            client.close()
    return ended, wall


def prefect_rows(stack: Stack, other: Stack, sent: set[str]) -> str:
    """What the stack's Prefect holds. Its flow runs start the jobs of its database only: those sent here,
    and the demo's 3 (`docvl up` runs the demo whatever DOCVL_DEMO says)."""
    deployments = sorted(f"`{d['name']}`" for d in stack.prefect("deployments"))
    runs = stack.prefect("flow_runs")
    tagged_other = sum(1 for r in runs if f"namespace:{other.namespace}" in r["tags"])
    started = {j for r in runs for j in r["parameters"].get("job_ids", [])}
    return (
        f"deployments {', '.join(deployments)}; {len(runs)} flow runs, {tagged_other} tagged with the "
        f"other's namespace; they started {len(started & sent)} of the {len(sent)} jobs sent here, "
        f"{len(started - stack.job_ids())} jobs not in its database, "
        f"{len(started & other.job_ids())} of the other's"
    )


def cleanup(stacks: list[Stack]) -> None:
    """The databases (docvl's and Prefect's) and the Redis keys of both stacks."""
    with psycopg.connect(ADMIN, autocommit=True) as conn:
        for stack in stacks:
            for name in (stack.database, f"{stack.database}_prefect"):
                conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    client = redis.Redis.from_url(REDIS)
    for stack in stacks:
        for key in client.scan_iter(match=redis_prefix(stack.namespace) + "*"):
            client.delete(key)
    client.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--jobs", type=int, default=48, help="Jobs to each stack.")
    parser.add_argument("--clients", type=int, default=16, help="REST clients per stack.")
    args = parser.parse_args()
    run = uuid.uuid4().hex[:6]
    with tempfile.TemporaryDirectory(prefix="docvl-two-stacks-") as tmp:
        stacks = [Stack(f"{name}_{run}", Path(tmp) / name) for name in ("a", "b")]  # docvl_a_…, docvl_b_…
        try:
            starters = [threading.Thread(target=stack.start) for stack in stacks]
            for thread in starters:  # both at once, as two terminals would
                thread.start()
            for thread in starters:
                thread.join()
            ended, wall = load(stacks, args.jobs, args.clients)
            rows = []
            for index, stack in enumerate(stacks):
                other = stacks[1 - index]
                succeeded = ended[stack.namespace]
                foreign = len(set(succeeded) & other.job_ids())
                rows.append(
                    f"| `{stack.namespace}` | {stack.started_s:.0f} s | {len(succeeded)} of {args.jobs} "
                    f"succeeded, {foreign} in the other's database | {stack.cross_stack_lines()} lines, "
                    f"docvl_foreign_tasks_total {stack.foreign_tasks():.0f} | "
                    f"{prefect_rows(stack, other, set(succeeded))} |"
                )
        finally:
            for stack in stacks:
                if stack.platform is not None:
                    stack.platform.stop()
            cleanup(stacks)
    total = sum(len(ids) for ids in ended.values())
    section = (
        f"{HEADING}\n\n`bench/two_stacks.py`: two `docvl up` started at once on this machine's Postgres "
        f"server and Redis (one Redis database), each with its own database, ports and data directory "
        f"(tiny model, 24 new tokens); then {args.jobs} single-image QA jobs to each at once over REST "
        f"({args.clients} clients per stack), {machine()}.\n\n"
        f"All {total} jobs took {wall:.1f} s ({total / wall:.2f} jobs/s over both stacks).\n\n"
        "| stack (namespace) | start-up | jobs | cross-stack page tasks in its page worker (`not_found`, "
        "`has no page`, `dropped` lines; metric) | its Prefect |\n|---|---|---|---|---|\n"
        + "\n".join(rows)
        + "\n"
    )
    write_section(REPORT, HEADING, section)
    print(section)


if __name__ == "__main__":
    main()

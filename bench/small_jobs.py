"""Small jobs at model speed: `docvl up` as the README starts it, then single-image QA jobs over REST.

1. At idle, one job at a time: submit -> `succeeded` (p50, p90).
2. 48 jobs from 16 clients: jobs/s, end-to-end p50/p99, submission p99, HTTP errors.
3. The same 48 requests straight to the model worker over gRPC from 16 clients, in the same run: its
   requests/s, and the platform's share of it.

    .venv/bin/python bench/small_jobs.py [--idle 20] [--jobs 48] [--clients 16]

Writes the "Small jobs" section of docs/benchmarks.md. Uses Postgres and Redis where they answer on the
configured URLs (as `docvl up` does), else the embedded ones.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


from bench.model_worker import machine, write_section  # noqa: E402
from bench.up_platform import Platform, cpu_seconds  # noqa: E402
from docvl.client import ApiError, Client  # noqa: E402
from docvl.inference.client import InferenceClient  # noqa: E402
from docvl.inference.types import GenerationParams, InferenceRequest  # noqa: E402
from docvl.job_status import JobStatus  # noqa: E402
from docvl.tasks import TaskKind  # noqa: E402

IMAGE = ROOT / "docvl" / "samples" / "page.png"
QUESTION = "What is the title of this page?"
REPORT = ROOT / "docs" / "benchmarks.md"
HEADING = "### Small jobs"


def one_job(client: Client, image: bytes) -> tuple[float, float, int]:
    """(submit seconds, submit -> succeeded seconds, HTTP status of the submission). The client waits as
    docvl's own client does: it follows the job's event stream (SSE)."""
    started = time.perf_counter()
    try:
        job = client.submit(image, ["qa"], question=QUESTION, filename="page.png")
    except ApiError as exc:
        return time.perf_counter() - started, float("nan"), exc.status
    submitted = time.perf_counter() - started
    ended = client.wait(job.id, timeout_s=300)
    if ended.status is not JobStatus.SUCCEEDED:
        raise SystemExit(f"job {job.id} ended {ended.status}")
    return submitted, time.perf_counter() - started, 202


def clients(platform: Platform, count: int) -> list[Client]:
    return [Client(platform.url, platform.key, timeout=120) for _ in range(count)]


def concurrent(platform: Platform, image: bytes, jobs: int, count: int) -> dict[str, float]:
    pool = clients(platform, count)
    lock = threading.Lock()
    results: list[tuple[float, float, int]] = []
    started = time.perf_counter()

    def run(i: int) -> None:
        outcome = one_job(pool[i % count], image)
        with lock:
            results.append(outcome)

    with ThreadPoolExecutor(count) as executor:
        list(executor.map(run, range(jobs)))
    wall = time.perf_counter() - started
    for client in pool:
        client.close()
    ends = sorted(r[1] for r in results if r[2] == 202)
    submits = sorted(r[0] for r in results)
    return {
        "jobs/s": len(ends) / wall,
        "p50 s": statistics.median(ends),
        "p99 s": ends[min(len(ends) - 1, int(0.99 * len(ends)))],
        "submit p99 s": submits[min(len(submits) - 1, int(0.99 * len(submits)))],
        "errors": sum(1 for r in results if r[2] != 202),
        "succeeded": len(ends),
    }


def direct(target: str, image: bytes, jobs: int, count: int, max_new_tokens: int) -> float:
    """Requests/s of the model worker itself on the same requests from `count` clients."""
    request = InferenceRequest(
        task=TaskKind.QA,
        images=[image],
        question=QUESTION,
        params=GenerationParams(max_new_tokens=max_new_tokens),
    )
    with InferenceClient(target) as client:
        client.generate(request)  # warm
        started = time.perf_counter()
        with ThreadPoolExecutor(count) as executor:
            list(executor.map(lambda _: client.generate(request, timeout=120), range(jobs)))
        return jobs / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--idle", type=int, default=20, help="Jobs submitted one at a time.")
    parser.add_argument("--jobs", type=int, default=48)
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--max-new-tokens", type=int, default=24, help="docvl up's cap with the tiny model.")
    args = parser.parse_args()
    image = IMAGE.read_bytes()
    with tempfile.TemporaryDirectory(prefix="docvl-small-jobs-") as tmp:
        platform = Platform(Path(tmp) / "var", {"DOCVL_MAX_IN_FLIGHT_PER_KEY": "1000"})
        try:
            [client] = clients(platform, 1)
            for _ in range(3):  # warm: the pool processes make their connections on their first tasks
                one_job(client, image)
            idle = sorted(one_job(client, image)[1] for _ in range(args.idle))
            client.close()
            before = cpu_seconds(platform.process.pid)
            load = concurrent(platform, image, args.jobs, args.clients)
            after = cpu_seconds(platform.process.pid)
            model_rate = direct(platform.model, image, args.jobs, args.clients, args.max_new_tokens)
        finally:
            platform.stop()
    idle_p50, idle_p90 = statistics.median(idle), idle[int(0.9 * (len(idle) - 1))]
    ratio = load["jobs/s"] / model_rate
    cpu = ", ".join(
        f"{role} {after[role] - before.get(role, 0.0):.1f} s"
        for role in sorted(after, key=lambda r: before.get(r, 0.0) - after[r])
        if after[role] - before.get(role, 0.0) >= 0.05
    )
    rows = [
        f"| one QA job at idle, submit → succeeded | p50 {idle_p50:.3f} s, p90 {idle_p90:.3f} s "
        f"({len(idle)} jobs) |",
        f"| {args.jobs} QA jobs from {args.clients} clients | {load['jobs/s']:.2f} jobs/s; end to end p50 "
        f"{load['p50 s']:.2f} s, p99 {load['p99 s']:.2f} s; submission p99 {load['submit p99 s']:.3f} s; "
        f"{load['succeeded']:.0f} succeeded, {load['errors']:.0f} HTTP errors |",
        f"| the same {args.jobs} requests straight to the model worker (gRPC, {args.clients} clients) | "
        f"{model_rate:.2f} requests/s |",
        f"| platform / model worker | **{ratio:.2f}** |",
        f"| CPU used during the {args.jobs} jobs, by process | {cpu} |",
    ]
    section = (
        f"{HEADING}\n\n`bench/small_jobs.py` on `docvl up` (tiny model, {args.max_new_tokens} new tokens, "
        f"the sample page.png; each client submits over REST and follows its job's event stream "
        "with `docvl.client.Client.wait`), "
        f"{machine()}.\n\n| what | measured |\n|---|---|\n" + "\n".join(rows) + "\n"
    )
    write_section(REPORT, HEADING, section)
    print(section)


if __name__ == "__main__":
    main()

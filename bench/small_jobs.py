"""Small jobs at model speed: `docvl up` as the README starts it, then single-image QA jobs over REST.

1. At idle, one job at a time: submit -> `succeeded` (p50, p90).
2. 48 jobs from 16 clients following their jobs' event streams: jobs/s, end-to-end p50/p99, submission
   p99, HTTP errors, and the CPU seconds per job of each process.
3. The same 48 jobs from 16 clients polling `GET /v1/jobs/{id}` every 20 ms with `If-None-Match`.
4. The same 48 requests straight to the model worker over gRPC from 16 clients, right after each of
   5 rounds of step 2: its requests/s, and the platform's share of it (the median round's: the machine is
   shared, and both rates drift together).

Every job is submitted with reuse=false: the same page and question again would otherwise take the first
job's result, and no job would reach the model worker.

    .venv/bin/python bench/small_jobs.py [--idle 20] [--jobs 48] [--clients 16] [--poll-ms 20] [--rounds 5]

Writes the "Small jobs" section of docs/benchmarks.md. Uses Postgres and Redis where they answer on the
configured URLs (as `docvl up` does), else the embedded ones.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import threading
import time
from collections import Counter
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


def one_job(client: Client, image: bytes, poll_s: float | None = None) -> tuple[float, float, int]:
    """(submit seconds, submit -> succeeded seconds, HTTP status of the submission). The client waits as
    docvl's own client does: it follows the job's event stream (SSE); with `poll_s`, it polls the job
    every `poll_s` seconds instead, sending back the last ETag (304 while unchanged)."""
    started = time.perf_counter()
    try:
        job = client.submit(image, ["qa"], question=QUESTION, filename="page.png", reuse=False)
    except ApiError as exc:
        return time.perf_counter() - started, float("nan"), exc.status
    submitted = time.perf_counter() - started
    status = poll(client, str(job.id), poll_s) if poll_s else client.wait(job, timeout_s=300).status
    if status is not JobStatus.SUCCEEDED:
        raise SystemExit(f"job {job.id} ended {status}")
    return submitted, time.perf_counter() - started, 202


ANSWERS: Counter[int] = Counter()  # the HTTP status of every poll


def poll(client: Client, job_id: str, every_s: float, timeout_s: float = 300) -> JobStatus:
    """GET the job every `every_s` seconds with If-None-Match until it has finished: a poller ignoring
    Retry-After, the worst case for the platform. (docvl's client has no polling call: it streams.)"""
    deadline = time.monotonic() + timeout_s
    etag = ""
    http = client._http  # the client's own connection and key
    while time.monotonic() < deadline:
        response = http.get(f"/v1/jobs/{job_id}", headers={"If-None-Match": etag} if etag else {})
        ANSWERS[response.status_code] += 1
        if response.status_code == 200:
            etag = response.headers.get("etag", "")
            status = JobStatus(response.json()["status"])
            if status.finished:
                return status
        elif response.status_code != 304:
            raise SystemExit(f"GET job {job_id}: {response.status_code} {response.text}")
        time.sleep(every_s)
    raise SystemExit(f"job {job_id} did not finish in {timeout_s} s")


def clients(platform: Platform, count: int) -> list[Client]:
    return [Client(platform.url, platform.key, timeout=120) for _ in range(count)]


def concurrent(
    platform: Platform, image: bytes, jobs: int, count: int, poll_s: float | None = None
) -> dict[str, float]:
    pool = clients(platform, count)
    lock = threading.Lock()
    results: list[tuple[float, float, int]] = []
    started = time.perf_counter()

    def run(i: int) -> None:
        outcome = one_job(pool[i % count], image, poll_s)
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


def per_job(before: dict[str, float], after: dict[str, float], jobs: int) -> dict[str, float]:
    """CPU seconds per job of each process that used any."""
    used = {role: (after[role] - before.get(role, 0.0)) / jobs for role in after}
    return dict(sorted(((r, c) for r, c in used.items() if c * jobs >= 0.05), key=lambda rc: -rc[1]))


def cpu_text(cpu: dict[str, float]) -> str:
    platform = sum(c for role, c in cpu.items() if role not in ("model-worker", "postgres", "redis"))
    parts = ", ".join(f"{role} {1000 * c:.0f}" for role, c in cpu.items())
    rest = f"docvl and Prefect together (not the model worker, Postgres, Valkey) **{1000 * platform:.0f}**"
    return f"{parts}; {rest}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--idle", type=int, default=20, help="Jobs submitted one at a time.")
    parser.add_argument("--jobs", type=int, default=48)
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--poll-ms", type=float, default=20, help="How often the polling clients ask.")
    parser.add_argument("--max-new-tokens", type=int, default=24, help="docvl up's cap with the tiny model.")
    parser.add_argument(
        "--rounds", type=int, default=5, help="Streaming phases, each followed by the model worker alone."
    )
    args = parser.parse_args()
    image = IMAGE.read_bytes()
    with tempfile.TemporaryDirectory(prefix="docvl-small-jobs-") as tmp:
        platform = Platform(Path(tmp) / "var", {"DOCVL_MAX_IN_FLIGHT_PER_KEY": "1000"})
        try:
            warm = clients(platform, args.clients)  # warm: every pool process makes its connections
            with ThreadPoolExecutor(args.clients) as executor:
                list(executor.map(lambda c: one_job(c, image), warm))
            for c in warm:
                c.close()
            [client] = clients(platform, 1)
            idle = sorted(one_job(client, image)[1] for _ in range(args.idle))
            client.close()
            load_average = os.getloadavg()[0]
            rounds = []  # (streaming phase, the model worker's requests/s right after it, CPU before, after)
            for _ in range(args.rounds):
                before = cpu_seconds(platform.process.pid)
                load = concurrent(platform, image, args.jobs, args.clients)
                after = cpu_seconds(platform.process.pid)
                rate = direct(platform.model, image, args.jobs, args.clients, args.max_new_tokens)
                rounds.append((load, rate, before, after))
            middle = cpu_seconds(platform.process.pid)
            polled = concurrent(platform, image, args.jobs, args.clients, poll_s=args.poll_ms / 1000)
            end = cpu_seconds(platform.process.pid)
        finally:
            platform.stop()
    idle_p50, idle_p90 = statistics.median(idle), idle[int(0.9 * (len(idle) - 1))]
    # The machine is shared: the two rates drift together over minutes, so each streaming phase is compared
    # with the model worker measured right after it, and the median round is the one reported.
    rounds.sort(key=lambda r: r[0]["jobs/s"] / r[1])
    load, model_rate, _, _ = rounds[len(rounds) // 2]
    ratios = ", ".join(f"{r[0]['jobs/s'] / r[1]:.2f}" for r in rounds)
    streamed_cpu = per_job(
        {role: sum(r[2].get(role, 0.0) for r in rounds) for role in rounds[0][3]},
        {role: sum(r[3].get(role, 0.0) for r in rounds) for role in rounds[0][3]},
        args.jobs * len(rounds),
    )
    polled_cpu = per_job(middle, end, args.jobs)
    rows = [
        f"| one QA job at idle, submit → succeeded | p50 {idle_p50:.3f} s, p90 {idle_p90:.3f} s "
        f"({len(idle)} jobs) |",
        f"| {args.jobs} QA jobs from {args.clients} clients following the event stream (the median of "
        f"{len(rounds)} rounds) | "
        f"{load['jobs/s']:.2f} jobs/s; end to end p50 {load['p50 s']:.2f} s, p99 {load['p99 s']:.2f} s; "
        f"submission p99 {load['submit p99 s']:.3f} s; {load['succeeded']:.0f} succeeded, "
        f"{load['errors']:.0f} HTTP errors |",
        f"| the same {args.jobs} requests straight to the model worker (gRPC, {args.clients} clients), "
        f"right after | {model_rate:.2f} requests/s |",
        f"| platform / model worker | **{load['jobs/s'] / model_rate:.2f}** (rounds: {ratios}) |",
        f"| CPU ms per job, by process (streaming clients, every round) | {cpu_text(streamed_cpu)} |",
        f"| {args.jobs} QA jobs from {args.clients} clients polling `GET /v1/jobs/{{id}}` every "
        f"{args.poll_ms:.0f} ms with `If-None-Match` | {polled['jobs/s']:.2f} jobs/s "
        f"({polled['jobs/s'] / load['jobs/s']:.2f} of streaming); end to end p50 {polled['p50 s']:.2f} s, "
        f"p99 {polled['p99 s']:.2f} s; {ANSWERS[200]} answers 200, {ANSWERS[304]} answers 304 |",
        f"| CPU ms per job, by process (polling clients) | {cpu_text(polled_cpu)} |",
    ]
    section = (
        f"{HEADING}\n\n`bench/small_jobs.py` on `docvl up` (tiny model, {args.max_new_tokens} new tokens, "
        "the sample page.png, every job with reuse=false; each client submits over REST and follows its "
        "job's event stream with `docvl.client.Client.wait`, or polls), "
        f"{machine()}; load average {load_average:.1f} when the load began (the machine is shared: "
        "CPU per job is the robust figure).\n\n| what | measured |\n|---|---|\n" + "\n".join(rows) + "\n"
    )
    write_section(REPORT, HEADING, section)
    print(section)


if __name__ == "__main__":
    main()

"""A soak: 2,000 single-image QA jobs through `docvl up` (embedded Postgres and Valkey), from 16 clients
that each submit and follow their job over REST; the resident memory of every long-lived service sampled
throughout; growth reported from the end of the warm-up (the first 10 %) to the end.

    .venv/bin/python bench/soak.py [--jobs 2000] [--clients 16]

Writes the "Soak" section of docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.model_worker import machine, write_section  # noqa: E402
from bench.up_platform import Platform, rss_mib  # noqa: E402
from docvl.client import Client  # noqa: E402
from docvl.job_status import JobStatus  # noqa: E402

IMAGE = ROOT / "docvl" / "samples" / "page.png"
HEADING = "### Soak"
SAMPLE_S = 5.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--jobs", type=int, default=2000)
    parser.add_argument("--clients", type=int, default=16)
    args = parser.parse_args()
    image = IMAGE.read_bytes()
    done = 0
    failed = 0
    lock = threading.Lock()
    samples: list[tuple[int, dict[str, float]]] = []  # (jobs done, MiB per service)
    with tempfile.TemporaryDirectory(prefix="docvl-soak-") as tmp:
        Path(tmp).chmod(0o755)  # as root, the embedded PostgreSQL runs as a user of its own
        platform = Platform(Path(tmp) / "var", {"DOCVL_MAX_IN_FLIGHT_PER_KEY": "1000"}, embedded=True)
        stop = threading.Event()

        def sample() -> None:
            while not stop.wait(SAMPLE_S):
                samples.append((done, rss_mib(platform.process.pid)))

        def one(client: Client) -> None:
            nonlocal done, failed
            job = client.submit(
                image, ["qa"], question="What is the title?", filename="page.png", reuse=False
            )  # the same page again: computed each time, as a soak means
            status = client.wait(job, timeout_s=600).status
            with lock:
                done += 1
                failed += status is not JobStatus.SUCCEEDED

        sampler = threading.Thread(target=sample, daemon=True)
        started = time.perf_counter()
        try:
            clients = [Client(platform.url, platform.key, timeout=120) for _ in range(args.clients)]
            samples.append((0, rss_mib(platform.process.pid)))
            sampler.start()
            with ThreadPoolExecutor(args.clients) as pool:
                list(pool.map(lambda i: one(clients[i % args.clients]), range(args.jobs)))
            samples.append((done, rss_mib(platform.process.pid)))
        finally:
            stop.set()
            platform.stop()
        wall = time.perf_counter() - started
    warm = next(s for n, s in samples if n >= args.jobs // 10)
    end = samples[-1][1]
    rows = []
    for role in sorted(end, key=lambda r: -end[r]):
        if role in warm and warm[role] > 1:
            growth = (end[role] - warm[role]) / warm[role]
            peak = max(s.get(role, 0.0) for _, s in samples)
            first = samples[0][1].get(role, 0.0)
            rows.append(
                f"| {role} | {first:.0f} | {warm[role]:.0f} | {end[role]:.0f} | {peak:.0f} | {growth:+.1%} |"
            )
    section = (
        f"{HEADING}\n\n`bench/soak.py`: {args.jobs} single-image QA jobs through `docvl up` (embedded "
        f"Postgres and Valkey, tiny model) from {args.clients} clients in {wall:.0f} s "
        f"({args.jobs / wall:.1f} jobs/s), "
        f"{failed} not succeeded; memory (PSS) of each service (all its processes) sampled every "
        f"{SAMPLE_S:.0f} s, {len(samples)} samples; growth from the end of the warm-up ({args.jobs // 10} "
        f"jobs) to the end (goal: at most 10 %). {machine()}.\n\n"
        "| service | MiB at start | after warm-up | at the end | peak | growth after warm-up |\n"
        "|---|---|---|---|---|---|\n" + "\n".join(rows) + "\n"
    )
    write_section(ROOT / "docs" / "benchmarks.md", HEADING, section)
    print(section)


if __name__ == "__main__":
    main()

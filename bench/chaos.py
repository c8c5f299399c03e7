"""Faults during a mixed run, one at a time, on `docvl up` with its embedded Postgres and Valkey.

Each scenario submits a mix (PDFs of 1, 4, 26 and 117 pages and three images, all four tasks, over REST
and gRPC), waits until the 117-page PDF is mid-render (or, for the model worker, until pages are being
answered), injects the fault, waits for the component to be back, then measures how long until every job
of the scenario has ended, and checks each: the right terminal status and page count, one result per
(page, task), nothing left queued or running. The reconciler's re-drives are counted from the job events.

    .venv/bin/python bench/chaos.py [--only job-runner,redis] [--out docs/chaos.md]

Faults: SIGKILL of the job runner, a Celery worker, the model worker, the API, the gateway, the
reconciler (docvl flows serve); SIGKILL and restart of Valkey (AOF) and of Postgres; the Prefect server
stopped (SIGSTOP) for 60 s while jobs are submitted; every process of docvl up killed at once, then docvl
up started again. `docvl up` restarts a service that dies, as compose and Kubernetes do.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import grpc  # noqa: E402
import psycopg  # noqa: E402

from bench.model_worker import machine  # noqa: E402
from bench.up_platform import Platform  # noqa: E402
from docvl.client import Client  # noqa: E402
from docvl.v1 import jobs_pb2 as pb  # noqa: E402
from docvl.v1 import jobs_pb2_grpc as pb_grpc  # noqa: E402

CORPUS = ROOT / "tests" / "corpus" / "pdf-samples"
SAMPLES = ROOT / "docvl" / "samples"
BIG = CORPUS / "009-pdflatex-geotopo" / "GeoTopo-komprimiert.pdf"
MIX: list[tuple[Path, list[str], int]] = [  # document, tasks, pages
    (BIG, ["ocr"], 117),
    (CORPUS / "026-latex-multicolumn" / "multicolumn.pdf", ["ocr", "qa"], 3),
    (CORPUS / "004-pdflatex-4-pages" / "pdflatex-4-pages.pdf", ["ocr", "qa"], 4),
    (CORPUS / "001-trivial" / "minimal-document.pdf", ["ocr"], 1),
    (SAMPLES / "chart.png", ["chart2code", "qa"], 1),
    (SAMPLES / "webpage.png", ["web2html"], 1),
    (SAMPLES / "page.png", ["qa"], 1),
]
SETTINGS = {  # the reconciler's limits for this run (defaults: 30, 10, 30, 60, 60 s)
    "DOCVL_RECONCILE_INTERVAL_S": "10",
    "DOCVL_START_GRACE_S": "5",
    "DOCVL_CLAIM_STALE_S": "15",
    "DOCVL_REDISPATCH_AFTER_S": "30",
    "DOCVL_FINALIZE_STALE_S": "30",
    "DOCVL_MAX_IN_FLIGHT_PER_KEY": "1000",
}
LIMIT_S = float(SETTINGS["DOCVL_RECONCILE_INTERVAL_S"]) + 60


@dataclass
class Outcome:
    fault: str
    jobs: int = 0
    right: int = 0
    back_s: float = 0.0
    ended_s: float = 0.0
    recovered: Counter[str] = field(default_factory=Counter)
    problems: list[str] = field(default_factory=list)


class Run:
    def __init__(self, platform: Platform) -> None:
        self.platform = platform
        self.expected: dict[uuid.UUID, tuple[str, int, int]] = {}  # job -> (name, pages, tasks)

    def submit_mix(self, rest: bool = True) -> list[uuid.UUID]:
        made = []
        with Client(self.platform.url, self.platform.key, timeout=120) as client:
            for path, tasks, pages in MIX:
                if rest or path.suffix == ".pdf":
                    question = "What is shown?" if "qa" in tasks else None
                    # reuse=False: each scenario's pages go through the model again, under its fault
                    job_id = client.submit(path, tasks, question=question, reuse=False).id
                else:
                    job_id = self.submit_grpc(path, tasks)
                self.expected[job_id] = (path.name, pages, len(tasks))
                made.append(job_id)
        return made

    def submit_grpc(self, path: Path, tasks: list[str]) -> uuid.UUID:
        with grpc.insecure_channel(self.platform.gateway) as channel:
            stub = pb_grpc.JobServiceStub(channel)
            question = "What is shown?" if "qa" in tasks else None
            request = pb.SubmitJobRequest(
                content=path.read_bytes(), tasks=tasks, question=question, reuse=False
            )
            job = stub.SubmitJob(request, metadata=(("x-api-key", self.platform.key),), timeout=60)
        return uuid.UUID(job.id)

    def query(self, sql: str, *params: object) -> list[tuple[Any, ...]]:
        url = self.platform.database_url.replace("+psycopg", "")
        with psycopg.connect(url, connect_timeout=5) as conn:
            return list(conn.execute(sql, params).fetchall())

    def wait(self, what: str, predicate: Callable[[], bool], timeout_s: float = 300) -> None:
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                if predicate():
                    return
            except psycopg.OperationalError:
                pass  # the database is the fault under test
            if time.monotonic() > deadline:
                raise SystemExit(f"timed out waiting for {what}")
            time.sleep(0.2)

    def big_mid_render(self, job_ids: list[uuid.UUID]) -> bool:
        rows = self.query("SELECT pages_total, rendered_at FROM jobs WHERE id = %s", job_ids[0])
        return bool(rows) and int(rows[0][0]) >= 8 and rows[0][1] is None  # type: ignore[call-overload]

    def pages_answered(self, job_ids: list[uuid.UUID]) -> bool:
        rows = self.query("SELECT pages_done FROM jobs WHERE id = %s", job_ids[0])
        return bool(rows and rows[0][0] >= 4)

    def all_ended(self, job_ids: list[uuid.UUID]) -> bool:
        rows = self.query("SELECT count(*) FROM jobs WHERE id = ANY(%s) AND finished_at IS NOT NULL", job_ids)
        return bool(rows[0][0] == len(job_ids))

    def check(self, outcome: Outcome, job_ids: list[uuid.UUID]) -> None:
        outcome.jobs += len(job_ids)
        for job_id in job_ids:
            name, pages, tasks = self.expected[job_id]
            status, total, done, failed = self.query(
                "SELECT status, pages_total, pages_done, pages_failed FROM jobs WHERE id = %s", job_id
            )[0]
            results, distinct = self.query(
                "SELECT count(*), count(DISTINCT (page_index, task)) FROM task_results WHERE job_id = %s",
                job_id,
            )[0]
            if (status, total, done, failed, results, distinct) == (
                "succeeded",
                pages,
                pages,
                0,
                pages * tasks,
                pages * tasks,
            ):
                outcome.right += 1
            else:
                outcome.problems.append(
                    f"{name}: {status}, pages {done}+{failed}/{total} of {pages}, {results} results"
                )
        for (data,) in self.query(
            "SELECT data FROM job_events WHERE job_id = ANY(%s) AND kind = 'recovered'", job_ids
        ):
            outcome.recovered[data["action"]] += 1  # jsonb arrives as a dict


def kill_and_wait(run: Run, role: str, name: str) -> float:
    """SIGKILL the service; returns when docvl up says it is back."""
    offset = run.platform.kill(role)
    run.platform.wait_log(f"{name} is back", 300, after=offset)
    return time.monotonic()


def scenario(run: Run, fault: str) -> Outcome:
    outcome = Outcome(fault)
    job_ids = run.submit_mix(rest=fault != "gateway")
    trigger = run.pages_answered if fault == "model-worker" else run.big_mid_render
    run.wait("the mix to be mid-run", lambda: trigger(job_ids))
    hit = time.monotonic()
    if fault in ("job-runner", "celery-worker", "model-worker", "api", "gateway", "redis", "postgres"):
        back = kill_and_wait(run, fault, fault)
    elif fault == "reconciler":
        back = kill_and_wait(run, "flow-runner", "flow-runner")
    elif fault == "prefect":
        group = os.getpgid(run.platform.service("prefect"))
        os.killpg(group, signal.SIGSTOP)
        stopped_until = time.monotonic() + 60
        job_ids += run.submit_mix()  # submitted while the orchestrator is away
        time.sleep(max(0.0, stopped_until - time.monotonic()))  # the fault lasts 60 s by design
        os.killpg(group, signal.SIGCONT)
        back = time.monotonic()
    elif fault == "everything":
        run.platform.kill_everything()
        run.platform.start()
        back = time.monotonic()
    else:
        raise SystemExit(f"unknown fault {fault}")
    outcome.back_s = back - hit
    run.wait("every job to end", lambda: run.all_ended(job_ids), 900)
    outcome.ended_s = time.monotonic() - back
    run.check(outcome, job_ids)
    return outcome


FAULTS = [
    "job-runner",
    "celery-worker",
    "model-worker",
    "api",
    "gateway",
    "reconciler",
    "redis",
    "postgres",
    "prefect",
    "everything",
]


def report(outcomes: list[Outcome]) -> str:
    rows = []
    for o in outcomes:
        verdict = "yes" if o.right == o.jobs and o.ended_s <= LIMIT_S else "**no**"
        recovered = ", ".join(f"{k} {v}" for k, v in sorted(o.recovered.items())) or "none needed"
        problems = "; ".join(o.problems) or ""
        rows.append(
            f"| {o.fault} | {o.jobs} | {o.right}/{o.jobs} | {o.back_s:.1f} | {o.ended_s:.1f} | {verdict} | "
            f"{recovered} | {problems} |"
        )
    settings = ", ".join(f"`{k}={v}`" for k, v in SETTINGS.items())
    return (
        f"""# Chaos: faults during a mixed run

Written by `bench/chaos.py` on `docvl up` with its embedded PostgreSQL 18 and Valkey 9 (AOF,
`appendfsync everysec`), the tiny model, {machine()}. Settings: {settings}. Each fault hits while the
117-page PDF of the mix is mid-render (the model worker: once pages are being answered); `docvl up`
restarts a service that dies. "back": seconds from the fault until the component is serving again;
"ended": seconds from then until every job of the scenario has ended; the limit is the reconcile
interval + 60 s = {LIMIT_S:.0f} s. "right": succeeded with its page count and exactly one result per
(page, task). Each mix: PDFs of 117, 4, 3 and 1 pages and three images over the four tasks (the images
over gRPC in the gateway scenario; a second mix submitted while Prefect is stopped). A re-drive is the
reconciler's, or a job runner's taking over the render of a runner that died.

| fault | jobs | right | back (s) | ended (s) | within the limit | re-drives (`recovered` events) | problems |
|---|---|---|---|---|---|---|---|
"""
        + "\n".join(rows)
        + "\n"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--only", help="Comma-separated faults to run (default: all).")
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "chaos.md")
    args = parser.parse_args()
    faults = args.only.split(",") if args.only else FAULTS
    outcomes = []
    with tempfile.TemporaryDirectory(prefix="docvl-chaos-") as tmp:
        Path(tmp).chmod(0o755)  # as root, the embedded PostgreSQL runs as a user of its own
        platform = Platform(Path(tmp) / "var", SETTINGS, embedded=True)
        try:
            run = Run(platform)
            for fault in faults:
                try:
                    outcome = scenario(run, fault)
                except Exception as exc:  # one scenario's failure is its row, and the others still run
                    outcome = Outcome(fault, problems=[f"the scenario broke: {type(exc).__name__}: {exc}"])
                outcomes.append(outcome)
                print(
                    f"{fault}: {outcome.right}/{outcome.jobs} right, back {outcome.back_s:.1f} s, ended "
                    f"{outcome.ended_s:.1f} s, re-drives {dict(outcome.recovered)} {outcome.problems}",
                    flush=True,
                )
        finally:
            platform.stop()
    args.out.write_text(report(outcomes))
    print(report(outcomes))


if __name__ == "__main__":
    main()

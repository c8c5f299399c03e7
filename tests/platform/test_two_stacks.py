"""Two docvl stacks side by side on one Postgres server and one Redis (the same Redis database), each with
its own database, Prefect server, page worker, job runner and flow runner, sharing a model worker: jobs sent
to both at once and a sweep on each reach only their own stack. A page task for a job a stack does not
know is dropped once, and a stack whose namespace another database holds is refused."""

from __future__ import annotations

import io
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import select

from docvl.broker.celery_app import PAGE_TASK, make_celery
from docvl.db import migrate
from docvl.db.database import Database
from docvl.db.models import Job
from docvl.errors import NamespaceTaken
from docvl.job_status import JobStatus
from docvl.jobs.context import PageWork
from docvl.jobs.intake import parse_request
from docvl.jobs.options import SubmitOptions
from docvl.settings import FrontDoorSettings
from docvl.tasks import TaskKind
from tests.support.helpers import ROOT, png, stop_process, wait_for
from tests.support.platform import FrontDoorPlatform, environment, front_door_platform
from tests.support.services import scratch_database

pytestmark = pytest.mark.slow
JOBS_EACH = 12
SWEPT_EACH = 2
QUESTION = {"tasks": ["qa"], "question": "What is in the picture?"}


@pytest.fixture(scope="module")
def second(
    frontdoor: FrontDoorPlatform,
    s3_endpoint: str,
    tiny_small_dir: Path,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[FrontDoorPlatform]:
    """A second stack beside the session's: its own database and Prefect server, the same Redis."""
    with scratch_database("second_stack") as url:
        database = Database(url)
        migrate.upgrade(database)
        logs = tmp_path_factory.mktemp("second-stack")
        with front_door_platform(database, s3_endpoint, tiny_small_dir, logs, beside=frontdoor) as platform:
            yield platform
        database.dispose()


class LogSince:
    """What a log file gained since this was made."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.offset = path.stat().st_size

    def text(self) -> str:
        with self.path.open("rb") as log:
            log.seek(self.offset)
            return log.read().decode(errors="replace")


def foreign_tasks(platform: FrontDoorPlatform, **labels: str) -> float:
    """docvl_foreign_tasks_total of the stack's page worker, summed over the series matching `labels`."""
    text = httpx.get(platform.metrics["worker"], timeout=10).text
    return sum(
        sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == "docvl_foreign_tasks_total" and labels.items() <= sample.labels.items()
    )


def submit(platform: FrontDoorPlatform, key: str, seed: int) -> uuid.UUID:
    service = platform.service
    caller = service.authenticate(key)
    request = parse_request(service.limits, SubmitOptions.of(QUESTION))
    view, created = service.submit(caller, request, document=io.BytesIO(png(seed)))
    assert created
    return view.id


def prefect(platform: FrontDoorPlatform, path: str, body: dict[str, Any] | None = None) -> Any:
    """A call to the stack's Prefect API (POST with a body, else GET)."""
    url = platform.env["PREFECT_API_URL"] + path
    response = httpx.post(url, json=body, timeout=30) if body is not None else httpx.get(url, timeout=30)
    response.raise_for_status()
    return response.json()


def run_sweep(platform: FrontDoorPlatform, prefix: str) -> str:
    """A run of the stack's own sweep deployment (as its schedule makes one), over `prefix`."""
    name = f"nightly-sweep-{platform.settings.namespace}"
    (deployment,) = prefect(platform, "/deployments/filter", {"deployments": {"name": {"any_": [name]}}})
    run = prefect(
        platform, f"/deployments/{deployment['id']}/create_flow_run", {"parameters": {"prefix": prefix}}
    )
    return str(run["id"])


def completed(platform: FrontDoorPlatform, run: str) -> bool:
    state = prefect(platform, f"/flow_runs/{run}")["state"]["type"]
    assert state not in ("FAILED", "CRASHED", "CANCELLED"), f"the sweep run ended {state}"
    return bool(state == "COMPLETED")


def everything(platform: FrontDoorPlatform, kind: str) -> list[dict[str, Any]]:
    """Every deployment or flow run the stack's Prefect holds."""
    found: list[dict[str, Any]] = []
    while True:
        page = prefect(platform, f"/{kind}/filter", {"limit": 200, "offset": len(found)})
        found += page
        if len(page) < 200:
            return found


def job_ids(platform: FrontDoorPlatform, ids: set[uuid.UUID]) -> set[uuid.UUID]:
    """Which of `ids` the stack's database holds."""
    with platform.db.transaction() as s:
        return set(s.scalars(select(Job.id).where(Job.id.in_(ids))))


def swept(platform: FrontDoorPlatform, prefix: str) -> list[Job]:
    with platform.db.transaction() as s:
        return list(
            s.scalars(
                select(Job).where(Job.owner == "sweep", Job.options["source"].astext.startswith(prefix))
            )
        )


def test_two_stacks_on_one_postgres_server_and_redis_never_see_each_others_work(
    frontdoor: FrontDoorPlatform, second: FrontDoorPlatform
) -> None:
    stacks = (frontdoor, second)
    namespaces = [p.settings.namespace for p in stacks]
    assert namespaces[0] != namespaces[1], "derived from their databases, without any setting"
    assert frontdoor.env["DOCVL_REDIS_URL"] == second.env["DOCVL_REDIS_URL"]
    logs = [LogSince(p.logs / "celery.log") for p in stacks]
    foreign_before = [foreign_tasks(p) for p in stacks]
    prefix = f"two-stacks-{uuid.uuid4().hex[:8]}/"
    for index, platform in enumerate(stacks):
        for n in range(SWEPT_EACH):
            platform.store.put(f"{prefix}{n}.png", png(10_000 + 100 * index + n), content_type="image/png")
    keys = [p.key(f"two-stacks-{uuid.uuid4().hex[:8]}") for p in stacks]

    with ThreadPoolExecutor(8) as pool:  # both stacks at once: jobs, and a sweep on each
        sent = [
            [pool.submit(submit, p, keys[i], 1000 * i + seed) for seed in range(JOBS_EACH)]
            for i, p in enumerate(stacks)
        ]
        sweeps = [run_sweep(p, prefix) for p in stacks]
        submitted = [{future.result() for future in futures} for futures in sent]

    for platform, run in zip(stacks, sweeps, strict=True):
        wait_for(partial(completed, platform, run), 180, "each stack's sweep run", interval=0.5)
    for index, platform in enumerate(stacks):
        other = stacks[1 - index]
        assert job_ids(platform, submitted[index]) == submitted[index]
        assert not job_ids(other, submitted[index]), "no job of one stack in the other's database"
        for job_id in submitted[index]:
            assert platform.wait_finished(job_id) is JobStatus.SUCCEEDED
        made = swept(platform, prefix)
        assert len(made) == SWEPT_EACH, "each sweep took its own bucket's documents, in its own database"
        assert not job_ids(other, {job.id for job in made})
        for job in made:
            assert platform.wait_finished(job.id) is JobStatus.SUCCEEDED

    for index, platform in enumerate(stacks):
        text = logs[index].text()
        for sign in ("not_found", "has no page", "dropped", "no job"):
            assert sign not in text, f"{namespaces[index]}'s page worker: {sign!r}"
        assert foreign_tasks(platform) == foreign_before[index], "no page task of the other stack"

    # Each Prefect holds its own stack's deployments and runs only.
    run_ids = [{str(r["id"]) for r in everything(p, "flow_runs")} for p in stacks]
    for index, platform in enumerate(stacks):
        mine, theirs = namespaces[index], namespaces[1 - index]
        deployments = everything(platform, "deployments")
        assert {d["name"] for d in deployments} == {f"reconciler-{mine}", f"nightly-sweep-{mine}"}
        runs = everything(platform, "flow_runs")
        assert not [r for r in runs if f"namespace:{theirs}" in r["tags"]]
        with platform.db.transaction() as s:  # the flow run that started each job, as the job runner noted it
            started_by = dict(
                s.execute(select(Job.id, Job.flow_run_id).where(Job.id.in_(submitted[index]))).tuples().all()
            )
        assert set(started_by) == submitted[index]
        assert {str(run) for run in started_by.values()} <= run_ids[index], (
            "started by its own Prefect's runs"
        )
        assert not {str(run) for run in started_by.values()} & run_ids[1 - index]
        started = {uuid.UUID(j) for r in runs for j in r["parameters"].get("job_ids", [])}
        assert started.isdisjoint(submitted[1 - index])
        assert not job_ids(stacks[1 - index], started), "no flow run of one stack started the other's jobs"
    second_runs = everything(second, "flow_runs")  # the second stack's Prefect has no other history
    assert all(f"namespace:{namespaces[1]}" in r["tags"] for r in second_runs)


def test_a_page_task_for_a_job_this_stack_does_not_know_is_dropped_once(frontdoor: FrontDoorPlatform) -> None:
    """As if another stack shared this one's namespace: its page task reaches this stack's worker, which
    says so once, with the namespace it came from, counts it, and does not retry it."""
    log = LogSince(frontdoor.logs / "celery.log")
    before = foreign_tasks(frontdoor, origin="elsewhere")
    work = PageWork(uuid.uuid4(), 0, TaskKind.OCR, 0)
    sender = make_celery(frontdoor.env["DOCVL_REDIS_URL"], frontdoor.settings.namespace)
    sender.send_task(
        PAGE_TASK,
        args=[str(work.job_id), 0, "ocr", 0],
        kwargs={"namespace": "elsewhere"},
        queue="ocr",
        task_id=work.id,
    )
    sender.close()
    ended = f"docvl.page[{work.id}] succeeded"  # the task's end: nothing of it can follow
    wait_for(lambda: ended in log.text(), 60, "the foreign page task to end")
    lines = [line for line in log.text().splitlines() if work.id in line]
    dropped = [line for line in lines if "dropped" in line]
    assert len(dropped) == 1
    assert "'elsewhere'" in dropped[0]
    assert repr(frontdoor.settings.namespace) in dropped[0]
    assert not [line for line in lines if "retry" in line.lower()]
    assert foreign_tasks(frontdoor, origin="elsewhere", task="ocr") - before == 1


def test_a_stack_whose_namespace_another_database_holds_is_refused(
    frontdoor: FrontDoorPlatform, tmp_path: Path
) -> None:
    """A page worker and a front door configured with the session stack's namespace but another database
    refuse to start, saying which database holds the namespace and what to set; the stack keeps it."""
    with scratch_database("intruder") as url:
        env = {**frontdoor.env, "DOCVL_DATABASE_URL": url, "DOCVL_NAMESPACE": frontdoor.settings.namespace}
        log_path = tmp_path / "intruder.log"
        with log_path.open("wb") as out:
            worker = subprocess.Popen(
                [sys.executable, "-m", "celery", "-A", "services.worker.tasks", "worker", "-Q", "ocr",
                 "-c", "1", "--without-gossip", "--without-mingle", "--without-heartbeat"],
                cwd=ROOT, env={**os.environ, **env}, stdout=out, stderr=subprocess.STDOUT,
            )  # fmt: skip
        try:
            wait_for(lambda: worker.poll() is not None, 60, "the intruding worker to stop")
        finally:
            stop_process(worker)
        text = log_path.read_text()
        assert worker.returncode != 0
        assert f"namespace {frontdoor.settings.namespace!r}" in text
        assert "is taken by another docvl stack" in text
        assert frontdoor.db.url.rsplit("/", 1)[1] in text  # the database that holds it
        assert "DOCVL_NAMESPACE" in text
        assert " ready." not in text, "it never took a task"

        from services.frontdoor.wiring import job_service

        with environment(env), pytest.raises(NamespaceTaken):
            job_service(FrontDoorSettings())
    assert (
        frontdoor.wait_finished(submit(frontdoor, frontdoor.key("after-intruder"), 77)) is JobStatus.SUCCEEDED
    )

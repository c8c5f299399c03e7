"""The running platform behind the front doors, for the REST, gRPC and CLI tests: Postgres, Redis, moto's
S3 server, a Prefect server on Postgres with `docvl flows serve`, a Celery worker (page queues and
webhooks) and a model worker with the tiny model. Started once per test session, stopped by PID."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import threading
import uuid
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

from docvl.db import api_keys, jobs
from docvl.db.database import Database
from docvl.inference.client import InferenceClient
from docvl.job_status import JobStatus
from docvl.jobs.service import JobService
from docvl.settings import FrontDoorSettings
from docvl.storage.s3 import S3ObjectStore
from docvl.tasks import TaskKind
from tests.support.helpers import ROOT, model_worker_process, stop_process, wait_for
from tests.support.otlp import OtlpReceiver, otlp_receiver
from tests.support.scripted import LAYOUT_PAGE
from tests.support.scripted_worker import scripted_worker_process
from tests.support.services import celery_worker, ensure_redis, free_port, prefect_server, scratch_database

MAX_NEW_TOKENS = 12
LAYOUT_TOKENS = 512  # the scripted grounded page (about 300 tokens) and its end
METRICS = ("model-worker", "worker", "job-runner", "flows")


@dataclass
class FrontDoorPlatform:
    env: dict[str, str]
    settings: FrontDoorSettings
    db: Database
    store: S3ObjectStore
    service: JobService
    logs: Path
    traces: OtlpReceiver  # every process of the platform exports its spans here
    metrics: dict[str, str]  # the /metrics URL of each process started here (see METRICS)

    def key(self, owner: str) -> str:
        """A new API key of `owner`."""
        with self.db.transaction() as s:
            return api_keys.create_key(s, owner).secret

    def webhook_secret(self, owner: str) -> str:
        with self.db.transaction() as s:
            return api_keys.webhook_secret(s, owner)

    def status(self, job_id: uuid.UUID) -> JobStatus:
        with self.db.transaction() as s:
            return JobStatus(jobs.get_job(s, job_id).status)

    def wait_finished(self, job_id: uuid.UUID, timeout_s: float = 180) -> JobStatus:
        def finished() -> JobStatus | None:
            status = self.status(job_id)
            return status if status.finished else None

        return wait_for(finished, timeout_s, f"job {job_id} to finish")


@contextmanager
def flow_runner(env: dict[str, str], log_path: Path) -> Iterator[subprocess.Popen[bytes]]:
    """`docvl flows serve`: the reconciler and the sweep, served on their schedules."""
    with log_path.open("wb") as out:
        runner = subprocess.Popen(
            [sys.executable, "-m", "docvl", "flows", "serve"],
            cwd=ROOT,
            env={**os.environ, **env},
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        wait_for(
            lambda: _alive(runner, log_path) and "reconciler" in log_path.read_text(),
            90,
            "the flow runner",
        )
        yield runner
    finally:
        stop_process(runner)


def _alive(process: subprocess.Popen[bytes], log_path: Path) -> bool:
    if process.poll() is not None:
        raise AssertionError(f"process exited:\n{log_path.read_text()[-4000:]}")
    return True


@contextmanager
def front_door_platform(
    database: Database,
    s3_endpoint: str,
    model_dir: Path,
    logs: Path,
    *,
    beside: FrontDoorPlatform | None = None,
    layout_model_dir: Path | None = None,
) -> Iterator[FrontDoorPlatform]:
    """The platform on `database`. `beside`: a platform already running whose Redis and model workers this
    one shares (a second stack on the same servers; it has its own Prefect server and bucket).
    `layout_model_dir`: a DeepSeek-OCR-2 checkpoint for a second model worker, TEST-ONLY steered to answer
    layout requests with tests.support.scripted's grounded page (the tiny model's own text is junk)."""
    from services.frontdoor.wiring import job_service

    ensure_redis()
    bucket = f"docvl-{uuid.uuid4().hex[:12]}"
    with ExitStack() as stack:
        prefect_db = stack.enter_context(scratch_database("prefect_fd"))
        prefect_api = stack.enter_context(prefect_server(prefect_db, logs))
        traces = stack.enter_context(otlp_receiver())
        ports = {
            name: free_port() for name in METRICS
        }  # each process's /metrics (tests/observability/test_metrics.py)
        if beside is None:
            model_env = {**traces.env(), "DOCVL_MODEL_WORKER_METRICS_PORT": str(ports["model-worker"])}
            _, target = stack.enter_context(
                model_worker_process(model_dir, logs / "model-worker.log", env=model_env)
            )
            if layout_model_dir is not None:
                script = logs / "layout-script.json"
                script.write_text(json.dumps({TaskKind.LAYOUT.value: LAYOUT_PAGE}))
                log = logs / "layout-worker.log"
                _, layout = stack.enter_context(
                    # layout only: ocr stays on the DeepSeek-VL worker, whose metrics and traces tests read
                    scripted_worker_process(
                        layout_model_dir,
                        script,
                        log,
                        env={**traces.env(), "DOCVL_MODEL_WORKER_TASKS": "layout"},
                    )
                )
                target = f"{target},{layout}"
            redis_url = f"redis://127.0.0.1:6379/{1 + (os.getpid() + 7) % 14}"
        else:
            target, redis_url = beside.env["DOCVL_MODEL_WORKER_TARGETS"], beside.env["DOCVL_REDIS_URL"]
        env = {
            **traces.env(),
            "DOCVL_DATABASE_URL": database.url,
            "DOCVL_REDIS_URL": redis_url,
            "DOCVL_OBJECT_STORE": "s3",
            "DOCVL_S3_ENDPOINT": s3_endpoint,
            "DOCVL_S3_ACCESS_KEY": "testing",
            "DOCVL_S3_SECRET_KEY": "testing",
            "DOCVL_S3_BUCKET": bucket,
            "DOCVL_SOURCE_BUCKETS": bucket,
            "DOCVL_MODEL_WORKER_TARGETS": target,
            "DOCVL_MAX_NEW_TOKENS": str(MAX_NEW_TOKENS),
            "DOCVL_MAX_NEW_TOKENS_BY_TASK": json.dumps({TaskKind.LAYOUT.value: LAYOUT_TOKENS}),
            "DOCVL_RETRY_BACKOFF_S": "0.3",
            "DOCVL_WATCH_POLL_S": "0.1",
            "DOCVL_WEBHOOK_ALLOW_PRIVATE": "true",  # the tests' receivers listen on loopback
            "PREFECT_API_URL": prefect_api,
            "PREFECT_LOGGING_LEVEL": "WARNING",
            "PREFECT_RUNNER_POLL_FREQUENCY": "1",
        }
        store = S3ObjectStore(s3_endpoint, "testing", "testing", bucket)
        store.ensure_ready()
        for each in target.split(","):
            with InferenceClient(each) as model:
                model.wait_ready(300)
        worker_env = {
            **env,
            "DOCVL_WORKER_METRICS_PORT": str(ports["worker"]),
            "DOCVL_WORKER_METRICS_DIR": str(logs / "worker-metrics"),
        }
        stack.enter_context(celery_worker(worker_env, logs / "celery.log"))
        runner_env = {
            **env,
            "OTEL_SERVICE_NAME": "docvl-job-runner",
            "DOCVL_WORKER_METRICS_PORT": str(ports["job-runner"]),
            "DOCVL_WORKER_METRICS_DIR": str(logs / "job-runner-metrics"),
        }
        stack.enter_context(celery_worker(runner_env, logs / "job-runner.log", queues="jobs"))
        flows_env = {**env, "DOCVL_FLOWS_METRICS_PORT": str(ports["flows"])}
        stack.enter_context(flow_runner(flows_env, logs / "flows-serve.log"))
        stack.enter_context(environment(env))
        settings = FrontDoorSettings()
        service = job_service(settings, database)
        metrics = {name: f"http://127.0.0.1:{port}/metrics" for name, port in ports.items()}
        if beside is not None:
            metrics["model-worker"] = beside.metrics["model-worker"]
        yield FrontDoorPlatform(env, settings, database, store, service, logs, traces, metrics)


@contextmanager
def environment(env: dict[str, str]) -> Iterator[None]:
    """The variables set in this process's environment, the previous values put back afterwards."""
    previous = {key: os.environ.get(key) for key in env}
    os.environ.update(env)
    try:
        yield
    finally:
        for key, value in previous.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


@contextmanager
def api_in_thread(service: JobService) -> Iterator[str]:
    """The REST API in front of `service` on a free loopback port, served by uvicorn in a thread; yields
    its URL once /healthz answers."""
    import httpx
    import uvicorn

    from services.api.app import create_app
    from services.api.settings import ApiSettings

    port = free_port()
    app = create_app(ApiSettings(), service)
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, name="uvicorn", daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{port}"

    def healthy() -> bool:
        if not thread.is_alive():
            raise AssertionError("the API server thread exited")
        try:
            return httpx.get(f"{url}/healthz", timeout=1).status_code == 200
        except httpx.TransportError:
            return False

    try:
        wait_for(healthy, 30, "the REST API")
        yield url
    finally:
        server.should_exit = True
        thread.join(30)


@contextmanager
def gateway_process(env: dict[str, str], log_path: Path) -> Iterator[tuple[subprocess.Popen[bytes], int]]:
    """`docvl gateway --port 0` with `env`; yields (process, port) once it listens; stopped by its PID."""
    with log_path.open("wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "docvl", "gateway", "--port", "0"],
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:

        def bound_port() -> int | None:
            if process.poll() is not None:
                raise AssertionError(f"the gateway exited:\n{log_path.read_text()}")
            found = re.search(r"JobService on [\d.]+:(\d+)", log_path.read_text())
            return int(found.group(1)) if found else None

        yield process, wait_for(bound_port, 90, "the gateway to listen")
    finally:
        stop_process(process)

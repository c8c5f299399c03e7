"""The real servers the tests use: Postgres and Redis (started when not running), moto's S3 server,
Prefect's server and Celery workers."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import urllib.request
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psycopg

from docvl.broker.celery_app import QUEUES, WEBHOOK_QUEUE
from tests.support.helpers import stop_process, wait_for

PAGE_WORKER_QUEUES = ",".join([*QUEUES, WEBHOOK_QUEUE])  # every page queue (layout too) and the webhooks

ADMIN_URL = "postgresql://postgres@127.0.0.1:5432/postgres"
PG_START = "pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start"
REDIS_START = (
    'redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save "" --appendonly no '
    "--dir /var/lib/redis --logfile /var/log/redis/ci.log"
)


def _listening(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def ensure_running(port: int, start_command: str, name: str) -> None:
    """Start the machine's server with its documented command when nothing listens on its port."""
    if _listening(port):
        return
    subprocess.run(start_command, shell=True, check=False, timeout=60)
    wait_for(lambda: _listening(port), 60, f"{name} on port {port}")


def ensure_postgres() -> None:
    ensure_running(5432, PG_START, "Postgres")

    def accepts() -> bool:
        try:
            with psycopg.connect(ADMIN_URL, connect_timeout=2):
                return True
        except psycopg.OperationalError:
            return False

    wait_for(accepts, 60, "Postgres to accept connections")


def ensure_redis() -> None:
    ensure_running(6379, REDIS_START, "Redis")


@contextmanager
def scratch_database(label: str) -> Iterator[str]:
    """A database of its own for this test run (its name says whose), dropped afterwards."""
    ensure_postgres()
    name = f"docvl_test_{label}_{os.getpid()}_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield f"postgresql+psycopg://postgres@127.0.0.1:5432/{name}"
    finally:
        with psycopg.connect(ADMIN_URL, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def moto_s3_server(log_path: Path) -> Iterator[str]:
    """moto's S3-compatible server in its own process on loopback; yields its endpoint URL."""
    port = free_port()
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    endpoint = f"http://127.0.0.1:{port}"

    def answers() -> bool:
        if process.poll() is not None:
            raise AssertionError(f"moto server exited:\n{log_path.read_text()}")
        try:
            urllib.request.urlopen(endpoint + "/moto-api/", timeout=1).close()
            return True
        except OSError:
            return False

    try:
        wait_for(answers, 60, "moto's S3 server")
        yield endpoint
    finally:
        stop_process(process)


@contextmanager
def prefect_server(database_url: str, home: Path) -> Iterator[str]:
    """`prefect server start` on Postgres, on a free loopback port; yields its API URL."""
    port = free_port()
    env = {
        **os.environ,
        "PREFECT_HOME": str(home),
        "PREFECT_API_DATABASE_CONNECTION_URL": database_url.replace("+psycopg", "+asyncpg"),
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "PREFECT_UI_ENABLED": "false",
        "PREFECT_LOGGING_LEVEL": "WARNING",
    }
    log_path = home / "prefect-server.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "prefect", "server", "start", "--host", "127.0.0.1", "--port", str(port)],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
        )
    api = f"http://127.0.0.1:{port}/api"

    def healthy() -> bool:
        if process.poll() is not None:
            raise AssertionError(f"prefect server exited:\n{log_path.read_text()}")
        try:
            urllib.request.urlopen(api + "/health", timeout=1).close()
            return True
        except OSError:
            return False

    try:
        wait_for(healthy, 120, "the Prefect server")
        yield api
    finally:
        stop_process(process)


@contextmanager
def celery_worker(
    env: dict[str, str],
    log_path: Path,
    queues: str = PAGE_WORKER_QUEUES,
    *,
    new_session: bool = False,
    concurrency: int = 2,
) -> Iterator[subprocess.Popen[bytes]]:
    """A Celery worker process on the project's app; yields once it is ready. With `new_session` it leads
    its own process group, so that a test can kill it together with its pool processes."""
    from tests.support.helpers import ROOT

    tasks = "workflows.runner" if queues == "jobs" else "services.worker.tasks"  # the job runner's own app
    command = [
        sys.executable, "-m", "celery", "-A", tasks, "worker", "-Q", queues,
        "-c", str(concurrency), "--pool", "prefork", "-n", f"test-{uuid.uuid4().hex[:8]}@%h",
        "--without-gossip", "--without-mingle", "--without-heartbeat", "-l", "info",
    ]  # fmt: skip
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            command,
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=ROOT,
            env={**os.environ, **env},
            start_new_session=new_session,
        )

    def ready() -> bool:
        if process.poll() is not None:
            raise AssertionError(f"celery worker exited:\n{log_path.read_text()}")
        return " ready." in log_path.read_text()

    try:
        wait_for(ready, 60, "the Celery worker")
        yield process
    finally:
        stop_process(process, timeout=30)

"""The real servers the tests use: Postgres (started if not running) and moto's S3 server."""

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

from tests.helpers import stop_process, wait_for

ADMIN_URL = "postgresql://postgres@127.0.0.1:5432/postgres"
PG_START = "pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start"


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

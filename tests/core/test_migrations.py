"""Migrations against a real Postgres: up, down, and in agreement with the models."""

from __future__ import annotations

import subprocess
import sys
import threading

from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import inspect

from docvl.db import migrate
from docvl.db.database import Database
from docvl.db.models import Base
from tests.support.helpers import ROOT
from tests.support.services import scratch_database

TABLES = {
    "documents",
    "jobs",
    "pages",
    "task_results",
    "job_events",
    "api_keys",
    "webhook_secrets",
    "sweep_objects",
    "sweep_totals",
}


def tables(database: Database) -> set[str]:
    return set(inspect(database.engine).get_table_names()) - {"alembic_version"}


def test_upgrade_downgrade_upgrade() -> None:
    with scratch_database("migrations") as url:
        database = Database(url)
        assert migrate.current_revision(database) is None
        migrate.upgrade(database)
        assert migrate.current_revision(database) == migrate.head_revision()
        assert tables(database) == TABLES
        migrate.downgrade(database, "base")
        assert migrate.current_revision(database) is None
        assert tables(database) == set()
        migrate.upgrade(database)
        assert tables(database) == TABLES
        database.dispose()


def test_models_and_migrations_agree(migrated_database: Database) -> None:
    with migrated_database.engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        differences = compare_metadata(context, Base.metadata)
    assert differences == [], f"models and migrations disagree: write a migration ({differences})"


def test_services_starting_together_migrate_once() -> None:
    with scratch_database("concurrent") as url:
        errors: list[BaseException] = []

        def start_service() -> None:
            try:
                migrate.prepare_database(url, wait_s=10).dispose()
            except BaseException as exc:
                errors.append(exc)

        threads = [threading.Thread(target=start_service) for _ in range(3)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
        assert errors == []
        database = Database(url)
        assert migrate.current_revision(database) == migrate.head_revision()
        database.dispose()


def test_db_upgrade_command() -> None:
    with scratch_database("cli") as url:
        env = {"DOCVL_DATABASE_URL": url.replace("+psycopg", ""), "PATH": "/usr/bin:/bin"}
        done = subprocess.run(
            [sys.executable, "-m", "docvl", "db", "upgrade"],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
        )
        assert done.returncode == 0, done.stderr
        assert f"revision {migrate.head_revision()}" in done.stdout
        gone = subprocess.run(
            [sys.executable, "-m", "docvl", "db", "upgrade"],
            cwd=ROOT,
            env={**env, "DOCVL_DATABASE_URL": url + "_missing", "DOCVL_DATABASE_WAIT_S": "0.5"},
            capture_output=True,
            text=True,
        )
        assert gone.returncode == 1  # a failure, not bad usage (docvl.cli.errors)
        assert "database_unavailable" in gone.stderr

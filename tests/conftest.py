"""Fixtures: tiny checkpoints built once per run, loaded through the production path."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
# The processes the tests start serve no /metrics on the default ports (tests that scrape choose free ones).
os.environ.setdefault("DOCVL_API_METRICS_PORT", "0")
os.environ.setdefault("DOCVL_GATEWAY_METRICS_PORT", "0")
os.environ.setdefault("DOCVL_MODEL_WORKER_METRICS_PORT", "0")
os.environ.setdefault("DOCVL_WORKER_METRICS_PORT", "0")
os.environ.setdefault("DOCVL_FLOWS_METRICS_PORT", "0")

from docvl.db import migrate
from docvl.db.database import Database
from docvl.db.models import Base
from docvl.storage.s3 import S3ObjectStore
from model_worker.checkpoint import LoadedModel, load_checkpoint
from model_worker.engine import Engine, Limits
from model_worker.settings import ModelWorkerSettings
from model_worker.tiny import build_tiny
from tests.support.platform import FrontDoorPlatform, front_door_platform
from tests.support.services import moto_s3_server, scratch_database


@pytest.fixture(scope="session")
def tiny_small_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny(tmp_path_factory.mktemp("tiny-small"), small=True)


@pytest.fixture(scope="session")
def tiny_full_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny(tmp_path_factory.mktemp("tiny-full"), small=False)


@pytest.fixture(scope="session")
def small_model(tiny_small_dir: Path) -> LoadedModel:
    return load_checkpoint(tiny_small_dir, device="cpu")


@pytest.fixture(scope="session")
def tiny_ocr2_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random DeepSeek-OCR-2 (128 px pages, 96 px tiles), the family that serves ocr and layout."""
    return build_tiny(tmp_path_factory.mktemp("tiny-ocr2"), small=True, family="deepseek-ocr2")


@pytest.fixture(scope="session")
def ocr2_model(tiny_ocr2_dir: Path) -> LoadedModel:
    return load_checkpoint(tiny_ocr2_dir, device="cpu")


def make_engine(loaded: LoadedModel, **overrides: object) -> Engine:
    settings = ModelWorkerSettings(model_dir=Path("unused"), **overrides)  # type: ignore[arg-type]
    return Engine(loaded, Limits.from_settings(settings), settings.vision_batch_size, settings.repeat_guard)


@pytest.fixture(scope="session")
def small_engine(small_model: LoadedModel) -> Engine:
    return make_engine(small_model)


@pytest.fixture(scope="session")
def ocr2_engine(ocr2_model: LoadedModel) -> Engine:
    return make_engine(ocr2_model)


# -- Postgres and S3 ---------------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def migrated_database() -> Iterator[Database]:
    """This run's own database, migrated to head once."""
    with scratch_database("shared") as url:
        database = Database(url)
        migrate.upgrade(database)
        yield database
        database.dispose()


@pytest.fixture
def db(migrated_database: Database) -> Iterator[Database]:
    """The migrated database, emptied after each test."""
    yield migrated_database
    tables = ", ".join(table.name for table in Base.metadata.sorted_tables)
    with migrated_database.engine.begin() as connection:
        connection.exec_driver_sql(f"TRUNCATE {tables} CASCADE")


@pytest.fixture(scope="session")
def s3_endpoint(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with moto_s3_server(tmp_path_factory.mktemp("moto") / "moto.log") as endpoint:
        yield endpoint


@pytest.fixture
def s3_store(s3_endpoint: str) -> S3ObjectStore:
    """A store on a bucket of its own."""
    store = S3ObjectStore(s3_endpoint, "testing", "testing", f"docvl-{uuid.uuid4().hex[:12]}")
    store.ensure_ready()
    return store


@pytest.fixture(scope="session")
def frontdoor(
    migrated_database: Database,
    s3_endpoint: str,
    tiny_small_dir: Path,
    tiny_ocr2_dir: Path,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[FrontDoorPlatform]:
    """The whole platform behind the front doors (see tests/support/platform.py), started once per session,
    with a DeepSeek-VL model worker and a (scripted) DeepSeek-OCR-2 one for layout."""
    logs = tmp_path_factory.mktemp("frontdoor")
    with front_door_platform(
        migrated_database, s3_endpoint, tiny_small_dir, logs, layout_model_dir=tiny_ocr2_dir
    ) as platform:
        yield platform

"""Fixtures: tiny checkpoints built once per run, loaded through the production path."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")

from model_worker.checkpoint import LoadedModel, load_checkpoint
from model_worker.engine import Engine, Limits
from model_worker.settings import ModelWorkerSettings
from model_worker.tiny import build_tiny


@pytest.fixture(scope="session")
def tiny_small_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny(tmp_path_factory.mktemp("tiny-small"), small=True)


@pytest.fixture(scope="session")
def tiny_full_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny(tmp_path_factory.mktemp("tiny-full"), small=False)


@pytest.fixture(scope="session")
def small_model(tiny_small_dir: Path) -> LoadedModel:
    return load_checkpoint(tiny_small_dir, device="cpu")


def make_engine(loaded: LoadedModel, **overrides: object) -> Engine:
    settings = ModelWorkerSettings(model_dir=Path("unused"), **overrides)  # type: ignore[arg-type]
    return Engine(loaded, Limits.from_settings(settings), settings.vision_batch_size)


@pytest.fixture(scope="session")
def small_engine(small_model: LoadedModel) -> Engine:
    return make_engine(small_model)

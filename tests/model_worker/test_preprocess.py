"""Preprocessing in worker processes gives the same prepared inputs as the thread pool, errors included."""

from __future__ import annotations

import asyncio
import dataclasses
from pathlib import Path

import pytest
import torch

from docvl.errors import InvalidInput
from docvl.inference.types import GenerationParams, InferenceRequest
from docvl.tasks import TaskKind
from model_worker.checkpoint import LoadedModel
from model_worker.engine import Engine
from model_worker.preprocess import PreparedInput, PreprocessPool
from model_worker.service import InferenceService
from model_worker.settings import ModelWorkerSettings
from tests.conftest import make_engine
from tests.model_worker.test_engine import request


def assert_same(a: PreparedInput, b: PreparedInput) -> None:
    assert torch.equal(a.input_ids, b.input_ids)
    assert a.pixels.keys() == b.pixels.keys()
    for key in a.pixels:
        assert a.pixels[key].dtype == b.pixels[key].dtype
        assert torch.equal(a.pixels[key], b.pixels[key])
    plain: dict[str, object] = {"preprocessing_ms": 0.0, "input_ids": None, "pixels": {}}
    assert dataclasses.replace(a, **plain) == dataclasses.replace(b, **plain)  # type: ignore[arg-type]


def test_processes_prepare_what_threads_prepare(small_model: LoadedModel, tiny_small_dir: Path) -> None:
    engine = make_engine(small_model, no_repeat_ngram=3)
    requests = [
        request(1),
        request(2, TaskKind.QA, max_new=5),
        request(3, max_new=7, temperature=0.7, seed=11),
        dataclasses.replace(request(4), priority=6),
    ]
    threads = PreprocessPool(engine.preparer, threads=2)
    processes = PreprocessPool(engine.preparer, threads=2, processes=2, model_dir=tiny_small_dir)
    try:
        processes.warm_up()
        for r in requests:
            by_thread = threads.executor.submit(threads.function, r).result()
            by_process = processes.executor.submit(processes.function, r).result()
            assert_same(by_thread, by_process)
            assert_same(engine.prepare(r), by_process)
        bad = InferenceRequest(task=TaskKind.OCR, images=[b"not an image"], params=GenerationParams())
        with pytest.raises(InvalidInput, match="image 0"):
            processes.executor.submit(processes.function, bad).result()
    finally:
        threads.shutdown()
        processes.shutdown()


def test_process_pool_needs_the_checkpoint(small_engine: Engine) -> None:
    with pytest.raises(ValueError, match="model_dir"):
        PreprocessPool(small_engine.preparer, threads=1, processes=1)


def test_service_answers_with_a_process_pool(small_model: LoadedModel, tiny_small_dir: Path) -> None:
    settings = ModelWorkerSettings(model_dir=tiny_small_dir, preprocess_processes=1)
    engine = make_engine(small_model)
    r = request(5, max_new=6)

    async def main() -> tuple[str, str]:
        service = InferenceService(engine, settings)
        service.start()
        try:
            by_process = (await service.infer(r)).text
        finally:
            await service.stop()
        threaded = InferenceService(engine, ModelWorkerSettings(model_dir=tiny_small_dir))
        threaded.start()
        try:
            return by_process, (await threaded.infer(r)).text
        finally:
            await threaded.stop()

    by_process, by_thread = asyncio.run(main())
    assert by_process == by_thread

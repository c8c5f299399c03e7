"""The gRPC server in this process with its real lifespan, for what a separate process cannot show
deterministically: health while loading, and out-of-memory recovery (simulated: no GPU here)."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import grpc
import pytest

from docvl.errors import ResourceExhausted
from docvl.inference import mapping
from docvl.inference.client import InferenceClient
from docvl.inference.types import GenerationParams, InferenceRequest
from docvl.tasks import TaskKind
from model_worker.checkpoint import LoadedModel
from model_worker.engine import Engine
from model_worker.service import InferenceService
from model_worker.settings import ModelWorkerSettings
from model_worker.transport.server import ModelWorkerServer
from tests.model_worker.test_engine import OutOfMemoryAbove
from tests.support.helpers import png, wait_for


@contextmanager
def running_server(
    settings: ModelWorkerSettings, loader: Callable[[ModelWorkerSettings], InferenceService]
) -> Iterator[tuple[ModelWorkerServer, InferenceClient]]:
    """The server on its own event loop in a thread; stopped and joined on exit."""
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    server = ModelWorkerServer(settings, loader)
    port = asyncio.run_coroutine_threadsafe(server.start(), loop).result(30)
    loading = asyncio.run_coroutine_threadsafe(server.load(), loop)
    client = InferenceClient(f"127.0.0.1:{port}")
    try:
        yield server, client
    finally:
        client.close()
        loading.cancel()
        asyncio.run_coroutine_threadsafe(server.stop(grace=1), loop).result(30)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(30)
        loop.close()


def request(image: int, request_id: str = "") -> InferenceRequest:
    return InferenceRequest(TaskKind.OCR, [png(image)], params=GenerationParams(6), request_id=request_id)


def test_not_serving_while_loading_then_serving(small_engine: Engine) -> None:
    settings = ModelWorkerSettings(model_dir=Path("unused"), port=0)
    release = threading.Event()

    def slow_loader(s: ModelWorkerSettings) -> InferenceService:
        release.wait(30)
        return InferenceService(small_engine, s)

    with running_server(settings, slow_loader) as (_, client):
        assert client.health_status() == "NOT_SERVING"
        with pytest.raises(Exception, match="loading"):
            client.generate(request(1))
        release.set()
        wait_for(lambda: client.health_status() == "SERVING", 30, "SERVING")
        assert client.generate(request(1)).generated_tokens <= 6


def test_out_of_memory_answers_resource_exhausted_and_the_worker_recovers(small_engine: Engine) -> None:
    settings = ModelWorkerSettings(model_dir=Path("unused"), port=0, max_batch_size=4, scheduler="window")
    engine = OutOfMemoryAbove(small_engine, fits=4, poison="too-big")

    with running_server(settings, lambda s: InferenceService(engine, s)) as (_, client):
        client.wait_ready(30)
        with pytest.raises(ResourceExhausted, match="out of memory"):
            client.generate(request(1, "too-big"))
        assert client.health_status() == "SERVING"
        assert client.generate(request(1, "fine")).text == client.generate(request(1)).text
        with pytest.raises(grpc.RpcError) as raw:
            client.stub.Generate(mapping.request_to_pb(request(2, "too-big")))
        assert raw.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED


def test_model_info_reports_the_model_and_limits(small_model: LoadedModel, small_engine: Engine) -> None:
    settings = ModelWorkerSettings(model_dir=Path("unused"), port=0, max_batch_size=3, max_wait_ms=7)
    with running_server(settings, lambda s: InferenceService(small_engine, s)) as (_, client):
        client.wait_ready(30)
        info = client.model_info()
    assert info["model_type"] == "deepseek_vl_hybrid"
    assert info["image_tokens_per_image"] == 16
    assert info["random_weights"] is True
    assert info["max_batch_size"] == 3
    assert info["max_wait_ms"] == 7
    assert info["model_revision"] == small_model.description.model_revision
    assert info["family"] == "deepseek-vl-hybrid"
    assert info["tasks"] == ["ocr", "chart2code", "web2html", "qa"]
    assert info["prompt_template_version"] == small_model.description.prompt_template_version

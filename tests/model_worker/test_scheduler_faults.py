"""The continuous engine under faults: out of memory (simulated: no GPU here), cancelled and expired
requests. The continuous counterparts of the window engine's tests in test_engine.py,
test_model_worker_inprocess.py and test_model_worker_process.py."""

from __future__ import annotations

import asyncio
import dataclasses
from pathlib import Path
from typing import Any

import grpc
import pytest
import torch
from prometheus_client import REGISTRY

from docvl.errors import Cancelled, ResourceExhausted
from docvl.inference import mapping
from docvl.inference.types import FinishReason, Generated, GenerationParams, InferenceRequest
from docvl.tasks import TaskKind
from model_worker.decoding import RowControl
from model_worker.engine import Engine, PreparedInput
from model_worker.scheduler import ContinuousBatcher
from model_worker.service import InferenceService
from model_worker.settings import ModelWorkerSettings
from tests.model_worker.test_engine import request, run_one
from tests.model_worker.test_model_worker_inprocess import running_server
from tests.model_worker.test_scheduler import serve
from tests.support.helpers import png


class FlakyModel:
    """The real model, but 'out of memory' the way CUDA raises it: when a decoding step runs more than
    `fits` rows once `after` steps have run, or when a prompt is `poison_length` tokens or longer. A failing
    decoding step first grows the first layer's cache, as a step that fails midway does."""

    def __init__(self, real: Any, fits: int = 64, after: int = 0, poison_length: int = 1 << 30) -> None:
        self.real, self.fits, self.after, self.poison_length = real, fits, after, poison_length
        self.decodes = 0
        self.refused = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self.real, name)

    def __call__(self, **kw: Any) -> Any:
        ids = kw["input_ids"]
        decoding = ids.shape[1] == 1
        if decoding and ids.shape[0] > self.fits and self.decodes >= self.after:
            layer = kw["cache"].layers[0]
            layer.keys = torch.cat([layer.keys, layer.keys[:, :, -1:]], dim=2)
            layer.values = torch.cat([layer.values, layer.values[:, :, -1:]], dim=2)
            self.refused += 1
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB (simulated)")
        if not decoding and ids.shape[1] >= self.poison_length:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 9.00 GiB (simulated)")
        output = self.real(**kw)
        self.decodes += decoding
        return output


def flaky(base: Engine, **kw: int) -> tuple[Engine, FlakyModel]:
    engine = Engine.__new__(Engine)
    engine.__dict__.update(base.__dict__)
    engine.model = model = FlakyModel(base.model, **kw)
    return engine, model


def test_out_of_memory_while_decoding_preempts_and_every_answer_is_unchanged(small_engine: Engine) -> None:
    engine, model = flaky(small_engine, fits=2, after=8)
    prepared = [
        dataclasses.replace(small_engine.prepare(request(s, max_new=24 + 4 * s)), priority=5 - s)
        for s in range(4)
    ]
    alone = [run_one(small_engine, p) for p in prepared]
    # The last request streams; it has the lowest priority, so it is preempted first, mid-stream.
    expected: list[str] = []
    small_engine.generate([prepared[3]], [RowControl(prepared[3].params, on_delta=expected.append)])
    streamed: list[str] = []
    preempted = REGISTRY.get_sample_value("docvl_model_preemptions_total") or 0.0

    async def body(batcher: ContinuousBatcher) -> list[Generated]:
        done = await asyncio.gather(
            *(batcher.submit(p, on_delta=streamed.append if i == 3 else None) for i, p in enumerate(prepared))
        )
        assert batcher.stats.requests_failed == 0
        return [got for got, _ in done]

    assert serve(engine, body) == alone
    assert model.refused >= 2, "out of memory was hit and recovered from"
    assert (REGISTRY.get_sample_value("docvl_model_preemptions_total") or 0.0) - preempted == model.refused
    assert "".join(streamed) == "".join(expected), "a recomputed row sends no text twice"


def test_out_of_memory_decoding_alone_fails_that_request_and_the_engine_recovers(
    small_engine: Engine,
) -> None:
    engine, model = flaky(small_engine, fits=0, after=3)
    prepared = small_engine.prepare(request(1, max_new=16))

    async def body(batcher: ContinuousBatcher) -> Generated:
        with pytest.raises(ResourceExhausted, match="out of memory"):
            await batcher.submit(prepared)
        model.fits = 1
        got, _ = await batcher.submit(prepared)
        return got

    assert serve(engine, body) == run_one(small_engine, prepared)


def qa(question: str, request_id: str = "") -> InferenceRequest:
    return InferenceRequest(
        TaskKind.QA, [png(1)], question, params=GenerationParams(6), request_id=request_id
    )


def test_out_of_memory_answers_resource_exhausted_and_the_worker_recovers(small_engine: Engine) -> None:
    """test_model_worker_inprocess's test, with the continuous engine behind gRPC: a request too large
    for memory alone fails, the others (before and after) are answered."""
    settings = ModelWorkerSettings(model_dir=Path("unused"), port=0, max_batch_size=4, scheduler="continuous")
    poison = small_engine.prepare(qa("why " * 40))
    engine, _ = flaky(small_engine, poison_length=len(poison.input_ids))

    with running_server(settings, lambda s: InferenceService(engine, s)) as (_, client):
        client.wait_ready(30)
        with pytest.raises(ResourceExhausted, match="out of memory"):
            client.generate(qa("why " * 40, "too-big"))
        assert client.health_status() == "SERVING"
        assert client.generate(qa("Why?", "fine")).text == client.generate(qa("Why?")).text
        with pytest.raises(grpc.RpcError) as raw:
            client.stub.Generate(mapping.request_to_pb(qa("why " * 40, "too-big")))
        assert raw.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED


def long_request(engine: Engine) -> PreparedInput:
    for seed in range(8):
        prepared = engine.prepare(request(seed, max_new=96))
        if run_one(engine, prepared).finish_reason is FinishReason.LENGTH:
            return prepared
    raise AssertionError("no image among 8 made the tiny model talk for 96 tokens")


def test_cancelled_and_expired_requests_are_dropped_without_generation(small_engine: Engine) -> None:
    """test_model_worker_process's test, on the continuous engine: with the only row busy, a request whose
    deadline passes while it waits and one whose caller leaves are dropped, never generated."""
    busy = long_request(small_engine)
    later = small_engine.prepare(request(5, max_new=4))

    async def body(batcher: ContinuousBatcher) -> tuple[Generated, Generated, dict[str, int]]:
        streaming = asyncio.Event()
        running = asyncio.create_task(batcher.submit(busy, on_delta=lambda _: streaming.set()))
        await streaming.wait()  # the long request is generating: whatever comes next waits
        with pytest.raises(Cancelled, match="deadline"):
            await batcher.submit(small_engine.prepare(request(3)), time_left=0.05)
        cancelled = asyncio.create_task(batcher.submit(small_engine.prepare(request(4))))
        await asyncio.sleep(0)  # queued: the only row is busy
        assert batcher.queue_depth == 1
        cancelled.cancel()
        with pytest.raises(asyncio.CancelledError):
            await cancelled
        first, _ = await running
        second, _ = await batcher.submit(later)
        return first, second, dataclasses.asdict(batcher.stats)

    first, second, stats = serve(small_engine, body, max_batch_size=1)
    assert first.finish_reason is FinishReason.LENGTH
    assert stats["requests_completed"] == 2, "only the long request and the later one were generated"
    assert stats["generated_tokens"] == 96 + len(second.token_ids)
    assert stats["requests_dropped"] == 2

"""The continuous engine: rows join and leave at every step, and every answer is the one it gets alone."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TypeVar

import pytest

from docvl.errors import Cancelled, ResourceExhausted
from docvl.inference.types import FinishReason, Generated, Timings
from model_worker.checkpoint import LoadedModel
from model_worker.decoding import RowControl
from model_worker.engine import Engine, PreparedInput
from model_worker.scheduler import ContinuousBatcher
from model_worker.service import InferenceService
from model_worker.settings import ModelWorkerSettings
from tests.conftest import make_engine
from tests.model_worker.test_engine import VL_TASKS, request, run_one
from tests.support.reference import direct_generate

T = TypeVar("T")


def serve(engine: Engine, body: Callable[[ContinuousBatcher], Awaitable[T]], **budget: int) -> T:
    """Run `body` against a started continuous engine; stop it after."""
    limits = {
        "max_batch_size": 16,
        "max_queue": 64,
        "max_batch_total_tokens": 65_536,
        "max_prefill_tokens": 8192,
    }

    async def main() -> T:
        batcher = ContinuousBatcher(engine, **{**limits, **budget})
        batcher.start()
        try:
            return await body(batcher)
        finally:
            await batcher.stop()

    return asyncio.run(main())


async def later(
    batcher: ContinuousBatcher, prepared: PreparedInput, delay: float, **kw: object
) -> tuple[Generated, Timings]:
    await asyncio.sleep(delay)
    return await batcher.submit(prepared, **kw)  # type: ignore[arg-type]


LENGTHS = [1, 64, 5, 33, 2, 48, 17, 9, 64, 3]


def test_staggered_mixed_lengths_equal_direct_generate(
    small_engine: Engine, small_model: LoadedModel
) -> None:
    tasks = VL_TASKS
    reqs = [request(i, tasks[i % 4], max_new=n) for i, n in enumerate(LENGTHS)]
    prepared = [small_engine.prepare(r) for r in reqs]

    async def body(batcher: ContinuousBatcher) -> list[tuple[Generated, Timings]]:
        return await asyncio.gather(*(later(batcher, p, 0.02 * (i % 5)) for i, p in enumerate(prepared)))

    results = serve(small_engine, body)
    assert max(t.batch_size for _, t in results) > 1, "requests shared the running batch"
    for req, (got, _) in zip(reqs, results, strict=True):
        tokens, text = direct_generate(
            small_model, req.task, list(req.images), req.params.max_new_tokens, req.question
        )
        assert got.token_ids == tokens, req.request_id
        assert got.text == text
        assert got.finish_reason is (
            FinishReason.LENGTH if len(tokens) == req.params.max_new_tokens else FinishReason.STOP
        )


def test_a_tight_budget_admits_in_turn_and_answers_stay_the_same(small_engine: Engine) -> None:
    prepared = [small_engine.prepare(request(i, max_new=n)) for i, n in enumerate([20, 7, 30, 12])]
    largest = max(len(p.input_ids) + p.params.max_new_tokens for p in prepared)

    async def body(batcher: ContinuousBatcher) -> list[tuple[Generated, Timings]]:
        return await asyncio.gather(*(batcher.submit(p) for p in prepared))

    results = serve(small_engine, body, max_batch_total_tokens=largest + 40, max_prefill_tokens=1)
    for p, (got, timings) in zip(prepared, results, strict=True):
        assert got == run_one(small_engine, p)
        assert timings.batch_size <= 2
    assert results[-1][1].queued_ms > 0


def test_a_request_that_never_fits_the_budget_is_refused_at_once(small_engine: Engine) -> None:
    prepared = small_engine.prepare(request(1, max_new=64))

    async def body(batcher: ContinuousBatcher) -> None:
        with pytest.raises(ResourceExhausted, match="MAX_BATCH_TOTAL_TOKENS"):
            await batcher.submit(prepared)

    serve(small_engine, body, max_batch_total_tokens=len(prepared.input_ids) + 10)


def test_cancellation_mid_run_frees_the_row_and_leaves_the_others_alone(small_engine: Engine) -> None:
    candidates = [small_engine.prepare(request(s, max_new=64)) for s in range(8)]
    long = [p for p in candidates if run_one(small_engine, p).finish_reason is FinishReason.LENGTH]
    assert len(long) >= 2, "the tiny model should run to the limit for some images"
    victim, other = long[:2]

    async def body(batcher: ContinuousBatcher) -> tuple[Generated, int]:
        seen: list[str] = []
        streaming = asyncio.Event()

        def delta(text: str) -> None:
            seen.append(text)
            if len(seen) >= 3:
                streaming.set()

        doomed = asyncio.create_task(batcher.submit(victim, on_delta=delta))
        survivor = asyncio.create_task(later(batcher, other, 0.01))
        await streaming.wait()
        doomed.cancel()
        with pytest.raises(asyncio.CancelledError):
            await doomed
        got, _ = await survivor
        return got, batcher.stats.requests_dropped

    got, dropped = serve(small_engine, body)
    assert got == run_one(small_engine, other)
    assert dropped == 1, "the cancelled row left without an answer"


def test_a_deadline_stops_a_running_row_and_drops_a_waiting_one(small_engine: Engine) -> None:
    long = small_engine.prepare(request(2, max_new=64))
    waiting = small_engine.prepare(request(3, max_new=4))

    async def body(batcher: ContinuousBatcher) -> Generated:
        running = asyncio.create_task(batcher.submit(long, time_left=0.05))
        await asyncio.sleep(0)
        with pytest.raises(Cancelled, match="deadline"):
            await batcher.submit(waiting, time_left=0.0)
        got, _ = await running
        return got

    got = serve(small_engine, body, max_batch_size=1)
    alone = run_one(small_engine, long)
    if got.finish_reason is FinishReason.CANCELLED:
        assert got.token_ids == alone.token_ids[: len(got.token_ids)]
        assert len(got.token_ids) < len(alone.token_ids)
    else:  # a fast machine may finish first
        assert got == alone


def test_sampling_and_the_repeat_guard_behave_as_in_the_window_engine(small_model: LoadedModel) -> None:
    guarded = make_engine(small_model, no_repeat_ngram=2, no_repeat_window=64)
    prepared = [
        guarded.prepare(request(3, max_new=24, temperature=1.0, top_p=0.9, seed=42)),
        guarded.prepare(request(4, max_new=48)),
        guarded.prepare(request(5, max_new=12, temperature=0.7, seed=7)),
    ]

    async def body(batcher: ContinuousBatcher) -> list[tuple[Generated, Timings]]:
        return await asyncio.gather(*(later(batcher, p, 0.01 * i) for i, p in enumerate(prepared)))

    results = serve(guarded, body)
    for p, (got, _) in zip(prepared, results, strict=True):
        assert got == guarded.generate([p], [RowControl(p.params)])[0]


def test_streamed_deltas_concatenate_to_the_text(small_engine: Engine) -> None:
    prepared = [small_engine.prepare(request(s, max_new=20 + 10 * s)) for s in range(3)]
    deltas: list[list[str]] = [[], [], []]

    async def body(batcher: ContinuousBatcher) -> list[tuple[Generated, Timings]]:
        return await asyncio.gather(
            *(later(batcher, p, 0.01 * i, on_delta=deltas[i].append) for i, p in enumerate(prepared))
        )

    for (got, _), pieces in zip(serve(small_engine, body), deltas, strict=True):
        assert got.text.startswith("".join(pieces))
        assert len(pieces) > 1


def test_the_service_picks_the_engine_by_setting(small_engine: Engine) -> None:
    settings = ModelWorkerSettings(model_dir=Path("unused"), scheduler="continuous")
    assert isinstance(InferenceService(small_engine, settings).batcher, ContinuousBatcher)

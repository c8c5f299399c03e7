"""The continuous engine's admission: by priority, then arrival, with ageing; and its metrics."""

from __future__ import annotations

import asyncio
import dataclasses

import pytest
from prometheus_client import REGISTRY

from docvl.errors import InvalidInput
from docvl.inference import mapping
from docvl.inference.types import InferenceRequest
from model_worker.batcher import _Pending
from model_worker.engine import Engine, PreparedInput
from model_worker.scheduler import ContinuousBatcher
from model_worker.waiting import Replay, WaitingQueue
from tests.model_worker.test_engine import request, run_one
from tests.model_worker.test_scheduler import serve


def with_priority(prepared: PreparedInput, priority: int) -> PreparedInput:
    return dataclasses.replace(prepared, priority=priority)


async def in_order(batcher: ContinuousBatcher, prepared: list[PreparedInput]) -> list[str]:
    """Submit all at once (queued before the scheduler runs again); the request ids in order of answer."""
    finished: list[str] = []

    async def one(p: PreparedInput) -> None:
        await batcher.submit(p)
        finished.append(p.request_id)

    await asyncio.gather(*(one(p) for p in prepared))
    return finished


def test_a_high_priority_request_queued_behind_low_ones_is_admitted_first(small_engine: Engine) -> None:
    low = [with_priority(small_engine.prepare(request(s, max_new=6)), 0) for s in range(3)]
    high = with_priority(small_engine.prepare(request(7, max_new=6)), 9)

    order = serve(small_engine, lambda b: in_order(b, [*low, high]), max_batch_size=1)
    assert order == ["r7", "r0", "r1", "r2"]


def test_an_old_low_priority_request_outranks_fresh_high_ones_in_the_end(small_engine: Engine) -> None:
    def pending(priority: int, at: float) -> _Pending:
        prepared = with_priority(small_engine.prepare(request(1, max_new=2)), priority)
        return _Pending(prepared, asyncio.Future(loop=asyncio.new_event_loop()), at, None, None)

    queue = WaitingQueue(aging_s=10)
    old, fresh = pending(0, at=0.0), pending(9, at=85.0)
    queue.append(fresh)
    queue.append(old)
    assert queue.ordered(now=85.0) == [fresh, old]  # 0 + 8 against 9
    assert queue.ordered(now=90.0) == [old, fresh]  # 0 + 9 against 9: the earlier arrival first
    assert queue.effective_priority(old, 100.0) == 10


def test_ageing_admits_an_old_low_priority_request_before_later_high_ones(small_engine: Engine) -> None:
    blocker = with_priority(small_engine.prepare(request(2, max_new=512)), 9)
    low = with_priority(small_engine.prepare(request(3, max_new=4)), 0)
    high = [with_priority(small_engine.prepare(request(s, max_new=4)), 9) for s in (4, 5)]

    async def body(batcher: ContinuousBatcher) -> list[str]:
        finished: list[str] = []

        async def one(p: PreparedInput) -> None:
            await batcher.submit(p)
            finished.append(p.request_id)

        running = asyncio.create_task(batcher.submit(blocker))  # holds the only row meanwhile
        await asyncio.sleep(0.01)
        waiting = [asyncio.create_task(one(low))]
        await asyncio.sleep(0.3)  # low has aged by 0.3 / 0.02 = 15 levels: above 9 + the highs' age
        waiting += [asyncio.create_task(one(p)) for p in high]
        await asyncio.sleep(0.01)
        running.cancel()
        await asyncio.gather(*waiting)
        return finished

    order = serve(small_engine, body, max_batch_size=1, priority_aging_s=0.02)  # type: ignore[arg-type]
    assert order == ["r3", "r4", "r5"]


def test_priority_travels_on_the_wire_and_is_checked(small_engine: Engine) -> None:
    sent = dataclasses.replace(request(1), priority=7)
    assert mapping.request_from_pb(mapping.request_to_pb(sent)).priority == 7
    assert InferenceRequest(task=sent.task, images=sent.images).priority == 0
    assert small_engine.prepare(sent).priority == 7
    with pytest.raises(InvalidInput, match="priority is 10"):
        small_engine.prepare(dataclasses.replace(sent, priority=10))


def test_a_replayed_stream_sends_no_text_twice() -> None:
    got: list[str] = []
    replay = Replay(got.append)
    for piece in ("ab", "cd", "e"):
        replay(piece)
    replay.restart()  # preempted: the row is generated again from scratch
    for piece in ("a", "bcd", "ef", "g"):
        replay(piece)
    assert got == ["ab", "cd", "e", "f", "g"]


def sample(name: str) -> float:
    return REGISTRY.get_sample_value(f"docvl_model_{name}") or 0.0


def test_running_rows_tokens_per_step_and_cache_use_are_exported(small_engine: Engine) -> None:
    prepared = [small_engine.prepare(request(s, max_new=8 + 4 * s)) for s in range(3)]
    during: list[tuple[float, float]] = []
    steps_before, tokens_before = sample("tokens_per_step_count"), sample("tokens_per_step_sum")

    async def body(batcher: ContinuousBatcher) -> list[object]:
        def delta(_: str) -> None:
            during.append((sample("running_rows"), sample("cache_tokens")))

        return list(await asyncio.gather(*(batcher.submit(p, on_delta=delta) for p in prepared)))

    results = serve(small_engine, body)
    answers = [run_one(small_engine, p) for p in prepared]
    assert [r[0] for r in results] == answers  # type: ignore[index]
    assert max(rows for rows, _ in during) >= 2
    assert max(cache for _, cache in during) > 0
    assert sample("running_rows") == 0
    assert sample("cache_tokens") == 0
    steps = sample("tokens_per_step_count") - steps_before
    decoded = sample("tokens_per_step_sum") - tokens_before
    # Each row's first token comes from its prefill, every other one from a decoding step.
    assert decoded == sum(len(a.token_ids) - 1 for a in answers)
    assert 0 < steps < decoded

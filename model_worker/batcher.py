"""Dynamic batching: requests that arrive together share one generate call.

A batch closes when it holds `max_batch_size` requests or `max_wait_ms` after its first request, whichever
comes first. Requests whose caller has gone, or whose deadline has passed, are dropped before generation.
The model runs on one dedicated thread, so the event loop stays free to accept and preprocess requests.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from docvl.errors import Cancelled, ResourceExhausted, Unavailable
from docvl.inference.types import Generated, Timings, WorkerStats
from docvl.observability import tracing
from docvl.observability.metrics import model as metrics
from model_worker.decoding import RowControl
from model_worker.engine import Engine, PreparedInput

if TYPE_CHECKING:
    from opentelemetry.context import Context

log = logging.getLogger(__name__)


@dataclass
class _Pending:
    prepared: PreparedInput
    future: asyncio.Future[tuple[Generated, Timings]]
    enqueued_at: float
    deadline: float | None
    on_delta: Callable[[str], None] | None
    cancelled: bool = field(default=False)
    trace: Context | None = None  # the request's, when tracing is on: its wait and generate spans go there
    enqueued_ns: int = 0

    def gone(self, now: float) -> bool:
        return self.cancelled or self.future.done() or (self.deadline is not None and now >= self.deadline)


def settle(stats: WorkerStats, pending: _Pending, outcome: Generated | Exception, timings: Timings) -> None:
    """Answer the request with its outcome and count it (both schedulers); nothing when it was already
    answered."""
    if pending.future.done():
        return
    if isinstance(outcome, Exception):
        stats.requests_failed += 1
        metrics.requests.labels("failed").inc()
        pending.future.set_exception(outcome)
        return
    stats.requests_completed += 1
    stats.generated_tokens += len(outcome.token_ids)
    metrics.requests.labels("completed").inc()
    metrics.generated_tokens.inc(len(outcome.token_ids))
    metrics.image_tokens.inc(outcome.image_tokens)
    pending.future.set_result((outcome, timings))


class Batcher:
    def __init__(self, engine: Engine, *, max_batch_size: int, max_wait_ms: int, max_queue: int) -> None:
        self.engine = engine
        self.max_batch_size = max_batch_size
        self.max_wait = max_wait_ms / 1000
        self.max_queue = max_queue
        self.stats = WorkerStats()
        self._queue: asyncio.Queue[_Pending] = asyncio.Queue()
        self._model_thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="generate")
        self._task: asyncio.Task[None] | None = None
        metrics.watch_queue(self._queue.qsize)

    @property
    def queue_depth(self) -> int:
        return self._queue.qsize()

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run(), name="batcher")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        while not self._queue.empty():
            pending = self._queue.get_nowait()
            if not pending.future.done():
                pending.future.set_exception(
                    Unavailable("the model worker is shutting down: retry elsewhere")
                )
        self._model_thread.shutdown(wait=True)

    async def submit(
        self,
        prepared: PreparedInput,
        *,
        time_left: float | None = None,
        on_delta: Callable[[str], None] | None = None,
    ) -> tuple[Generated, Timings]:
        """Queue a prepared request and wait for its result. Cancelling the caller drops or stops it."""
        if self._queue.qsize() >= self.max_queue:
            raise ResourceExhausted(f"the queue is full ({self.max_queue} requests waiting): retry later")
        loop = asyncio.get_running_loop()
        now = loop.time()
        pending = _Pending(
            prepared=prepared,
            future=loop.create_future(),
            enqueued_at=now,
            deadline=None if time_left is None else now + time_left,
            on_delta=on_delta,
            trace=tracing.captured(),
            enqueued_ns=time.time_ns(),
        )
        self._queue.put_nowait(pending)
        try:
            return await asyncio.shield(pending.future)
        except asyncio.CancelledError:
            pending.cancelled = True
            raise

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            batch = await self._collect(loop)
            if batch:
                await self._execute(loop, batch)

    async def _collect(self, loop: asyncio.AbstractEventLoop) -> list[_Pending]:
        batch = [await self._queue.get()]
        closes_at = loop.time() + self.max_wait
        while len(batch) < self.max_batch_size:
            if not self._queue.empty():
                batch.append(self._queue.get_nowait())
                continue
            remaining = closes_at - loop.time()
            if remaining <= 0:
                break
            try:
                batch.append(await asyncio.wait_for(self._queue.get(), remaining))
            except TimeoutError:
                break
        now = loop.time()
        live = []
        for pending in batch:
            if pending.gone(now):
                self.stats.requests_dropped += 1
                self._drop(pending)
            else:
                live.append(pending)
        return live

    @staticmethod
    def _drop(pending: _Pending) -> None:
        """A queued request whose caller went away or whose deadline passed: answered without generating."""
        metrics.requests.labels("dropped").inc()
        if pending.cancelled:
            pending.future.cancel()  # nobody waits for it any more
        elif not pending.future.done():
            pending.future.set_exception(Cancelled("the deadline passed while the request was queued"))
        log.info("dropped request %s before generation: caller gone", pending.prepared.request_id)

    async def _execute(self, loop: asyncio.AbstractEventLoop, batch: list[_Pending]) -> None:
        rows = [
            RowControl(
                p.prepared.params,
                cancelled=(lambda p=p: p.gone(loop.time())),  # type: ignore[misc]
                on_delta=None if p.on_delta is None else self._threadsafe(loop, p.on_delta),
            )
            for p in batch
        ]
        started = loop.time()
        begun, begun_ns = time.perf_counter(), time.time_ns()
        outcomes = await loop.run_in_executor(
            self._model_thread, self.engine.run_isolated, [p.prepared for p in batch], rows
        )
        inference_ms = (time.perf_counter() - begun) * 1000
        self.stats.batches += 1
        metrics.batch_size.observe(len(batch))
        self._trace(batch, begun_ns, time.time_ns())
        for pending, outcome in zip(batch, outcomes, strict=True):
            timings = Timings(
                queued_ms=(started - pending.enqueued_at) * 1000,
                preprocessing_ms=pending.prepared.preprocessing_ms,
                inference_ms=inference_ms,
                batch_size=len(batch),
            )
            if not pending.future.done() and not isinstance(outcome, Exception):
                metrics.queue_wait.observe(started - pending.enqueued_at)
            settle(self.stats, pending, outcome, timings)

    def _trace(self, batch: list[_Pending], begun_ns: int, ended_ns: int) -> None:
        """Each request's own spans (when tracing is on): its wait for a batch, and the batch's generate
        call, which served `docvl.batch_size` requests (the same `docvl.batch` number for each)."""
        shared = {"docvl.batch_size": len(batch), "docvl.batch": self.stats.batches}
        for pending in batch:
            tracing.record("docvl.batch_wait", pending.trace, pending.enqueued_ns, begun_ns)
            tracing.record("docvl.generate", pending.trace, begun_ns, ended_ns, shared)

    @staticmethod
    def _threadsafe(
        loop: asyncio.AbstractEventLoop, callback: Callable[[str], None]
    ) -> Callable[[str], None]:
        def deliver(delta: str) -> None:
            loop.call_soon_threadsafe(callback, delta)

        return deliver

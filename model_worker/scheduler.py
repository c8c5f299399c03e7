"""Continuous batching: an iteration-level scheduler, the alternative to the window batcher.

Every step, on the model thread: requests admitted since the last step are prefilled together (their
images encoded once) and join the running batch; one token is decoded for every running row; finished rows
(end token, their own max_new_tokens, cancelled, deadline passed) leave at once and free their cache rows.
Between steps, on the event loop, waiting requests are admitted by priority, then arrival (with ageing,
see `model_worker.waiting`) while the token budget allows: the running rows' reserved tokens (prompt +
max_new_tokens each) stay within `max_batch_total_tokens`, a step prefills at most `max_prefill_tokens`
prompt tokens (a lone newcomer always may), and at most `max_batch_size` rows run. Same interface as
`Batcher`, so the service takes either.

Out of memory while decoding preempts rather than fails: the step is undone, the lowest-priority row (the
newest among equals) leaves the batch and goes back to the waiting queue, to be recomputed from scratch
later (its streamed text is not sent twice), and the rest go on; until a row leaves, no more rows are
admitted than ran when memory ran out. A row that runs out of memory alone fails (RESOURCE_EXHAUSTED).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import torch

from docvl.errors import ResourceExhausted, Unavailable
from docvl.inference.types import Generated, Timings, WorkerStats
from docvl.observability import tracing
from docvl.observability.metrics import model as metrics
from model_worker.batcher import Batcher, _Pending, settle
from model_worker.decoding import RowControl
from model_worker.engine import Engine, PreparedInput, is_out_of_memory, out_of_memory_alone
from model_worker.rows import Row, RunningBatch, new_row
from model_worker.waiting import Replay, WaitingQueue

log = logging.getLogger(__name__)

Outcome = Generated | Exception


@dataclass
class _Admitted:
    pending: _Pending
    admitted_at: float
    admitted_ns: int
    peak_rows: int = 0


@dataclass
class _StepResult:
    finished: list[tuple[Row, Outcome]] = field(default_factory=list)
    requeue: list[Row] = field(default_factory=list)  # did not fit in memory: newcomers, preempted rows
    rows: int = 0  # running after the step
    steps: int = 0  # decoding steps run


class ContinuousBatcher:
    def __init__(
        self,
        engine: Engine,
        *,
        max_batch_size: int,
        max_queue: int,
        max_batch_total_tokens: int,
        max_prefill_tokens: int,
        priority_aging_s: float = 30.0,
    ) -> None:
        self.engine = engine
        self.max_batch_size = max_batch_size
        self.max_queue = max_queue
        self.max_batch_total_tokens = max_batch_total_tokens
        self.max_prefill_tokens = max_prefill_tokens
        self.steps_per_call = 64  # at most, between two visits to the event loop (with nobody waiting)
        self.stats = WorkerStats()
        self._waiting = WaitingQueue(priority_aging_s)
        self._row_cap: int | None = None  # rows that fit in memory, learnt from running out of it
        self._wake = asyncio.Event()
        self._batch = RunningBatch(engine)
        self._owners: dict[int, _Admitted] = {}  # id(row) -> its request
        self._model_thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="generate")
        self._task: asyncio.Task[None] | None = None
        metrics.watch_queue(lambda: len(self._waiting))

    @property
    def queue_depth(self) -> int:
        return len(self._waiting)

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run(), name="scheduler")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        gone = Unavailable("the model worker is shutting down: retry elsewhere")
        for pending in [*self._waiting, *(a.pending for a in self._owners.values())]:
            if not pending.future.done():
                pending.future.set_exception(gone)
        self._waiting.clear()
        self._model_thread.shutdown(wait=True)

    async def submit(
        self,
        prepared: PreparedInput,
        *,
        time_left: float | None = None,
        on_delta: Callable[[str], None] | None = None,
    ) -> tuple[Generated, Timings]:
        """Queue a prepared request and wait for its result. Cancelling the caller frees its row."""
        if len(self._waiting) >= self.max_queue:
            raise ResourceExhausted(f"the queue is full ({self.max_queue} requests waiting): retry later")
        need = len(prepared.input_ids) + prepared.params.max_new_tokens
        if need > self.max_batch_total_tokens:
            raise ResourceExhausted(
                f"this request needs {need} cache tokens (prompt + max_new_tokens) and the budget is "
                f"{self.max_batch_total_tokens}: send a smaller max_new_tokens, or raise "
                "DOCVL_MODEL_WORKER_MAX_BATCH_TOTAL_TOKENS"
            )
        loop = asyncio.get_running_loop()
        now = loop.time()
        pending = _Pending(
            prepared=prepared,
            future=loop.create_future(),
            enqueued_at=now,
            deadline=None if time_left is None else now + time_left,
            on_delta=None if on_delta is None else Replay(Batcher._threadsafe(loop, on_delta)),
            trace=tracing.captured(),
            enqueued_ns=time.time_ns(),
        )
        self._waiting.append(pending)
        self._wake.set()
        try:
            return await asyncio.shield(pending.future)
        except asyncio.CancelledError:
            pending.cancelled = True
            raise

    # -- the loop -------------------------------------------------------------------------------------

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            if not self._waiting and not self._owners:
                self._wake.clear()
                await self._wake.wait()
            newcomers = self._admit(loop)
            result = await loop.run_in_executor(self._model_thread, self._step, newcomers)
            for row in result.requeue:  # back to the queue, with their arrival time: ahead of their class
                pending = self._owners.pop(id(row)).pending
                if isinstance(pending.on_delta, Replay):
                    pending.on_delta.restart()
                self._waiting.append(pending)
            for row, outcome in result.finished:
                self._deliver(loop, row, outcome)
            if result.finished or not self._owners:
                self._row_cap = None
            self.stats.batches += result.steps

    def _admit(self, loop: asyncio.AbstractEventLoop) -> list[Row]:
        """Drop the waiting requests whose caller left; take the next ones while the budget allows."""
        now = loop.time()
        for pending in [p for p in self._waiting if p.gone(now)]:
            self._waiting.remove(pending)
            self.stats.requests_dropped += 1
            Batcher._drop(pending)
        running = list(self._owners.values())
        reserved = sum(
            len(a.pending.prepared.input_ids) + a.pending.prepared.params.max_new_tokens for a in running
        )
        newcomers: list[Row] = []
        prefill = 0
        rows = self.max_batch_size if self._row_cap is None else min(self.max_batch_size, self._row_cap)
        for pending in self._waiting.ordered(now):
            if len(running) + len(newcomers) >= rows:
                break
            prepared = pending.prepared
            need = len(prepared.input_ids) + prepared.params.max_new_tokens
            if reserved + need > self.max_batch_total_tokens:
                break
            if newcomers and prefill + len(prepared.input_ids) > self.max_prefill_tokens:
                break
            self._waiting.remove(pending)
            reserved += need
            prefill += len(prepared.input_ids)
            control = RowControl(
                prepared.params,
                cancelled=(lambda p=pending: p.gone(loop.time())),  # type: ignore[misc]
                on_delta=pending.on_delta,
            )
            row = new_row(self.engine, prepared, control)
            self._owners[id(row)] = _Admitted(
                pending, loop.time(), time.time_ns(), len(running) + len(newcomers) + 1
            )
            metrics.queue_wait.observe(now - pending.enqueued_at)
            newcomers.append(row)
        if newcomers:
            for admitted in self._owners.values():
                admitted.peak_rows = max(admitted.peak_rows, len(running) + len(newcomers))
        return newcomers

    def _step(self, newcomers: list[Row]) -> _StepResult:
        """On the model thread: prefill and join the newcomers, decode, retire finished rows; go on decoding
        while no row leaves and no request waits."""
        result = _StepResult()
        batch = self._batch
        with torch.inference_mode():
            if newcomers:
                self._join(newcomers, result)
            result.finished += batch.retire()
            # Step after step without a trip to the event loop while nothing joins or leaves.
            while batch.rows and not (result.finished or result.requeue):
                if result.steps >= self.steps_per_call or (result.steps and self._waiting):
                    break
                self._decode(result)
                result.finished += batch.retire()
        result.rows = len(batch.rows)
        metrics.running_rows.set(result.rows)
        metrics.cache_tokens.set(result.rows * batch.cache_length)
        return result

    def _decode(self, result: _StepResult) -> None:
        batch = self._batch
        started = time.perf_counter()
        try:
            batch.decode()  # undone when it raises
        except Exception as exc:
            if is_out_of_memory(exc) and len(batch.rows) > 1:
                self._preempt(result)
                return
            log.exception("a decoding step of %d rows failed", len(batch.rows))
            result.finished += [(row, self._failure(exc)) for row in batch.rows]
            batch.keep([])
            return
        elapsed = time.perf_counter() - started
        result.steps += 1
        metrics.tokens_per_step.observe(len(batch.rows))
        metrics.running_rows.set(len(batch.rows))
        metrics.cache_tokens.set(len(batch.rows) * batch.cache_length)
        metrics.decode_step.observe(elapsed)
        metrics.tokens_per_second.set(len(batch.rows) / max(elapsed, 1e-9))

    def _preempt(self, result: _StepResult) -> None:
        """Out of memory decoding: the lowest-priority row, the newest among equals, leaves to be recomputed
        later; no more rows than those left are admitted until a row finishes."""
        batch = self._batch
        order = {id(row): i for i, row in enumerate(batch.rows)}  # rows join at the end
        victim = min(batch.rows, key=lambda row: (row.prepared.priority, -order[id(row)]))
        log.warning(
            "out of memory decoding %d rows: request %s preempted, to be recomputed",
            len(batch.rows),
            victim.prepared.request_id,
        )
        batch.keep([i for i, row in enumerate(batch.rows) if row is not victim])
        self.engine.release_memory()
        self._row_cap = len(batch.rows)
        metrics.preemptions.inc()
        result.requeue.append(victim)

    def _join(self, newcomers: list[Row], result: _StepResult) -> None:
        """Prefill the newcomers together; on failure one by one, so an error stays with its request.
        Out of memory while other rows run: the newcomer waits for rows to leave."""
        try:
            self._batch.join(self._batch.prefill(newcomers))
            return
        except Exception as exc:
            if len(newcomers) > 1:
                log.warning("prefill of %d newcomers failed (%r): one by one", len(newcomers), exc)
                for row in newcomers:
                    self._join([row], result)
                return
            row = newcomers[0]
            if is_out_of_memory(exc) and self._batch.rows:
                self.engine.release_memory()
                self._row_cap = len(self._batch.rows)
                result.requeue.append(row)
                return
            log.exception("request %s failed", row.prepared.request_id)
            result.finished.append((row, self._failure(exc)))

    def _failure(self, exc: Exception) -> Exception:
        if not is_out_of_memory(exc):
            return exc
        self.engine.release_memory()
        return out_of_memory_alone()

    def _deliver(self, loop: asyncio.AbstractEventLoop, row: Row, outcome: Outcome) -> None:
        admitted = self._owners.pop(id(row))
        pending = admitted.pending
        ended_ns = time.time_ns()
        shared = {"docvl.batch_size": admitted.peak_rows, "docvl.scheduler": "continuous"}
        tracing.record("docvl.batch_wait", pending.trace, pending.enqueued_ns, admitted.admitted_ns)
        tracing.record("docvl.generate", pending.trace, admitted.admitted_ns, ended_ns, shared)
        if pending.cancelled:  # its caller went away: the row left at this step, nobody waits for it
            self.stats.requests_dropped += 1
            metrics.requests.labels("dropped").inc()
            pending.future.cancel()
            return
        timings = Timings(
            queued_ms=(admitted.admitted_at - pending.enqueued_at) * 1000,
            preprocessing_ms=pending.prepared.preprocessing_ms,
            inference_ms=(loop.time() - admitted.admitted_at) * 1000,
            batch_size=admitted.peak_rows,
        )
        settle(self.stats, pending, outcome, timings)

"""The model worker's service layer: what the gRPC servicer calls, free of transport types."""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Callable

from docvl.inference.types import InferenceRequest, InferenceResult, ModelDescription, WorkerStats
from docvl.observability import logs, tracing
from docvl.observability.metrics import model as metrics
from model_worker.batcher import Batcher
from model_worker.budget import token_budget
from model_worker.engine import Engine
from model_worker.preprocess import PreprocessPool
from model_worker.scheduler import ContinuousBatcher
from model_worker.settings import ModelWorkerSettings

log = logging.getLogger(__name__)


class InferenceService:
    def __init__(self, engine: Engine, settings: ModelWorkerSettings) -> None:
        self.engine = engine
        self.settings = settings
        self.batcher: Batcher | ContinuousBatcher
        if settings.scheduler == "continuous":
            self.batcher = ContinuousBatcher(
                engine,
                max_batch_size=settings.max_batch_size,
                max_queue=settings.max_queue,
                max_batch_total_tokens=token_budget(
                    settings.max_batch_total_tokens,
                    settings.gpu_memory_fraction,
                    engine.model.config,
                    engine.model.dtype,
                    engine.loaded.device,
                ),
                max_prefill_tokens=settings.max_prefill_tokens,
                priority_aging_s=settings.priority_aging_s,
            )
        else:
            self.batcher = Batcher(
                engine,
                max_batch_size=settings.max_batch_size,
                max_wait_ms=settings.max_wait_ms,
                max_queue=settings.max_queue,
            )
        self._preprocess = PreprocessPool(
            engine.preparer,
            threads=settings.preprocess_threads,
            processes=settings.preprocess_processes,
            model_dir=settings.model_dir,
        )
        self._preprocess.warm_up()  # worker processes start here, off the event loop (the loader's thread)

    @property
    def description(self) -> ModelDescription:
        return self.engine.description

    @property
    def stats(self) -> WorkerStats:
        return self.batcher.stats

    @property
    def queue_depth(self) -> int:
        return self.batcher.queue_depth

    def start(self) -> None:
        self.batcher.start()

    async def stop(self) -> None:
        await self.batcher.stop()
        self._preprocess.shutdown()

    async def infer(
        self,
        request: InferenceRequest,
        *,
        time_left: float | None = None,
        on_delta: Callable[[str], None] | None = None,
    ) -> InferenceResult:
        """Validate and preprocess off the event loop, then wait for a batch. Raises DocvlError subclasses."""
        request_id = request.request_id or uuid.uuid4().hex
        fields = logs.task_fields(request_id)
        if fields is not None:
            tracing.annotate(job_id=fields[0], page=fields[1], task=fields[2])
        with logs.request_context(request_id), metrics.errors_counted():
            return await self._infer(request, request_id, time_left, on_delta)

    async def _infer(
        self,
        request: InferenceRequest,
        request_id: str,
        time_left: float | None,
        on_delta: Callable[[str], None] | None,
    ) -> InferenceResult:
        loop = asyncio.get_running_loop()
        with tracing.span("docvl.preprocess"):
            prepared = await loop.run_in_executor(
                self._preprocess.executor, self._preprocess.function, request
            )
        metrics.preprocessing.observe(prepared.preprocessing_ms / 1000)
        generated, timings = await self.batcher.submit(prepared, time_left=time_left, on_delta=on_delta)
        log.info(
            "request %s: %d tokens generated, %.0f ms queued, %.0f ms inference in a batch of %d",
            request_id,
            len(generated.token_ids),
            timings.queued_ms,
            timings.inference_ms,
            timings.batch_size,
        )
        d = self.engine.description
        return InferenceResult(
            request_id=request_id,
            text=generated.text,
            prompt_tokens=generated.prompt_tokens,
            image_tokens=generated.image_tokens,
            generated_tokens=len(generated.token_ids),
            finish_reason=generated.finish_reason,
            model_id=d.model_id,
            model_revision=d.model_revision,
            prompt_template_version=prepared.prompt_version,
            timings=timings,
        )

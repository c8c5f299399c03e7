"""The model worker's service layer: what the gRPC servicer calls, free of transport types."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

from model_worker.batcher import Batcher
from model_worker.engine import Engine
from model_worker.settings import ModelWorkerSettings
from model_worker.types import InferenceRequest, InferenceResult, ModelDescription, WorkerStats


class InferenceService:
    def __init__(self, engine: Engine, settings: ModelWorkerSettings) -> None:
        self.engine = engine
        self.settings = settings
        self.batcher = Batcher(
            engine,
            max_batch_size=settings.max_batch_size,
            max_wait_ms=settings.max_wait_ms,
            max_queue=settings.max_queue,
        )
        self._preprocess = ThreadPoolExecutor(settings.preprocess_threads, thread_name_prefix="preprocess")

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
        self._preprocess.shutdown(wait=False, cancel_futures=True)

    async def infer(
        self,
        request: InferenceRequest,
        *,
        time_left: float | None = None,
        on_delta: Callable[[str], None] | None = None,
    ) -> InferenceResult:
        """Validate and preprocess off the event loop, then wait for a batch. Raises DocvlError subclasses."""
        request_id = request.request_id or uuid.uuid4().hex
        loop = asyncio.get_running_loop()
        prepared = await loop.run_in_executor(self._preprocess, self.engine.prepare, request)
        generated, timings = await self.batcher.submit(prepared, time_left=time_left, on_delta=on_delta)
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

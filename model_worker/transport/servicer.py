"""InferenceService over gRPC: protobuf in, service call, protobuf out, errors mapped in one place."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

import grpc

from docvl.errors import DocvlError, Unavailable
from docvl.inference import mapping
from docvl.status_codes import grpc_code
from docvl.v1 import inference_pb2 as pb
from docvl.v1 import inference_pb2_grpc as pb_grpc
from model_worker.settings import ModelWorkerSettings

if TYPE_CHECKING:  # the service imports torch, which the server loads only after it is listening
    from model_worker.service import InferenceService

log = logging.getLogger(__name__)


class InferenceServicer(pb_grpc.InferenceServiceServicer):  # type: ignore[misc]
    """Serves requests once `service` is attached (after the model has loaded); UNAVAILABLE before."""

    def __init__(self, settings: ModelWorkerSettings) -> None:
        self.settings = settings
        self.service: InferenceService | None = None

    def _ready(self) -> InferenceService:
        if self.service is None:
            raise Unavailable("the model is still loading: retry when health reports SERVING")
        return self.service

    async def Generate(
        self, request: pb.GenerateRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.GenerateResponse:
        try:
            result = await self._ready().infer(
                mapping.request_from_pb(request), time_left=context.time_remaining()
            )
            return mapping.result_to_pb(result)
        except DocvlError as exc:
            await context.abort(grpc_code(exc), exc.message)
            raise  # unreachable: abort raises

    async def GenerateStream(
        self, request: pb.GenerateRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> AsyncIterator[pb.GenerateStreamResponse]:
        deltas: asyncio.Queue[str] = asyncio.Queue()
        try:
            service = self._ready()
            domain_request = mapping.request_from_pb(request)
            request_id = domain_request.request_id
            job = asyncio.ensure_future(
                service.infer(domain_request, time_left=context.time_remaining(), on_delta=deltas.put_nowait)
            )
        except DocvlError as exc:
            await context.abort(grpc_code(exc), exc.message)
            return
        sent = ""
        try:
            while not job.done() or not deltas.empty():
                getter = asyncio.ensure_future(deltas.get())
                await asyncio.wait({getter, job}, return_when=asyncio.FIRST_COMPLETED)
                if not getter.done():
                    getter.cancel()
                    continue
                delta = getter.result()
                sent += delta
                yield pb.GenerateStreamResponse(request_id=request_id, text_delta=delta)
            result = job.result()
        except DocvlError as exc:
            await context.abort(grpc_code(exc), exc.message)
            return
        finally:
            if not job.done():
                job.cancel()
        tail = result.text[len(sent) :] if result.text.startswith(sent) else ""
        if not result.text.startswith(sent):
            log.warning("request %s: streamed text differs from the final text", result.request_id)
        yield pb.GenerateStreamResponse(
            request_id=result.request_id, text_delta=tail, final=mapping.result_to_pb(result)
        )

    async def GetModelInfo(
        self, request: pb.GetModelInfoRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.ModelInfo:
        try:
            service = self._ready()
        except DocvlError as exc:
            await context.abort(grpc_code(exc), exc.message)
            raise
        s = self.settings
        info = mapping.description_to_pb(service.description)  # with its family, tasks and prompt version
        info.max_batch_size = s.max_batch_size
        info.max_wait_ms = s.max_wait_ms
        info.max_new_tokens_limit = s.max_new_tokens_limit
        info.default_max_new_tokens = s.default_max_new_tokens
        info.max_images_per_request = s.max_images_per_request
        info.max_image_bytes = s.max_image_bytes
        info.max_image_pixels = s.max_image_pixels
        info.stats.CopyFrom(mapping.stats_to_pb(service.stats, service.queue_depth))
        return info

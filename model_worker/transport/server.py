"""The model worker process: gRPC server, health, reflection, model loading and graceful shutdown.

The server listens and answers health NOT_SERVING first, then loads and warms the model (torch is imported
only then), then turns SERVING. SIGTERM or SIGINT: NOT_SERVING, finish what is running, exit.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
from collections.abc import Callable
from typing import TYPE_CHECKING

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from docvl.observability import metrics, tracing
from docvl.v1 import inference_pb2 as pb
from docvl.v1 import inference_pb2_grpc as pb_grpc
from model_worker.settings import ModelWorkerSettings
from model_worker.transport.servicer import InferenceServicer

if TYPE_CHECKING:
    from model_worker.service import InferenceService

log = logging.getLogger(__name__)
SERVICE_NAME = pb.DESCRIPTOR.services_by_name["InferenceService"].full_name
SHUTDOWN_GRACE_S = 30.0


def load_service(settings: ModelWorkerSettings) -> InferenceService:
    """Load the checkpoint, warm it up and wrap it in the service (runs in a thread)."""
    import torch

    from model_worker.checkpoint import load_checkpoint
    from model_worker.engine import Engine, Limits
    from model_worker.service import InferenceService

    loaded = load_checkpoint(
        settings.model_dir,
        device=settings.device,
        model_id=settings.model_id,
        revision=settings.model_revision,
    )
    if loaded.device.type == "cpu":
        torch.set_num_threads(settings.torch_threads(os.cpu_count() or 1))
    engine = Engine(loaded, Limits.from_settings(settings), settings.vision_batch_size, settings.repeat_guard)
    engine.warm_up()
    return InferenceService(engine, settings)


def grpc_options(settings: ModelWorkerSettings) -> list[tuple[str, int]]:
    limit = settings.grpc_message_limit
    return [("grpc.max_receive_message_length", limit), ("grpc.max_send_message_length", limit)]


class ModelWorkerServer:
    def __init__(
        self,
        settings: ModelWorkerSettings,
        loader: Callable[[ModelWorkerSettings], InferenceService] = load_service,
    ) -> None:
        self.settings = settings
        self.loader = loader
        self.servicer = InferenceServicer(settings)
        self.port = 0

    def _build(self) -> None:
        """grpc.aio objects belong to the running event loop: made in start()."""
        self.health = health.aio.HealthServicer()  # type: ignore[attr-defined]
        self.server = grpc.aio.server(options=grpc_options(self.settings))
        pb_grpc.add_InferenceServiceServicer_to_server(self.servicer, self.server)
        health_pb2_grpc.add_HealthServicer_to_server(self.health, self.server)
        reflection.enable_server_reflection(
            [
                SERVICE_NAME,
                health_pb2.DESCRIPTOR.services_by_name["Health"].full_name,
                reflection.SERVICE_NAME,
            ],
            self.server,
        )

    async def _set_health(self, status: health_pb2.HealthCheckResponse.ServingStatus.ValueType) -> None:
        for name in ("", SERVICE_NAME):
            await self.health.set(name, status)

    async def start(self) -> int:
        """Listen (health NOT_SERVING); returns the bound port."""
        self._build()
        self.port = self.server.add_insecure_port(f"{self.settings.host}:{self.settings.port}")
        await self._set_health(health_pb2.HealthCheckResponse.NOT_SERVING)
        await self.server.start()
        log.info("model worker listening on %s:%d (loading the model)", self.settings.host, self.port)
        return self.port

    async def load(self) -> None:
        """Load and warm the model, then turn SERVING."""
        service = await asyncio.get_running_loop().run_in_executor(None, self.loader, self.settings)
        service.start()
        self.servicer.service = service
        await self._set_health(health_pb2.HealthCheckResponse.SERVING)
        d = service.description
        log.info("SERVING %s (%s) on %s, %s", d.model_id, d.model_revision, d.device, d.dtype)

    async def stop(self, grace: float = SHUTDOWN_GRACE_S) -> None:
        await self.health.enter_graceful_shutdown()
        await self.server.stop(grace)
        if self.servicer.service is not None:
            await self.servicer.service.stop()


async def serve(
    settings: ModelWorkerSettings, loader: Callable[[ModelWorkerSettings], InferenceService] = load_service
) -> None:
    """Run until SIGTERM or SIGINT. `loader` makes the service (tests wrap load_service to add a hook)."""
    tracing.instrument_grpc_server(aio=True)  # when tracing is on: a server span per request
    exported = metrics.serve(settings.metrics_port, settings.metrics_host)
    server = ModelWorkerServer(settings, loader)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await server.start()
    loading = asyncio.ensure_future(server.load())
    stopping = asyncio.ensure_future(stop.wait())
    try:
        await asyncio.wait({loading, stopping}, return_when=asyncio.FIRST_COMPLETED)
        if loading.done():
            loading.result()  # a failed load ends the process with its error
            await stopping
        log.info("stopping: finishing requests in flight")
    finally:
        loading.cancel()
        stopping.cancel()
        await server.stop()
        if exported is not None:
            exported.close()

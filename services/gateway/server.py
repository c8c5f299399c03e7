"""The gateway process: a gRPC server (thread pool) with JobService, health and reflection.

Health answers SERVING for "" and docvl.v1.JobService once the port is open. SIGTERM or SIGINT: health
NOT_SERVING, no new calls, WatchJob streams end with UNAVAILABLE (clients resume with after_event_id),
calls in flight get up to `shutdown_grace_s` to finish, then the process exits.
"""

from __future__ import annotations

import logging
import signal
import threading
from concurrent import futures
from dataclasses import dataclass
from types import FrameType

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from docvl.db.database import Database
from docvl.errors import Unavailable
from docvl.jobs.service import JobService
from docvl.observability import metrics, tracing
from docvl.observability.metrics.gateway import CallMetrics
from docvl.v1 import jobs_pb2 as pb
from docvl.v1 import jobs_pb2_grpc as pb_grpc
from services.gateway.servicer import JobServicer
from services.gateway.settings import GatewaySettings

log = logging.getLogger(__name__)
SERVICE_NAME = pb.DESCRIPTOR.services_by_name["JobService"].full_name


def grpc_options(settings: GatewaySettings) -> list[tuple[str, int]]:
    limit = settings.max_message_bytes
    return [("grpc.max_receive_message_length", limit), ("grpc.max_send_message_length", limit)]


@dataclass
class Gateway:
    """A started gateway; `stop` shuts it down gracefully."""

    server: grpc.Server
    servicer: JobServicer
    health: health.HealthServicer
    port: int

    def stop(self, grace: float | None = None) -> None:
        """Health NOT_SERVING, refuse new calls, end WatchJob streams, give the other calls in flight up
        to `grace` seconds, then return."""
        self.health.enter_graceful_shutdown()
        stopped = self.server.stop(grace)
        self.servicer.stopping.set()
        stopped.wait()


def start(settings: GatewaySettings, service: JobService) -> tuple[Gateway, int]:
    """Listen on settings.host:settings.port (0: a free port) and serve; returns the gateway and its port."""
    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=settings.max_workers, thread_name_prefix="gateway"),
        interceptors=[CallMetrics()],
        options=grpc_options(settings),
    )
    servicer = JobServicer(
        service, watch_poll_s=settings.watch_poll_s, max_watches=max(1, settings.max_workers - 8)
    )
    health_servicer = health.HealthServicer()
    pb_grpc.add_JobServiceServicer_to_server(servicer, server)
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    reflection.enable_server_reflection(
        [SERVICE_NAME, health_pb2.DESCRIPTOR.services_by_name["Health"].full_name, reflection.SERVICE_NAME],
        server,
    )
    address = f"{settings.host}:{settings.port}"
    try:
        port = server.add_insecure_port(address)
    except RuntimeError as exc:
        raise Unavailable(f"the gateway cannot listen on {address}: {exc}") from exc
    server.start()
    for name in ("", SERVICE_NAME):
        health_servicer.set(name, health_pb2.HealthCheckResponse.SERVING)
    log.info("gateway serving %s on %s:%d", SERVICE_NAME, settings.host, port)
    return Gateway(server, servicer, health_servicer, port), port


def serve(settings: GatewaySettings, db: Database | None = None) -> None:
    """Run the gateway until SIGTERM or SIGINT (call from the main thread)."""
    from services.frontdoor.wiring import job_service

    tracing.instrument_grpc_server(aio=False)  # when tracing is on: a server span per call
    service = job_service(settings, db)
    metrics.serve(settings.metrics_port, settings.metrics_host)
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        gateway, _ = start(settings, service)
        while not stop.wait(1.0):
            pass
        log.info("stopping: finishing calls in flight (up to %.0f s)", settings.shutdown_grace_s)
        gateway.stop(settings.shutdown_grace_s)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        service.close()
        service.db.dispose()

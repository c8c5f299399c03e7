"""Is a service up? The checks `docvl up` waits on and `docvl healthcheck` answers with."""

from __future__ import annotations

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc


def grpc_serving(target: str, timeout_s: float = 2.0) -> bool:
    """Whether the gRPC health service at HOST:PORT answers SERVING; grpc.RpcError when it does not answer."""
    with grpc.insecure_channel(target) as channel:
        answer = health_pb2_grpc.HealthStub(channel).Check(
            health_pb2.HealthCheckRequest(service=""), timeout=timeout_s
        )
    return bool(answer.status == health_pb2.HealthCheckResponse.SERVING)

"""A blocking client of the model worker, for people (`docvl infer`) and for the pipeline's tasks."""

from __future__ import annotations

import time
from collections.abc import Iterator
from types import TracebackType
from typing import Any

import grpc
from google.protobuf.json_format import MessageToDict
from grpc_health.v1 import health_pb2, health_pb2_grpc

from docvl.errors import DocvlError, Unavailable
from docvl.inference import mapping
from docvl.inference.types import InferenceRequest, InferenceResult
from docvl.status_codes import error_from_grpc
from docvl.tasks import TaskKind
from docvl.v1 import inference_pb2 as pb
from docvl.v1 import inference_pb2_grpc as pb_grpc

DEFAULT_MESSAGE_LIMIT = 256 * 1024 * 1024


class InferenceClient:
    def __init__(self, target: str, *, max_message_bytes: int = DEFAULT_MESSAGE_LIMIT) -> None:
        options = [
            ("grpc.max_send_message_length", max_message_bytes),
            ("grpc.max_receive_message_length", max_message_bytes),
            # After a model worker restarts, reconnect within seconds rather than gRPC's default 2 minutes.
            ("grpc.initial_reconnect_backoff_ms", 500),
            ("grpc.max_reconnect_backoff_ms", 5000),
            # A target resolving to several workers (dns:/// of a headless Service) spreads calls over all.
            ("grpc.lb_policy_name", "round_robin"),
        ]
        self.target = target
        self.channel = grpc.insecure_channel(target, options=options)
        self.stub = pb_grpc.InferenceServiceStub(self.channel)
        self.health = health_pb2_grpc.HealthStub(self.channel)

    def __enter__(self) -> InferenceClient:
        return self

    def __exit__(self, *exc: type[BaseException] | BaseException | TracebackType | None) -> None:
        self.close()

    def close(self) -> None:
        self.channel.close()

    def generate(self, request: InferenceRequest, *, timeout: float | None = None) -> InferenceResult:
        try:
            response = self.stub.Generate(mapping.request_to_pb(request), timeout=timeout)
        except grpc.RpcError as exc:
            raise _domain_error(exc) from None
        return mapping.result_from_pb(response)

    def generate_stream(
        self, request: InferenceRequest, *, timeout: float | None = None
    ) -> Iterator[str | InferenceResult]:
        """Text deltas as they come, then the final result."""
        try:
            for message in self.stub.GenerateStream(mapping.request_to_pb(request), timeout=timeout):
                if message.text_delta:
                    yield message.text_delta
                if message.HasField("final"):
                    yield mapping.result_from_pb(message.final)
        except grpc.RpcError as exc:
            raise _domain_error(exc) from None

    def model_info(self, *, timeout: float | None = 10.0) -> dict[str, Any]:
        """GetModelInfo as a dict of its fields, with `family` (deepseek-vl-hybrid, deepseek-vl,
        deepseek-ocr2) and `tasks` as task names, the way jobs name them (["ocr", "layout"])."""
        info = self._model_info(timeout)
        fields = MessageToDict(
            info, preserving_proto_field_name=True, always_print_fields_with_no_presence=True
        )
        fields["tasks"] = [task.value for task in mapping.tasks_from_pb(info.tasks)]
        return fields

    def served_tasks(self, *, timeout: float | None = 10.0) -> list[TaskKind]:
        """The tasks this worker serves (its model family's); a request for another is refused."""
        return mapping.tasks_from_pb(self._model_info(timeout).tasks)

    def _model_info(self, timeout: float | None) -> pb.ModelInfo:
        try:
            info: pb.ModelInfo = self.stub.GetModelInfo(pb.GetModelInfoRequest(), timeout=timeout)
        except grpc.RpcError as exc:
            raise _domain_error(exc) from None
        return info

    def health_status(self, *, timeout: float = 2.0) -> str:
        """SERVING, NOT_SERVING, or UNREACHABLE when nothing answers."""
        try:
            response = self.health.Check(health_pb2.HealthCheckRequest(service=""), timeout=timeout)
        except grpc.RpcError:
            return "UNREACHABLE"
        return str(health_pb2.HealthCheckResponse.ServingStatus.Name(response.status))

    def wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while (status := self.health_status()) != "SERVING":
            if time.monotonic() >= deadline:
                raise Unavailable(
                    f"model worker at {self.target} not SERVING after {timeout:.0f} s ({status})"
                )
            time.sleep(0.1)


def _domain_error(exc: grpc.RpcError) -> DocvlError:
    return error_from_grpc(exc.code(), exc.details() or "")  # type: ignore[attr-defined]

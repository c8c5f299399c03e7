"""The one place where domain errors become transport status codes."""

from __future__ import annotations

import grpc

from docvl.errors import (
    Cancelled,
    Conflict,
    DocvlError,
    InvalidInput,
    NotFound,
    ResourceExhausted,
    Unavailable,
)

_GRPC_CODES: dict[type[DocvlError], grpc.StatusCode] = {
    InvalidInput: grpc.StatusCode.INVALID_ARGUMENT,
    ResourceExhausted: grpc.StatusCode.RESOURCE_EXHAUSTED,
    Unavailable: grpc.StatusCode.UNAVAILABLE,
    Cancelled: grpc.StatusCode.CANCELLED,
    NotFound: grpc.StatusCode.NOT_FOUND,
    Conflict: grpc.StatusCode.FAILED_PRECONDITION,
}


def grpc_code(error: DocvlError) -> grpc.StatusCode:
    for cls in type(error).__mro__:
        if cls in _GRPC_CODES:
            return _GRPC_CODES[cls]
    return grpc.StatusCode.INTERNAL


def error_from_grpc(code: grpc.StatusCode, message: str) -> DocvlError:
    """The domain error a gRPC status stands for, for clients of docvl's own services."""
    for cls, mapped in _GRPC_CODES.items():
        if mapped == code:
            return cls(message)
    if code == grpc.StatusCode.DEADLINE_EXCEEDED:
        return Unavailable(f"deadline exceeded: {message}")
    error = DocvlError(f"{code.name}: {message}")
    return error

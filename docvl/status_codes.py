"""The one place where domain errors become transport status codes (gRPC and HTTP)."""

from __future__ import annotations

from typing import TypeVar

import grpc

from docvl.documents import DocumentTooLarge, UnsupportedDocument
from docvl.errors import (
    Cancelled,
    Conflict,
    DocvlError,
    InvalidInput,
    NotFound,
    ResourceExhausted,
    TooLarge,
    TooManySubmissions,
    Unauthenticated,
    Unavailable,
)

T = TypeVar("T")

_GRPC_CODES: dict[type[DocvlError], grpc.StatusCode] = {
    InvalidInput: grpc.StatusCode.INVALID_ARGUMENT,
    ResourceExhausted: grpc.StatusCode.RESOURCE_EXHAUSTED,
    Unavailable: grpc.StatusCode.UNAVAILABLE,
    Cancelled: grpc.StatusCode.CANCELLED,
    NotFound: grpc.StatusCode.NOT_FOUND,
    Conflict: grpc.StatusCode.FAILED_PRECONDITION,
    Unauthenticated: grpc.StatusCode.UNAUTHENTICATED,
}

# The most specific class wins (looked up along the error's MRO).
_HTTP_STATUS: dict[type[DocvlError], int] = {
    InvalidInput: 422,
    TooLarge: 413,
    DocumentTooLarge: 413,
    UnsupportedDocument: 415,
    Unauthenticated: 401,
    NotFound: 404,
    Conflict: 409,
    TooManySubmissions: 429,
    ResourceExhausted: 503,
    Unavailable: 503,
    Cancelled: 409,
}


def _lookup(error: DocvlError, table: dict[type[DocvlError], T], default: T) -> T:
    for cls in type(error).__mro__:
        if cls in table:
            return table[cls]
    return default


def grpc_code(error: DocvlError) -> grpc.StatusCode:
    return _lookup(error, _GRPC_CODES, grpc.StatusCode.INTERNAL)


def http_status(error: DocvlError) -> int:
    return _lookup(error, _HTTP_STATUS, 500)


def error_from_grpc(code: grpc.StatusCode, message: str) -> DocvlError:
    """The domain error a gRPC status stands for, for clients of docvl's own services."""
    for cls, mapped in _GRPC_CODES.items():
        if mapped == code:
            return cls(message)
    if code == grpc.StatusCode.DEADLINE_EXCEEDED:
        return Unavailable(f"deadline exceeded: {message}")
    return DocvlError(f"{code.name}: {message}")

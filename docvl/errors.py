"""Typed domain errors. Transports map them to status codes in docvl.status_codes, nowhere else."""

from __future__ import annotations


class DocvlError(Exception):
    """Base of every error docvl reports to a caller. `code` is stable; the message says what to fix."""

    code = "internal"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class InvalidInput(DocvlError):
    """The caller sent something that can never succeed as sent."""

    code = "invalid_input"


class ResourceExhausted(DocvlError):
    """Out of memory or capacity for this request; another try later or a smaller request may succeed."""

    code = "resource_exhausted"


class Unavailable(DocvlError):
    """The service cannot answer now (starting, stopping, or a dependency is down); retry later."""

    code = "unavailable"


class Cancelled(DocvlError):
    """The caller went away or its deadline passed before the work was done."""

    code = "cancelled"


class NotFound(DocvlError):
    """The thing asked for does not exist (or belongs to someone else)."""

    code = "not_found"


class UnknownJob(NotFound):
    """No job of this id in this stack's database: work sent by another stack, or for a job that is gone."""

    code = "unknown_job"


class Conflict(DocvlError):
    """The request contradicts the current state, e.g. an idempotency key reused with another body."""

    code = "conflict"


class IllegalTransition(Conflict):
    """A job status change that the status machine forbids; nothing was written."""

    code = "illegal_transition"


class LayoutNotRequested(Conflict):
    """A layout result asked of a job submitted without the layout task."""

    code = "layout_not_requested"


class JobNotFinished(Conflict):
    """A result that exists only once the job has ended, asked while it is still queued or running."""

    code = "job_not_finished"


class LayoutUnavailable(Conflict):
    """A layout job that ended (failed, cancelled) without the layout file asked for."""

    code = "layout_unavailable"


class NamespaceTaken(Conflict):
    """Another stack, with another database, uses this stack's namespace on the same Redis."""

    code = "namespace_taken"


class DatabaseUnavailable(Unavailable):
    """Postgres cannot be reached or dropped the connection; the same call may be retried."""

    code = "database_unavailable"


class StorageUnavailable(Unavailable):
    """The object store cannot be reached or answered with a server error; the same call may be retried."""

    code = "storage_unavailable"


class BrokerUnavailable(Unavailable):
    """Redis (the Celery broker) cannot be reached; the same call may be retried."""

    code = "broker_unavailable"


class TooLarge(InvalidInput):
    """An upload over its size limit; it was cut off, not stored."""

    code = "too_large"


class Unauthenticated(DocvlError):
    """No API key, or one that is unknown or revoked."""

    code = "unauthenticated"


class TooManySubmissions(ResourceExhausted):
    """The API key has as many jobs in flight as it may; submit again once some have finished."""

    code = "too_many_submissions"

    def __init__(self, message: str, retry_after_s: int) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s

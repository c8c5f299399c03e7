"""docvl.v1.JobService over gRPC: API key from the metadata, protobuf in, JobService call, protobuf out,
errors mapped in one place (docvl.status_codes)."""

from __future__ import annotations

import logging
import threading
import uuid
from collections.abc import Callable, Iterator
from types import TracebackType

import grpc

from docvl.db.api_keys import Caller
from docvl.errors import DocvlError, ResourceExhausted, TooManySubmissions, Unavailable
from docvl.jobs import layout_results
from docvl.jobs.service import JobService
from docvl.status_codes import grpc_code
from docvl.v1 import jobs_pb2 as pb
from docvl.v1 import jobs_pb2_grpc as pb_grpc
from services.frontdoor.wiring import job_id_of
from services.gateway import mapping

log = logging.getLogger(__name__)

API_KEY_HEADER = "x-api-key"
BEARER = "bearer "


def api_key(metadata: grpc.Metadata | None) -> str | None:
    """The key sent as `x-api-key: <key>` or `authorization: Bearer <key>`."""
    for key, value in metadata or ():
        if not isinstance(value, str):
            continue
        name = key.lower()
        if name == API_KEY_HEADER and value.strip():
            return value.strip()
        if name == "authorization" and value.lower().startswith(BEARER) and value[len(BEARER) :].strip():
            return value[len(BEARER) :].strip()
    return None


class _Reported:
    """Turns what the body raises into the call's status: a DocvlError into its code and message (with
    `retry-after` for TooManySubmissions), anything else into INTERNAL, logged here."""

    def __init__(self, context: grpc.ServicerContext) -> None:
        self.context = context

    def __enter__(self) -> None:
        return None

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if isinstance(exc, DocvlError):
            if isinstance(exc, TooManySubmissions):
                self.context.set_trailing_metadata((("retry-after", str(exc.retry_after_s)),))
            self.context.abort(grpc_code(exc), exc.message)
        if isinstance(exc, Exception) and not isinstance(exc, grpc.RpcError):
            log.error("unexpected error in a gateway call", exc_info=(type(exc), exc, tb))
            self.context.abort(grpc.StatusCode.INTERNAL, "internal error: the gateway's log has the details")


class JobServicer(pb_grpc.JobServiceServicer):  # type: ignore[misc]
    def __init__(self, service: JobService, *, watch_poll_s: float = 0.5, max_watches: int = 24) -> None:
        self.service = service
        self.watch_poll_s = watch_poll_s
        # Each WatchJob stream holds a server thread until its job ends: cap them, so that unary calls and
        # health checks always find a thread.
        self.max_watches = max_watches
        self.watches = threading.BoundedSemaphore(max_watches)
        self.stopping = threading.Event()  # set on shutdown: WatchJob streams end with UNAVAILABLE

    def _caller(self, context: grpc.ServicerContext) -> Caller:
        return self.service.authenticate(api_key(context.invocation_metadata()))

    def SubmitJob(self, request: pb.SubmitJobRequest, context: grpc.ServicerContext) -> pb.Job:
        with _Reported(context):
            # The key and its room first (docvl/jobs/admission.py): a refused document is not spooled.
            secret = api_key(context.invocation_metadata())
            ticket = self.service.admit(secret, request.idempotency_key or None)
            try:
                caller = self._caller(context)
                submission = mapping.submission_from_pb(self.service.limits, request)
                if submission.request.dry_run:
                    quoted = self.service.quote(
                        caller, submission.request, document=submission.document, source=submission.source
                    )
                    return mapping.quote_to_pb(quoted)
                job, _ = self.service.submit(
                    caller,
                    submission.request,
                    document=submission.document,
                    source=submission.source,
                    ticket=ticket,
                )
            finally:
                ticket.release()  # no-op when the job was recorded
            return mapping.job_to_pb(job)

    def GetJob(self, request: pb.GetJobRequest, context: grpc.ServicerContext) -> pb.Job:
        with _Reported(context):
            caller = self._caller(context)
            return mapping.job_to_pb(self.service.get(caller, job_id_of(request.job_id)))

    def WatchJob(self, request: pb.WatchJobRequest, context: grpc.ServicerContext) -> Iterator[pb.JobUpdate]:
        interrupted = False

        def keep_going() -> bool:
            nonlocal interrupted
            if context.is_active() and not self.stopping.is_set():
                return True
            interrupted = True
            return False

        with _Reported(context):
            caller = self._caller(context)
            job_id = job_id_of(request.job_id)
            if not self.watches.acquire(blocking=False):
                raise ResourceExhausted(
                    f"this gateway is serving its {self.max_watches} WatchJob streams: poll GetJob, or watch "
                    "again later"
                )
            try:
                yield from self._watch(caller, job_id, request.after_event_id, keep_going)
            finally:
                self.watches.release()
            if interrupted and context.is_active():
                raise Unavailable(
                    "the gateway is stopping: watch again with after_event_id set to the last event_id "
                    "received"
                )

    def _watch(
        self, caller: Caller, job_id: uuid.UUID, after: int, keep_going: Callable[[], bool]
    ) -> Iterator[pb.JobUpdate]:
        events = self.service.watch(
            caller,
            job_id,
            after_id=max(after, 0),
            poll_s=self.watch_poll_s,
            keep_going=keep_going,
        )
        for event in events:
            yield mapping.update_to_pb(event, self.service.get(caller, job_id))

    def CancelJob(self, request: pb.CancelJobRequest, context: grpc.ServicerContext) -> pb.Job:
        with _Reported(context):
            caller = self._caller(context)
            return mapping.job_to_pb(self.service.cancel(caller, job_id_of(request.job_id)))

    def ListJobs(self, request: pb.ListJobsRequest, context: grpc.ServicerContext) -> pb.ListJobsResponse:
        with _Reported(context):
            caller = self._caller(context)
            page = self.service.list(
                caller,
                status=mapping.status_from_pb(request.status),
                cursor=request.cursor or None,
                limit=mapping.page_size_from_pb(request.limit),
            )
            return mapping.jobs_to_pb(page)

    def GetJobResult(self, request: pb.GetJobRequest, context: grpc.ServicerContext) -> pb.JobResult:
        with _Reported(context):
            caller = self._caller(context)
            return mapping.result_to_pb(self.service.result(caller, job_id_of(request.job_id)))

    def GetJobDocument(
        self, request: pb.GetJobDocumentRequest, context: grpc.ServicerContext
    ) -> Iterator[pb.JobDocumentChunk]:
        with _Reported(context):
            caller = self._caller(context)
            file = mapping.layout_file_from_pb(request.format)
            with layout_results.open_file(self.service, caller, job_id_of(request.job_id), file) as stream:
                yield from mapping.document_to_pb(file, stream)

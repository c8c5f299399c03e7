import datetime

from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class DocumentFormat(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    DOCUMENT_FORMAT_UNSPECIFIED: _ClassVar[DocumentFormat]
    DOCUMENT_FORMAT_DOCUMENT_JSON: _ClassVar[DocumentFormat]
    DOCUMENT_FORMAT_CHUNKS_JSONL: _ClassVar[DocumentFormat]
DOCUMENT_FORMAT_UNSPECIFIED: DocumentFormat
DOCUMENT_FORMAT_DOCUMENT_JSON: DocumentFormat
DOCUMENT_FORMAT_CHUNKS_JSONL: DocumentFormat

class SubmitJobRequest(_message.Message):
    __slots__ = ("content", "source_uri", "tasks", "question", "priority", "webhook_url", "idempotency_key", "password", "pages", "reuse", "dry_run")
    CONTENT_FIELD_NUMBER: _ClassVar[int]
    SOURCE_URI_FIELD_NUMBER: _ClassVar[int]
    TASKS_FIELD_NUMBER: _ClassVar[int]
    QUESTION_FIELD_NUMBER: _ClassVar[int]
    PRIORITY_FIELD_NUMBER: _ClassVar[int]
    WEBHOOK_URL_FIELD_NUMBER: _ClassVar[int]
    IDEMPOTENCY_KEY_FIELD_NUMBER: _ClassVar[int]
    PASSWORD_FIELD_NUMBER: _ClassVar[int]
    PAGES_FIELD_NUMBER: _ClassVar[int]
    REUSE_FIELD_NUMBER: _ClassVar[int]
    DRY_RUN_FIELD_NUMBER: _ClassVar[int]
    content: bytes
    source_uri: str
    tasks: _containers.RepeatedScalarFieldContainer[str]
    question: str
    priority: int
    webhook_url: str
    idempotency_key: str
    password: str
    pages: str
    reuse: bool
    dry_run: bool
    def __init__(self, content: _Optional[bytes] = ..., source_uri: _Optional[str] = ..., tasks: _Optional[_Iterable[str]] = ..., question: _Optional[str] = ..., priority: _Optional[int] = ..., webhook_url: _Optional[str] = ..., idempotency_key: _Optional[str] = ..., password: _Optional[str] = ..., pages: _Optional[str] = ..., reuse: _Optional[bool] = ..., dry_run: _Optional[bool] = ...) -> None: ...

class GetJobRequest(_message.Message):
    __slots__ = ("job_id",)
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    def __init__(self, job_id: _Optional[str] = ...) -> None: ...

class CancelJobRequest(_message.Message):
    __slots__ = ("job_id",)
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    def __init__(self, job_id: _Optional[str] = ...) -> None: ...

class WatchJobRequest(_message.Message):
    __slots__ = ("job_id", "after_event_id")
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    AFTER_EVENT_ID_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    after_event_id: int
    def __init__(self, job_id: _Optional[str] = ..., after_event_id: _Optional[int] = ...) -> None: ...

class ListJobsRequest(_message.Message):
    __slots__ = ("status", "cursor", "limit")
    STATUS_FIELD_NUMBER: _ClassVar[int]
    CURSOR_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    status: str
    cursor: str
    limit: int
    def __init__(self, status: _Optional[str] = ..., cursor: _Optional[str] = ..., limit: _Optional[int] = ...) -> None: ...

class ListJobsResponse(_message.Message):
    __slots__ = ("jobs", "next_cursor")
    JOBS_FIELD_NUMBER: _ClassVar[int]
    NEXT_CURSOR_FIELD_NUMBER: _ClassVar[int]
    jobs: _containers.RepeatedCompositeFieldContainer[Job]
    next_cursor: str
    def __init__(self, jobs: _Optional[_Iterable[_Union[Job, _Mapping]]] = ..., next_cursor: _Optional[str] = ...) -> None: ...

class Progress(_message.Message):
    __slots__ = ("pages_total", "pages_done", "pages_failed")
    PAGES_TOTAL_FIELD_NUMBER: _ClassVar[int]
    PAGES_DONE_FIELD_NUMBER: _ClassVar[int]
    PAGES_FAILED_FIELD_NUMBER: _ClassVar[int]
    pages_total: int
    pages_done: int
    pages_failed: int
    def __init__(self, pages_total: _Optional[int] = ..., pages_done: _Optional[int] = ..., pages_failed: _Optional[int] = ...) -> None: ...

class Error(_message.Message):
    __slots__ = ("code", "message")
    CODE_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    code: str
    message: str
    def __init__(self, code: _Optional[str] = ..., message: _Optional[str] = ...) -> None: ...

class Job(_message.Message):
    __slots__ = ("id", "status", "tasks", "question", "priority", "progress", "error", "webhook_url", "created_at", "updated_at", "started_at", "finished_at", "trace_id", "pages", "reuse", "quote")
    ID_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    TASKS_FIELD_NUMBER: _ClassVar[int]
    QUESTION_FIELD_NUMBER: _ClassVar[int]
    PRIORITY_FIELD_NUMBER: _ClassVar[int]
    PROGRESS_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    WEBHOOK_URL_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    UPDATED_AT_FIELD_NUMBER: _ClassVar[int]
    STARTED_AT_FIELD_NUMBER: _ClassVar[int]
    FINISHED_AT_FIELD_NUMBER: _ClassVar[int]
    TRACE_ID_FIELD_NUMBER: _ClassVar[int]
    PAGES_FIELD_NUMBER: _ClassVar[int]
    REUSE_FIELD_NUMBER: _ClassVar[int]
    QUOTE_FIELD_NUMBER: _ClassVar[int]
    id: str
    status: str
    tasks: _containers.RepeatedScalarFieldContainer[str]
    question: str
    priority: int
    progress: Progress
    error: Error
    webhook_url: str
    created_at: _timestamp_pb2.Timestamp
    updated_at: _timestamp_pb2.Timestamp
    started_at: _timestamp_pb2.Timestamp
    finished_at: _timestamp_pb2.Timestamp
    trace_id: str
    pages: str
    reuse: bool
    quote: Quote
    def __init__(self, id: _Optional[str] = ..., status: _Optional[str] = ..., tasks: _Optional[_Iterable[str]] = ..., question: _Optional[str] = ..., priority: _Optional[int] = ..., progress: _Optional[_Union[Progress, _Mapping]] = ..., error: _Optional[_Union[Error, _Mapping]] = ..., webhook_url: _Optional[str] = ..., created_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., updated_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., started_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., finished_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., trace_id: _Optional[str] = ..., pages: _Optional[str] = ..., reuse: _Optional[bool] = ..., quote: _Optional[_Union[Quote, _Mapping]] = ...) -> None: ...

class JobUpdate(_message.Message):
    __slots__ = ("event_id", "kind", "event_status", "created_at", "job", "page_index")
    EVENT_ID_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    EVENT_STATUS_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    JOB_FIELD_NUMBER: _ClassVar[int]
    PAGE_INDEX_FIELD_NUMBER: _ClassVar[int]
    event_id: int
    kind: str
    event_status: str
    created_at: _timestamp_pb2.Timestamp
    job: Job
    page_index: int
    def __init__(self, event_id: _Optional[int] = ..., kind: _Optional[str] = ..., event_status: _Optional[str] = ..., created_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., job: _Optional[_Union[Job, _Mapping]] = ..., page_index: _Optional[int] = ...) -> None: ...

class OutputFile(_message.Message):
    __slots__ = ("task", "key", "url", "name")
    TASK_FIELD_NUMBER: _ClassVar[int]
    KEY_FIELD_NUMBER: _ClassVar[int]
    URL_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    task: str
    key: str
    url: str
    name: str
    def __init__(self, task: _Optional[str] = ..., key: _Optional[str] = ..., url: _Optional[str] = ..., name: _Optional[str] = ...) -> None: ...

class Quote(_message.Message):
    __slots__ = ("pages", "page_tasks", "image_tokens", "output_tokens", "tasks", "queue_ahead", "page_tasks_per_s", "expected_start", "expected_finish", "gpu_seconds", "price", "currency")
    PAGES_FIELD_NUMBER: _ClassVar[int]
    PAGE_TASKS_FIELD_NUMBER: _ClassVar[int]
    IMAGE_TOKENS_FIELD_NUMBER: _ClassVar[int]
    OUTPUT_TOKENS_FIELD_NUMBER: _ClassVar[int]
    TASKS_FIELD_NUMBER: _ClassVar[int]
    QUEUE_AHEAD_FIELD_NUMBER: _ClassVar[int]
    PAGE_TASKS_PER_S_FIELD_NUMBER: _ClassVar[int]
    EXPECTED_START_FIELD_NUMBER: _ClassVar[int]
    EXPECTED_FINISH_FIELD_NUMBER: _ClassVar[int]
    GPU_SECONDS_FIELD_NUMBER: _ClassVar[int]
    PRICE_FIELD_NUMBER: _ClassVar[int]
    CURRENCY_FIELD_NUMBER: _ClassVar[int]
    pages: int
    page_tasks: int
    image_tokens: int
    output_tokens: int
    tasks: _containers.RepeatedCompositeFieldContainer[TaskQuote]
    queue_ahead: int
    page_tasks_per_s: float
    expected_start: _timestamp_pb2.Timestamp
    expected_finish: _timestamp_pb2.Timestamp
    gpu_seconds: float
    price: float
    currency: str
    def __init__(self, pages: _Optional[int] = ..., page_tasks: _Optional[int] = ..., image_tokens: _Optional[int] = ..., output_tokens: _Optional[int] = ..., tasks: _Optional[_Iterable[_Union[TaskQuote, _Mapping]]] = ..., queue_ahead: _Optional[int] = ..., page_tasks_per_s: _Optional[float] = ..., expected_start: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., expected_finish: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., gpu_seconds: _Optional[float] = ..., price: _Optional[float] = ..., currency: _Optional[str] = ...) -> None: ...

class TaskQuote(_message.Message):
    __slots__ = ("task", "page_tasks", "image_tokens", "output_tokens", "gpu_seconds", "basis", "history_results")
    TASK_FIELD_NUMBER: _ClassVar[int]
    PAGE_TASKS_FIELD_NUMBER: _ClassVar[int]
    IMAGE_TOKENS_FIELD_NUMBER: _ClassVar[int]
    OUTPUT_TOKENS_FIELD_NUMBER: _ClassVar[int]
    GPU_SECONDS_FIELD_NUMBER: _ClassVar[int]
    BASIS_FIELD_NUMBER: _ClassVar[int]
    HISTORY_RESULTS_FIELD_NUMBER: _ClassVar[int]
    task: str
    page_tasks: int
    image_tokens: int
    output_tokens: int
    gpu_seconds: float
    basis: str
    history_results: int
    def __init__(self, task: _Optional[str] = ..., page_tasks: _Optional[int] = ..., image_tokens: _Optional[int] = ..., output_tokens: _Optional[int] = ..., gpu_seconds: _Optional[float] = ..., basis: _Optional[str] = ..., history_results: _Optional[int] = ...) -> None: ...

class ReusedFrom(_message.Message):
    __slots__ = ("job_id", "page")
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    PAGE_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    page: int
    def __init__(self, job_id: _Optional[str] = ..., page: _Optional[int] = ...) -> None: ...

class PageResult(_message.Message):
    __slots__ = ("page", "task", "text", "valid", "problem", "error", "model_id", "model_revision", "prompt_template_version", "generated_tokens", "attempts", "verification", "reused_from")
    PAGE_FIELD_NUMBER: _ClassVar[int]
    TASK_FIELD_NUMBER: _ClassVar[int]
    TEXT_FIELD_NUMBER: _ClassVar[int]
    VALID_FIELD_NUMBER: _ClassVar[int]
    PROBLEM_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    MODEL_ID_FIELD_NUMBER: _ClassVar[int]
    MODEL_REVISION_FIELD_NUMBER: _ClassVar[int]
    PROMPT_TEMPLATE_VERSION_FIELD_NUMBER: _ClassVar[int]
    GENERATED_TOKENS_FIELD_NUMBER: _ClassVar[int]
    ATTEMPTS_FIELD_NUMBER: _ClassVar[int]
    VERIFICATION_FIELD_NUMBER: _ClassVar[int]
    REUSED_FROM_FIELD_NUMBER: _ClassVar[int]
    page: int
    task: str
    text: str
    valid: bool
    problem: str
    error: Error
    model_id: str
    model_revision: str
    prompt_template_version: str
    generated_tokens: int
    attempts: int
    verification: Verification
    reused_from: ReusedFrom
    def __init__(self, page: _Optional[int] = ..., task: _Optional[str] = ..., text: _Optional[str] = ..., valid: _Optional[bool] = ..., problem: _Optional[str] = ..., error: _Optional[_Union[Error, _Mapping]] = ..., model_id: _Optional[str] = ..., model_revision: _Optional[str] = ..., prompt_template_version: _Optional[str] = ..., generated_tokens: _Optional[int] = ..., attempts: _Optional[int] = ..., verification: _Optional[_Union[Verification, _Mapping]] = ..., reused_from: _Optional[_Union[ReusedFrom, _Mapping]] = ...) -> None: ...

class Verdict(_message.Message):
    __slots__ = ("passed", "executed", "rendered", "similarity", "repetition", "text_layer_cer", "text_layer_f1", "text_layer_recall", "error", "reason", "seconds", "attempt", "temperature", "generated_tokens")
    PASSED_FIELD_NUMBER: _ClassVar[int]
    EXECUTED_FIELD_NUMBER: _ClassVar[int]
    RENDERED_FIELD_NUMBER: _ClassVar[int]
    SIMILARITY_FIELD_NUMBER: _ClassVar[int]
    REPETITION_FIELD_NUMBER: _ClassVar[int]
    TEXT_LAYER_CER_FIELD_NUMBER: _ClassVar[int]
    TEXT_LAYER_F1_FIELD_NUMBER: _ClassVar[int]
    TEXT_LAYER_RECALL_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    SECONDS_FIELD_NUMBER: _ClassVar[int]
    ATTEMPT_FIELD_NUMBER: _ClassVar[int]
    TEMPERATURE_FIELD_NUMBER: _ClassVar[int]
    GENERATED_TOKENS_FIELD_NUMBER: _ClassVar[int]
    passed: bool
    executed: bool
    rendered: bool
    similarity: float
    repetition: float
    text_layer_cer: float
    text_layer_f1: float
    text_layer_recall: float
    error: str
    reason: str
    seconds: float
    attempt: int
    temperature: float
    generated_tokens: int
    def __init__(self, passed: _Optional[bool] = ..., executed: _Optional[bool] = ..., rendered: _Optional[bool] = ..., similarity: _Optional[float] = ..., repetition: _Optional[float] = ..., text_layer_cer: _Optional[float] = ..., text_layer_f1: _Optional[float] = ..., text_layer_recall: _Optional[float] = ..., error: _Optional[str] = ..., reason: _Optional[str] = ..., seconds: _Optional[float] = ..., attempt: _Optional[int] = ..., temperature: _Optional[float] = ..., generated_tokens: _Optional[int] = ...) -> None: ...

class Verification(_message.Message):
    __slots__ = ("verdict", "kept_attempt", "attempts")
    VERDICT_FIELD_NUMBER: _ClassVar[int]
    KEPT_ATTEMPT_FIELD_NUMBER: _ClassVar[int]
    ATTEMPTS_FIELD_NUMBER: _ClassVar[int]
    verdict: Verdict
    kept_attempt: int
    attempts: _containers.RepeatedCompositeFieldContainer[Verdict]
    def __init__(self, verdict: _Optional[_Union[Verdict, _Mapping]] = ..., kept_attempt: _Optional[int] = ..., attempts: _Optional[_Iterable[_Union[Verdict, _Mapping]]] = ...) -> None: ...

class TaskSummary(_message.Message):
    __slots__ = ("task", "pages_checked", "pages_passed", "pages_regenerated", "mean_similarity", "mean_repetition")
    TASK_FIELD_NUMBER: _ClassVar[int]
    PAGES_CHECKED_FIELD_NUMBER: _ClassVar[int]
    PAGES_PASSED_FIELD_NUMBER: _ClassVar[int]
    PAGES_REGENERATED_FIELD_NUMBER: _ClassVar[int]
    MEAN_SIMILARITY_FIELD_NUMBER: _ClassVar[int]
    MEAN_REPETITION_FIELD_NUMBER: _ClassVar[int]
    task: str
    pages_checked: int
    pages_passed: int
    pages_regenerated: int
    mean_similarity: float
    mean_repetition: float
    def __init__(self, task: _Optional[str] = ..., pages_checked: _Optional[int] = ..., pages_passed: _Optional[int] = ..., pages_regenerated: _Optional[int] = ..., mean_similarity: _Optional[float] = ..., mean_repetition: _Optional[float] = ...) -> None: ...

class JobResult(_message.Message):
    __slots__ = ("job", "outputs", "pages", "summaries")
    JOB_FIELD_NUMBER: _ClassVar[int]
    OUTPUTS_FIELD_NUMBER: _ClassVar[int]
    PAGES_FIELD_NUMBER: _ClassVar[int]
    SUMMARIES_FIELD_NUMBER: _ClassVar[int]
    job: Job
    outputs: _containers.RepeatedCompositeFieldContainer[OutputFile]
    pages: _containers.RepeatedCompositeFieldContainer[PageResult]
    summaries: _containers.RepeatedCompositeFieldContainer[TaskSummary]
    def __init__(self, job: _Optional[_Union[Job, _Mapping]] = ..., outputs: _Optional[_Iterable[_Union[OutputFile, _Mapping]]] = ..., pages: _Optional[_Iterable[_Union[PageResult, _Mapping]]] = ..., summaries: _Optional[_Iterable[_Union[TaskSummary, _Mapping]]] = ...) -> None: ...

class GetJobDocumentRequest(_message.Message):
    __slots__ = ("job_id", "format")
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    FORMAT_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    format: DocumentFormat
    def __init__(self, job_id: _Optional[str] = ..., format: _Optional[_Union[DocumentFormat, str]] = ...) -> None: ...

class JobDocumentChunk(_message.Message):
    __slots__ = ("name", "content_type", "data")
    NAME_FIELD_NUMBER: _ClassVar[int]
    CONTENT_TYPE_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    name: str
    content_type: str
    data: bytes
    def __init__(self, name: _Optional[str] = ..., content_type: _Optional[str] = ..., data: _Optional[bytes] = ...) -> None: ...

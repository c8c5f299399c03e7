from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class TaskKind(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    TASK_KIND_UNSPECIFIED: _ClassVar[TaskKind]
    TASK_KIND_OCR: _ClassVar[TaskKind]
    TASK_KIND_CHART2CODE: _ClassVar[TaskKind]
    TASK_KIND_WEB2HTML: _ClassVar[TaskKind]
    TASK_KIND_QA: _ClassVar[TaskKind]
    TASK_KIND_LAYOUT: _ClassVar[TaskKind]

class FinishReason(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    FINISH_REASON_UNSPECIFIED: _ClassVar[FinishReason]
    FINISH_REASON_STOP: _ClassVar[FinishReason]
    FINISH_REASON_LENGTH: _ClassVar[FinishReason]
    FINISH_REASON_CANCELLED: _ClassVar[FinishReason]
TASK_KIND_UNSPECIFIED: TaskKind
TASK_KIND_OCR: TaskKind
TASK_KIND_CHART2CODE: TaskKind
TASK_KIND_WEB2HTML: TaskKind
TASK_KIND_QA: TaskKind
TASK_KIND_LAYOUT: TaskKind
FINISH_REASON_UNSPECIFIED: FinishReason
FINISH_REASON_STOP: FinishReason
FINISH_REASON_LENGTH: FinishReason
FINISH_REASON_CANCELLED: FinishReason

class GenerationParameters(_message.Message):
    __slots__ = ("max_new_tokens", "temperature", "top_p", "seed")
    MAX_NEW_TOKENS_FIELD_NUMBER: _ClassVar[int]
    TEMPERATURE_FIELD_NUMBER: _ClassVar[int]
    TOP_P_FIELD_NUMBER: _ClassVar[int]
    SEED_FIELD_NUMBER: _ClassVar[int]
    max_new_tokens: int
    temperature: float
    top_p: float
    seed: int
    def __init__(self, max_new_tokens: _Optional[int] = ..., temperature: _Optional[float] = ..., top_p: _Optional[float] = ..., seed: _Optional[int] = ...) -> None: ...

class GenerateRequest(_message.Message):
    __slots__ = ("request_id", "task", "images", "question", "prompt_override", "parameters", "priority")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    TASK_FIELD_NUMBER: _ClassVar[int]
    IMAGES_FIELD_NUMBER: _ClassVar[int]
    QUESTION_FIELD_NUMBER: _ClassVar[int]
    PROMPT_OVERRIDE_FIELD_NUMBER: _ClassVar[int]
    PARAMETERS_FIELD_NUMBER: _ClassVar[int]
    PRIORITY_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    task: TaskKind
    images: _containers.RepeatedScalarFieldContainer[bytes]
    question: str
    prompt_override: str
    parameters: GenerationParameters
    priority: int
    def __init__(self, request_id: _Optional[str] = ..., task: _Optional[_Union[TaskKind, str]] = ..., images: _Optional[_Iterable[bytes]] = ..., question: _Optional[str] = ..., prompt_override: _Optional[str] = ..., parameters: _Optional[_Union[GenerationParameters, _Mapping]] = ..., priority: _Optional[int] = ...) -> None: ...

class TokenCounts(_message.Message):
    __slots__ = ("prompt_tokens", "image_tokens", "generated_tokens")
    PROMPT_TOKENS_FIELD_NUMBER: _ClassVar[int]
    IMAGE_TOKENS_FIELD_NUMBER: _ClassVar[int]
    GENERATED_TOKENS_FIELD_NUMBER: _ClassVar[int]
    prompt_tokens: int
    image_tokens: int
    generated_tokens: int
    def __init__(self, prompt_tokens: _Optional[int] = ..., image_tokens: _Optional[int] = ..., generated_tokens: _Optional[int] = ...) -> None: ...

class Timings(_message.Message):
    __slots__ = ("queued_ms", "preprocessing_ms", "inference_ms", "batch_size")
    QUEUED_MS_FIELD_NUMBER: _ClassVar[int]
    PREPROCESSING_MS_FIELD_NUMBER: _ClassVar[int]
    INFERENCE_MS_FIELD_NUMBER: _ClassVar[int]
    BATCH_SIZE_FIELD_NUMBER: _ClassVar[int]
    queued_ms: float
    preprocessing_ms: float
    inference_ms: float
    batch_size: int
    def __init__(self, queued_ms: _Optional[float] = ..., preprocessing_ms: _Optional[float] = ..., inference_ms: _Optional[float] = ..., batch_size: _Optional[int] = ...) -> None: ...

class GenerateResponse(_message.Message):
    __slots__ = ("request_id", "text", "tokens", "finish_reason", "model_id", "model_revision", "prompt_template_version", "timings")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    TEXT_FIELD_NUMBER: _ClassVar[int]
    TOKENS_FIELD_NUMBER: _ClassVar[int]
    FINISH_REASON_FIELD_NUMBER: _ClassVar[int]
    MODEL_ID_FIELD_NUMBER: _ClassVar[int]
    MODEL_REVISION_FIELD_NUMBER: _ClassVar[int]
    PROMPT_TEMPLATE_VERSION_FIELD_NUMBER: _ClassVar[int]
    TIMINGS_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    text: str
    tokens: TokenCounts
    finish_reason: FinishReason
    model_id: str
    model_revision: str
    prompt_template_version: str
    timings: Timings
    def __init__(self, request_id: _Optional[str] = ..., text: _Optional[str] = ..., tokens: _Optional[_Union[TokenCounts, _Mapping]] = ..., finish_reason: _Optional[_Union[FinishReason, str]] = ..., model_id: _Optional[str] = ..., model_revision: _Optional[str] = ..., prompt_template_version: _Optional[str] = ..., timings: _Optional[_Union[Timings, _Mapping]] = ...) -> None: ...

class GenerateStreamResponse(_message.Message):
    __slots__ = ("request_id", "text_delta", "final")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    TEXT_DELTA_FIELD_NUMBER: _ClassVar[int]
    FINAL_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    text_delta: str
    final: GenerateResponse
    def __init__(self, request_id: _Optional[str] = ..., text_delta: _Optional[str] = ..., final: _Optional[_Union[GenerateResponse, _Mapping]] = ...) -> None: ...

class GetModelInfoRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class WorkerStats(_message.Message):
    __slots__ = ("requests_completed", "requests_failed", "requests_dropped", "batches", "generated_tokens", "queue_depth")
    REQUESTS_COMPLETED_FIELD_NUMBER: _ClassVar[int]
    REQUESTS_FAILED_FIELD_NUMBER: _ClassVar[int]
    REQUESTS_DROPPED_FIELD_NUMBER: _ClassVar[int]
    BATCHES_FIELD_NUMBER: _ClassVar[int]
    GENERATED_TOKENS_FIELD_NUMBER: _ClassVar[int]
    QUEUE_DEPTH_FIELD_NUMBER: _ClassVar[int]
    requests_completed: int
    requests_failed: int
    requests_dropped: int
    batches: int
    generated_tokens: int
    queue_depth: int
    def __init__(self, requests_completed: _Optional[int] = ..., requests_failed: _Optional[int] = ..., requests_dropped: _Optional[int] = ..., batches: _Optional[int] = ..., generated_tokens: _Optional[int] = ..., queue_depth: _Optional[int] = ...) -> None: ...

class ModelInfo(_message.Message):
    __slots__ = ("model_id", "model_revision", "model_type", "device", "dtype", "image_tokens_per_image", "prompt_template_version", "tasks", "max_batch_size", "max_wait_ms", "max_new_tokens_limit", "default_max_new_tokens", "max_images_per_request", "max_image_bytes", "max_image_pixels", "random_weights", "stats", "family")
    MODEL_ID_FIELD_NUMBER: _ClassVar[int]
    MODEL_REVISION_FIELD_NUMBER: _ClassVar[int]
    MODEL_TYPE_FIELD_NUMBER: _ClassVar[int]
    DEVICE_FIELD_NUMBER: _ClassVar[int]
    DTYPE_FIELD_NUMBER: _ClassVar[int]
    IMAGE_TOKENS_PER_IMAGE_FIELD_NUMBER: _ClassVar[int]
    PROMPT_TEMPLATE_VERSION_FIELD_NUMBER: _ClassVar[int]
    TASKS_FIELD_NUMBER: _ClassVar[int]
    MAX_BATCH_SIZE_FIELD_NUMBER: _ClassVar[int]
    MAX_WAIT_MS_FIELD_NUMBER: _ClassVar[int]
    MAX_NEW_TOKENS_LIMIT_FIELD_NUMBER: _ClassVar[int]
    DEFAULT_MAX_NEW_TOKENS_FIELD_NUMBER: _ClassVar[int]
    MAX_IMAGES_PER_REQUEST_FIELD_NUMBER: _ClassVar[int]
    MAX_IMAGE_BYTES_FIELD_NUMBER: _ClassVar[int]
    MAX_IMAGE_PIXELS_FIELD_NUMBER: _ClassVar[int]
    RANDOM_WEIGHTS_FIELD_NUMBER: _ClassVar[int]
    STATS_FIELD_NUMBER: _ClassVar[int]
    FAMILY_FIELD_NUMBER: _ClassVar[int]
    model_id: str
    model_revision: str
    model_type: str
    device: str
    dtype: str
    image_tokens_per_image: int
    prompt_template_version: str
    tasks: _containers.RepeatedScalarFieldContainer[TaskKind]
    max_batch_size: int
    max_wait_ms: int
    max_new_tokens_limit: int
    default_max_new_tokens: int
    max_images_per_request: int
    max_image_bytes: int
    max_image_pixels: int
    random_weights: bool
    stats: WorkerStats
    family: str
    def __init__(self, model_id: _Optional[str] = ..., model_revision: _Optional[str] = ..., model_type: _Optional[str] = ..., device: _Optional[str] = ..., dtype: _Optional[str] = ..., image_tokens_per_image: _Optional[int] = ..., prompt_template_version: _Optional[str] = ..., tasks: _Optional[_Iterable[_Union[TaskKind, str]]] = ..., max_batch_size: _Optional[int] = ..., max_wait_ms: _Optional[int] = ..., max_new_tokens_limit: _Optional[int] = ..., default_max_new_tokens: _Optional[int] = ..., max_images_per_request: _Optional[int] = ..., max_image_bytes: _Optional[int] = ..., max_image_pixels: _Optional[int] = ..., random_weights: _Optional[bool] = ..., stats: _Optional[_Union[WorkerStats, _Mapping]] = ..., family: _Optional[str] = ...) -> None: ...

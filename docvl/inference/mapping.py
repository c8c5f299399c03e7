"""Protobuf <-> domain conversions for the inference contract."""

from __future__ import annotations

import uuid
from collections.abc import Iterable

from docvl.errors import InvalidInput
from docvl.inference.types import (
    FinishReason,
    GenerationParams,
    InferenceRequest,
    InferenceResult,
    ModelDescription,
    Timings,
    WorkerStats,
)
from docvl.tasks import TaskKind
from docvl.v1 import inference_pb2 as pb

TASK_TO_PB: dict[TaskKind, int] = {
    TaskKind.OCR: pb.TASK_KIND_OCR,
    TaskKind.CHART2CODE: pb.TASK_KIND_CHART2CODE,
    TaskKind.WEB2HTML: pb.TASK_KIND_WEB2HTML,
    TaskKind.QA: pb.TASK_KIND_QA,
    TaskKind.LAYOUT: pb.TASK_KIND_LAYOUT,
}
PB_TO_TASK = {value: task for task, value in TASK_TO_PB.items()}
FINISH_TO_PB: dict[FinishReason, int] = {
    FinishReason.STOP: pb.FINISH_REASON_STOP,
    FinishReason.LENGTH: pb.FINISH_REASON_LENGTH,
    FinishReason.CANCELLED: pb.FINISH_REASON_CANCELLED,
}
PB_TO_FINISH = {value: reason for reason, value in FINISH_TO_PB.items()}


def task_from_pb(value: int) -> TaskKind:
    if value not in PB_TO_TASK:
        known = ", ".join(pb.TaskKind.Name(v) for v in PB_TO_TASK)
        raise InvalidInput(f"unknown task {value}: use one of {known}")
    return PB_TO_TASK[value]


def request_from_pb(message: pb.GenerateRequest) -> InferenceRequest:
    p = message.parameters
    return InferenceRequest(
        task=task_from_pb(message.task),
        images=list(message.images),
        question=message.question or None,
        prompt_override=message.prompt_override or None,
        params=GenerationParams(
            max_new_tokens=p.max_new_tokens,
            temperature=p.temperature,
            top_p=p.top_p,
            seed=p.seed if p.HasField("seed") else None,
        ),
        request_id=message.request_id or uuid.uuid4().hex,
        priority=message.priority,
    )


def request_to_pb(request: InferenceRequest) -> pb.GenerateRequest:
    params = pb.GenerationParameters(
        max_new_tokens=request.params.max_new_tokens,
        temperature=request.params.temperature,
        top_p=request.params.top_p,
    )
    if request.params.seed is not None:
        params.seed = request.params.seed
    return pb.GenerateRequest(
        request_id=request.request_id,
        task=TASK_TO_PB[request.task],  # type: ignore[arg-type]
        images=list(request.images),
        question=request.question or "",
        prompt_override=request.prompt_override or "",
        parameters=params,
        priority=request.priority,
    )


def result_to_pb(result: InferenceResult) -> pb.GenerateResponse:
    t = result.timings
    return pb.GenerateResponse(
        request_id=result.request_id,
        text=result.text,
        tokens=pb.TokenCounts(
            prompt_tokens=result.prompt_tokens,
            image_tokens=result.image_tokens,
            generated_tokens=result.generated_tokens,
        ),
        finish_reason=FINISH_TO_PB[result.finish_reason],  # type: ignore[arg-type]
        model_id=result.model_id,
        model_revision=result.model_revision,
        prompt_template_version=result.prompt_template_version,
        timings=pb.Timings(
            queued_ms=t.queued_ms,
            preprocessing_ms=t.preprocessing_ms,
            inference_ms=t.inference_ms,
            batch_size=t.batch_size,
        ),
    )


def result_from_pb(message: pb.GenerateResponse) -> InferenceResult:
    t = message.timings
    return InferenceResult(
        request_id=message.request_id,
        text=message.text,
        prompt_tokens=message.tokens.prompt_tokens,
        image_tokens=message.tokens.image_tokens,
        generated_tokens=message.tokens.generated_tokens,
        finish_reason=PB_TO_FINISH[message.finish_reason],
        model_id=message.model_id,
        model_revision=message.model_revision,
        prompt_template_version=message.prompt_template_version,
        timings=Timings(t.queued_ms, t.preprocessing_ms, t.inference_ms, t.batch_size),
    )


def stats_to_pb(stats: WorkerStats, queue_depth: int) -> pb.WorkerStats:
    return pb.WorkerStats(
        requests_completed=stats.requests_completed,
        requests_failed=stats.requests_failed,
        requests_dropped=stats.requests_dropped,
        batches=stats.batches,
        generated_tokens=stats.generated_tokens,
        queue_depth=queue_depth,
    )


def description_to_pb(d: ModelDescription) -> pb.ModelInfo:
    return pb.ModelInfo(
        model_id=d.model_id,
        model_revision=d.model_revision,
        model_type=d.model_type,
        device=d.device,
        dtype=d.dtype,
        image_tokens_per_image=d.image_tokens_per_image,
        random_weights=d.random_weights,
        tasks=[TASK_TO_PB[t] for t in d.tasks],  # type: ignore[misc]
        family=d.family,
        prompt_template_version=d.prompt_template_version,
    )


def tasks_from_pb(values: Iterable[int]) -> list[TaskKind]:
    """The tasks a ModelInfo lists; values this side does not know (a newer worker's) are left out."""
    return [PB_TO_TASK[v] for v in values if v in PB_TO_TASK]

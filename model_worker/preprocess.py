"""Preprocessing one request (validation, image decoding, the processor, the prompt's tokens), and the pool
that runs it off the event loop: threads (the default) or worker processes. What differs per model family
(the tasks served, the prompt, the processor's outputs) is asked of the family (model_worker/families.py).

The processor's Python parts (numpy conversions, normalisation, PIL bookkeeping) hold the GIL, so threads
scale poorly past about one core's worth (bench/preprocess.py); with `preprocess_processes` set, each
worker process loads the checkpoint's processor alone (no model) and prepares whole requests, which come
back pickled. Both paths run the same `Preparer` on the same processor files, so the prepared inputs are
equal either way (tests/model_worker/test_preprocess.py).
"""

from __future__ import annotations

import multiprocessing
import secrets
import time
from collections.abc import Callable
from concurrent.futures import Executor, ProcessPoolExecutor, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from docvl.errors import InvalidInput
from docvl.inference.types import GenerationParams, InferenceRequest, RepeatGuard
from docvl.tasks import TaskKind
from model_worker.families import Family, family_named
from model_worker.images import decode_image
from model_worker.settings import ModelWorkerSettings


@dataclass(frozen=True)
class Limits:
    max_images: int
    max_image_bytes: int
    max_image_pixels: int
    max_prompt_chars: int
    default_max_new_tokens: int
    max_new_tokens: int
    tasks: tuple[TaskKind, ...] = ()  # only these of the family's (DOCVL_MODEL_WORKER_TASKS); empty: all

    @classmethod
    def from_settings(cls, s: ModelWorkerSettings) -> Limits:
        return cls(
            max_images=s.max_images_per_request,
            max_image_bytes=s.max_image_bytes,
            max_image_pixels=s.max_image_pixels,
            max_prompt_chars=s.max_prompt_chars,
            default_max_new_tokens=s.default_max_new_tokens,
            max_new_tokens=s.max_new_tokens_limit,
            tasks=tuple(TaskKind.parse(task) for task in s.tasks),
        )


@dataclass(frozen=True)
class PreparedInput:
    """One request, ready for a batch: token ids (unpadded), pixel tensors (the family's), resolved
    parameters, and its task (it decides how the answer is decoded)."""

    request_id: str
    input_ids: torch.Tensor
    pixels: dict[str, torch.Tensor]
    params: GenerationParams
    image_tokens: int
    prompt_version: str
    preprocessing_ms: float
    priority: int = 0  # 0..9, higher first: the continuous scheduler admits by it (then by arrival)
    task: TaskKind = TaskKind.OCR


class Preparer:
    """Validation and preprocessing with one processor: no model, so a worker process can hold one."""

    def __init__(
        self, processor: Any, family: Family, limits: Limits, repeat_guard: RepeatGuard | None
    ) -> None:
        self.processor = processor
        self.family = family
        self.limits = limits
        self.repeat_guard = repeat_guard
        self.image_token_id = int(processor.image_token_id)  # its count is the request's image tokens

    def resolve_params(self, params: GenerationParams) -> GenerationParams:
        limit = self.limits.max_new_tokens
        max_new = params.max_new_tokens or self.limits.default_max_new_tokens
        if not 1 <= max_new <= limit:
            raise InvalidInput(f"max_new_tokens is {max_new}: use 1..{limit} (or 0 for the default)")
        if not 0.0 <= params.temperature <= 5.0:
            raise InvalidInput(f"temperature is {params.temperature}: use 0 (greedy) up to 5")
        top_p = params.top_p or 1.0
        if not 0.0 < top_p <= 1.0:
            raise InvalidInput(f"top_p is {params.top_p}: use a value in (0, 1], or 0 for 1")
        seed = params.seed
        if not params.greedy and seed is None:
            seed = secrets.randbits(63)
        return GenerationParams(
            max_new_tokens=max_new, temperature=params.temperature, top_p=top_p, seed=seed
        )

    def prepare(self, request: InferenceRequest) -> PreparedInput:
        """Validate, decode the images, render the prompt and run the processor. Raises InvalidInput."""
        started = time.perf_counter()
        limits = self.limits
        self.family.check_task(request.task)
        if limits.tasks and request.task not in limits.tasks:
            served = ", ".join(t.value for t in limits.tasks)
            raise InvalidInput(
                f"task {request.task.value} is not served by this model worker: it serves {served} "
                "(DOCVL_MODEL_WORKER_TASKS)"
            )
        if not request.images:
            raise InvalidInput("no image: send at least one image")
        if len(request.images) > limits.max_images:
            raise InvalidInput(f"{len(request.images)} images: this worker takes at most {limits.max_images}")
        for name, text in (("question", request.question), ("prompt_override", request.prompt_override)):
            if text and len(text) > limits.max_prompt_chars:
                raise InvalidInput(
                    f"{name} is {len(text)} characters: the limit is {limits.max_prompt_chars}"
                )
        if not 0 <= request.priority <= 9:
            raise InvalidInput(f"priority is {request.priority}: use 0..9 (higher first)")
        params = self.resolve_params(request.params)
        prompt = self.family.render(
            self.processor, request.task, len(request.images), request.question, request.prompt_override
        )
        images = [
            decode_image(data, index=i, max_bytes=limits.max_image_bytes, max_pixels=limits.max_image_pixels)
            for i, data in enumerate(request.images)
        ]
        encoded = self.processor(text=[prompt.text], images=images, return_tensors="pt")
        input_ids = encoded["input_ids"][0]
        return PreparedInput(
            request_id=request.request_id,
            input_ids=input_ids,
            pixels=self.family.pixels(encoded),
            params=params,
            image_tokens=int((input_ids == self.image_token_id).sum()),
            prompt_version=prompt.version
            + ("" if self.repeat_guard is None else "+" + self.repeat_guard.version),
            preprocessing_ms=(time.perf_counter() - started) * 1000,
            priority=request.priority,
            task=request.task,
        )


# -- worker processes ---------------------------------------------------------------------------------

_process_preparer: Preparer | None = None


def _start_process(model_dir: str, family: str, limits: Limits, repeat_guard: RepeatGuard | None) -> None:
    """A worker process's start: one torch thread (the pool is the parallelism), the processor alone."""
    from transformers import AutoProcessor

    global _process_preparer
    torch.set_num_threads(1)
    processor = AutoProcessor.from_pretrained(model_dir, local_files_only=True)
    _process_preparer = Preparer(processor, family_named(family), limits, repeat_guard)


def _prepare_in_process(request: InferenceRequest) -> PreparedInput:
    assert _process_preparer is not None, "the worker process did not start"
    return _process_preparer.prepare(request)


class PreprocessPool:
    """Where requests are prepared: `threads` threads calling `preparer.prepare`, or, with `processes` > 0,
    that many spawned processes, each with the processor of `model_dir`."""

    def __init__(
        self, preparer: Preparer, *, threads: int, processes: int = 0, model_dir: Path | None = None
    ) -> None:
        self.processes = processes
        self.executor: Executor
        self.function: Callable[[InferenceRequest], PreparedInput]
        if processes > 0:
            if model_dir is None:
                raise ValueError("a process pool loads the processor from model_dir")
            self.executor = ProcessPoolExecutor(
                processes,
                mp_context=multiprocessing.get_context("spawn"),  # no fork of a process with threads
                initializer=_start_process,
                initargs=(str(model_dir), preparer.family.name, preparer.limits, preparer.repeat_guard),
            )
            self.function = _prepare_in_process
        else:
            self.executor = ThreadPoolExecutor(threads, thread_name_prefix="preprocess")
            self.function = preparer.prepare

    def warm_up(self) -> None:
        """Start every worker process now (each loads the processor), not on the first requests."""
        if self.processes > 0:
            futures = [self.executor.submit(torch.get_num_threads) for _ in range(self.processes * 2)]
            for future in futures:
                future.result()

    def shutdown(self) -> None:
        self.executor.shutdown(wait=False, cancel_futures=True)

"""The model's work: validate and preprocess one request, and generate for a batch of them.

What differs per model family (prompts, pixels, image encoding, kept special tokens) is asked of the loaded
family (model_worker/families.py). No transport and no asyncio here: the batcher calls these from worker
threads.
"""

from __future__ import annotations

import dataclasses
import io
import logging
import time
from collections.abc import Callable, Sequence
from typing import Any

import torch
from PIL import Image
from transformers import LogitsProcessor, LogitsProcessorList, StoppingCriteriaList
from transformers.modeling_outputs import BaseModelOutputWithPooling

from docvl.errors import ResourceExhausted
from docvl.inference.types import (
    FinishReason,
    Generated,
    GenerationParams,
    InferenceRequest,
    ModelDescription,
    RepeatGuard,
)
from docvl.observability.metrics import model as metrics
from docvl.tasks import TaskKind
from model_worker.checkpoint import LoadedModel
from model_worker.decoding import (
    LogitsHook,
    NoRepeatWindow,
    RowControl,
    RowHooks,
    RowSampler,
    RowStop,
    RowStreamer,
)
from model_worker.preprocess import Limits, PreparedInput, Preparer

__all__ = ["Engine", "Limits", "LogitsHook", "PreparedInput", "is_out_of_memory"]

log = logging.getLogger(__name__)


def is_out_of_memory(exc: BaseException) -> bool:
    if isinstance(exc, torch.OutOfMemoryError):
        return True
    return isinstance(exc, RuntimeError) and "not enough memory" in str(exc)


def out_of_memory_alone() -> ResourceExhausted:
    """The error of a request that does not fit in memory even alone."""
    return ResourceExhausted(
        "out of memory generating this request: retry later, or send fewer images or a smaller max_new_tokens"
    )


class Engine:
    def __init__(
        self,
        loaded: LoadedModel,
        limits: Limits,
        vision_batch_size: int = 0,
        repeat_guard: RepeatGuard | None = None,
    ) -> None:
        self.loaded = loaded
        self.family = loaded.family
        self.repeat_guard = repeat_guard
        # Extra per-row logits processing, applied by both schedulers after the guard and the sampler (see
        # decoding.LogitsHook). Empty in production; tests append a hook to steer the tiny random model.
        self.logits_hooks: list[LogitsHook] = []
        self.model = loaded.model
        self.processor = loaded.processor
        self.tokenizer = loaded.processor.tokenizer
        self.limits = limits
        self.description = _served(loaded, limits.tasks)
        self.vision_batch_size = vision_batch_size or (8 if loaded.device.type == "cuda" else 1)
        if loaded.device.type == "cuda":
            device = loaded.device
            metrics.watch_gpu_memory(
                lambda: torch.cuda.memory_allocated(device), lambda: torch.cuda.memory_reserved(device)
            )
        eos = self.model.generation_config.eos_token_id
        eos_ids = eos if isinstance(eos, list) else [eos if eos is not None else self.tokenizer.eos_token_id]
        self.eos_ids = {int(e) for e in eos_ids}
        self.preparer = Preparer(self.processor, self.family, limits, repeat_guard)
        self.pad_id = int(
            self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else eos_ids[0]
        )
        self._special_ids = set(self.tokenizer.all_special_ids) | {
            int(i) for i, token in self.tokenizer.added_tokens_decoder.items() if token.special
        }
        self._decoders = {task: self._decoder(task) for task in self.family.tasks}

    # -- one request ----------------------------------------------------------------------------------

    def resolve_params(self, params: GenerationParams) -> GenerationParams:
        return self.preparer.resolve_params(params)

    def prepare(self, request: InferenceRequest) -> PreparedInput:
        """Validate, decode the images, render the prompt and run the processor. Raises InvalidInput."""
        return self.preparer.prepare(request)

    # -- a batch --------------------------------------------------------------------------------------

    def collate(self, batch: Sequence[PreparedInput]) -> dict[str, torch.Tensor]:
        """Left-pad the prompts and join the pixels (the family's way), as the processor does for a list of
        prompts."""
        length = max(len(p.input_ids) for p in batch)
        input_ids = torch.full((len(batch), length), self.pad_id, dtype=torch.long)
        attention_mask = torch.zeros((len(batch), length), dtype=torch.long)
        for row, p in enumerate(batch):
            input_ids[row, length - len(p.input_ids) :] = p.input_ids
            attention_mask[row, length - len(p.input_ids) :] = 1
        return {"input_ids": input_ids, "attention_mask": attention_mask} | self.family.collate(
            [p.pixels for p in batch]
        )

    def encode_images(self, pixels: dict[str, torch.Tensor]) -> dict[str, BaseModelOutputWithPooling]:
        """The batch's image features, `vision_batch_size` images at a time (the SAM encoder's memory grows
        fast), as the model's `mm_encoder_outputs`: images encoded once, before prefill."""
        features = self.family.encode(
            self.model,
            pixels,
            chunk=self.vision_batch_size,
            device=self.loaded.device,
            dtype=self.model.dtype,
        )
        return {"image": features}

    def generate(self, batch: Sequence[PreparedInput], rows: Sequence[RowControl]) -> list[Generated]:
        """One generate call for the batch; each row ends at its own limit, its end or its cancellation."""
        tensors = self.collate(batch)
        prompt_length = tensors["input_ids"].shape[1]
        pixel_keys = [k for k in tensors if k not in ("input_ids", "attention_mask")]
        kwargs: dict[str, Any] = {}
        processors: list[LogitsProcessor] = []
        if self.repeat_guard is not None:  # before sampling: a banned token is never drawn
            processors.append(NoRepeatWindow(self.repeat_guard, prompt_length))
        if any(row.sampler is not None for row in rows):
            processors.append(RowSampler(rows))
        if self.logits_hooks:  # last: a hook has the last word
            processors.append(RowHooks(self.logits_hooks, batch, prompt_length))
        if processors:
            kwargs["logits_processor"] = LogitsProcessorList(processors)
        if any(row.on_delta is not None for row in rows):
            kwargs["streamer"] = RowStreamer(rows, [self.decoder(p.task) for p in batch], self.eos_ids)
        with torch.inference_mode():
            started = time.perf_counter()
            features = self.encode_images({k: tensors[k] for k in pixel_keys})
            if self.loaded.device.type == "cuda":  # kernels run asynchronously: time their end
                torch.cuda.synchronize(self.loaded.device)
            encoded = time.perf_counter()
            output = self.model.generate(
                input_ids=tensors["input_ids"].to(self.loaded.device),
                attention_mask=tensors["attention_mask"].to(self.loaded.device),
                mm_encoder_outputs=features,
                max_new_tokens=max(row.params.max_new_tokens for row in rows),
                do_sample=False,
                stopping_criteria=StoppingCriteriaList([RowStop(rows, prompt_length)]),
                pad_token_id=self.pad_id,
                **kwargs,
            )
        new_tokens = output[:, prompt_length:].tolist()
        finished = [
            self._finish(p, row, tokens) for p, row, tokens in zip(batch, rows, new_tokens, strict=True)
        ]
        metrics.record_generate(
            encoded - started, time.perf_counter() - encoded, sum(len(g.token_ids) for g in finished)
        )
        return finished

    def _finish(self, prepared: PreparedInput, row: RowControl, tokens: list[int]) -> Generated:
        reason = FinishReason.LENGTH
        if row.cancelled_after is not None:  # its caller went away; the rest of the row is padding
            tokens, reason = tokens[: row.cancelled_after], FinishReason.CANCELLED
        tokens = tokens[: row.params.max_new_tokens]
        for index, token in enumerate(tokens):
            if token in self.eos_ids:
                tokens, reason = tokens[:index], FinishReason.STOP
                break
        return Generated(
            text=self.decoder(prepared.task)(tokens),
            token_ids=tokens,
            finish_reason=reason,
            prompt_tokens=len(prepared.input_ids),
            image_tokens=prepared.image_tokens,
        )

    def decoder(self, task: TaskKind) -> Callable[[list[int]], str]:
        """How an answer to `task` becomes text."""
        return self._decoders.get(task, self._decode_plain)

    def _decode_plain(self, tokens: list[int]) -> str:
        return str(self.tokenizer.decode(tokens, skip_special_tokens=True))

    def _decoder(self, task: TaskKind) -> Callable[[list[int]], str]:
        """Special tokens (end, padding, image) are dropped, but those the family keeps for the task: the
        grounding tags of `layout` are its answer's structure."""
        kept = {
            int(token_id)
            for token in self.family.kept_tokens(task)
            if (token_id := self.tokenizer.convert_tokens_to_ids(token)) is not None
            and self.tokenizer.convert_ids_to_tokens(int(token_id)) == token
        }
        if not kept:
            return self._decode_plain
        dropped = self._special_ids - kept
        tokenizer = self.tokenizer

        def decode(tokens: list[int]) -> str:
            kept_tokens = [t for t in tokens if t not in dropped]
            return str(tokenizer.decode(kept_tokens, skip_special_tokens=False))

        return decode

    def release_memory(self) -> None:
        if self.loaded.device.type == "cuda":
            torch.cuda.empty_cache()

    def run_isolated(
        self, batch: Sequence[PreparedInput], rows: Sequence[RowControl]
    ) -> list[Generated | Exception]:
        """generate(), but one request's failure stays its own: out of memory splits the batch in halves,
        another error re-runs the requests one by one; a lone request that fails gets its error."""
        try:
            return list(self.generate(batch, rows))
        except Exception as exc:
            if is_out_of_memory(exc):
                self.release_memory()
                if len(batch) == 1:
                    log.warning("out of memory on request %s alone", batch[0].request_id)
                    return [out_of_memory_alone()]
                half = len(batch) // 2
                log.warning("out of memory on a batch of %d: splitting it", len(batch))
                return self.run_isolated(batch[:half], rows[:half]) + self.run_isolated(
                    batch[half:], rows[half:]
                )
            if len(batch) == 1:
                log.exception("request %s failed", batch[0].request_id)
                return [exc]
            log.exception("a batch of %d failed: running its requests one by one", len(batch))
            results: list[Generated | Exception] = []
            for p, row in zip(batch, rows, strict=True):
                results.extend(self.run_isolated([p], [row]))
            return results

    def warm_up(self) -> None:
        """One short generation, so the first real request does not pay for lazy initialisation."""
        buffer = io.BytesIO()
        Image.new("RGB", (64, 48), (255, 255, 255)).save(buffer, format="PNG")
        request = InferenceRequest(
            task=self.description.tasks[0],
            images=[buffer.getvalue()],
            params=GenerationParams(max_new_tokens=2),
        )
        prepared = self.prepare(request)
        self.generate([prepared], [RowControl(prepared.params)])


def _served(loaded: LoadedModel, tasks: tuple[TaskKind, ...]) -> ModelDescription:
    """The checkpoint's description with the tasks this worker serves: `tasks` (DOCVL_MODEL_WORKER_TASKS)
    when set, which must be the family's; ValueError naming what the family serves otherwise."""
    if not tasks:
        return loaded.description
    foreign = [task.value for task in tasks if task not in loaded.family.tasks]
    if foreign:
        served = ", ".join(task.value for task in loaded.family.tasks)
        raise ValueError(
            f"DOCVL_MODEL_WORKER_TASKS names {', '.join(foreign)}, which {loaded.family.name} does not "
            f"serve: choose among {served}"
        )
    return dataclasses.replace(loaded.description, tasks=tasks)
